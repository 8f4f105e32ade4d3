"""Room on the targets (issue "drains that also fit"): kube-scheduler's NodeResourcesFit arithmetic, the placement of
one drain's VMs one after another, drain-check and audit offline and live, and the requests it takes."""
import json
import random
from fractions import Fraction

import pytest

from conftest import run_cli, run_json
from test_drain_audit import CASCADE, NO_SKYLAKE, SKYLAKE, bundle_missing, drain, snapshot
from testkit import kubevirt as kv
from testkit.fakekube import FakeKube, serve
from testkit.harness import write_kubeconfig

GI = 1 << 30
NODE = {"cpu": "32", "memory": "64Gi", "pods": "110", "devices.kubevirt.io/kvm": "1k",
        "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k"}


def vm_on(name, node, memory, cpu="200m", ns="default", model="Cascadelake-Server", eviction=None):
    """A VM with a named model on `node`, its launcher requesting `memory` and `cpu`."""
    vm = kv.vm(name, model=model, ns=ns)
    if eviction:
        vm["spec"]["template"]["spec"]["evictionStrategy"] = eviction
    vmi = kv.vmi_of(vm, node)
    requests = dict(kv.LAUNCHER_REQUESTS, memory=memory, cpu=cpu)
    return [vm, vmi, kv.launcher(vmi, requests=requests)]


def capacity_cluster():
    """Three Cascadelake nodes of 64 GiB and a roomy Skylake node the VMs' model rules out. a-1 is drained: its
    VMs need 30, 20, 12 and 8 GiB; a-2 has 24 GiB free, a-3 14 GiB (their finished pods hold nothing)."""
    objs = [kv.cpu_node(n, "Cascadelake-Server", CASCADE, allocatable=NODE) for n in ("a-1", "a-2", "a-3")]
    objs.append(kv.cpu_node("sk-1", "Skylake-Server-IBRS", SKYLAKE, drop=NO_SKYLAKE,
                            allocatable=dict(NODE, memory="256Gi")))
    objs += [kv.kubevirt(), kv.namespace("default"), kv.namespace("infra")]
    objs += [kv.workload_pod("cache", "a-2", {"cpu": "4", "memory": "40Gi"}, ns="infra"),
             kv.workload_pod("db", "a-3", {"cpu": "2", "memory": "50Gi"}, ns="infra"),
             kv.workload_pod("report", "a-3", {"memory": "30Gi"}, ns="infra", phase="Succeeded"),
             kv.workload_pod("crashed", "a-2", {"memory": "30Gi"}, ns="infra", phase="Failed"),
             kv.workload_pod("pending", None, {"memory": "60Gi"}, ns="infra", phase="Pending")]
    for name, memory in (("huge", "30Gi"), ("big", "20Gi"), ("mid", "12Gi"), ("small", "8Gi")):
        objs += vm_on(name, "a-1", memory)
    return objs


def by_vm(doc):
    return {v["vm"]: v for v in doc["vms"]}


# ---- the arithmetic -----------------------------------------------------------------------------------------
def test_quantities_as_apimachinery_reads_them():
    from cpumodel.sources.quantity import amount, parse_quantity

    assert parse_quantity("100m") == Fraction(1, 10) and parse_quantity("1.5") == Fraction(3, 2)
    assert parse_quantity("1e3") == 1000 and parse_quantity("2E-3") == Fraction(2, 1000)
    assert parse_quantity("0.5Gi") == GI // 2 and parse_quantity("129000Ki") == 129000 * 1024
    assert parse_quantity("1M") == 10 ** 6 and parse_quantity(".5") == Fraction(1, 2) and parse_quantity(7) == 7
    assert amount("cpu", "100m") == 100 and amount("cpu", "2") == 2000 and amount("cpu", "0.0001") == 1  # rounds up
    assert amount("memory", "1.5Ki") == 1536 and amount("memory", "-1") == 0 and amount("pods", "110") == 110
    for bad in ("1.2.3", "Mi", "", "1 Gi", "1Zi", "1e999", True):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_pod_requests_as_the_scheduler_sums_them():
    from cpumodel.workloads import pod_requests

    def c(restart=None, **requests):
        out = {"name": "c", "resources": {"requests": requests}}
        if restart:
            out["restartPolicy"] = restart
        return out

    assert pod_requests({"containers": [c(cpu="1", memory="1Gi"), c(cpu="500m")]}) == (("cpu", 1500), ("memory", GI))
    # an init container needs its own requests while it runs: the larger of it and the containers counts
    assert pod_requests({"containers": [c(cpu="1")], "initContainers": [c(cpu="3"), c(memory="2Gi")]}) == \
        (("cpu", 3000), ("memory", 2 * GI))
    # a sidecar (restartPolicy Always) runs beside everything started after it
    assert pod_requests({"containers": [c(memory="1Gi")],
                         "initContainers": [c("Always", memory="1Gi"), c(memory="3Gi")]}) == (("memory", 4 * GI),)
    # pod-level requests replace the containers' cpu and memory; overhead adds
    assert pod_requests({"containers": [c(cpu="1", memory="1Gi")], "resources": {"requests": {"memory": "3Gi"}},
                         "overhead": {"cpu": "250m"}}) == (("cpu", 1250), ("memory", 3 * GI))
    assert pod_requests({}) == ()


def test_room_and_placement_against_a_plain_per_node_computation():
    """Over random clusters: the bitset placement (cached lacking-sets, memory order, touched nodes) picks what a
    plain loop over every node picks, VM after VM, and finds the same shortfalls."""
    from cpumodel.core.capacity import Placement, Room
    from cpumodel.core.node_index import NodeIndex, positions
    from cpumodel.objects import Node

    rng = random.Random(5)
    for _ in range(60):
        size = rng.choice([3, 20, 90, 200])
        nodes = [Node("n-%03d" % i, {}, allocatable={} if rng.random() < 0.05 else
                      {"cpu": rng.choice([8000, 32000]), "memory": rng.choice([16, 64, 128]) * GI,
                       "pods": rng.choice([3, 110])}) for i in range(size)]
        used = {n.name: ({"cpu": rng.randrange(0, 8000), "memory": rng.randrange(0, 16) * GI}, rng.randrange(0, 4))
                for n in nodes if rng.random() < 0.7}
        index = NodeIndex(nodes)
        room, placement = Room(index, used), None
        placement = Placement(room)
        free = []
        for n in nodes:
            if not n.allocatable:
                free.append(None)
                continue
            requested, pods = used.get(n.name, ({}, 0))
            free.append({k: n.allocatable[k] - requested.get(k, 0) - (pods if k == "pods" else 0)
                         for k in n.allocatable})
        for _ in range(rng.randrange(1, 30)):
            request = tuple(sorted({"cpu": rng.choice([100, 2000, 6000]), "memory": rng.choice([1, 4, 12, 40]) * GI
                                    }.items()))
            mask = rng.getrandbits(size) if rng.random() < 0.7 else sum(1 << i for i in rng.sample(range(size), 3))

            def fits(i):
                return free[i] is None or all(free[i].get(k, 0) >= v for k, v in request + (("pods", 1),)
                                              if k != "pods" or "pods" in free[i])
            plain = [i for i in positions(mask) if fits(i)]
            pool = mask | rng.getrandbits(size)  # the fixes rank a shared superset once, then filter it
            check_fixes(placement, request, mask, pool, free, nodes)
            chosen, fitting = placement.place(request, mask)
            assert sorted(positions(fitting)) == plain
            if not plain:
                assert chosen is None
                continue
            best = min(plain, key=lambda i: (-(float("inf") if free[i] is None else free[i]["memory"]), i))
            assert chosen == nodes[best].name
            if free[best] is not None:
                for k, v in request + (("pods", 1),):
                    if k in free[best]:
                        free[best][k] -= v


def check_fixes(placement, request, mask, pool, free, nodes):
    """closest and shortfalls (ranked once per pool, with the used nodes and a full scan as fallbacks) against a
    plain computation over every candidate."""
    from cpumodel.core.node_index import positions

    wants = request + (("pods", 1),)

    def free_of(i, resource):
        if free[i] is None or (resource == "pods" and "pods" not in free[i]):
            return float("inf")
        return free[i].get(resource, 0)

    candidates = list(positions(mask))
    if not candidates:
        return
    def key(i):
        short = [(r, a - free_of(i, r)) for r, a in wants if free_of(i, r) < a]
        d = dict(short)
        return len(short), d.get("memory", 0), d.get("cpu", 0), i
    best = min(candidates, key=key)
    gap = placement.closest(request, mask, pool)
    assert gap.node == nodes[best].name
    for s in placement.shortfalls(request, mask, pool):
        amount = dict(wants)[s.resource]
        lacking = [i for i in candidates if free_of(i, s.resource) < amount]
        assert s.nodes == len(lacking)
        top = max(lacking, key=lambda i: (free_of(i, s.resource), -i))
        assert (s.best_node, s.best_free) == (nodes[top].name, free_of(top, s.resource))


# ---- drain-check --------------------------------------------------------------------------------------------
def test_a_drain_places_its_vms_largest_first_on_the_roomiest_target(tmp_path):
    doc = drain(tmp_path, capacity_cluster(), "a-1", "--exit-code", code=3)
    vms = by_vm(doc)
    # huge (30 GiB) fits nowhere: a-2 has 24 GiB, a-3 14 GiB, sk-1's CPU lacks the model
    assert vms["huge"]["action"] == "blocked" and vms["huge"]["targets"] == []
    assert vms["huge"]["reasons"] == [{"category": "capacity", "key": "memory", "nodes": 2,
                                      "message": "its target pod requests 30 GiB of memory; 2 of 2 candidate nodes "
                                                 "lack it (the most free: 24 GiB of memory on a-2)"}]
    assert vms["huge"]["roomFix"] == "free 6 GiB of memory on a-2 (or add a node it can move to)"
    # big (20 GiB) fits on a-2 only, and uses it up; mid (12 GiB) then goes to a-3; small (8 GiB) finds 4 and 2
    assert (vms["big"]["action"], vms["big"]["targets"], vms["big"]["placedOn"]) == ("migrate", ["a-2"], "a-2")
    assert (vms["mid"]["action"], vms["mid"]["targets"], vms["mid"]["placedOn"]) == ("migrate", ["a-3"], "a-3")
    assert vms["small"]["action"] == "blocked" and vms["small"]["reasons"][0]["key"] == "memory"
    assert "(the most free: 4 GiB of memory on a-2)" in vms["small"]["reasons"][0]["message"]
    assert vms["big"]["requests"]["memory"] == str(20 * GI) and vms["big"]["requests"]["cpu"] == "200m"
    assert doc["summary"] == {"migrate": 2, "shutdown": 0, "blocked": 2, "external": 0}
    assert doc["capacity"]["checked"] and doc["capacity"]["podsRead"] == "the pods of 2 nodes"
    assert doc["fix"] is None  # no CPU model makes room


def test_no_capacity_counts_labels_only(tmp_path):
    doc = drain(tmp_path, capacity_cluster(), "a-1", "--no-capacity")
    assert {v["action"] for v in doc["vms"]} == {"migrate"}
    assert all(v["targets"] == ["a-2", "a-3"] and v["placedOn"] is None for v in doc["vms"])
    assert doc["capacity"]["checked"] is False


def test_terminated_pods_hold_no_room_and_unbound_pods_none(tmp_path):
    objs = [o for o in capacity_cluster() if o["metadata"]["name"] not in ("huge", "mid", "small")
            and not o["metadata"]["name"].startswith(("virt-launcher-huge", "virt-launcher-mid",
                                                      "virt-launcher-small"))]
    assert by_vm(drain(tmp_path, objs, "a-1"))["big"]["placedOn"] == "a-2"
    for obj in objs:  # the crashed pod on a-2 is running after all: now a-2 is full
        if obj["metadata"]["name"] == "crashed":
            obj["status"]["phase"] = "Running"
    big = by_vm(drain(tmp_path, objs, "a-1", "--exit-code", code=3))["big"]
    assert big["action"] == "blocked" and big["reasons"][0]["category"] == "capacity"


def test_a_cpu_bound_vm_and_a_full_pod_count(tmp_path):
    objs = [kv.cpu_node("c-1", "Cascadelake-Server", CASCADE, allocatable=NODE),
            kv.cpu_node("c-2", "Cascadelake-Server", CASCADE, allocatable=NODE),
            kv.cpu_node("c-3", "Cascadelake-Server", CASCADE, allocatable=dict(NODE, pods="2")),
            kv.kubevirt(), kv.workload_pod("render", "c-2", {"cpu": "20", "memory": "1Gi"}),
            kv.workload_pod("one", "c-3", {"cpu": "100m"}), kv.workload_pod("two", "c-3", {"cpu": "100m"})]
    objs += vm_on("cruncher", "c-1", "2Gi", cpu="16")
    vm = by_vm(drain(tmp_path, objs, "c-1", code=0))["cruncher"]
    assert vm["action"] == "blocked"  # LiveMigrate: the drain waits
    assert [(r["key"], r["nodes"]) for r in vm["reasons"]] == [("cpu", 1), ("pods", 1)]
    assert vm["reasons"][0]["message"] == ("its target pod requests 16 cpu; 1 of 2 candidate nodes lack it "
                                           "(the most free: 12 cpu on c-2)")
    assert vm["reasons"][1]["message"] == "1 of 2 candidate nodes hold as many pods as they allow"
    # one resource short on either node: c-3 lacks no memory or cpu, only a pod slot
    assert vm["roomFix"] == "free 1 pod slot on c-3 (or add a node it can move to)"


def test_if_possible_and_shutdown_strategies_with_no_room(tmp_path):
    objs = capacity_cluster() + [kv.workload_pod("fill", "a-3", {"memory": "14Gi"}, ns="infra")]
    objs = [o for o in objs if o["metadata"]["name"] not in ("huge", "big", "mid")
            and not o["metadata"]["name"].startswith(("virt-launcher-huge", "virt-launcher-big", "virt-launcher-mid"))]
    objs += vm_on("maybe", "a-1", "30Gi", eviction="LiveMigrateIfPossible")
    objs += vm_on("off", "a-1", "30Gi", eviction="None")
    vms = by_vm(drain(tmp_path, objs, "a-1"))
    assert vms["maybe"]["action"] == "blocked"  # live-migratable: KubeVirt migrates, the target pod stays Pending
    assert vms["off"]["action"] == "shutdown" and vms["off"]["placedOn"] is None
    assert vms["small"]["placedOn"] == "a-2"


def test_drain_check_all_places_per_step_and_audit_names_no_room(tmp_path):
    path = snapshot(tmp_path, capacity_cluster())
    doc = run_json(["drain-check", "--all", "-f", path], offline=True)
    steps = {s["node"]: s for s in doc["steps"]}
    assert steps["a-1"]["summary"]["blocked"] == 2 and steps["a-2"]["summary"] == steps["a-3"]["summary"]
    assert [u["node"] for u in doc["undrainableNodes"]] == ["a-1"] and doc["capacity"]["checked"]
    audit = by_vm(run_json(["audit", "-A", "-f", path], offline=True))
    assert [r["code"] for r in audit["huge"]["risks"]] == ["model-not-everywhere", "no-room"]  # not on sk-1
    assert audit["huge"]["reachableNodes"] == 2  # reach stays what the labels allow
    assert audit["huge"]["risks"][1]["message"].startswith("none of its 2 CPU-compatible targets has room")
    assert all(r["code"] != "no-room" for v in ("big", "mid", "small") for r in audit[v]["risks"])  # each alone fits
    quiet = by_vm(run_json(["audit", "-A", "--no-capacity", "-f", path], offline=True))
    assert [r["code"] for r in quiet["huge"]["risks"]] == ["model-not-everywhere"]


def test_nodes_without_allocatable_are_said(tmp_path):
    objs = capacity_cluster()
    for obj in objs:
        if obj["metadata"]["name"] == "a-3":
            del obj["status"]["allocatable"]
    proc = run_cli(["drain-check", "a-1", "-f", snapshot(tmp_path, objs), "-o", "json"], offline=True)
    doc = json.loads(proc.stdout)
    assert "room not counted on 1 node that report no status.allocatable (a-3)" in proc.stderr
    assert doc["capacity"]["nodesWithoutAllocatable"] == ["a-3"]
    assert by_vm(doc)["huge"]["placedOn"] == "a-3"  # nothing says a-3 is full


def test_a_bundle_that_lacks_pods_of_some_namespaces_says_room_may_be_less(tmp_path):
    target = bundle_missing(tmp_path, "team-b")
    proc = run_cli(["drain-check", "hv-01", "-f", str(target), "-o", "json"], offline=True)
    assert proc.returncode == 0, proc.stderr
    assert "pods of namespaces team-b are not in it, so nodes may have less room than shown" in proc.stderr
    assert json.loads(proc.stdout)["capacity"]["uncollectedNamespaces"] == ["team-b"]


# ---- live: the same answers, and as few pod requests as the rules allow ---------------------------------------
def served(tmp_path, objs, name="kc"):
    api = FakeKube(objs)
    server, url = serve(api)
    from conftest import base_env

    return api, server, base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / name), url))


@pytest.mark.parametrize("args", [["drain-check", "a-1"], ["drain-check", "--all"], ["audit", "-A"]])
def test_live_equals_offline(tmp_path, args):
    api, server, env = served(tmp_path, capacity_cluster())
    try:
        live = run_json(args, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert live == run_json(args + ["-f", snapshot(tmp_path, capacity_cluster())], offline=True)
    assert live["capacity"]["checked"]
    pod_lists = [r for r in api.requests if r["path"] == "/api/v1/pods" and "fieldSelector" in r["query"]]
    if args[1] == "a-1":  # two candidates: their pods, node by node, never every pod of the cluster
        assert sorted(r["query"]["fieldSelector"] for r in pod_lists) == [
            "spec.nodeName=a-2,status.phase!=Succeeded,status.phase!=Failed",
            "spec.nodeName=a-3,status.phase!=Succeeded,status.phase!=Failed"]
    else:  # every node is a candidate: one paged list of the pods the scheduler counts
        assert [r["query"]["fieldSelector"] for r in pod_lists] == ["status.phase!=Succeeded,status.phase!=Failed"]


def test_many_candidates_take_one_paged_list(tmp_path):
    objs = [kv.cpu_node("n-%02d" % i, "Cascadelake-Server", CASCADE, allocatable=NODE) for i in range(12)]
    objs += [kv.kubevirt()] + vm_on("vm", "n-00", "4Gi")
    objs += [kv.workload_pod("w-%03d" % i, "n-%02d" % (i % 12), {"memory": "10Mi"}) for i in range(1200)]
    api, server, env = served(tmp_path, objs)
    try:
        doc = run_json(["drain-check", "n-00"], env=env)
    finally:
        server.shutdown()
        server.server_close()
    pod_lists = [r for r in api.requests if r["path"] == "/api/v1/pods" and "fieldSelector" in r["query"]]
    assert len(pod_lists) == 3 and all(r["query"].get("limit") for r in pod_lists)  # 1,200 pods in pages of 500
    assert doc["capacity"]["podsRead"] == "the pods of every node" and by_vm(doc)["vm"]["placedOn"] == "n-01"


# ---- why-not: the same rule, one VM alone ---------------------------------------------------------------------
def test_why_not_counts_room_on_the_nodes_the_labels_accept(tmp_path):
    path = snapshot(tmp_path, capacity_cluster())
    proc = run_cli(["why-not", "vm/huge", "a-2", "--exit-code", "-f", path, "-o", "json"], offline=True)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["migratable"] is False and doc["capacity"]["checked"]
    assert [(r["category"], r["key"], r["message"]) for r in doc["reasons"]] == [
        ("capacity", "memory", "a-2 has 24 GiB of memory free; the target pod requests 30 GiB of memory")]
    assert run_json(["why-not", "vm/small", "a-3", "-f", path], offline=True)["migratable"]  # alone, it fits
    nodes = {n["name"]: n for n in run_json(["why-not", "vm/huge", "-f", path], offline=True)["nodes"]}
    assert [r["category"] for r in nodes["a-3"]["reasons"]] == ["capacity"]
    assert [r["category"] for r in nodes["sk-1"]["reasons"]] == ["cpu-model"]  # room is asked only of these two
    labels_only = {n["name"]: n for n in run_json(["why-not", "vm/huge", "--no-capacity", "-f", path],
                                                   offline=True)["nodes"]}
    assert labels_only["a-2"]["migratable"] and labels_only["a-3"]["migratable"]


def test_why_not_reads_the_pods_of_the_target_only(tmp_path):
    api, server, env = served(tmp_path, capacity_cluster())
    try:
        assert run_json(["why-not", "vm/huge", "a-2"], env=env)["migratable"] is False
    finally:
        server.shutdown()
        server.server_close()
    assert [r["query"]["fieldSelector"] for r in api.requests if r["path"] == "/api/v1/pods"
            and "fieldSelector" in r["query"]] == ["spec.nodeName=a-2,status.phase!=Succeeded,status.phase!=Failed"]
