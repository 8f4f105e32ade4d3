"""why-not on realistic objects, offline and against the fake API server (spec/kubevirt-scheduling.md §2-§4)."""
import json

import pytest
import yaml

from testkit.kubevirt import cpu_node, kubevirt, launcher, node, vm, vmi
from conftest import DEMO, run_cli, run_json

BASE = {"kubernetes.io/arch": "amd64", "kubevirt.io/schedulable": "true", "cpu-vendor.node.kubevirt.io/Intel": "true",
        "machine-type.node.kubevirt.io/pc-q35-9.2": "true"}


def snapshot(tmp_path, objects):
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def why(tmp_path, objects, *args, code=0):
    proc = run_cli(["why-not"] + list(args) + ["-f", snapshot(tmp_path, objects), "-o", "json"], offline=True)
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def keys(doc, category=None):
    return [r["key"] for r in doc["reasons"] if category is None or r["category"] == category]


def kb_nodes():
    """The Harvester KB example: host model SierraForest requiring fpu and vme."""
    source = dict(BASE, **{"host-model-cpu.node.kubevirt.io/SierraForest": "true",
                           "host-model-required-features.node.kubevirt.io/fpu": "true",
                           "host-model-required-features.node.kubevirt.io/vme": "true",
                           "cpu-model-migration.node.kubevirt.io/SierraForest": "true",
                           "cpu-feature.node.kubevirt.io/fpu": "true", "cpu-feature.node.kubevirt.io/vme": "true",
                           "cpu-model.node.kubevirt.io/IvyBridge": "true"})
    a = dict(BASE, **{"cpu-model-migration.node.kubevirt.io/SierraForest": "true", "cpu-feature.node.kubevirt.io/fpu": "true",
                      "cpu-feature.node.kubevirt.io/vme": "true", "cpu-model.node.kubevirt.io/IvyBridge": "true",
                      "host-model-cpu.node.kubevirt.io/SierraForest": "true"})
    b = dict(BASE, **{"cpu-model-migration.node.kubevirt.io/SierraForest": "true", "cpu-feature.node.kubevirt.io/vme": "true",
                      "cpu-model.node.kubevirt.io/IvyBridge": "true", "host-model-cpu.node.kubevirt.io/GraniteRapids": "true"})
    return [node("src", source), node("node-a", a), node("node-b", b), kubevirt("v1.8.4")]


def test_kb_host_model_cannot_go_to_a_node_without_fpu(tmp_path):
    the_vmi = vmi("kb", "src")
    objs = kb_nodes() + [vm("kb"), the_vmi, launcher(the_vmi, {"kubevirt.io/schedulable": "true"})]
    ok = why(tmp_path, objs, "vm/kb", "node-a")
    assert ok["migratable"] is True and ok["reasons"] == []
    bad = why(tmp_path, objs, "vm/kb", "node-b")
    assert bad["migratable"] is False
    assert keys(bad) == ["cpu-feature.node.kubevirt.io/fpu"]
    reason = bad["reasons"][0]
    assert reason["category"] == "cpu-feature" and "host model of src requires fpu" in reason["message"]
    constraints = {c["key"] for c in bad["constraints"]}
    assert {"cpu-model-migration.node.kubevirt.io/SierraForest", "cpu-feature.node.kubevirt.io/fpu",
            "cpu-feature.node.kubevirt.io/vme", "cpu-vendor.node.kubevirt.io/Intel",
            "machine-type.node.kubevirt.io/pc-q35-9.2", "kubevirt.io/schedulable", "kubernetes.io/arch"} <= constraints
    assert bad["suggestion"]["model"] == "IvyBridge"
    assert bad["suggestion"]["command"] == "kubectl cpumodel set vm/kb IvyBridge -n default"


def test_kb_named_model_ivybridge_goes_anywhere_it_is_usable(tmp_path):
    the_vmi = vmi("ivy", "src", model="IvyBridge")
    objs = kb_nodes() + [vm("ivy", model="IvyBridge"), the_vmi,
                         launcher(the_vmi, {"cpu-model.node.kubevirt.io/IvyBridge": "true"}),
                         node("no-ivy", dict(BASE))]
    doc = why(tmp_path, objs, "vm/ivy")
    verdict = {n["name"]: n["migratable"] for n in doc["nodes"]}
    assert verdict == {"node-a": True, "node-b": True, "no-ivy": False}
    no_ivy = next(n for n in doc["nodes"] if n["name"] == "no-ivy")
    assert [r["key"] for r in no_ivy["reasons"]] == ["cpu-model.node.kubevirt.io/IvyBridge"]
    assert "src" not in verdict  # the source node is not a target


def test_sticky_selectors_come_from_the_current_pod_not_the_node(tmp_path):
    # db booted on an old node; its pod still demands that node's host model after moving to a newer one.
    the_vmi = vmi("db", "src")
    sticky = {"kubevirt.io/schedulable": "true", "cpu-model-migration.node.kubevirt.io/Haswell-noTSX": "true",
              "cpu-feature.node.kubevirt.io/pdcm": "true"}
    objs = kb_nodes() + [vm("db"), the_vmi, launcher(the_vmi, sticky)]
    doc = why(tmp_path, objs, "vm/db", "node-a")
    assert sorted(keys(doc)) == ["cpu-feature.node.kubevirt.io/pdcm", "cpu-model-migration.node.kubevirt.io/Haswell-noTSX"]
    assert all("earlier migration" in r["message"] and "restart clears it" in r["message"] for r in doc["reasons"])
    assert "cpu-feature.node.kubevirt.io/fpu" not in {c["key"] for c in doc["constraints"]}  # nothing read from src


def test_newest_launcher_pod_on_the_vmi_node_is_the_current_one(tmp_path):
    the_vmi = vmi("db", "src")
    old = launcher(the_vmi, {"cpu-model-migration.node.kubevirt.io/Haswell": "true"}, "2026-10-01T00:00:00Z", "old")
    new = launcher(the_vmi, {"kubevirt.io/schedulable": "true"}, "2026-11-01T00:00:00Z", "new")
    doc = why(tmp_path, kb_nodes() + [vm("db"), the_vmi, old, new], "vm/db", "node-a")
    assert doc["migratable"] is True


def test_forbidden_feature_becomes_node_affinity(tmp_path):
    the_vmi = vmi("f", "src", model="IvyBridge", features=[{"name": "vme", "policy": "forbid"}])
    objs = kb_nodes() + [vm("f", model="IvyBridge"), the_vmi, launcher(the_vmi, {})]
    doc = why(tmp_path, objs, "vm/f", "node-a")
    assert [(r["category"], r["key"]) for r in doc["reasons"]] == [("node-affinity", "cpu-feature.node.kubevirt.io/vme")]
    assert "forbids CPU feature vme" in doc["reasons"][0]["message"]


def test_required_feature_and_machine_type(tmp_path):
    the_vmi = vmi("m", "src", model="IvyBridge", features=[{"name": "fpu"}], machine="pc-q35-rhel9.6.0")
    objs = kb_nodes() + [vm("m", model="IvyBridge"), the_vmi, launcher(the_vmi, {})]
    doc = why(tmp_path, objs, "vm/m", "node-b")
    cats = {(r["category"], r["key"]) for r in doc["reasons"]}
    assert ("machine-type", "machine-type.node.kubevirt.io/pc-q35-rhel9.6.0") in cats
    assert ("cpu-feature", "cpu-feature.node.kubevirt.io/fpu") in cats


@pytest.mark.parametrize("version,blocked", [("v1.8.4", True), ("v1.7.0", False), ("v1.7.1", True),
                                             ("v1.6.3", False), ("v1.6.4", True)])
def test_vendor_selector_follows_the_kubevirt_version(tmp_path, version, blocked):
    intel = cpu_node("intel-1", "Cascadelake-Server", ["Cascadelake-Server"])
    amd = cpu_node("amd-1", "EPYC-Rome", ["EPYC-Rome"], vendor="AMD")
    the_vmi = vmi("w", "intel-1", model="Westmere")
    objs = [intel, amd, kubevirt(version), vm("w", model="Westmere"), the_vmi, launcher(the_vmi, {})]
    doc = why(tmp_path, objs, "vm/w", "amd-1")
    assert ("cpu-vendor.node.kubevirt.io/Intel" in keys(doc, "cpu-vendor")) is blocked
    assert doc["migratable"] is (not blocked)


def test_unknown_version_assumes_newest_rules(tmp_path):
    kv = kubevirt("v1.8.4")
    del kv["status"]
    the_vmi = vmi("w", "src", model="IvyBridge")
    doc = why(tmp_path, kb_nodes()[:3] + [kv, vm("w", model="IvyBridge"), the_vmi, launcher(the_vmi, {})], "vm/w", "node-a")
    assert any("assuming the newest rules" in n for n in doc["notes"])


def test_node_conditions_taints_cordon_schedulable(tmp_path):
    labels = dict(BASE, **{"cpu-model.node.kubevirt.io/IvyBridge": "true"})
    objs = [node("src", dict(labels)), kubevirt(),
            node("tainted", dict(labels), taints=[{"key": "kubevirt.io/drain", "value": "draining", "effect": "NoSchedule"},
                                                   {"key": "soft", "effect": "PreferNoSchedule"}]),
            node("tolerated", dict(labels), taints=[{"key": "dedicated", "value": "vms", "effect": "NoSchedule"}]),
            node("cordoned", dict(labels), unschedulable=True),
            node("notready", dict(labels), ready=False),
            node("unsched", dict(labels, **{"kubevirt.io/schedulable": "false"}))]
    the_vmi = vmi("t", "src", model="IvyBridge",
                  tolerations=[{"key": "dedicated", "operator": "Equal", "value": "vms", "effect": "NoSchedule"}])
    doc = why(tmp_path, objs + [vm("t", model="IvyBridge"), the_vmi, launcher(the_vmi, {})], "vm/t")
    by = {n["name"]: [(r["category"], r["key"]) for r in n["reasons"]] for n in doc["nodes"]}
    assert by["tainted"] == [("taint", "kubevirt.io/drain")]
    assert by["tolerated"] == []
    assert by["cordoned"] == [("cordoned", None)]
    assert by["notready"] == [("not-ready", None)]
    assert by["unsched"] == [("schedulable", "kubevirt.io/schedulable")]


def test_live_migratable_false_blocks_every_node(tmp_path):
    the_vmi = vmi("d", "src", model="IvyBridge", migratable=False)
    doc = why(tmp_path, kb_nodes() + [vm("d", model="IvyBridge"), the_vmi, launcher(the_vmi, {})], "vm/d")
    for n in doc["nodes"]:
        assert n["migratable"] is False
        assert n["reasons"][0]["category"] == "not-migratable"
        assert "DisksNotLiveMigratable" in n["reasons"][0]["message"]


def test_stopped_vm_explains_a_fresh_start(tmp_path):
    objs = kb_nodes() + [vm("off", model="IvyBridge", running=False), node("no-ivy", dict(BASE))]
    doc = why(tmp_path, objs, "vm/off", "no-ivy")
    assert doc["sourceNode"] is None and doc["migratable"] is False
    assert [r["category"] for r in doc["reasons"]] == ["not-running", "cpu-model", "machine-type"]
    ok = why(tmp_path, objs, "off", "node-a")
    assert [r["category"] for r in ok["reasons"]] == ["not-running", "machine-type"]


def test_stopped_vm_uses_the_cluster_default_model(tmp_path):
    objs = kb_nodes()[:3] + [kubevirt(cpu_model="IvyBridge"), vm("off", running=False), node("no-ivy", dict(BASE))]
    doc = why(tmp_path, objs, "vm/off", "no-ivy")
    reason = next(r for r in doc["reasons"] if r["category"] == "cpu-model")
    assert "cluster default model IvyBridge" in reason["message"]


def test_demo_leftover_hostname_pin_and_failed_migration():
    doc = run_json(["why-not", "vm/legacy-1", "hv-01", "-f", DEMO], offline=True)
    pin = next(r for r in doc["reasons"] if r["key"] == "kubernetes.io/hostname")
    assert pin["category"] == "node-selector" and "leftover" in pin["message"]
    db = run_json(["why-not", "vm/db-1", "hv-04", "-f", DEMO], offline=True)
    assert db["migrations"][0]["phase"] == "Failed"
    assert "NoSuitableNodesForHostModelMigration" in {e["reason"] for e in db["events"]}
    assert sorted(keys(db, "cpu-feature")) == ["cpu-feature.node.kubevirt.io/ibrs-all",
                                               "cpu-feature.node.kubevirt.io/mds-no",
                                               "cpu-feature.node.kubevirt.io/rdctl-no"]


def test_vmi_reference_and_errors(tmp_path):
    doc = run_json(["why-not", "vmi/web-1", "hv-02", "-f", DEMO], offline=True)
    assert doc["vm"] == "web-1" and doc["sourceNode"] == "hv-03"
    for args, text in ((["vm/ghost", "hv-01"], 'virtualmachines.kubevirt.io "ghost" not found'),
                       (["vmi/batch-1", "hv-01"], 'virtualmachineinstances.kubevirt.io "batch-1" not found'),
                       (["vm/web-1", "hv-99"], 'nodes "hv-99" not found'),
                       (["pod/web-1", "hv-01"], "unsupported VM reference")):
        proc = run_cli(["why-not"] + args + ["-f", DEMO], offline=True)
        assert proc.returncode == 1 and text in proc.stderr, proc.stderr


def test_exit_code_flag():
    assert run_cli(["why-not", "vm/app-1", "hv-01", "-n", "prod", "--exit-code", "-f", DEMO], offline=True).returncode == 0
    assert run_cli(["why-not", "vm/web-1", "hv-01", "--exit-code", "-f", DEMO], offline=True).returncode == 3
    assert run_cli(["why-not", "vm/web-1", "hv-01", "-f", DEMO], offline=True).returncode == 0


def test_table_shows_marks_and_one_line_per_reason():
    out = run_cli(["why-not", "vm/db-1", "-f", DEMO], offline=True).stdout
    assert "✓" in out and "✗" in out and "hv-04" in out
    single = run_cli(["why-not", "vm/db-1", "hv-04", "-f", DEMO], offline=True).stdout
    assert single.count("cpu-feature.node.kubevirt.io/") >= 3 and "Fix:" in single


def test_live_why_not_matches_offline(live_env, fake):
    live = run_json(["why-not", "vm/db-1", "hv-04"], env=live_env)
    assert live == run_json(["why-not", "vm/db-1", "hv-04", "-f", DEMO], offline=True)
    pods = [r for r in fake.requests if r["path"].endswith("/pods")]
    assert pods and all("kubevirt.io" in r["query"].get("labelSelector", "") for r in pods)


def test_pending_migration_shows_the_unschedulable_target_pod(tmp_path):
    the_vmi = vmi("p", "src")
    vmim = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "p-move", "namespace": "default", "uid": "uid-vmim-p", "labels": {"kubevirt.io/vmi-name": "p"},
                         "creationTimestamp": "2026-11-25T08:00:00Z"},
            "spec": {"vmiName": "p"}, "status": {"phase": "Scheduling"}}
    target = launcher(the_vmi, {"cpu-feature.node.kubevirt.io/fpu": "true"}, "2026-11-25T08:00:01Z", "target")
    target["metadata"]["labels"]["kubevirt.io/migrationJobUID"] = "uid-vmim-p"
    target["spec"]["nodeName"] = None
    message = "0/3 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 2 node(s) didn't match Pod's node affinity/selector."
    target["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                            "reason": "Unschedulable", "message": message}]}
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev1", "namespace": "default"},
             "involvedObject": {"kind": "Pod", "name": target["metadata"]["name"]}, "reason": "FailedScheduling",
             "message": message, "type": "Warning", "lastTimestamp": "2026-11-25T08:00:02Z"}
    objs = kb_nodes() + [vm("p"), the_vmi, launcher(the_vmi, {}), vmim, target, event]
    doc = why(tmp_path, objs, "vm/p", "node-b")
    assert doc["migrations"] == [{"name": "p-move", "phase": "Scheduling", "targetNode": None,
                                  "targetPods": [{"name": target["metadata"]["name"], "phase": "Pending",
                                                  "unschedulable": message}]}]
    assert [e["reason"] for e in doc["events"]] == ["FailedScheduling"]
    table = run_cli(["why-not", "vm/p", "node-b", "-f", snapshot(tmp_path, objs)], offline=True).stdout
    assert "Migration p-move: Scheduling" in table and "didn't match Pod's node affinity" in table


def test_all_nodes_form_suggests_the_common_model_when_cpu_blocks():
    doc = run_json(["why-not", "vm/web-1", "-f", DEMO], offline=True)
    assert doc["suggestion"]["model"] == "Skylake-Server-IBRS"
    assert not any(n["migratable"] for n in doc["nodes"])
    app = run_json(["why-not", "vm/app-1", "-n", "prod", "-f", DEMO], offline=True)
    assert app["suggestion"] is None  # a named model already; only cordon/taint/witness block some nodes


def test_warns_when_the_scheduler_allows_what_libvirt_would_refuse(tmp_path):
    """KubeVirt >= 1.8 labels every known model for migration: the selector can pass on an older CPU."""
    clx = cpu_node("clx", "Cascadelake-Server", ["Cascadelake-Server"])
    skx = cpu_node("skx", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"])
    twin = cpu_node("clx-2", "Cascadelake-Server", ["Cascadelake-Server"])
    the_vmi = vmi("hm", "clx")
    objs = [clx, skx, twin, kubevirt("v1.8.4"), vm("hm"), the_vmi, launcher(the_vmi, {})]
    doc = why(tmp_path, objs, "vm/hm", "skx")
    assert doc["migratable"] is True and doc["reasons"] == []  # what the scheduler decides
    assert len(doc["warnings"]) == 1 and "avx512vnni" in doc["warnings"][0] and "Cascadelake-Server" in doc["warnings"][0]
    assert doc["suggestion"]["model"] == "Skylake-Server-IBRS"
    assert why(tmp_path, objs, "vm/hm", "clx-2")["warnings"] == []
    passthrough = vmi("pt", "clx", model="host-passthrough")
    objs = [clx, skx, twin, kubevirt("v1.8.4"), vm("pt", model="host-passthrough"), passthrough, launcher(passthrough, {})]
    pt = why(tmp_path, objs, "vm/pt", "skx")
    assert pt["migratable"] is True and "host-passthrough" in pt["warnings"][0]
    assert why(tmp_path, objs, "vm/pt", "clx-2")["warnings"] == []
