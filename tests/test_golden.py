"""Golden files: the exact table output of every command on the demo snapshot.

After an intended change of output, regenerate with `pytest tests/test_golden.py --update-golden`
and review the diff of tests/golden/ before committing it.
"""
import os

import pytest

from conftest import DEMO, GOLDEN, run_cli

SCENARIOS = {
    "common": ["common"],
    "common-wide": ["common", "-o", "wide"],
    "diff-pair": ["diff", "hv-01", "hv-04"],
    "diff-pair-all": ["diff", "hv-01", "hv-02", "--all"],
    "diff-matrix": ["diff"],
    "diff-matrix-selected": ["diff", "hv-01", "hv-03", "hv-04"],
    "why-not-all-nodes-sticky": ["why-not", "vm/db-1"],
    "why-not-one-node": ["why-not", "vm/web-1", "hv-01"],
    "why-not-one-node-wide": ["why-not", "vm/web-1", "hv-01", "-o", "wide"],
    "why-not-cordoned": ["why-not", "vm/web-1", "hv-05", "--exit-code"],
    "why-not-migratable": ["why-not", "vm/db-1", "hv-02", "--exit-code"],
    "why-not-stopped": ["why-not", "vm/batch-1", "hv-04"],
    "why-not-hostname-pin": ["why-not", "vm/legacy-1"],
    "why-not-named-model": ["why-not", "app-1", "-n", "prod"],
    "set-vm-dry-run": ["set", "vm/web-1", "Skylake-Server-IBRS", "--dry-run=client"],
    "set-cluster-dry-run": ["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"],
    "set-refused": ["set", "--cluster", "Cascadelake-Server", "--dry-run=client"],
    "drain-check-migrates": ["drain-check", "hv-01"],
    "drain-check-blocked": ["drain-check", "hv-03", "--exit-code"],
    "drain-check-shutdown": ["drain-check", "hv-02"],
    "drain-check-together": ["drain-check", "hv-01", "hv-02"],
    "drain-check-all": ["drain-check", "--all"],
    "audit": ["audit", "-A"],
    "audit-wide": ["audit", "-A", "-o", "wide"],
    "what-if-retire": ["what-if", "--remove-node", "hv-04", "--exit-code"],
    "what-if-models": ["what-if", "--cluster-model", "Skylake-Server-IBRS", "--vm-model", "vm/web-1=Cascadelake-Server"],
    "what-if-wide": ["what-if", "--remove-node", "hv-03", "--remove-node", "hv-01", "-o", "wide"],
}
# On the capacity snapshot of test_capacity.py: VMs that fit by CPU, some without room.
CAPACITY_SCENARIOS = {
    "drain-check-capacity": ["drain-check", "a-1", "--exit-code"],
    "drain-check-capacity-all": ["drain-check", "--all"],
    "audit-capacity-wide": ["audit", "-A", "-o", "wide"],
    "why-not-capacity": ["why-not", "vm/huge"],
}


@pytest.fixture(scope="module")
def capacity_snapshot(tmp_path_factory):
    import yaml

    from test_capacity import capacity_cluster

    path = tmp_path_factory.mktemp("capacity") / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(capacity_cluster()))
    return str(path)


def rendered(args, source=DEMO):
    proc = run_cli(args + ["-f", source], offline=True)
    return "$ kubectl cpumodel %s\n# exit %d\n# stdout\n%s# stderr\n%s" % (
        " ".join(args), proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("name", sorted(SCENARIOS) + sorted(CAPACITY_SCENARIOS))
def test_table_output_matches_the_golden_file(name, request):
    path = os.path.join(GOLDEN, name + ".txt")
    if name in CAPACITY_SCENARIOS:
        text = rendered(CAPACITY_SCENARIOS[name], request.getfixturevalue("capacity_snapshot"))
    else:
        text = rendered(SCENARIOS[name])
    if request.config.getoption("--update-golden"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    with open(path, encoding="utf-8") as fh:
        assert text == fh.read()


def test_every_golden_file_has_a_scenario():
    assert sorted(f[:-4] for f in os.listdir(GOLDEN)) == sorted(list(SCENARIOS) + list(CAPACITY_SCENARIOS))
