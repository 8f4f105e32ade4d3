"""KubeVirt rules the engine follows beyond the common case (docs/kubevirt-rules.md §1.2, §2.1, §2.2, §5):
SEV-ES, HypervStrictCheck, arm64 defaults, a VMI stuck in Scheduling, the obsolete list by release."""
import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from conftest import reference_data, run_cli
from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS, obsolete_models
from testkit import kubevirt as kv

SKYLAKE = ["Skylake-Server-IBRS", "Skylake-Server-v5"]


def why(tmp_path, objects, *args):
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    proc = run_cli(["why-not"] + list(args) + ["-f", str(path), "-o", "json"], offline=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sev_labels(capture):
    """What KubeVirt's node-labeller writes for a host from its domcapabilities `<sev>` element."""
    sev = ET.parse(reference_data("fixtures", "domcaps", capture)).getroot().find("features/sev")
    if sev is None or sev.get("supported") != "yes":
        return {}
    labels = {"kubevirt.io/sev": "true"}
    if int(sev.findtext("maxESGuests") or 0) > 0:
        labels["kubevirt.io/sev-es"] = "true"
    return labels


def test_sev_es_needs_the_sev_es_label_as_captured_by_kubevirt(tmp_path):
    nodes = [kv.cpu_node(name, "Skylake-Server-IBRS", SKYLAKE, labels=sev_labels(capture))
             for name, capture in (("es", "kubevirt-testdata__domcapabilities_sev.xml"),
                                   ("no-es", "kubevirt-testdata__domcapabilities_noseves.xml"),
                                   ("no-sev", "kubevirt-testdata__domcapabilities_nosev.xml"))]
    vm = kv.vm("secret", model="Skylake-Server-IBRS", running=False,
               domain={"launchSecurity": {"sev": {"policy": {"encryptedState": True}}}})
    doc = why(tmp_path, nodes + [kv.kubevirt(), vm], "vm/secret")
    blocked = {n["name"]: sorted(r["key"] for r in n["reasons"] if r["category"] == "node-selector")
               for n in doc["nodes"]}
    assert blocked == {"es": [], "no-es": ["kubevirt.io/sev-es"], "no-sev": ["kubevirt.io/sev", "kubevirt.io/sev-es"]}


def test_hyperv_strict_check_requires_the_enlightenment_labels(tmp_path):
    full = kv.cpu_node("full", "Skylake-Server-IBRS", SKYLAKE, labels={"hyperv.node.kubevirt.io/ipi": "true",
                                                                        "hyperv.node.kubevirt.io/synic": "true"})
    lacking = kv.cpu_node("no-ipi", "Skylake-Server-IBRS", SKYLAKE, labels={"hyperv.node.kubevirt.io/synic": "true"})
    vm = kv.vm("win", model="Skylake-Server-IBRS", running=False,
               domain={"features": {"hyperv": {"ipi": {}, "synic": {"enabled": True}, "relaxed": {},
                                               "vpindex": {"enabled": False}}}})
    gated = kv.kubevirt(configuration={"developerConfiguration": {"featureGates": ["HypervStrictCheck"]}})
    doc = why(tmp_path, [full, lacking, gated, vm], "vm/win")
    keys = {n["name"]: [r["key"] for r in n["reasons"] if r["category"] == "node-selector"] for n in doc["nodes"]}
    assert keys == {"full": [], "no-ipi": ["hyperv.node.kubevirt.io/ipi"]}
    ungated = why(tmp_path, [full, lacking, kv.kubevirt(), vm], "vm/win")
    assert all(not [r for r in n["reasons"] if r["category"] == "node-selector"] for n in ungated["nodes"])


def test_evmcs_needs_an_intel_cpu_under_hyperv_strict_check(tmp_path):
    amd = kv.cpu_node("amd", "EPYC-Rome", ["EPYC-Rome"], vendor="AMD")
    intel = kv.cpu_node("intel", "Skylake-Server-IBRS", SKYLAKE)
    vm = kv.vm("evmcs", model="Westmere", running=False, domain={"features": {"hyperv": {"evmcs": {}}}})
    gated = kv.kubevirt("v1.5.0", configuration={"developerConfiguration": {"featureGates": ["HypervStrictCheck"]}})
    doc = why(tmp_path, [amd, intel, gated, vm], "vm/evmcs")
    vendor = {n["name"]: [r["key"] for r in n["reasons"] if r["category"] == "cpu-vendor"] for n in doc["nodes"]}
    assert vendor == {"amd": ["cpu-vendor.node.kubevirt.io/Intel"], "intel": []}


def test_a_stopped_arm64_vm_gets_host_passthrough_before_the_cluster_default(tmp_path):
    arm = kv.node("arm-1", {"kubernetes.io/arch": "arm64", "kubevirt.io/schedulable": "true",
                            "kubernetes.io/hostname": "arm-1", "machine-type.node.kubevirt.io/virt": "true"})
    vm = kv.vm("pi", running=False, architecture="arm64", domain={"machine": {"type": "virt"}})
    doc = why(tmp_path, [arm, kv.kubevirt(cpu_model="Cascadelake-Server"), vm], "vm/pi", "arm-1")
    assert doc["cpuModel"] is None
    assert [r["category"] for r in doc["reasons"]] == ["not-running"]  # no cpu-model reason: host-passthrough
    assert not any(c["key"].startswith("cpu-model") for c in doc["constraints"])


def test_audit_gives_a_model_less_arm64_vm_host_passthrough_running_or_stopped(tmp_path):
    """pkg/defaults (v1.9.0): SetDefaultVirtualMachineInstance calls setDefaultCPUArch, which applies
    SetArm64Defaults (host-passthrough for an empty model) before setDefaultCPUModel (the cluster default):
    the same rule in audit as in why-not."""
    arm = [kv.node("arm-%d" % i, {"kubernetes.io/arch": "arm64", "kubevirt.io/schedulable": "true",
                                   "kubernetes.io/hostname": "arm-%d" % i, "machine-type.node.kubevirt.io/virt": "true"})
           for i in (1, 2)]
    stopped = kv.vm("pi-stopped", running=False, architecture="arm64", domain={"machine": {"type": "virt"}})
    running = kv.vm("pi-running", architecture="arm64", domain={"machine": {"type": "virt"}})
    vmi = kv.vmi_of(running, "arm-1", kubevirt_default="host-passthrough")
    named = kv.vm("pi-named", running=False, architecture="arm64", model="host-passthrough")
    objects = arm + [kv.cpu_node("x86-1", "Cascadelake-Server", ["Cascadelake-Server"]), kv.kubevirt(cpu_model="Cascadelake-Server"),
                     stopped, running, vmi, kv.launcher(vmi), named]
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    doc = json.loads(run_cli(["audit", "-f", str(path), "-o", "json"], offline=True).stdout)
    cpus = {v["vm"]: (v["cpu"]["mode"], v["cpu"]["model"], v["cpu"]["origin"]) for v in doc["vms"]}
    assert cpus["pi-stopped"] == ("host-passthrough", None, "kubevirt-default")
    assert cpus["pi-running"] == ("host-passthrough", None, "kubevirt-default")
    assert cpus["pi-named"] == ("host-passthrough", None, "vm")
    # An x86 VM without a model still takes the cluster default.
    from cpumodel.core.launcher_pod import start_cpu_model
    assert start_cpu_model(None, None, "amd64", "Cascadelake-Server") == ("Cascadelake-Server", "cluster-default")
    assert start_cpu_model(None, "Broadwell", "arm64", "Cascadelake-Server") == ("Broadwell", "instancetype")


def test_a_vmi_stuck_in_scheduling_keeps_the_model_it_was_created_with(tmp_path):
    node = kv.cpu_node("sk-1", "Skylake-Server-IBRS", SKYLAKE)
    vm = kv.vm("late", running=True)
    stuck = kv.vmi_of(vm, "", kubevirt_default="Cascadelake-Server", phase="Scheduling")
    # Since then the cluster default changed to a model the node has; the pending pod still wants the old one.
    doc = why(tmp_path, [node, kv.kubevirt(cpu_model="Skylake-Server-IBRS"), vm, stuck], "vm/late", "sk-1")
    assert [(r["category"], r["key"]) for r in doc["reasons"]] == [
        ("not-running", None), ("cpu-model", "cpu-model.node.kubevirt.io/Cascadelake-Server")]
    assert "waits to be scheduled" in " ".join(doc["notes"])


# KubeVirt's DefaultObsoleteCPUModels (pkg/virt-handler/node-labeller/util/util.go) as read at each tag:
# (number of names, whether the -v1 aliases are there, whether Opteron_G1/G2 are there).
OBSOLETE_LIST_AT_TAG = {
    (1, 0, 0): (15, False, False), (1, 2, 0): (15, False, False), (1, 2, 1): (17, False, True),
    (1, 3, 0): (17, False, True), (1, 4, 1): (17, False, True), (1, 5, 0): (17, False, True),
    (1, 5, 1): (17, False, True), (1, 5, 2): (34, True, True), (1, 5, 3): (34, True, True),
    (1, 6, 0): (34, True, True), (1, 7, 0): (34, True, True), (1, 8, 4): (34, True, True), (1, 9, 0): (34, True, True),
}


@pytest.mark.parametrize("release", sorted(OBSOLETE_LIST_AT_TAG), ids=lambda r: "v%d.%d.%d" % r)
def test_the_default_obsolete_list_is_the_one_of_the_release(release):
    size, aliases, opteron = OBSOLETE_LIST_AT_TAG[release]
    models = obsolete_models(None, release)
    assert len(models) == size
    assert ("kvm64-v1" in models) is aliases and ("Opteron_G1" in models) is opteron
    assert obsolete_models(None, None) == DEFAULT_OBSOLETE_CPU_MODELS  # unknown: the newest rules
    assert obsolete_models(frozenset({"Opteron_G1"}), release) == {"Opteron_G1"}  # a configured list replaces it


def test_a_running_kvm64_v1_vm_is_obsolete_from_v1_5_2(tmp_path):
    """The -v1 aliases came with the v1.5.2 backport (commit 4460da59f6), not v1.6.0."""
    def audit(version):
        vm = kv.vm("legacy", model="kvm64-v1")
        vmi = kv.vmi_of(vm, "n1")
        objs = [kv.cpu_node("n1", "Cascadelake-Server", ["Cascadelake-Server", "kvm64-v1"]),
                kv.cpu_node("n2", "Cascadelake-Server", ["Cascadelake-Server", "kvm64-v1"]),
                kv.kubevirt(version), vm, vmi, kv.launcher(vmi)]
        path = tmp_path / ("snap-%s.yaml" % version)
        path.write_text(yaml.safe_dump_all(objs))
        doc = json.loads(run_cli(["audit", "-f", str(path), "-o", "json"], offline=True).stdout)
        return [r["code"] for r in doc["vms"][0]["risks"]]

    assert "obsolete-model" in audit("v1.5.2")
    assert "obsolete-model" not in audit("v1.5.1")


def test_common_keeps_opteron_on_an_old_cluster(tmp_path):
    nodes = [kv.cpu_node("old-%d" % i, "Opteron_G3", ["Opteron_G3"], vendor="AMD",
                         labels={"cpu-model.node.kubevirt.io/Opteron_G2": "true"}) for i in range(2)]
    for version, kept in (("v1.2.0", True), ("v1.2.1", False), ("v1.8.4", False)):
        path = tmp_path / ("%s.yaml" % version)
        path.write_text(yaml.safe_dump_all(nodes + [kv.kubevirt(version)]))
        doc = json.loads(run_cli(["common", "-f", str(path), "-o", "json"], offline=True).stdout)
        assert ("Opteron_G2" in doc["commonModels"]) is kept, version


def test_why_not_finds_the_vm_in_any_namespace_with_A(live_env, fake):
    from conftest import run_json

    doc = run_json(["why-not", "vm/app-1", "-A"], env=live_env)
    assert doc["namespace"] == "prod" and doc["sourceNode"] == "hv-04"
    names = [r["query"].get("fieldSelector") for r in fake.requests if r["path"].endswith("/virtualmachines")]
    assert "metadata.name=app-1" in names  # one cluster-wide list by name, not every VM
    fake.add(kv.vm("app-1", ns="default"))
    proc = run_cli(["why-not", "vm/app-1", "-A"], env=live_env)
    assert proc.returncode == 1 and "exists in namespaces default, prod" in proc.stderr


def test_events_come_from_both_event_apis_once_each(live_env, fake):
    fake.add({"apiVersion": "events.k8s.io/v1", "kind": "Event",
              "metadata": {"name": "new-style", "namespace": "default", "uid": "uid-new"},
              "regarding": {"kind": "VirtualMachineInstance", "name": "db-1", "namespace": "default"},
              "reason": "MigrationBackoff", "note": "backing off before the next migration", "type": "Warning",
              "eventTime": "2026-11-25T09:10:00.000000Z"})
    from conftest import run_json

    events = run_json(["why-not", "vm/db-1"], env=live_env)["events"]
    reasons = [e["reason"] for e in events]
    assert reasons.count("MigrationBackoff") == 1 and reasons.count("NoSuitableNodesForHostModelMigration") == 1
    assert any(e["message"] == "backing off before the next migration" for e in events)


def test_common_groups_nodes_by_architecture_and_vendor(tmp_path):
    nodes = [kv.cpu_node("intel-%d" % i, "Cascadelake-Server", ["Cascadelake-Server"]) for i in range(2)]
    nodes.append(kv.cpu_node("amd-1", "EPYC-Rome", ["EPYC-Rome"], vendor="AMD"))
    nodes.append(kv.node("arm-1", {"kubernetes.io/arch": "arm64", "kubevirt.io/schedulable": "true",
                                   "kubernetes.io/hostname": "arm-1"}))
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump_all(nodes + [kv.kubevirt()]))
    doc = json.loads(run_cli(["common", "-f", str(path), "-o", "json"], offline=True).stdout)
    groups = {(g["arch"], g["vendor"]): g for g in doc["groups"]}
    assert set(groups) == {("amd64", "AMD"), ("amd64", "Intel"), ("arm64", None)}
    assert groups[("amd64", "Intel")]["recommended"] == "Cascadelake-Server"
    assert groups[("amd64", "Intel")]["nodeSelector"] == {"kubernetes.io/arch": "amd64",
                                                          "cpu-vendor.node.kubevirt.io/Intel": "true"}
    arm = groups[("arm64", None)]
    assert arm["nodes"] == ["arm-1"] and arm["recommended"] is None and "host-passthrough" in arm["note"]
    assert {e["name"]: e["reason"] for e in doc["excludedNodes"]}["arm-1"].startswith("arm64:")
    table = run_cli(["common", "-f", str(path)], offline=True).stdout
    assert "Architectures and vendors" in table and "host-passthrough" in table
    single = run_cli(["common", "-f", str(path), "-l", "kubernetes.io/arch=amd64,cpu-vendor.node.kubevirt.io/Intel",
                      "-o", "json"], offline=True)
    assert json.loads(single.stdout)["groups"] == []  # one group: nothing to split


def ha_pair(topology="kubernetes.io/hostname"):
    """db-0 on n1 and its HA peer db-1 on n3, each refusing to share a `topology` domain with the other."""
    zones = {"n1": "a", "n2": "a", "n3": "b"}
    nodes = [kv.cpu_node(n, "Skylake-Server-IBRS", SKYLAKE, labels={"topology.kubernetes.io/zone": z})
             for n, z in zones.items()]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
         "topologyKey": topology}]}}
    objects = list(nodes)
    for name, node in (("db-0", "n1"), ("db-1", "n3")):
        vm = kv.vm(name, model="Skylake-Server-IBRS", affinity=anti)
        vm["spec"]["template"]["metadata"]["labels"]["app"] = "db"
        vmi = kv.vmi_of(vm, node, affinity=anti)
        vmi["metadata"]["labels"]["app"] = "db"
        pod = kv.launcher(vmi)
        pod["metadata"]["labels"]["app"] = "db"  # KubeVirt puts the VMI's labels on its pod
        objects += [vm, vmi, pod]
    return objects


def test_the_vms_pod_anti_affinity_keeps_it_off_its_peers_node(tmp_path):
    doc = why(tmp_path, ha_pair(), "vm/db-0")
    verdicts = {n["name"]: n for n in doc["nodes"]}
    assert verdicts["n2"]["migratable"] is True
    reasons = verdicts["n3"]["reasons"]
    assert [(r["category"], r["key"]) for r in reasons] == [("pod-affinity", "kubernetes.io/hostname")]
    assert "default/virt-launcher-db-1-abcde" in reasons[0]["message"]


def test_a_zone_anti_affinity_also_excludes_the_vms_own_zone(tmp_path):
    doc = why(tmp_path, ha_pair("topology.kubernetes.io/zone"), "vm/db-0")
    verdicts = {n["name"]: n for n in doc["nodes"]}
    assert verdicts["n2"]["migratable"] is False  # db-0's own pod is in zone a: the target pod matches it
    assert verdicts["n3"]["migratable"] is False  # db-1 is in zone b
    path = tmp_path / "snap.yaml"
    # The source pod runs until the migration completes, so a drain of n1 hangs on db-0.
    proc = run_cli(["drain-check", "n1", "-f", str(path), "-o", "json"], offline=True)
    vm = next(v for v in json.loads(proc.stdout)["vms"] if v["vm"] == "db-0")
    assert vm["action"] == "blocked" and vm["suggestion"] is None  # no CPU model fixes an anti-affinity
    assert [(r["category"], r["key"], r["nodes"]) for r in vm["reasons"]] == [
        ("pod-affinity", "topology.kubernetes.io/zone", 2)]
    audit = json.loads(run_cli(["audit", "-f", str(path), "-o", "json"], offline=True).stdout)
    assert {v["vm"]: v["reachableNodes"] for v in audit["vms"]} == {"db-0": 0, "db-1": 0}


def test_pod_anti_affinity_live_reads_only_the_selected_pods(live_env, fake):
    for obj in ha_pair():
        fake.add(obj)
    doc = json.loads(run_cli(["why-not", "vm/db-0", "n3", "-o", "json"], env=live_env).stdout)
    assert [r["category"] for r in doc["reasons"]] == ["pod-affinity"]
    pod_lists = [r for r in fake.requests if r["method"] == "GET" and r["path"] == "/api/v1/namespaces/default/pods"]
    assert any(r["query"].get("labelSelector") == "app in (db)" for r in pod_lists)


def vendor_cluster(version, target_selector):
    """A named-model VM on Intel n1 that came there by migration (its launcher is a target pod), and an
    AMD n2 offering the same model; `target_selector` is what KubeVirt wrote into that target pod."""
    vm = kv.vm("app", model="Broadwell-IBRS")
    vmi = kv.vmi_of(vm, "n1")
    pod = kv.launcher(vmi, node_selector=target_selector)
    pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"] = "uid-mig-1"
    return [kv.cpu_node("n1", "Broadwell-IBRS", ["Broadwell-IBRS"]),
            kv.cpu_node("n2", "EPYC", ["Broadwell-IBRS"], vendor="AMD"), kv.kubevirt(version), vm, vmi, pod]


def why_with_warnings(tmp_path, objects, *args):
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    proc = run_cli(["why-not"] + list(args) + ["-f", str(path), "-o", "json"], offline=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_a_target_pod_with_the_vendor_selector_outranks_an_old_version(tmp_path):
    doc, stderr = why_with_warnings(tmp_path, vendor_cluster("v1.7.0", {"cpu-vendor.node.kubevirt.io/Intel": "true"}),
                                    "vm/app", "n2")
    assert [r["key"] for r in doc["reasons"]] == ["cpu-vendor.node.kubevirt.io/Intel"]
    assert "KubeVirt v1.7.0 does not add the source node's cpu-vendor selector" in stderr
    assert "newest target pod default/virt-launcher-app-abcde carries one: following the pod" in stderr
    # Without the evidence the version decides: v1.7.0 has no vendor rule.
    plain = vendor_cluster("v1.7.0", None)
    del plain[-1]["metadata"]["labels"]["kubevirt.io/migrationJobUID"]
    doc, stderr = why_with_warnings(tmp_path, plain, "vm/app", "n2")
    assert doc["migratable"] is True and stderr == ""


def test_a_target_pod_without_the_vendor_selector_outranks_a_new_version(tmp_path):
    doc, stderr = why_with_warnings(tmp_path, vendor_cluster("v1.8.1", None), "vm/app", "n2")
    assert doc["migratable"] is True
    assert "KubeVirt v1.8.1 adds the source node's cpu-vendor selector" in stderr and "carries none: following the pod" in stderr
    path = tmp_path / "snap.yaml"
    for command in (["drain-check", "n1"], ["audit"]):
        proc = run_cli(command + ["-f", str(path)], offline=True)
        assert proc.returncode == 0 and "following the pod" in proc.stderr


def test_the_newest_target_pod_anywhere_decides_the_vendor_rule_for_every_vm(tmp_path):
    """virt-controller's createTargetPod (pkg/virt-controller/watch/migration/migration.go) adds the source node's
    cpu-vendor label to every migration target pod when the running build has the rule, whatever the VM: so a
    target pod of another VM, in another namespace, shows it for a VM that never migrated (v1.7.0's table says
    no rule)."""
    evidence = vendor_cluster("v1.7.0", {"cpu-vendor.node.kubevirt.io/Intel": "true"})
    for obj in evidence[3:]:  # the migrated VM moves to namespace ops, under another name
        obj["metadata"]["namespace"] = "ops"
        obj["metadata"]["name"] = obj["metadata"]["name"].replace("app", "migrated")
    vm = kv.vm("fresh", model="Broadwell-IBRS")
    vmi = kv.vmi_of(vm, "n1")
    objects = evidence + [vm, vmi, kv.launcher(vmi)]
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    doc, stderr = why_with_warnings(tmp_path, objects, "vm/fresh", "n2", "-n", "default")
    assert [r["key"] for r in doc["reasons"]] == ["cpu-vendor.node.kubevirt.io/Intel"]
    assert "newest target pod ops/" in stderr and "following the pod" in stderr
    drained = json.loads(run_cli(["drain-check", "n1", "-f", str(path), "-o", "json"], offline=True).stdout)
    assert {v["vm"]: v["action"] for v in drained["vms"]}["fresh"] == "blocked"
    audit = run_cli(["audit", "-n", "default", "-f", str(path), "-o", "json"], offline=True)
    assert {v["vm"]: v["reachableNodes"] for v in json.loads(audit.stdout)["vms"]} == {"fresh": 0}
    assert "following the pod" in audit.stderr
    # Live, the evidence is one label-selected list of pods across namespaces.
    from conftest import base_env
    from testkit.fakekube import FakeKube, serve
    from testkit.harness import write_kubeconfig

    fake = FakeKube(objects)
    server, url = serve(fake)
    try:
        env = base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), url))
        live = json.loads(run_cli(["why-not", "vm/fresh", "n2", "-o", "json"], env=env).stdout)
    finally:
        server.shutdown()
        server.server_close()
    assert [r["key"] for r in live["reasons"]] == ["cpu-vendor.node.kubevirt.io/Intel"]
    assert any(r["path"] == "/api/v1/pods" and "kubevirt.io/migrationJobUID" in r["query"].get("labelSelector", "")
               for r in fake.requests)
    # Without any target pod the version decides: v1.7.0 adds no vendor selector.
    plain = [o for o in objects if o["metadata"].get("namespace") != "ops"]
    doc, stderr = why_with_warnings(tmp_path, plain, "vm/fresh", "n2", "-n", "default")
    assert doc["migratable"] is True and stderr == ""
