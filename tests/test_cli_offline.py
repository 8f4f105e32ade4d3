"""The real CLI on the bundled demo snapshot: offline, with network access forbidden."""
import json
import subprocess
import sys
import zipfile

import pytest

from conftest import BUNDLE, DEMO, run_cli, run_json, run_subprocess


def test_common_on_demo_snapshot_recommends_the_skylake_baseline():
    doc = run_json(["common", "-f", DEMO], offline=True)
    assert doc["recommended"] == "Skylake-Server-IBRS"
    assert doc["commonModels"][0] == doc["recommended"]
    assert doc["nodes"] == ["hv-01", "hv-02", "hv-03", "hv-04", "hv-05"]
    assert doc["cordonedNodes"] == ["hv-05"]
    assert [e["name"] for e in doc["excludedNodes"]] == ["hv-witness"]
    assert "witness" in doc["excludedNodes"][0]["reason"]
    held = {h["model"]: h["missingOn"] for h in doc["heldBackBy"]}
    assert held["Cascadelake-Server"] == ["hv-04"]
    assert doc["heldBackBy"][0]["missingOn"] == ["hv-04"]  # fewest missing first
    assert doc["command"] == "kubectl cpumodel set --cluster Skylake-Server-IBRS"
    assert doc["clusterDefault"] == {"model": None, "kubevirt": "harvester-system/kubevirt",
                                     "supportedByAllNodes": None, "missingOn": [], "drift": None,
                                     "owner": {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                                               "namespace": "harvester-system", "name": "kubevirt",
                                               "fieldPath": "spec.configuration.cpuModel"}}
    assert doc["platform"] == "harvester"


def test_support_bundle_zip_reads_like_the_folder():
    assert run_json(["common", "-f", BUNDLE], offline=True) == run_json(["common", "-f", DEMO], offline=True)
    assert run_json(["why-not", "vm/db-1", "-f", BUNDLE], offline=True) == \
        run_json(["why-not", "vm/db-1", "-f", DEMO], offline=True)


def test_extracted_support_bundle_folder(tmp_path):
    with zipfile.ZipFile(BUNDLE) as zf:
        zf.extractall(tmp_path)
    assert run_json(["common", "-f", str(tmp_path)], offline=True)["recommended"] == "Skylake-Server-IBRS"


def test_every_node_appears_exactly_once():
    doc = run_json(["common", "-f", DEMO], offline=True)
    names = doc["nodes"] + [e["name"] for e in doc["excludedNodes"]]
    assert sorted(names) == sorted(set(names)) and len(names) == 6


def test_selector_narrows_common():
    doc = run_json(["common", "-f", DEMO, "-l", "kubernetes.io/hostname in (hv-01,hv-03)"], offline=True)
    assert doc["nodes"] == ["hv-01", "hv-03"]
    assert doc["recommended"] == "Cascadelake-Server-v2"  # ⊋ Cascadelake-Server: the best common version


def test_diff_pair_json_contract():
    doc = run_json(["diff", "hv-01", "hv-04", "-f", DEMO], offline=True)
    assert set(doc) >= {"onlyIn", "differentValues"}
    assert "cpu-model.node.kubevirt.io/Cascadelake-Server" in doc["onlyIn"]["hv-01"]
    assert "host-model-cpu.node.kubevirt.io/Skylake-Server-IBRS" in doc["onlyIn"]["hv-04"]
    assert doc["onlyIn"]["hv-01"] == sorted(doc["onlyIn"]["hv-01"])
    assert {"key": "cpu-timer.node.kubevirt.io/tsc-frequency",
            "values": {"hv-01": "2394454000", "hv-04": "2199997000"}} in doc["differentValues"]
    assert not any(k.startswith("kubernetes.io/") for k in doc["onlyIn"]["hv-01"] + doc["onlyIn"]["hv-04"])


def test_diff_matrix_groups_identical_nodes_and_all_flag():
    doc = run_json(["diff", "-f", DEMO, "-l", "!node-role.harvesterhci.io/witness"], offline=True)
    assert {c["name"]: c["nodes"] for c in doc["columns"]}["hv-03"] == ["hv-03", "hv-05"]
    keys = [r["key"] for r in doc["rows"]]
    assert "cpu-model.node.kubevirt.io/Cascadelake-Server" in keys
    assert "kubevirt.io/schedulable" not in keys  # same everywhere
    every = run_json(["diff", "-f", DEMO, "--all", "-l", "!node-role.harvesterhci.io/witness"], offline=True)
    assert "kubevirt.io/schedulable" in [r["key"] for r in every["rows"]]


def test_table_output_fits_and_is_grouped():
    proc = run_cli(["diff", "hv-01", "hv-04", "-f", DEMO], offline=True)
    assert proc.returncode == 0
    assert "Only on hv-01" in proc.stdout and "models" in proc.stdout
    common = run_cli(["common", "-f", DEMO], offline=True).stdout
    assert max(len(line) for line in common.splitlines()) <= 100
    assert "Skylake-Server-IBRS" in common.splitlines()[0]


def test_yaml_is_the_same_document():
    import yaml

    proc = run_cli(["common", "-f", DEMO, "-o", "yaml"], offline=True)
    assert yaml.safe_load(proc.stdout) == run_json(["common", "-f", DEMO], offline=True)


def test_global_flags_anywhere_on_the_line():
    a = run_cli(["-f", DEMO, "-o", "json", "why-not", "vm/web-1", "hv-01"], offline=True)
    b = run_cli(["why-not", "vm/web-1", "hv-01", "-n", "default", "-o", "json", "-f", DEMO], offline=True)
    assert a.returncode == b.returncode == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_usage_errors_exit_1_with_one_error_line():
    for args in (["bogus"], ["common", "--nope"], ["diff", "hv-01", "-f", DEMO], ["common", "-o", "xml", "-f", DEMO],
                 ["why-not"], ["common", "--request-timeout", "soon", "-f", DEMO]):
        proc = run_cli(args, offline=True)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("error: "), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_no_arguments_prints_help_and_version():
    for run in (run_cli, run_subprocess):
        proc = run([], offline=True)
        assert proc.returncode == 0 and "why-not" in proc.stdout and "usage: kubectl cpumodel" in proc.stdout
        ver = run(["--version"], offline=True)
        assert ver.returncode == 0 and ver.stdout.startswith("kubectl-cpumodel ")


def test_help_imports_no_kubernetes_yaml_or_http_client():
    code = ("import sys; sys.argv=['kubectl-cpumodel']; from cpumodel.cli import build_parser; build_parser(); import cpumodel.completion; "
            "bad=[m for m in ('kubernetes','yaml','http.client','cpumodel.core.catalog','cpumodel.objects') if m in sys.modules]; print(bad)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=DEMO + "/../..")
    assert out.stdout.strip() == "[]", out.stderr
    proc = run_cli(["why-not", "--help"], offline=True)
    assert proc.returncode == 0 and "--exit-code" in proc.stdout


def test_node_only_commands_do_not_load_the_workload_types():
    code = ("import io, sys, contextlib; from cpumodel.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['common', '-f', %r])\n"
            "print('cpumodel.workloads' in sys.modules)" % DEMO)
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=DEMO + "/../..")
    assert out.stdout.strip() == "False", out.stderr


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: [\n")
    proc = run_cli(["common", "-f", str(bad)], offline=True)
    assert proc.returncode == 1 and "broken.yaml" in proc.stderr and "not valid YAML" in proc.stderr
    nokind = tmp_path / "nokind.json"
    nokind.write_text('{"metadata": {"name": "x"}}')
    proc = run_cli(["common", "-f", str(nokind)], offline=True)
    assert proc.returncode == 1 and "nokind.json" in proc.stderr and "apiVersion/kind" in proc.stderr
    notzip = tmp_path / "bundle.zip"
    notzip.write_bytes(b"not a zip")
    proc = run_cli(["common", "-f", str(notzip)], offline=True)
    assert proc.returncode == 1 and "bundle.zip" in proc.stderr
    proc = run_cli(["common", "-f", str(tmp_path / "missing.yaml")], offline=True)
    assert proc.returncode == 1 and "no such file" in proc.stderr


def test_kind_list_and_multi_document_files(tmp_path, demo_objects):
    import yaml

    nodes = [o for o in demo_objects if o["kind"] == "Node"]
    (tmp_path / "list.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": nodes[:3]}))
    (tmp_path / "more.json").write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": nodes[3:]}))
    doc = run_json(["common", "-f", str(tmp_path / "list.yaml"), "-f", str(tmp_path / "more.json")], offline=True)
    assert doc["recommended"] == "Skylake-Server-IBRS" and len(doc["nodes"]) == 5


def test_inprocess_and_subprocess_agree():
    for args in (["common", "-f", DEMO, "-o", "json"], ["why-not", "vm/db-1", "-f", DEMO],
                 ["diff", "hv-01", "-f", DEMO], ["why-not", "vm/web-1", "hv-01", "-f", DEMO, "--exit-code"]):
        inside, outside = run_cli(args, offline=True), run_subprocess(args, offline=True)
        assert (inside.returncode, inside.stdout, inside.stderr) == (outside.returncode, outside.stdout, outside.stderr)


@pytest.mark.parametrize("run", [run_cli, run_subprocess])
def test_offline_network_guard_really_blocks(live_env, run):
    # The same command reaches the live fake server without the guard and fails with it:
    # a guard that did nothing would let it pass, so offline tests would prove nothing.
    assert run(["common", "-o", "json"], env=live_env).returncode == 0
    proc = run(["common"], offline=True, env=live_env)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stdout == ""


# ---- the JSON writer prints exactly what json.dumps(indent=4) prints -------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
_json_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none()), inner, max_size=4)),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_the_json_writer_matches_json_dumps(document):
    import json

    from cpumodel.output.render import LazyList, write_structured

    pieces = []
    write_structured(document, "json", pieces.append)
    assert "".join(pieces) == json.dumps(document, indent=4, ensure_ascii=False) + "\n"
    lazy = []
    write_structured({"steps": LazyList([1, 2], lambda n: {"n": n}), "empty": LazyList([], str)}, "json", lazy.append)
    assert "".join(lazy) == json.dumps({"steps": [{"n": 1}, {"n": 2}], "empty": []}, indent=4) + "\n"


def test_the_json_writer_matches_json_dumps_when_it_writes_in_pieces():
    import json

    from cpumodel.output.render import write_structured

    document = {"vms": [{"vm": "vm-%05d" % i, "reasons": [{"key": "k%d" % j, "nodes": j} for j in range(5)],
                         "targets": [], "fix": None} for i in range(3000)]}
    pieces = []
    write_structured(document, "json", pieces.append)
    assert len(pieces) > 10 and "".join(pieces) == json.dumps(document, indent=4) + "\n"


COUNT_CYCLES = """
import gc, io, json, sys
sys.path.insert(0, %r)
from cpumodel.cli import main
found = {}
for args in json.loads(sys.argv[1]):
    gc.collect()
    gc.disable()
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    found[" ".join(args)] = gc.collect() if code == 0 else err.getvalue()
print(json.dumps(found))
"""


def test_one_shot_commands_leave_no_garbage_cycles_that_grow_with_the_cluster(tmp_path):
    """The launcher turns the cyclic collector off for one-shot commands (cli.main): sound only while what a
    command leaves for it does not grow with the cluster. Counted at two sizes of worst-case data, in a fresh
    interpreter (this one's servers and threads make garbage of their own)."""
    import yaml

    from conftest import ROOT

    sys.path.insert(0, ROOT + "/benchmarks")
    import generate

    commands = [["audit", "-A"], ["drain-check", "--all"], ["drain-check", "node-00001"], ["common"], ["diff"],
                ["why-not", "vm/vm-00000", "-n", "bench-00"], ["upgrade-check"],
                ["what-if", "--remove-node", "node-00002"]]
    found = []
    for nodes, vms in ((10, 40), (40, 300)):
        path = tmp_path / ("%d.yaml" % nodes)
        path.write_text(yaml.safe_dump_all(generate.cluster(nodes, vms, worst=True, pod_count=nodes * 4)))
        runs = [args + ["-f", str(path), "-o", "json"] for args in commands]
        proc = subprocess.run([sys.executable, "-c", COUNT_CYCLES % ROOT, json.dumps(runs)], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        found.append(list(json.loads(proc.stdout).values()))
    for args, small, large in zip(commands, *found):
        assert isinstance(small, int) and isinstance(large, int), (args, small, large)
        assert large <= small + 20, "%s left %d objects in cycles at 40 nodes, %d at 10" % (args, large, small)


def test_the_launcher_collects_cycles_only_in_watch_drain(tmp_path):
    """One-shot commands end with the collector off; watch-drain, which runs for hours, turns it on (here it then
    meets an unreachable server and stops)."""
    from conftest import ROOT, base_env, write_kubeconfig

    script = ("import gc, os, sys; sys.path.insert(0, %r); from cpumodel.cli import main; "
              "os._exit = lambda code: (print(gc.isenabled()), sys.exit(code)); sys.argv = ['kubectl-cpumodel'] + "
              "sys.argv[1:]; main()" % ROOT)
    env = base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), "http://127.0.0.1:9"))
    for args, collecting in ((["common", "-f", DEMO], "False"),
                             (["watch-drain", "node-a", "--request-timeout", "1s", "--timeout", "1s"], "True")):
        proc = subprocess.run([sys.executable, "-c", script] + args, capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.stdout.splitlines()[-1] == collecting, (args, proc.stdout, proc.stderr)
