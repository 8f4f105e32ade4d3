"""The migration engine as a pure core: typed inputs, frozen typed results, work shared between alike VMs and nodes."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from cpumodel import objects
from cpumodel.core import labels as L
from cpumodel.core.api_selectors import fields_match, matches, parse_field_selector, parse_selector
from cpumodel.core.catalog import Catalog
from cpumodel.core.launcher_pod import Demand
from cpumodel.core.migration import MigrationEngine, VmState, failure_key, node_failures
from cpumodel.core.reasons import Category
from cpumodel.core.why_not import explain
from cpumodel.errors import UsageError
from testkit import kubevirt as kv

CATALOG = Catalog.load()
CASCADE = ["Cascadelake-Server", "Cascadelake-Server-v5"]
SKYLAKE = ["Skylake-Server-IBRS", "Skylake-Server-v5"]


def cluster(count_per_class=10):
    nodes = [kv.cpu_node("cl-%02d" % i, "Cascadelake-Server", CASCADE) for i in range(count_per_class)]
    nodes += [kv.cpu_node("sk-%02d" % i, "Skylake-Server-IBRS", SKYLAKE, drop={"mds-no", "rdctl-no", "ibrs-all"})
              for i in range(count_per_class)]
    nodes.append(kv.cpu_node("cordoned", "Cascadelake-Server", CASCADE, unschedulable=True))
    return [objects.parse_node(n) for n in nodes]


def running(name, node, model=objects.HOST_MODEL, sticky=None):
    vmi_obj = kv.vmi(name, node, model)
    vmi = objects.parse_vmi(vmi_obj)
    return VmState(name, "default", None, vmi, objects.parse_pod(kv.launcher(vmi_obj, sticky)))


def test_results_are_frozen_and_typed():
    nodes = cluster(2)
    engine = MigrationEngine(nodes, objects.parse_kubevirt(kv.kubevirt()))
    s = engine.situation(running("web", "cl-00"))
    verdict = engine.verdict(s, engine.by_name["sk-00"], CATALOG)
    assert not verdict.migratable
    assert {r.category for r in verdict.reasons} == {Category.CPU_FEATURE}
    reason = verdict.reasons[0]
    assert reason.key.startswith(L.CPU_FEATURE) and "host model of cl-00 requires" in reason.origin
    with pytest.raises(dataclasses.FrozenInstanceError):
        reason.message = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.constraints.notes = ()  # type: ignore[misc]
    assert [c.key for c in s.constraints.node_selector] == sorted(c.key for c in s.constraints.node_selector)


def test_categories_report_in_contract_order():
    order = [c.value for c in Category]
    assert order[:3] == ["not-running", "not-migratable", "source-node"] and order[-2:] == ["not-ready", "capacity"]
    assert sorted(Category, key=lambda c: c.rank) == list(Category)


def test_alike_vms_and_nodes_share_the_node_checks():
    nodes = cluster(50)
    engine = MigrationEngine(nodes, objects.parse_kubevirt(kv.kubevirt()))
    situations = [engine.situation(running("vm-%03d" % i, "cl-%02d" % (i % 50))) for i in range(200)]
    accepted = {s.vm_name: sum(engine.accepts(s, n) for n in engine.nodes) for s in situations}
    # Every VM booted on a Cascade Lake: the other 49 Cascade Lakes take it, no Skylake, not the cordoned one.
    assert set(accepted.values()) == {49}
    # 200 VMs x 101 nodes asked; the scheduler's checks ran once per demand, as one intersection of the
    # label sets the demand names, and no node was judged one by one.
    demands = {s.constraints.demand for s in situations}
    assert len(demands) == 1
    assert len(engine._accepting) == 1 and engine._failures == {}


def test_verdict_agrees_with_accepts_and_reasons():
    nodes = cluster(3)
    engine = MigrationEngine(nodes, None)
    for state in (running("a", "cl-00"), running("b", "sk-01"), running("c", "cl-01", "Skylake-Server-IBRS")):
        s = engine.situation(state)
        for node in engine.nodes:
            verdict = engine.verdict(s, node)
            assert verdict.migratable == engine.accepts(s, node) == (not verdict.reasons)


def test_explain_offers_a_fix_usable_on_source_and_target():
    nodes = cluster(2)
    result = explain(CATALOG, running("web", "cl-00"), nodes, None, "sk-00")
    assert not result.migratable and result.suggestion.model == "Skylake-Server-IBRS"
    assert "unknown" in " ".join(result.situation.constraints.notes)  # no KubeVirt CR: newest rules, said so


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(CATALOG.names()), min_size=1, max_size=3), st.sampled_from(CATALOG.names()),
       st.integers(min_value=10 ** 9, max_value=4 * 10 ** 9), st.booleans())
def test_cpu_labels_round_trip_through_node_cpu(models, host_model, tsc, scalable):
    cpu = kv.cpu_view(host_model, kv.host_features(models), tsc=tsc, scalable=scalable, hyperv=kv.HYPERV)
    assert L.node_cpu(L.cpu_labels(cpu)) == cpu


@pytest.mark.parametrize("selector, labels, expected", [
    ("zone=a", {"zone": "a"}, True), ("zone!=a", {}, True), ("zone notin (a,b)", {}, True),
    ("zone in (a,b)", {}, False), ("!zone", {"zone": "a"}, False), ("gen>3", {"gen": "4"}, True),
    ("gen>3", {"gen": "3"}, False), ("gen<3", {"gen": "x"}, False), ("gen<3", {}, False),
    ("a,b=c", {"a": "", "b": "c"}, True),
])
def test_label_selectors_as_kube_apiserver(selector, labels, expected):
    assert matches(parse_selector(selector), labels) is expected


def test_field_selectors_and_errors():
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert fields_match(parse_field_selector("metadata.name=n1,spec.unschedulable=true"), node)
    assert fields_match(parse_field_selector("spec.nodeName!=x"), node)
    assert not fields_match(parse_field_selector("metadata.name==n2"), node)
    for bad in ("a in (b", "=x"):
        with pytest.raises(UsageError):
            parse_selector(bad)
    with pytest.raises(UsageError):
        parse_field_selector("no-operator")


def test_offline_source_and_fake_server_select_alike(fake, live_env):
    from conftest import DEMO, run_json

    for selector in ("cpu-model.node.kubevirt.io/Cascadelake-Server", "!node-role.harvesterhci.io/witness",
                     "kubernetes.io/hostname notin (hv-01,hv-02)", "cpu-timer.node.kubevirt.io/tsc-frequency>2200000000"):
        live = run_json(["diff", "-l", selector], env=live_env)
        offline = run_json(["diff", "-l", selector, "-f", DEMO], offline=True)
        assert live["nodes"] == offline["nodes"] and live["nodes"], selector


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Cascadelake-Server", "Skylake-Server-IBRS", "SapphireRapids"]),
                          st.integers(min_value=2 * 10 ** 9, max_value=3 * 10 ** 9), st.booleans(),
                          st.sampled_from(["zone-a", "zone-b"])), min_size=1, max_size=8))
def test_the_cpu_class_cache_equals_reading_every_node(nodes):
    """Nodes of a class differ in timer, zone and hostname labels: the cache must still give each its own view."""
    from cpumodel.core.nodes import NodeCpuCache

    cache = NodeCpuCache()
    for i, (model, tsc, scalable, zone) in enumerate(nodes):
        cpu = kv.cpu_view(model, kv.host_features([model]), tsc=tsc, scalable=scalable)
        labels = kv.node_labels("n-%d" % i, cpu, {"topology.kubernetes.io/zone": zone,
                                                  "feature.node.kubernetes.io/cpu-model.id": str(tsc % 97)})
        assert cache(labels) == L.node_cpu(labels)


@settings(max_examples=60, deadline=None)
@given(zones=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=3, max_size=8),
       peers=st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["db", "web"])), max_size=6),
       anti=st.booleans(), key=st.sampled_from(["topology.kubernetes.io/zone", "kubernetes.io/hostname"]),
       own=st.sampled_from(["db", "web"]),
       selector=st.sampled_from([{"matchLabels": {"app": "db"}},  # one key: read through the label index
                                 {"matchLabels": {"app": "db"},
                                  "matchExpressions": [{"key": "app", "operator": "Exists"}]}]))
def test_pod_affinity_by_domains_agrees_with_the_per_node_check(zones, peers, anti, key, own, selector):
    """fitting() filters whole topology domains at once; accepts() judges node by node: they must agree."""
    from cpumodel.core.pod_affinity import NearbyPods, placements

    nodes = [objects.parse_node(kv.cpu_node("n%d" % i, "Skylake-Server-IBRS", SKYLAKE,
                                            labels={"topology.kubernetes.io/zone": z} if z else {}))
             for i, z in enumerate(zones)]
    pods = []
    for i, (at, app) in enumerate(peers):
        pod = kv.launcher(kv.vmi("peer-%d" % i, "n%d" % (at % len(nodes))), suffix="p%d" % i)
        pod["metadata"]["labels"]["app"] = app
        pods.append(objects.parse_pod(pod))
    affinity = {"podAntiAffinity" if anti else "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": selector, "topologyKey": key}]}}
    vmi_obj = kv.vmi("vm", "n0", "Skylake-Server-IBRS", affinity=affinity)
    vmi_obj["metadata"]["labels"]["app"] = own
    vmi = objects.parse_vmi(vmi_obj)
    engine = MigrationEngine(nodes, objects.parse_kubevirt(kv.kubevirt()))
    nearby = placements(vmi.pod_terms, "default", NearbyPods(pods, engine.by_name))
    s = engine.situation(VmState("vm", "default", None, vmi, None, None, nearby))
    by_node = {n.name for n in nodes if engine.accepts(s, n)}
    assert engine.fitting(s) - {"n0"} == by_node
    # The label index finds exactly the pods a plain scan finds.
    found = {pod for p in nearby for names in p.domains.values() for pod in names}
    label = engine.by_name
    scan = {"%s/%s" % (p.namespace, p.name) for p in pods
            if p.labels.get("app") == "db" and key in label[p.node_name].labels}
    assert found == scan


# ---- the node index agrees with the per-node verdict -------------------------------------------------------

KEYS = ["cpu-feature.node.kubevirt.io/avx", "cpu-model-migration.node.kubevirt.io/Skylake", "zone", "rank"]
VALUES = ["true", "false", "1", "7"]
labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)
taint_st = st.builds(objects.Taint, st.sampled_from(["dedicated", "gpu"]), st.sampled_from(["", "x"]),
                     st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]))
node_st = st.tuples(labels_st, st.booleans(), st.sampled_from([True, False, None]), st.lists(taint_st, max_size=2))
requirement_st = st.one_of(
    st.builds(objects.Requirement, st.sampled_from(KEYS), st.sampled_from(["In", "NotIn"]),
              st.lists(st.sampled_from(VALUES), min_size=1, max_size=2).map(tuple)),
    st.builds(objects.Requirement, st.sampled_from(KEYS), st.sampled_from(["Exists", "DoesNotExist"])),
    st.builds(objects.Requirement, st.sampled_from(KEYS), st.sampled_from(["Gt", "Lt"]),
              st.sampled_from([("0",), ("5",), ("x",)])),
    st.builds(objects.Requirement, st.just("metadata.name"), st.sampled_from(["In", "NotIn"]),
              st.lists(st.sampled_from(["n0", "n1", "n2"]), min_size=1, max_size=2).map(tuple), st.just(True)),
)
term_st = st.builds(objects.SelectorTerm, st.lists(requirement_st, max_size=3).map(tuple))
toleration_st = st.builds(objects.Toleration, st.sampled_from(["", "dedicated", "gpu"]),
                          st.sampled_from(["Equal", "Exists"]), st.sampled_from(["", "x"]),
                          st.sampled_from(["", "NoSchedule", "NoExecute"]))
demand_st = st.builds(Demand, st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3).map(
    lambda d: tuple(sorted(d.items()))), st.lists(term_st, max_size=3).map(tuple),
    st.lists(toleration_st, max_size=2).map(tuple))


@settings(max_examples=300, deadline=None)
@given(st.lists(node_st, min_size=1, max_size=12), st.lists(demand_st, min_size=1, max_size=4), st.data())
def test_the_node_index_agrees_with_the_per_node_verdict(raw_nodes, demands, data):
    """For every generated (demand, node): the engine's accepting set holds the node exactly when the plain
    per-node check (node_failures) finds nothing; and the failure counts over any set of nodes are the per-node
    failures summed, with the first failing node's failure as the sample."""
    nodes = [objects.Node("n%d" % i, labels, unschedulable, ready, tuple(taints))
             for i, (labels, unschedulable, ready, taints) in enumerate(raw_nodes)]
    engine = MigrationEngine(nodes, None)
    names = frozenset(data.draw(st.sets(st.sampled_from([n.name for n in nodes]))))
    for demand in demands:
        accepting = engine.accepting(demand)
        for node in engine.nodes:
            assert engine.index.has(accepting, node.name) == (not node_failures(demand, node)), (demand, node)
        expected: dict = {}
        for node in engine.nodes:
            if node.name in names:
                for failure in node_failures(demand, node):
                    key = failure_key(failure)
                    seen = expected.get(key)
                    expected[key] = (seen[0] + 1, seen[1]) if seen else (1, failure)
        assert engine.failure_counts(demand, names) == expected
