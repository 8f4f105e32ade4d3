"""Pure core: label vocabulary on real fixtures, common-model analysis, selector evaluation."""
import os

import pytest
import yaml

from testkit.kubevirt import cpu_node, kubevirt, node
from conftest import reference_data
from cpumodel import objects
from cpumodel.core.catalog import Catalog
from cpumodel.core.highest_common import analyse_common
from cpumodel.core.labels import group_keys, node_cpu
from cpumodel.core.nodes import split_nodes
from cpumodel.core.selectors import failing_requirements, requirement_matches, untolerated_taints
from cpumodel.objects import Requirement, SelectorTerm, Taint, Toleration

CATALOG = Catalog.load()
def fixture_labels(name):
    with open(reference_data("fixtures", name), encoding="utf-8") as fh:
        return yaml.safe_load(fh)["metadata"]["labels"]


def test_label_vocabulary_on_kubevirts_own_test_node():
    cpu = node_cpu(fixture_labels("node-labels__kubevirt-kubevirt__cpu_plugin_test__skylake-client-ibrs.yaml"))
    assert cpu.host_model == "Skylake-Client-IBRS" and cpu.vendor == "Intel"
    assert "Skylake-Client-noTSX-IBRS" in cpu.models and "Skylake-Client-IBRS" not in cpu.models
    assert "Skylake-Client-IBRS" in cpu.migration_models  # host model: migration label only
    assert {"vmx", "xsaves", "tsx-ctrl"} <= cpu.host_model_required
    assert cpu.tsc_frequency == 2111998000 and cpu.tsc_scalable is False
    assert cpu.tsc_scheduling == {"2111998000"} and "synic" in cpu.hyperv
    assert cpu.schedulable is True and not cpu.machine_types and not cpu.witness


def test_label_vocabulary_on_a_real_haswell_node():
    cpu = node_cpu(fixture_labels("node-labels__nyu-hsrn__haswell-notsx-ibrs__describe.yaml"))
    assert cpu.host_model == "Haswell-noTSX-IBRS" and "hypervisor" in cpu.features
    assert cpu.models >= {"Haswell-noTSX-IBRS", "IvyBridge-IBRS"}
    groups = dict(group_keys(k for k in fixture_labels("node-labels__nyu-hsrn__haswell-notsx-ibrs__describe.yaml")
                             if "kubevirt" in k))
    assert "models" in groups and "tsc" in groups and "vendor" in groups


def common_of(*nodes, kv=None):
    return analyse_common(CATALOG, split_nodes([objects.parse_node(n) for n in nodes]),
                          objects.parse_kubevirt(kv) if kv else None)


# Host CPUs as libvirt models (TSX on unless the name says otherwise).
CLX = ["Cascadelake-Server", "Cascadelake-Server-v5"]
SPR = ["SapphireRapids-v3"]
SKX = ["Skylake-Server-IBRS"]
BDW = ["Broadwell-IBRS"]


def test_kb_cascade_lake_and_sapphire_rapids():
    r = common_of(cpu_node("clx", "Cascadelake-Server", ["Cascadelake-Server"]), cpu_node("spr", "SapphireRapids", SPR))
    assert r.recommended == "Cascadelake-Server"
    assert r.held_back[0].missing_on == ("clx",)


def test_kb_skylake_and_cascade_lake():
    r = common_of(cpu_node("skx", "Skylake-Server", ["Skylake-Server"]), cpu_node("clx", "Cascadelake-Server", CLX))
    assert r.recommended == "Skylake-Server"


def test_kb_broadwell_and_newer_tsx_intel():
    r = common_of(cpu_node("bdw", "Broadwell", ["Broadwell"]), cpu_node("clx", "Cascadelake-Server", CLX),
                  cpu_node("spr", "SapphireRapids", SPR))
    assert r.recommended == "Broadwell"


def test_tsx_disabled_hosts_get_notsx_models():
    clx_notsx = cpu_node("clx", "Cascadelake-Server-noTSX", ["Cascadelake-Server-v4"], drop=["hle", "rtm"])
    r = common_of(clx_notsx, cpu_node("spr", "SapphireRapids", SPR))
    assert r.recommended == "Cascadelake-Server-v4"
    assert "Cascadelake-Server" not in r.common_models and "Cascadelake-Server-noTSX" in r.common_models


def test_e_core_lines_and_amd():
    r = common_of(cpu_node("gnr", "GraniteRapids", ["GraniteRapids"]), cpu_node("srf", "SierraForest", ["SierraForest"]))
    assert r.recommended in ("Skylake-Client-v4", "Denverton-v3") and "Broadwell" not in r.common_models
    amd = common_of(cpu_node("rome", "EPYC-Rome", ["EPYC-Rome"], vendor="AMD"),
                    cpu_node("milan", "EPYC-Milan", ["EPYC-Milan"], vendor="AMD"))
    assert amd.recommended == "EPYC-Rome" and not amd.vendor_groups


def test_mixed_vendors_are_grouped_with_a_node_selector():
    r = common_of(cpu_node("clx", "Cascadelake-Server", CLX), cpu_node("rome", "EPYC-Rome", ["EPYC-Rome"], vendor="AMD"))
    vendors = {g.vendor: g for g in r.vendor_groups}
    assert set(vendors) == {"AMD", "Intel"}
    assert vendors["AMD"].recommended == "EPYC-Rome" and vendors["Intel"].recommended == "Cascadelake-Server-v2"
    assert vendors["AMD"].node_selector == {"cpu-vendor.node.kubevirt.io/AMD": "true"}


def test_exclusions_and_cordon():
    good = cpu_node("a", "Cascadelake-Server", CLX)
    r = common_of(good, cpu_node("b", "Cascadelake-Server", CLX, unschedulable=True),
                  cpu_node("c", "Broadwell", BDW, ready=False),
                  cpu_node("d", "Broadwell", BDW, labels={"kubevirt.io/schedulable": "false"}),
                  cpu_node("w", "Broadwell", BDW, labels={"node-role.harvesterhci.io/witness": "true"}),
                  node("arm", {"kubernetes.io/arch": "arm64"}))
    assert r.nodes == ("a", "b") and r.cordoned == ("b",)
    reasons = dict(r.excluded)
    assert set(reasons) == {"c", "d", "w", "arm"}
    assert "not Ready" in reasons["c"] and "schedulable" in reasons["d"] and "witness" in reasons["w"]


def test_obsolete_list_from_the_cr_replaces_the_default():
    labels = {"cpu-model.node.kubevirt.io/Opteron_G2": "true"}
    n1 = cpu_node("a", "Penryn", ["Penryn"], labels=labels)
    n2 = cpu_node("b", "Penryn", ["Penryn"], labels=labels)
    assert "Opteron_G2" not in common_of(n1, n2).common_models
    r = common_of(n1, n2, kv=kubevirt(obsolete={"Penryn": True}))
    assert "Opteron_G2" in r.common_models and "Penryn" not in r.common_models


def test_unknown_models_listed_never_crash():
    extra = {"cpu-model.node.kubevirt.io/FutureLake": "true"}
    r = common_of(cpu_node("a", "Broadwell", BDW, labels=extra), cpu_node("b", "Broadwell", BDW, labels=extra))
    assert "FutureLake" in r.unranked and r.common_models[-1] == "FutureLake" and r.recommended == "Broadwell-IBRS"
    only = common_of(node("x", {"kubevirt.io/schedulable": "true", **extra}))
    assert only.recommended == "FutureLake"


def test_cluster_default_support():
    r = common_of(cpu_node("a", "Cascadelake-Server", CLX), cpu_node("b", "Broadwell", BDW),
                  kv=kubevirt(cpu_model="Cascadelake-Server"))
    assert r.cluster_default.supported_by_all is False and r.cluster_default.missing_on == ("b",)


def test_no_nodes_no_recommendation():
    r = common_of()
    assert r.recommended is None and r.common_models == ()


@pytest.mark.parametrize("op,values,labels,expected", [
    ("In", ("a", "b"), {"k": "a"}, True), ("In", ("a",), {}, False), ("NotIn", ("a",), {}, True),
    ("NotIn", ("a",), {"k": "a"}, False), ("Exists", (), {"k": ""}, True), ("DoesNotExist", (), {"k": "x"}, False),
    ("Gt", ("5",), {"k": "7"}, True), ("Lt", ("5",), {"k": "7"}, False), ("Gt", ("5",), {"k": "x"}, False),
    ("Bogus", (), {"k": "a"}, False)])
def test_requirement_operators(op, values, labels, expected):
    n = objects.Node("n1", labels)
    assert requirement_matches(Requirement("k", op, values), n) is expected


def test_terms_are_ored_and_match_fields():
    n = objects.Node("n1", {"zone": "a"})
    t1 = SelectorTerm((Requirement("zone", "In", ("b",)),))
    t2 = SelectorTerm((Requirement("metadata.name", "In", ("n1",), is_field=True),))
    assert failing_requirements((t1, t2), n) == []
    assert [r.key for r in failing_requirements((t1,), n)] == ["zone"]
    assert [r.operator for r in failing_requirements((SelectorTerm(()),), n)] == ["EmptyTerm"]


def test_empty_term_never_matches():
    from cpumodel.core.selectors import term_matches

    assert term_matches(SelectorTerm(()), objects.Node("n", {})) is False


def test_tolerations():
    taints = [Taint("a", "1", "NoSchedule"), Taint("b", "", "NoExecute"), Taint("c", "", "PreferNoSchedule")]
    assert [t.key for t in untolerated_taints(taints, [])] == ["a", "b"]
    assert untolerated_taints(taints, [Toleration(operator="Exists")]) == []
    assert [t.key for t in untolerated_taints(taints, [Toleration("a", "Equal", "1", "NoSchedule")])] == ["b"]
    assert [t.key for t in untolerated_taints(taints, [Toleration("a", "Equal", "2")])] == ["a", "b"]


def test_parse_duration():
    from cpumodel.sources.kubeclient import parse_duration

    assert parse_duration("0") is None and parse_duration("30") == 30
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_core_imports_no_io_layers():
    """core depends only on model: no sources, commands, output, clients."""
    import ast

    core = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cpumodel", "core")
    for f in os.listdir(core):
        if f.endswith(".py"):
            tree = ast.parse(open(os.path.join(core, f), encoding="utf-8").read())
            for stmt in ast.walk(tree):
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    mod = getattr(stmt, "module", None) or stmt.names[0].name
                    assert not mod.startswith(("cpumodel.sources", "cpumodel.commands", "cpumodel.output",
                                               "kubernetes", "yaml")), (f, mod)


def test_pod_queries_batch_one_key_selectors():
    from cpumodel.core.pod_affinity import VALUES_PER_QUERY, pod_queries
    from cpumodel.objects import PodAffinityTerm

    terms = [(PodAffinityTerm(True, "app=vm-%03d" % i, "kubernetes.io/hostname"), "default") for i in range(150)]
    terms.append((PodAffinityTerm(True, "tier in (a,b)", "zone"), "default"))
    terms.append((PodAffinityTerm(False, "app=db,tier!=x", "zone", any_namespace=True), "default"))
    queries = pod_queries(terms)
    assert ("default", "tier in (a,b)") in queries and (None, "app=db,tier!=x") in queries
    app = [q for ns, q in queries if q.startswith("app in (")]
    assert len(app) == 2 and sum(q.count(",") + 1 for q in app) == 150 and VALUES_PER_QUERY == 100
