"""The repository stands alone: a clone in an empty folder runs, tests and regenerates without ../shared."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, base_env

# Records every file the plugin opens, so the test can prove nothing beside the clone is read.
AUDIT_HOOK = """
import os, sys
_log = open(os.environ["CPUMODEL_OPEN_LOG"], "a")
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        _log.write(os.path.abspath(os.fsdecode(args[0])) + "\\n"); _log.flush()
sys.addaudithook(_hook)
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs git and a git checkout to clone")
    target = str(tmp_path_factory.mktemp("empty") / "kubectl-cpumodel")
    subprocess.run(["git", "clone", "--quiet", ROOT, target], check=True, capture_output=True)
    return target


def test_nothing_outside_tests_and_tools_points_beside_the_repository(clone):
    tracked = subprocess.run(["git", "ls-files"], cwd=clone, capture_output=True, text=True, check=True).stdout
    pattern = re.compile(r"\.\./shared|\bspec/[a-z-]+\.md")
    offenders = []
    for path in tracked.split():
        if path.startswith(("tests/", "tools/")) or path.endswith((".zip", ".json")):
            continue
        with open(os.path.join(clone, path), encoding="utf-8", errors="replace") as fh:
            offenders += ["%s:%d" % (path, n) for n, line in enumerate(fh, 1) if pattern.search(line)]
    assert offenders == []


def test_the_clone_reads_nothing_beside_it(clone, tmp_path):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = tmp_path / "opened.txt"
    env = base_env(PYTHONPATH=str(hook_dir), CPUMODEL_OPEN_LOG=str(log))
    demo = os.path.join(clone, "examples", "demo-cluster")
    for args in (["common"], ["diff", "hv-01", "hv-04"], ["why-not", "vm/db-1"],
                 ["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"]):
        proc = subprocess.run([sys.executable, os.path.join(clone, "kubectl-cpumodel")] + args + ["-f", demo],
                              capture_output=True, text=True, env=env, cwd=clone, timeout=60)
        assert proc.returncode == 0, proc.stderr
    beside = os.path.dirname(os.path.abspath(ROOT)) + os.sep
    interpreter = (os.path.abspath(sys.prefix) + os.sep, os.path.abspath(sys.base_prefix) + os.sep)
    inside = (os.path.abspath(clone) + os.sep, os.path.abspath(ROOT) + os.sep)  # the clone itself may lie there too
    outside = sorted({p for p in log.read_text().split("\n")
                      if p.startswith(beside) and not p.startswith(interpreter) and not p.startswith(inside)})
    assert outside == []
    assert any(p.startswith(clone) for p in log.read_text().split("\n"))  # the hook really logged


@pytest.mark.parametrize("tool, variable", [("gen_catalog.py", "CPUMODEL_CPU_MAP"),
                                            ("gen_demo.py", "CPUMODEL_FIXTURES")])
def test_generators_stop_with_one_line_without_reference_data(clone, tool, variable):
    env = base_env(**{variable: os.path.join(clone, "no-such-folder")})
    proc = subprocess.run([sys.executable, os.path.join(clone, "tools", tool)], capture_output=True, text=True,
                          env=env, cwd=clone, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and variable in proc.stderr
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                          text=True).stdout == ""  # nothing was half-written


def test_reference_comparisons_skip_with_a_reason_in_the_clone(clone):
    env = base_env(CPUMODEL_REFERENCE_DATA=os.path.join(clone, "no-such-folder"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_catalog.py::test_shipped_catalog_equals_a_fresh_generation",
                           "tests/test_core.py::test_label_vocabulary_on_kubevirts_own_test_node"],
                          capture_output=True, text=True, env=env, cwd=clone, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed" not in proc.stdout and "skipped" in proc.stdout
    assert "reference data cpu_map is not here" in proc.stdout
    assert "reference data fixtures" in proc.stdout
