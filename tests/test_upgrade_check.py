"""upgrade-check (issue "upgrade-check"): one snapshot per trap, each built from the upstream fact it checks
(docs/kubevirt-rules.md §13), a clean pass, the platforms' node orders, the actions Harvester takes, and the usage
errors; live through the fake server equals offline (the real kube-apiserver: test_controlplane.py)."""
import json

import pytest
import yaml

from conftest import DEMO, ROOT, base_env, run_cli, run_json
from test_drain_audit import CASCADE, running
from testkit import kubevirt as kv
from testkit.fakekube import FakeKube, serve
from testkit.harness import write_kubeconfig

SUPPORT_BUNDLE = ROOT + "/examples/supportbundle_demo.zip"
INTEL = CASCADE + ["Westmere"]
AMD = ["EPYC-Rome", "Westmere"]


def write(tmp_path, objs, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(objs))
    return str(path)


def harvester(version, kubevirt, objs=(), cpu_model=None):
    """The KubeVirt CR Harvester renders, and its ManagedChart at the chart version of the release."""
    kubevirt_cr = kv.kubevirt(kubevirt, cpu_model, namespace="harvester-system")
    chart = {"apiVersion": "management.cattle.io/v3", "kind": "ManagedChart",
             "metadata": {"name": "harvester", "namespace": "fleet-local", "uid": "uid-mc"},
             "spec": {"chart": "harvester", "version": version.lstrip("v"), "values": {}}}
    return [kubevirt_cr, chart, kv.namespace("default"), kv.namespace("fleet-local"),
            kv.namespace("harvester-system")] + list(objs)


def checks(doc):
    return {c["id"]: c for c in doc["checks"]}


def node(name, models=CASCADE, host="Cascadelake-Server", vendor="Intel", roles=(), machine=None, labels=None, **kw):
    labels = dict({"node-role.kubernetes.io/%s" % r: "true" for r in roles}, **(labels or {}))
    obj = kv.cpu_node(name, host, models, vendor=vendor, labels=labels, **kw)
    if machine:
        obj["metadata"]["annotations"]["cluster.x-k8s.io/machine"] = machine
    return obj


def test_a_clean_patch_upgrade_passes_every_check(tmp_path):
    """Harvester v1.8.0 -> v1.8.1 (both KubeVirt 1.7.0): same rules, v1.8.1 upgrades from v1.7.0 on."""
    objs = harvester("v1.8.0", "v1.7.0", [node("hv-1"), node("hv-2"), node("hv-3")])
    objs += running("web-1", "hv-1", model="Cascadelake-Server")
    path = write(tmp_path, objs)
    proc = run_cli(["upgrade-check", "--to", "v1.8.1", "-f", path, "--exit-code"], offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Harvester v1.8.0 (KubeVirt v1.7.0) -> v1.8.1 (KubeVirt v1.7.0)" in proc.stdout
    for title in ("VMs that would hang a node's drain", "Same-CPU-vendor migration rule", "Upgrade path"):
        assert "%s: Pass" % title in proc.stdout
    doc = run_json(["upgrade-check", "--to", "v1.8.1", "-f", path], offline=True)
    assert doc["summary"] == {"pass": 8, "warn": 0, "fail": 0}
    assert doc["from"] == {"version": "v1.8.0", "kubevirtVersion": "v1.7.0"}
    assert doc["to"] == {"version": "v1.8.1", "kubevirtVersion": "v1.7.0"}
    assert [s["node"] for s in doc["steps"]] == doc["order"] == ["hv-1", "hv-2", "hv-3"]
    assert doc["steps"][0]["vms"][0]["action"] == "migrate"
    assert "v1.8.1 upgrades from v1.7.0 or newer" in checks(doc)["upgrade-path"]["message"]


def test_the_steps_are_drain_check_all_with_harvester_stopping_what_cannot_move(tmp_path):
    """On the demo (Harvester v1.9.0): every step is drain-check --all's, but a VM with nowhere to go is stopped
    (upgrade_node.sh from v1.7.0), not left hanging."""
    doc = run_json(["upgrade-check", "-f", DEMO], offline=True)
    drains = run_json(["drain-check", "--all", "-f", DEMO], offline=True)
    by_node = {s["node"]: s for s in drains["steps"]}
    assert [s["node"] for s in doc["steps"]] == [n for n in doc["order"] if n in by_node]
    for step in doc["steps"]:
        expected = {(v["namespace"], v["vm"]): v["action"] for v in by_node[step["node"]]["vms"]}
        got = {(v["namespace"], v["vm"]): v["action"] for v in step["vms"]}
        assert got == {k: "stopped" if a == "blocked" else a for k, a in expected.items()}
    c = checks(doc)
    assert c["drain-stopped"]["status"] == "fail" and c["drain-stopped"]["vms"] == ["default/web-1"]
    assert c["drain-blocked"]["status"] == "pass"
    assert c["drain-stopped"]["fixes"] == by_node["hv-03"]["fix"]["commands"]
    assert c["vendor-rule"]["message"] == "not checked: no --to VERSION"


def test_before_v1_7_a_vm_with_no_target_hangs_the_upgrade(tmp_path):
    objs = harvester("v1.6.0", "v1.5.2", [node("cl-1"), node("ep-1", AMD, "EPYC-Rome", "AMD")])
    objs += running("db-1", "cl-1", model="Cascadelake-Server")
    path = write(tmp_path, objs)
    doc = run_json(["upgrade-check", "-f", path], offline=True)
    assert checks(doc)["drain-blocked"]["vms"] == ["default/db-1"]
    assert checks(doc)["drain-stopped"]["message"].startswith("does not apply")
    proc = run_cli(["upgrade-check", "-f", path, "--exit-code"], offline=True)
    assert proc.returncode == 3
    assert "VMs that would hang a node's drain: Fail" in proc.stdout
    assert "fix: kubectl cpumodel set vm/db-1" not in proc.stdout  # no model both nodes share: no fix to offer


def test_harvester_v1_7_2_adds_the_vendor_rule(tmp_path):
    """v1.7.1 ships KubeVirt 1.6.3, v1.7.2 ships 1.6.6, which keeps migrations on the source's CPU vendor
    (kubevirt a16c2290cf backported to 1.6.4): a Westmere VM on the one Intel node migrates to the AMD nodes
    today and has no target during the upgrade, which then stops it."""
    objs = harvester("v1.7.1", "v1.6.3", [node("intel-1", INTEL), node("amd-1", AMD, "EPYC-Rome", "AMD"),
                                          node("amd-2", AMD, "EPYC-Rome", "AMD")])
    objs += running("app-1", "intel-1", model="Westmere")
    objs += running("app-2", "amd-1", model="Westmere")
    path = write(tmp_path, objs)
    today = run_json(["upgrade-check", "-f", path], offline=True)
    assert today["summary"]["fail"] == 0
    doc = run_json(["upgrade-check", "--to", "v1.7.2", "-f", path], offline=True)
    assert doc["to"] == {"version": "v1.7.2", "kubevirtVersion": "v1.6.6"}
    assert doc["rulesDuringUpgrade"] == {"kubevirtVersion": "v1.6.6"}
    c = checks(doc)
    assert (c["vendor-rule"]["status"], c["vendor-rule"]["vms"], c["vendor-rule"]["nodes"]) == \
        ("fail", ["default/app-1"], ["intel-1"])
    assert c["drain-stopped"]["vms"] == ["default/app-1"]
    step = next(s for s in doc["steps"] if s["node"] == "intel-1")
    assert [r["key"] for r in step["vms"][0]["reasons"]] == ["cpu-vendor.node.kubevirt.io/Intel"]
    # The other way round is no trap: app-2 keeps amd-2.
    assert "default/app-2" not in c["vendor-rule"]["vms"]
    # From v1.7.2 to v1.7.3 the rule is already there.
    objs[0] = kv.kubevirt("v1.6.6", namespace="harvester-system")
    objs[1]["spec"]["version"] = "1.7.2"
    again = run_json(["upgrade-check", "--to", "v1.7.3", "-f", write(tmp_path, objs, "b.yaml")], offline=True)
    assert checks(again)["vendor-rule"]["message"].startswith("does not apply: the running KubeVirt v1.6.6 already")


def test_harvester_pre_drain_shuts_down_what_its_detector_deems_not_migratable(tmp_path):
    """upgrade-helper's vm-live-migrate-detector: a VMI with a spec.nodeSelector, or host devices, is shut down
    before the drain whatever the labels allow."""
    objs = harvester("v1.8.2", "v1.7.4", [node("hv-1"), node("hv-2")])
    pinned = running("pinned-1", "hv-1", model="Cascadelake-Server")
    pinned[1]["spec"]["nodeSelector"] = {"rack": "a"}
    gpu = running("gpu-1", "hv-1", model="Cascadelake-Server")
    gpu[1]["spec"]["domain"]["devices"] = {"hostDevices": [{"name": "nic", "deviceName": "intel.com/X710"}]}
    objs += pinned + gpu + running("web-1", "hv-1", model="Cascadelake-Server")
    for n in objs:
        if n["kind"] == "Node":
            n["metadata"]["labels"]["rack"] = "a"
    doc = run_json(["upgrade-check", "-f", write(tmp_path, objs)], offline=True)
    vms = {v["vm"]: v for v in doc["steps"][0]["vms"]}
    assert vms["web-1"]["action"] == "migrate"
    for name, why in (("pinned-1", "spec.nodeSelector (rack)"), ("gpu-1", "host devices")):
        assert vms[name]["action"] == "shutdown"
        assert why in vms[name]["warnings"][0]["message"]
    assert checks(doc)["drain-shutdown"]["vms"] == ["default/gpu-1", "default/pinned-1"]
    # drain-check alone knows nothing of the upgrade's pre-drain: both migrate there.
    drains = run_json(["drain-check", "hv-1", "-f", write(tmp_path, objs)], offline=True)
    assert {v["vm"]: v["action"] for v in drains["vms"]} == dict.fromkeys(vms, "migrate")


def test_obsolete_models_of_the_target(tmp_path):
    """KubeVirt 1.5.2 adds the -v1 names to the default obsolete list: a VM running Conroe-v1 loses every node."""
    objs = [kv.kubevirt("v1.5.1"), kv.namespace("default"),
            node("n-1", CASCADE + ["Conroe-v1"]), node("n-2", CASCADE + ["Conroe-v1"])]
    objs += running("old-1", "n-1", model="Conroe-v1")
    doc = run_json(["upgrade-check", "--to", "v1.5.2", "-f", write(tmp_path, objs)], offline=True)
    c = checks(doc)["obsolete-models"]
    assert (c["status"], c["vms"]) == ("fail", ["default/old-1"])
    assert "Conroe-v1" in c["message"]
    # A cluster with its own list is not touched by the default's change.
    objs[0] = kv.kubevirt("v1.5.1", obsolete={"486": True})
    doc = run_json(["upgrade-check", "--to", "v1.5.2", "-f", write(tmp_path, objs)], offline=True)
    assert checks(doc)["obsolete-models"]["message"].startswith("does not apply: the cluster sets its own")


def test_machine_type_selection_of_the_target(tmp_path):
    """KubeVirt 1.5.1 selects nodes by the VM's machine type (kubevirt#13690): with the labels already on the nodes,
    a VM whose machine type only its own node offers has no target; without them, a warning says what it needs."""
    objs = [kv.kubevirt("v1.5.0"), kv.namespace("default"), node("n-1"), node("n-2")]
    objs += running("web-1", "n-1", model="Cascadelake-Server")
    objs[3]["metadata"]["labels"].pop("machine-type.node.kubevirt.io/pc-q35-9.2")
    doc = run_json(["upgrade-check", "--to", "v1.5.1", "-f", write(tmp_path, objs)], offline=True)
    c = checks(doc)["machine-type"]
    assert (c["status"], c["vms"], c["nodes"]) == ("fail", ["default/web-1"], ["n-1"])
    for n in objs[2:4]:
        for key in [k for k in n["metadata"]["labels"] if k.startswith("machine-type.")]:
            del n["metadata"]["labels"][key]
    proc = run_cli(["upgrade-check", "--to", "v1.5.1", "-f", write(tmp_path, objs), "-o", "json"], offline=True)
    c = checks(json.loads(proc.stdout))["machine-type"]
    assert c["status"] == "warn" and "pc-q35-9.2: 1 VM(s)" in c["message"]
    assert "no node advertises its machine types yet" in proc.stderr


def test_known_feature_changes(tmp_path):
    """harvester#11615: from v1.8.x to v1.9.0 a VM with more than one thread per core fails to migrate ('extra
    features: ht'); v1.9.0 is not in the v1.8.2 upgrade matrix, so the path is a warning."""
    objs = harvester("v1.8.2", "v1.7.4", [node("hv-1"), node("hv-2")])
    objs += running("smt-1", "hv-1", model="Cascadelake-Server", threads=2)
    objs += running("one-1", "hv-1", model="Cascadelake-Server")
    doc = run_json(["upgrade-check", "--to", "v1.9.0", "-f", write(tmp_path, objs)], offline=True)
    c = checks(doc)
    assert (c["feature-changes"]["status"], c["feature-changes"]["vms"]) == ("fail", ["default/smt-1"])
    assert "harvester/harvester#11615" in c["feature-changes"]["reference"]
    assert c["upgrade-path"]["status"] == "warn"
    # ipred-ctrl (v1.5 -> v1.6, Sapphire/Emerald Rapids hosts): host-model VMs are warned about.
    objs = harvester("v1.5.2", "v1.4.1", [node("sr-1", CASCADE, "SapphireRapids"), node("sr-2", CASCADE,
                                                                                       "SapphireRapids")])
    objs += running("hm-1", "sr-1") + running("named-1", "sr-2", model="Cascadelake-Server")
    objs.append(node("cl-1"))
    objs += running("hm-2", "cl-1")  # its first migration takes cl-1's features, not a Sapphire Rapids node's
    doc = run_json(["upgrade-check", "--to", "v1.6.0", "-f", write(tmp_path, objs)], offline=True)
    c = checks(doc)["feature-changes"]
    assert (c["status"], c["vms"]) == ("warn", ["default/hm-1"]) and "ipred-ctrl" in c["message"]


def test_a_support_bundle():
    doc = run_json(["upgrade-check", "-f", SUPPORT_BUNDLE], offline=True)
    assert doc["platform"] == "harvester" and doc["steps"] and len(doc["checks"]) == 8


def test_upgrade_paths(tmp_path):
    objs = harvester("v1.6.0", "v1.5.2", [node("hv-1"), node("hv-2")])
    path = write(tmp_path, objs)
    doc = run_json(["upgrade-check", "--to", "v1.8.0", "-f", path], offline=True)
    assert checks(doc)["upgrade-path"]["status"] == "fail"
    assert "upgrade to v1.7.0 first" in checks(doc)["upgrade-path"]["message"]
    doc = run_json(["upgrade-check", "--to", "v1.5.2", "-f", path], offline=True)
    assert "downgrade" in checks(doc)["upgrade-path"]["message"]
    proc = run_cli(["upgrade-check", "--to", "v1.9.9", "-f", path, "-o", "json"], offline=True)
    assert "Harvester v1.9.9 is not in the release table" in proc.stderr
    assert checks(json.loads(proc.stdout))["vendor-rule"]["message"].startswith("not checked")
    # OpenShift Virtualization's path is OLM's, whether or not the HyperConverged CR names its release.
    ocp = [kv.hco_kubevirt(), kv.hyperconverged(), kv.namespace("openshift-cnv"), node("n-1")]
    doc = run_json(["upgrade-check", "--to", "v1.7.0", "-f", write(tmp_path, ocp, "o.yaml")], offline=True)
    assert checks(doc)["upgrade-path"]["message"].startswith("does not apply: OLM's update graph")
    plain = [kv.kubevirt("v1.5.0"), kv.namespace("default"), node("n-1")]
    doc = run_json(["upgrade-check", "--to", "v1.7.0", "-f", write(tmp_path, plain, "p.yaml")], offline=True)
    assert checks(doc)["upgrade-path"]["status"] == "warn"


def test_the_platforms_node_orders(tmp_path):
    """Harvester: etcd nodes, then control-plane, then workers, each by Machine name (Rancher's planner);
    OpenShift: by zone, oldest first, nodes without a zone last (Machine Config Operator)."""
    objs = harvester("v1.8.2", "v1.7.4", [
        node("w-a", machine="custom-0aaa"), node("cp-b", roles=("control-plane",), machine="custom-9bbb"),
        node("etcd-c", roles=("etcd", "control-plane"), machine="custom-5ccc"),
        node("etcd-d", roles=("etcd", "control-plane"), machine="custom-1ddd")])
    doc = run_json(["upgrade-check", "-f", write(tmp_path, objs)], offline=True)
    assert doc["order"] == ["etcd-d", "etcd-c", "cp-b", "w-a"]
    ocp = [kv.hco_kubevirt(), kv.hyperconverged(), kv.namespace("default"), kv.namespace("openshift-cnv")]
    for name, zone, created in (("z-b-old", "b", "2026-01-01T00:00:00Z"), ("z-a", "a", "2026-03-01T00:00:00Z"),
                                ("nozone", None, "2025-01-01T00:00:00Z"), ("z-b-new", "b", "2026-02-01T00:00:00Z")):
        n = node(name, labels={"topology.kubernetes.io/zone": zone} if zone else {})
        n["metadata"]["creationTimestamp"] = created
        ocp.append(n)
    doc = run_json(["upgrade-check", "-f", write(tmp_path, ocp, "o.yaml")], offline=True)
    assert doc["order"] == ["z-a", "z-b-old", "z-b-new", "nozone"]
    assert doc["platform"] == "openshift"


def test_usage_errors(tmp_path):
    proc = run_cli(["upgrade-check", "--to", "latest", "-f", DEMO], offline=True)
    assert (proc.returncode, proc.stderr.strip()) == (1, "error: invalid --to 'latest': give a release such as "
                                                         "v1.9.0 (Harvester's on Harvester, KubeVirt's elsewhere)")
    proc = run_cli(["upgrade-check", "-f", write(tmp_path, [node("n-1")])], offline=True)
    assert (proc.returncode, proc.stderr.strip()) == (1, "error: no KubeVirt CR found in any namespace: is KubeVirt "
                                                         "installed?")


def test_the_release_from_harvesters_setting(tmp_path):
    objs = harvester("v1.8.1", "v1.7.0", [node("hv-1")])
    objs[1]["spec"]["version"] = "0.0.0-dev"
    objs.append({"apiVersion": "harvesterhci.io/v1beta1", "kind": "Setting", "metadata": {"name": "server-version"},
                 "default": "v1.8.1"})
    doc = run_json(["upgrade-check", "-f", write(tmp_path, objs)], offline=True)
    assert doc["from"] == {"version": "v1.8.1", "kubevirtVersion": "v1.7.0"}
    del objs[-1]
    proc = run_cli(["upgrade-check", "-f", write(tmp_path, objs), "-o", "json"], offline=True)
    assert "does not tell it (v1.8.0, v1.8.1 ship it)" in proc.stderr
    assert json.loads(proc.stdout)["from"]["version"] is None


def test_live_equals_offline(tmp_path):
    objs = harvester("v1.7.1", "v1.6.3", [node("intel-1", INTEL), node("amd-1", AMD, "EPYC-Rome", "AMD")])
    objs += running("app-1", "intel-1", model="Westmere")
    server, url = serve(FakeKube(objs))
    try:
        live = run_json(["upgrade-check", "--to", "v1.7.2"],
                        env=base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), url)))
    finally:
        server.shutdown()
        server.server_close()
    offline = run_json(["upgrade-check", "--to", "v1.7.2", "-f", write(tmp_path, objs)], offline=True)
    assert json.dumps(live, sort_keys=True) == json.dumps(offline, sort_keys=True)
    assert checks(live)["vendor-rule"]["status"] == "fail"


@pytest.mark.parametrize("fmt", ["yaml", "wide"])
def test_other_formats(fmt):
    proc = run_cli(["upgrade-check", "-f", DEMO, "-o", fmt], offline=True)
    assert proc.returncode == 0, proc.stderr
    assert ("kind: UpgradeCheckReport" in proc.stdout) if fmt == "yaml" else ("VMs the upgrade would stop: Fail"
                                                                              in proc.stdout)
