"""drain-check and audit: every action, strategy source and risk, offline and live, with constant request counts."""
import json

import pytest
import yaml

from conftest import DEMO, run_cli, run_json
from testkit import kubevirt as kv
from testkit.fakekube import FakeKube, serve
from testkit.harness import write_kubeconfig

CASCADE = ["Cascadelake-Server", "Cascadelake-Server-v5"]
SKYLAKE = ["Skylake-Server-IBRS", "Skylake-Server-v5"]
NO_SKYLAKE = {"mds-no", "rdctl-no", "ibrs-all", "taa-no"}


def snapshot(tmp_path, objects):
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def running(name, node, model=None, kubevirt_default=None, sticky=None, ns="default", vm_labels=None,
            eviction=None, migratable=True, vmi_labels=None, threads=None):
    """A VM, its VMI on `node` and the launcher pod."""
    domain = {"cpu": {"cores": 2, "sockets": 1, "threads": threads or 1}} if threads else None
    vm = kv.vm(name, model=model, ns=ns, labels=vm_labels, domain=domain)
    if eviction is not None:
        vm["spec"]["template"]["spec"]["evictionStrategy"] = eviction
    if eviction == "":
        del vm["spec"]["template"]["spec"]["evictionStrategy"]
    vmi = kv.vmi_of(vm, node, kubevirt_default, migratable=migratable)
    vmi["metadata"]["labels"].update(vmi_labels or {})
    return [vm, vmi, kv.launcher(vmi, sticky)]


def cluster(kubevirt=None, extra_nodes=()):
    return [kv.cpu_node("cl-1", "Cascadelake-Server", CASCADE), kv.cpu_node("cl-2", "Cascadelake-Server", CASCADE),
            kv.cpu_node("sk-1", "Skylake-Server-IBRS", SKYLAKE, drop=NO_SKYLAKE),
            kubevirt or kv.kubevirt()] + list(extra_nodes)


def drain(tmp_path, objects, *args, code=0):
    proc = run_cli(["drain-check"] + list(args) + ["-f", snapshot(tmp_path, objects), "-o", "json"], offline=True)
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def by_vm(doc):
    return {v["vm"]: v for v in doc["vms"]}


def test_every_action_and_both_strategy_sources(tmp_path):
    objs = cluster(kv.kubevirt(configuration={"evictionStrategy": "LiveMigrateIfPossible"}))
    objs += running("moves", "sk-1", eviction="LiveMigrate")                      # host-model Skylake: fits anywhere
    objs += running("stuck", "cl-1", eviction="LiveMigrate", sticky={             # inherited SapphireRapids keys
        "cpu-model-migration.node.kubevirt.io/SapphireRapids": "true", "cpu-feature.node.kubevirt.io/amx-tile": "true"})
    objs += running("pinned-disk", "cl-1", eviction="LiveMigrate", migratable=False)
    objs += running("if-possible", "cl-1", eviction="", migratable=False)       # strategy from the KubeVirt CR
    objs += running("external", "cl-1", eviction="External")
    objs += running("none", "cl-1", eviction="None")
    objs += running("maintain", "cl-1", eviction="LiveMigrate",
                    vm_labels={"harvesterhci.io/maintain-mode-strategy": "Shutdown"})
    doc = drain(tmp_path, objs, "cl-1", "sk-1", "--exit-code", code=3)
    vms = by_vm(doc)
    assert doc["drainedNodes"] == ["cl-1", "sk-1"] and doc["candidateNodes"] == ["cl-2"]
    assert {n: v["action"] for n, v in vms.items()} == {
        "moves": "migrate", "stuck": "blocked", "pinned-disk": "blocked", "if-possible": "shutdown",
        "external": "external", "none": "shutdown", "maintain": "shutdown"}
    assert vms["moves"]["targets"] == ["cl-2"]
    assert vms["if-possible"]["evictionStrategy"] == "LiveMigrateIfPossible"  # the CR's, the VMI sets none
    assert vms["none"]["evictionStrategy"] == "None" and vms["maintain"]["maintainModeStrategy"] == "Shutdown"
    stuck = vms["stuck"]["reasons"]
    # KubeVirt >= 1.8 labels every known model for migration: only the inherited feature blocks.
    assert [(r["category"], r["key"], r["nodes"]) for r in stuck] == [
        ("cpu-feature", "cpu-feature.node.kubevirt.io/amx-tile", 1)]
    assert "earlier migration" in stuck[0]["message"]
    assert vms["pinned-disk"]["reasons"][0]["category"] == "not-migratable"
    assert doc["summary"] == {"migrate": 1, "shutdown": 3, "blocked": 2, "external": 1}


def test_the_fix_is_the_model_that_unblocks_the_most_vms(tmp_path):
    objs = cluster()
    for i in range(3):  # host-model VMs started on Cascade Lake: the Skylake node lacks their host-model features
        objs += running("web-%d" % i, "cl-1", eviction="LiveMigrate")
    doc = drain(tmp_path, objs, "cl-1", "cl-2", code=0)
    assert [v["action"] for v in doc["vms"]] == ["blocked"] * 3
    fix = doc["fix"]
    assert fix["model"] == "Skylake-Server-IBRS" and len(fix["vms"]) == 3
    assert fix["commands"] == ["kubectl cpumodel set vm/web-0 vm/web-1 vm/web-2 Skylake-Server-IBRS -n default --restart"]
    assert doc["vms"][0]["suggestion"]["model"] == "Skylake-Server-IBRS"


def test_one_node_blocks_and_another_does_not_on_the_demo():
    assert run_cli(["drain-check", "hv-01", "--exit-code", "-f", DEMO], offline=True).returncode == 0
    assert run_cli(["drain-check", "hv-03", "--exit-code", "-f", DEMO], offline=True).returncode == 3
    doc = run_json(["drain-check", "--all", "-f", DEMO], offline=True)
    assert [s["node"] for s in doc["steps"]] == ["hv-01", "hv-02", "hv-03", "hv-04", "hv-05"]
    assert doc["undrainableNodes"] == [{"node": "hv-03", "blockedVms": ["default/web-1"]}]
    assert doc["steps"][1]["vms"][0]["maintainModeStrategy"] == "ShutdownAndRestartAfterDisable"
    assert doc["steps"][0]["vms"][0]["maintainModeStrategy"] == "Migrate"  # Harvester's default
    assert doc["summary"] == {"migrate": 2, "shutdown": 1, "blocked": 1, "external": 0}
    selected = run_json(["drain-check", "--all", "-l", "kubernetes.io/hostname in (hv-03,hv-04)", "-f", DEMO],
                        offline=True)
    assert [s["node"] for s in selected["steps"]] == ["hv-03", "hv-04"]


def test_warnings_never_change_the_action(tmp_path):
    objs = cluster()
    objs += running("old-launcher", "cl-1", "Skylake-Server-IBRS", vmi_labels={"kubevirt.io/outdatedLauncherImage": ""})
    objs += running("threads", "cl-1", "Skylake-Server-IBRS", threads=2)
    vms = by_vm(drain(tmp_path, objs, "cl-1"))
    assert vms["old-launcher"]["action"] == "migrate"
    assert [w["code"] for w in vms["old-launcher"]["warnings"]] == ["outdated-launcher"]
    assert vms["threads"]["action"] == "migrate"
    assert [w["code"] for w in vms["threads"]["warnings"]] == ["threads-need-ht"]


def test_usage_errors(tmp_path):
    for args, text in ((["drain-check"], "name the nodes"), (["drain-check", "a", "--all"], "not both"),
                       (["drain-check", "a", "-l", "x=y"], "-l selects the nodes for --all"),
                       (["audit", "-A", "-n", "prod"], "not both")):
        proc = run_cli(args)
        assert proc.returncode == 1 and text in proc.stderr, proc.stderr
    assert "node(s) not found: nope" in run_cli(["drain-check", "nope", "-f", DEMO], offline=True).stderr


# ---- audit -------------------------------------------------------------------------------------
def test_audit_every_risk_code(tmp_path):
    objs = cluster(kv.kubevirt(cpu_model="Cascadelake-Server"), [kv.namespace("default")])
    objs += running("sticky", "cl-1", model="host-model", sticky={"cpu-feature.node.kubevirt.io/amx-tile": "true"})
    objs += running("passthrough", "cl-1", model="host-passthrough")
    objs += running("default-model", "cl-1", kubevirt_default="Cascadelake-Server")  # not on sk-1
    objs += running("no-disk-migration", "sk-1", model="Skylake-Server-IBRS", migratable=False)
    objs += running("pending", "cl-1", model="Skylake-Server-IBRS")
    objs[-2]["spec"]["domain"]["cpu"]["model"] = "Broadwell"  # the running VMI still has the old model
    objs += running("one-way", "sk-1", model=None, kubevirt_default="host-model")
    objs.append(kv.vm("ancient", model="Opteron_G1", running=False))
    objs.append(kv.vm("pinned", model="Skylake-Server-IBRS", running=False,
                      node_selector={"kubernetes.io/hostname": "cl-1"}))
    path = snapshot(tmp_path, objs)
    proc = run_cli(["audit", "-A", "-f", path, "-o", "json", "--exit-code"], offline=True)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    risks = {v["vm"]: [r["code"] for r in v["risks"]] for v in doc["vms"]}
    assert risks["sticky"] == ["host-model-sticky", "host-model", "no-target"]
    assert risks["passthrough"] == ["host-passthrough"]
    assert risks["default-model"] == ["model-not-everywhere", "single-target"]
    assert "not-migratable" in risks["no-disk-migration"]
    assert risks["pending"] == ["restart-pending"]
    assert risks["ancient"][-1] == "obsolete-model"
    assert risks["pinned"] == ["hostname-pin"]
    cpu = {v["vm"]: v["cpu"] for v in doc["vms"]}
    assert cpu["default-model"] == {"mode": "named", "model": "Cascadelake-Server", "origin": "cluster-default"}
    assert cpu["sticky"] == {"mode": "host-model", "model": None, "origin": "vm"}
    assert cpu["one-way"]["origin"] == "cluster-default"
    single = next(v for v in doc["vms"] if v["vm"] == "default-model")
    assert single["reachableNodes"] == 1 and single["reachableNodeNames"] == ["cl-2"]
    assert single["vmCapableNodes"] == 3
    assert doc["summary"]["vms"] == 8 and doc["summary"]["byRisk"]["no-target"] >= 1
    assert doc["recommended"] == "Skylake-Server-IBRS"


def test_audit_on_the_demo_names_the_fixes():
    doc = run_json(["audit", "-A", "-f", DEMO], offline=True)
    assert doc["fixes"][0] == {"command": "kubectl cpumodel set --cluster Skylake-Server-IBRS",
                               "vms": ["default/db-1", "default/web-1"]}
    namespaced = run_json(["audit", "-n", "prod", "-f", DEMO], offline=True)
    assert [v["vm"] for v in namespaced["vms"]] == ["app-1"] and namespaced["summary"]["atRisk"] == 0


# ---- live, and requests that do not grow with the cluster --------------------------------------------
def test_live_equals_offline(live_env):
    for args in (["drain-check", "hv-03"], ["drain-check", "--all"], ["audit", "-A"]):
        assert run_json(args, env=live_env) == run_json(args + ["-f", DEMO], offline=True)


def scaled(nodes, vms_per_node):
    objs = [kv.kubevirt(), kv.namespace("default")]
    for i in range(nodes):
        objs.append(kv.cpu_node("n-%03d" % i, "Cascadelake-Server", CASCADE))
        for j in range(vms_per_node):
            objs += running("vm-%03d-%02d" % (i, j), "n-%03d" % i)
    return objs


@pytest.mark.parametrize("args", [["drain-check", "n-000"], ["drain-check", "--all"], ["audit", "-A"]])
def test_requests_do_not_grow_with_vms_or_nodes(tmp_path, args):
    counts = []
    for nodes, per_node in ((4, 2), (12, 6)):
        api = FakeKube(scaled(nodes, per_node))
        server, url = serve(api)
        try:
            env_path = write_kubeconfig(str(tmp_path / ("kc-%d" % nodes)), url)
            from conftest import base_env
            # room is read node by node for a few targets (test_capacity.py counts those requests)
            assert run_cli(args + ["-o", "json", "--no-capacity"], env=base_env(KUBECONFIG=env_path)).returncode == 0
            counts.append(len(api.requests))
            if args[1] == "n-000":  # only the drained node's VMIs and launcher pods are read
                selectors = [r["query"].get("labelSelector", "") for r in api.requests]
                assert "kubevirt.io/nodeName in (n-000)" in selectors
                assert all("vm-001" not in s for s in selectors)
        finally:
            server.shutdown()
            server.server_close()
    assert counts[0] == counts[1], counts


def bundle_missing(tmp_path, namespace):
    """The demo support bundle with one more namespace that it holds nothing of (as if not collected)."""
    import zipfile

    from conftest import BUNDLE

    target = tmp_path / "bundle.zip"
    with zipfile.ZipFile(BUNDLE) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("yamls/cluster/v1/namespaces.yaml"):
                listing = yaml.safe_load(data)
                listing["items"].append(kv.namespace(namespace))
                data = yaml.safe_dump(listing).encode()
            dst.writestr(name, data)
    return target


def test_namespaces_a_bundle_did_not_collect_are_named(tmp_path):
    target = bundle_missing(tmp_path, "team-b")
    for args in (["audit", "-A"], ["drain-check", "hv-03"], ["drain-check", "--all"]):
        proc = run_cli(args + ["-f", str(target), "-o", "json"], offline=True)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["uncollectedNamespaces"] == ["team-b"]
        assert "holds nothing from namespaces team-b" in proc.stderr
    assert run_json(["audit", "-A", "-f", DEMO], offline=True)["uncollectedNamespaces"] == []


def test_audit_reads_the_model_an_instancetype_sets(tmp_path, fake, live_env):
    cluster_it = {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
                  "metadata": {"name": "u1.large"}, "spec": {"cpu": {"guest": 2, "model": "Cascadelake-Server"}}}
    local_it = {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineInstancetype",
                "metadata": {"name": "small", "namespace": "default"}, "spec": {"cpu": {"guest": 1}}}
    sized, plain = kv.vm("sized", running=False), kv.vm("plain-it", running=False)
    sized["spec"]["instancetype"] = {"name": "u1.large"}  # kind defaults to the cluster-wide one
    plain["spec"]["instancetype"] = {"kind": "VirtualMachineInstancetype", "name": "small"}
    for obj in (cluster_it, local_it, sized, plain):
        fake.add(obj)
    doc = run_json(["audit"], env=live_env)
    cpu = {v["vm"]: v for v in doc["vms"]}
    assert cpu["sized"]["cpu"] == {"mode": "named", "model": "Cascadelake-Server", "origin": "instancetype"}
    assert [r["code"] for r in cpu["sized"]["risks"]] == ["model-not-everywhere"]
    assert cpu["sized"]["suggestion"] is None  # KubeVirt would reject a model of the VM's own beside it
    assert cpu["sized"]["reachableNodes"] == 3  # its launcher needs Cascadelake-Server: hv-01, hv-02, hv-03
    assert cpu["plain-it"]["cpu"]["origin"] == "kubevirt-default"


def test_the_fix_simulation_swapping_one_key_equals_predicting_each_restart(tmp_path, monkeypatch):
    """best_fix predicts a restarted VM's pod once and swaps its cpu-model key per model; predicting every
    restart in full must give the same fixes (worst-case data: every node its own CPU, sticky VMs)."""
    import sys as _sys

    from conftest import ROOT
    from cpumodel.core import drain

    _sys.path.insert(0, ROOT + "/benchmarks")
    import generate

    path = tmp_path / "worst.yaml"
    path.write_text(yaml.safe_dump_all(generate.cluster(40, 300, worst=True)))
    fast = run_cli(["drain-check", "--all", "-f", str(path), "-o", "json"], offline=True)

    def slow(self, state, models, room, gone):
        return [m for m in models if self.pool(self.engine.situation(drain.replace(
            state, vmi=drain.replace(state.vmi, cpu_model=m), launcher=None))) - gone]

    monkeypatch.setattr(drain.DrainPlanner, "_restart_fits", slow)
    full = run_cli(["drain-check", "--all", "-f", str(path), "-o", "json"], offline=True)
    assert fast.returncode == full.returncode == 0, fast.stderr
    doc = json.loads(fast.stdout)
    assert any(step["fix"] for step in doc["steps"]), "the data must exercise the fix simulation"
    assert fast.stdout == full.stdout
