"""what-if (issue "what-if"): its `before` is what common, audit -A and drain-check --all say of the cluster as it is,
its `after` what they say of a snapshot where the change was made by hand -- checked over generated clusters and
changes -- plus the scenarios an operator plans (a retirement, a new server, a model change) and the usage errors."""
import copy
import json
import random

import pytest
import yaml

from conftest import DEMO, base_env, run_cli, run_json
from test_drain_audit import CASCADE, NO_SKYLAKE, SKYLAKE, running
from testkit import kubevirt as kv
from testkit.fakekube import FakeKube, serve
from testkit.harness import write_kubeconfig

ICELAKE = ["Icelake-Server", "Cascadelake-Server", "Cascadelake-Server-v5"]
GI = 1 << 30
CLASSES = {  # name prefix -> (host model, models, dropped features)
    "cl": ("Cascadelake-Server", CASCADE, ()),
    "sk": ("Skylake-Server-IBRS", SKYLAKE, NO_SKYLAKE),
    "ic": ("Icelake-Server", ICELAKE, ()),
}
MODELS = [None, "host-model", "Cascadelake-Server", "Skylake-Server-IBRS", "Icelake-Server"]


def write(tmp_path, name, objs):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(objs))
    return str(path)


def a_node(name, ready=True, unschedulable=False, memory="64Gi"):
    host, models, drop = CLASSES[name.split("-")[0]]
    return kv.cpu_node(name, host, models, drop=drop, ready=ready, unschedulable=unschedulable,
                       allocatable={"cpu": "32", "memory": memory, "pods": "110", "devices.kubevirt.io/kvm": "1k",
                                    "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k"})


def generated(rng):
    """A cluster of mixed CPU classes (a cordoned or NotReady node now and then), VMs of every CPU mode running
    or stopped, some with sticky host-model keys or a drain-hanging strategy, and pods that fill the nodes."""
    names = sorted({"%s-%d" % (rng.choice(sorted(CLASSES)), rng.randint(1, 4)) for _ in range(rng.randint(2, 6))})
    objs = [a_node(n, ready=rng.random() > 0.1, unschedulable=rng.random() < 0.1,
                   memory=rng.choice(["16Gi", "32Gi", "64Gi"])) for n in names]
    objs += [kv.kubevirt(cpu_model=rng.choice([None, None, "Skylake-Server-IBRS", "Cascadelake-Server"]),
                         configuration={"evictionStrategy": rng.choice(["LiveMigrate", "LiveMigrateIfPossible"])}),
             kv.namespace("default"), kv.namespace("prod")]
    for i in range(rng.randint(1, 9)):
        name, ns = "vm-%d" % i, rng.choice(["default", "prod"])
        vm = kv.vm(name, model=rng.choice(MODELS), ns=ns, running=rng.random() < 0.8)
        if rng.random() < 0.2:
            vm["spec"]["template"]["spec"]["evictionStrategy"] = "LiveMigrateIfPossible"
        objs.append(vm)
        if not vm["status"]["created"]:
            continue
        host = rng.choice(names)
        vmi = kv.vmi_of(vm, host, objs[len(names)]["spec"]["configuration"].get("cpuModel"))
        sticky = {"cpu-model-migration.node.kubevirt.io/Icelake-Server": "true"} \
            if vmi["spec"]["domain"]["cpu"]["model"] == "host-model" and rng.random() < 0.3 else None
        requests = dict(kv.LAUNCHER_REQUESTS, memory="%dGi" % rng.choice([2, 6, 12]))
        objs += [vmi, kv.launcher(vmi, sticky, requests=requests)]
    for i, node in enumerate(names):
        if rng.random() < 0.5:
            objs.append(kv.workload_pod("fill-%d" % i, node, {"memory": "%dGi" % rng.choice([4, 10, 20])}, ns="prod"))
    return objs


def changes(rng, objs):
    """Random changes and the same changes made by hand: (what-if arguments, changed objects, the new node file)."""
    nodes = [o["metadata"]["name"] for o in objs if o["kind"] == "Node"]
    vms = [o for o in objs if o["kind"] == "VirtualMachine" and o["metadata"]["namespace"] == "default"]
    args, after, extra = [], copy.deepcopy(objs), []
    if rng.random() < 0.6:
        gone = rng.choice(nodes)
        args += ["--remove-node", gone]
        after = [o for o in after if not (o["kind"] == "Node" and o["metadata"]["name"] == gone)]
    if rng.random() < 0.5:
        new = a_node("%s-9" % rng.choice(sorted(CLASSES)), memory=rng.choice(["16Gi", "64Gi"]))
        extra.append(new)
        after.append(new)
    if rng.random() < 0.5:
        model = rng.choice(["host-model", "Cascadelake-Server", "Skylake-Server-IBRS", "Icelake-Server"])
        args += ["--cluster-model", model]
        for o in after:
            if o["kind"] == "KubeVirt":
                o["spec"]["configuration"]["cpuModel"] = model
    if vms and (rng.random() < 0.5 or not args and not extra):
        vm = rng.choice(vms)
        model = rng.choice(["host-model", "Cascadelake-Server", "Icelake-Server"])
        args += ["--vm-model", "vm/%s=%s" % (vm["metadata"]["name"], model)]
        for o in after:
            if o["kind"] == "VirtualMachine" and o["metadata"]["name"] == vm["metadata"]["name"] \
                    and o["metadata"]["namespace"] == "default":
                o["spec"]["template"]["spec"]["domain"]["cpu"]["model"] = model
    if not args and not extra:
        gone = nodes[0]
        args += ["--remove-node", gone]
        after = [o for o in after if not (o["kind"] == "Node" and o["metadata"]["name"] == gone)]
    return args, after, extra


def stopped(objs, namespace, name):
    """The objects with this VM stopped: no VMI, no launcher pod, the VM's status says so."""
    uid = next(o["metadata"]["uid"] for o in objs if o["kind"] == "VirtualMachineInstance"
               and (o["metadata"]["namespace"], o["metadata"]["name"]) == (namespace, name))
    out = []
    for o in copy.deepcopy(objs):
        if o["kind"] == "VirtualMachineInstance" and o["metadata"]["uid"] == uid:
            continue
        if o["kind"] == "Pod" and o["metadata"].get("labels", {}).get("kubevirt.io/created-by") == uid:
            continue
        if o["kind"] == "VirtualMachine" and (o["metadata"]["namespace"], o["metadata"]["name"]) == (namespace, name):
            o["status"] = {"printableStatus": "Stopped", "created": False}
        out.append(o)
    return out


def answers(ask):
    """What common, audit -A and drain-check --all say of a cluster, per VM and per node; `ask(args)` runs one
    command on it and gives its JSON."""
    common = ask(["common"])
    audit = ask(["audit", "-A"])
    steps = ask(["drain-check", "--all"])["steps"]
    actions = {(v["namespace"], v["vm"]): v["action"] for s in steps for v in s["vms"]}
    vms = {(v["namespace"], v["vm"]): {"reachableNodes": v["reachableNodes"], "risks": v["risks"],
                                       "action": actions.get((v["namespace"], v["vm"])) if v["running"] else None}
           for v in audit["vms"]}
    drains = {s["node"]: {"blocked": s["summary"]["blocked"] > 0,
                          "blockedVms": ["%s/%s" % (v["namespace"], v["vm"]) for v in s["vms"]
                                         if v["action"] == "blocked"]} for s in steps}
    side = {"recommended": common["recommended"], "commonModels": common["commonModels"],
            "vmCapableNodes": len(common["nodes"]), "blockingDrains": sum(1 for d in drains.values() if d["blocked"])}
    return side, vms, drains


def offline(path, capacity=()):
    return lambda args: run_json(args + ["-f", path] + (list(capacity) if args[0] != "common" else []), offline=True)


def check_answers(doc, before, after, audit_stopped=None):
    """The what-if document against the other commands' answers before and after the change; `audit_stopped(vm)`
    gives audit -A of the changed cluster with that VM stopped (its reach once restarted)."""
    side_b, vms_b, drains_b = before
    side_a, vms_a, drains_a = after
    assert doc["before"] == side_b
    assert doc["after"] == side_a
    listed = {(v["namespace"], v["vm"]): v for v in doc["vms"]}
    for key in vms_b:
        b, a = vms_b[key], vms_a[key]
        codes = lambda side: [r["code"] for r in side["risks"]]  # noqa: E731
        moved = b["reachableNodes"] != a["reachableNodes"] or b["action"] != a["action"] or codes(b) != codes(a)
        if key in listed:
            assert listed[key]["before"] == b and listed[key]["after"] == a, key
        else:
            assert not moved, key
    assert [(v["namespace"], v["vm"]) for v in doc["lost"]] == sorted(
        k for k in vms_b if vms_b[k]["reachableNodes"] > 0 and vms_a[k]["reachableNodes"] == 0)
    assert [d["node"] for d in doc["drains"]] == sorted(set(drains_b) | set(drains_a))
    for d in doc["drains"]:
        assert d["before"] == drains_b.get(d["node"]) and d["after"] == drains_a.get(d["node"]), d["node"]
    for key, v in listed.items():
        if v["afterRestart"] is not None and audit_stopped is not None:
            restarted = {(x["namespace"], x["vm"]): x for x in audit_stopped(key)["vms"]}
            assert v["afterRestart"]["reachableNodes"] == restarted[key]["reachableNodes"], key


def check_against_the_commands(tmp_path, objs, args, after_objs, extra, capacity=()):
    before_path = write(tmp_path, "before.yaml", objs)
    after_path = write(tmp_path, "after.yaml", after_objs)
    if extra:
        args = args + ["--add-node", write(tmp_path, "new-node.yaml", extra)]
    doc = run_json(["what-if", "-f", before_path, "-n", "default"] + args + list(capacity), offline=True)

    def audit_stopped(key):
        return run_json(["audit", "-A", "-f", write(tmp_path, "restarted.yaml", stopped(after_objs, *key))]
                        + list(capacity), offline=True)

    check_answers(doc, answers(offline(before_path, capacity)), answers(offline(after_path, capacity)), audit_stopped)
    return doc


@pytest.mark.parametrize("seed", range(14))
def test_before_and_after_are_what_the_other_commands_say(tmp_path, seed):
    rng = random.Random(seed)
    objs = generated(rng)
    args, after, extra = changes(rng, objs)
    check_against_the_commands(tmp_path, objs, args, after, extra, ["--no-capacity"] if seed % 3 == 2 else [])


def test_retiring_a_node_on_the_demo(tmp_path):
    doc = run_json(["what-if", "--remove-node", "hv-04", "-f", DEMO], offline=True)
    assert doc["changes"] == [{"change": "remove-node", "node": "hv-04"}]
    assert doc["after"]["vmCapableNodes"] == doc["before"]["vmCapableNodes"] - 1
    drains = {d["node"]: d for d in doc["drains"]}
    assert drains["hv-04"]["after"] is None and drains["hv-04"]["before"] is not None


def test_a_lost_vm_and_a_drain_that_now_blocks_exit_3(tmp_path):
    """Two Cascadelake nodes and a Skylake one: a Cascadelake VM on cl-1 has one target, cl-2; removing cl-2 leaves
    it none, so the drain of cl-1 that drained now hangs."""
    objs = [kv.cpu_node("cl-1", "Cascadelake-Server", CASCADE), kv.cpu_node("cl-2", "Cascadelake-Server", CASCADE),
            kv.cpu_node("sk-1", "Skylake-Server-IBRS", SKYLAKE, drop=NO_SKYLAKE), kv.kubevirt(), kv.namespace("default")]
    objs += running("db-1", "cl-1", model="Cascadelake-Server")
    objs += running("web-1", "sk-1", model="Skylake-Server-IBRS")
    path = write(tmp_path, "c.yaml", objs)
    proc = run_cli(["what-if", "--remove-node", "cl-2", "-f", path, "--exit-code"], offline=True)
    assert proc.returncode == 3, proc.stderr
    assert "Lost -- no node to move to after the change:" in proc.stdout
    assert "default/db-1  running on cl-1" in proc.stdout
    doc = run_json(["what-if", "--remove-node", "cl-2", "-f", path, "-o", "json"], offline=True)
    assert doc["lost"] == [{"vm": "db-1", "namespace": "default", "node": "cl-1"}]
    drains = {d["node"]: d for d in doc["drains"]}
    assert drains["cl-1"] == {"node": "cl-1", "before": {"blocked": False, "blockedVms": []},
                              "after": {"blocked": True, "blockedVms": ["default/db-1"]}}
    assert doc["summary"]["drainsNowBlocking"] == 1
    db = next(v for v in doc["vms"] if v["vm"] == "db-1")
    assert (db["before"]["action"], db["after"]["action"]) == ("migrate", "blocked")
    assert [r["code"] for r in db["before"]["risks"]] == ["model-not-everywhere", "single-target"]
    assert [r["code"] for r in db["after"]["risks"]] == ["model-not-everywhere", "no-target"]
    # Adding a Cascadelake node back as the replacement makes the change harmless: exit 0.
    new = write(tmp_path, "new.yaml", [kv.cpu_node("cl-3", "Cascadelake-Server", CASCADE)])
    proc = run_cli(["what-if", "--remove-node", "cl-2", "--add-node", new, "-f", path, "--exit-code"], offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_model_change_reaches_running_vms_at_their_next_start(tmp_path):
    """A running host-model VM keeps its CPU at its next migration: the cluster model shows as restart-pending,
    and what it reaches once restarted with the named model."""
    objs = [kv.cpu_node("cl-1", "Cascadelake-Server", CASCADE), kv.cpu_node("cl-2", "Cascadelake-Server", CASCADE),
            kv.cpu_node("sk-1", "Skylake-Server-IBRS", SKYLAKE, drop=NO_SKYLAKE), kv.kubevirt(), kv.namespace("default")]
    objs += running("app-1", "cl-1")  # host-model, no model of its own
    path = write(tmp_path, "c.yaml", objs)
    doc = run_json(["what-if", "--cluster-model", "Skylake-Server-IBRS", "-f", path], offline=True)
    app = next(v for v in doc["vms"] if v["vm"] == "app-1")
    assert app["appliesAt"] == "next-migration"
    assert app["before"]["reachableNodes"] == app["after"]["reachableNodes"] == 1
    assert "restart-pending" in [r["code"] for r in app["after"]["risks"]]
    assert app["afterRestart"] == {"reachableNodes": 3}
    assert doc["changes"] == [{"change": "cluster-model", "from": None, "to": "Skylake-Server-IBRS"}]
    table = run_cli(["what-if", "--cluster-model", "Skylake-Server-IBRS", "-f", path], offline=True).stdout
    assert "cluster default CPU model: not set: host-model -> Skylake-Server-IBRS" in table
    assert "next-migration (restarted: reach 3)" in table


def test_many_vms_whose_reach_alone_changes_are_summed_up(tmp_path):
    objs = [kv.cpu_node("cl-%d" % i, "Cascadelake-Server", CASCADE) for i in range(1, 5)]
    objs += [kv.kubevirt(), kv.namespace("default")]
    for i in range(30):
        objs += running("vm-%02d" % i, "cl-1", model="Cascadelake-Server")
    path = write(tmp_path, "c.yaml", objs)
    table = run_cli(["what-if", "--remove-node", "cl-4", "-f", path], offline=True).stdout
    assert "30 VMs more whose reach alone changes (3 -> 2: 30); -o wide lists them" in table
    wide = run_cli(["what-if", "--remove-node", "cl-4", "-f", path, "-o", "wide"], offline=True).stdout
    assert "default/vm-29" in wide
    assert len(run_json(["what-if", "--remove-node", "cl-4", "-f", path], offline=True)["vms"]) == 30


def test_usage_errors(tmp_path):
    objs = [kv.cpu_node("cl-1", "Cascadelake-Server", CASCADE), kv.kubevirt(), kv.namespace("default")]
    objs += running("db-1", "cl-1")
    path = write(tmp_path, "c.yaml", objs)
    same = write(tmp_path, "same.yaml", [kv.cpu_node("cl-1", "Cascadelake-Server", CASCADE)])
    empty = write(tmp_path, "empty.yaml", [kv.kubevirt()])
    nameless = kv.cpu_node("x", "Cascadelake-Server", CASCADE)
    nameless["metadata"]["name"] = "Not A Name"
    nameless = write(tmp_path, "nameless.yaml", [nameless])
    for args, message in (
            ([], "name at least one change"),
            (["--remove-node", "nope"], "node(s) not found: nope"),
            (["--remove-node", "Bad_Name"], 'invalid node name "Bad_Name"'),
            (["--add-node", same], "node cl-1 exists; add --remove-node cl-1 to replace it"),
            (["--add-node", empty], "holds no Node object"),
            (["--add-node", nameless], '--add-node %s: invalid node name "Not A Name"' % nameless),
            (["--add-node", str(tmp_path / "missing.yaml")], "missing.yaml"),
            (["--cluster-model", "A", "--cluster-model", "B"], "--cluster-model is given more than once"),
            (["--cluster-model", "bad model!"], "invalid CPU model"),
            (["--vm-model", "db-1"], "use vm/NAME=MODEL"),
            (["--vm-model", "vmi/db-1=Cascadelake-Server"], "use vm/NAME or NAME"),
            (["--vm-model", "vm/nope=Cascadelake-Server"], 'virtualmachines.kubevirt.io "nope" not found'),
            (["--vm-model", "vm/db-1=A", "--vm-model", "vm/db-1=B"], "gives vm/db-1 two models")):
        proc = run_cli(["what-if", "-f", path] + args, offline=True)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1, \
            (args, proc.stderr)
    # A model no node offers is judged (the VMs taking it are lost), and said.
    proc = run_cli(["what-if", "-f", path, "--vm-model", "vm/db-1=Icelake-Server"], offline=True)
    assert proc.returncode == 0 and "Warning: no VM-capable node offers CPU model Icelake-Server" in proc.stderr


def test_live_equals_offline(tmp_path):
    objs = generated(random.Random(3))
    args, _, _ = changes(random.Random(3), objs)
    server, url = serve(FakeKube(objs))
    try:
        live = run_json(["what-if", "-n", "default"] + args,
                        env=base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), url)))
    finally:
        server.shutdown()
        server.server_close()
    offline = run_json(["what-if", "-n", "default", "-f", write(tmp_path, "s.yaml", objs)] + args, offline=True)
    assert json.dumps(live, sort_keys=True) == json.dumps(offline, sort_keys=True)
