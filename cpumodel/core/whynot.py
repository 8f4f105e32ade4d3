"""Why a VM cannot live-migrate (or start) on a node: ordered checks, each a Reason.

The checks mirror the scheduler plugins and KubeVirt preconditions that reject a
migration target (spec/kubevirt-scheduling.md §3.4, §4.3, §4.4): LiveMigratable,
the source node (pod anti-affinity), nodeSelector key by key, required node
affinity, cordon, taints, readiness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from cpumodel.core import labels as L
from cpumodel.core.catalog import Catalog
from cpumodel.core.selectors import describe_requirement, failing_requirements, untolerated_taints
from cpumodel.core.target import TargetSpec, requirement_origin
from cpumodel.model import Node, VirtualMachineInstance

CATEGORY_ORDER = ("not-running", "not-migratable", "source-node", "cpu-model", "cpu-model-migration",
                  "cpu-feature", "cpu-vendor", "machine-type", "tsc-frequency", "schedulable", "node-selector",
                  "node-affinity", "cordoned", "taint", "not-ready")
CPU_CATEGORIES = {"cpu-model", "cpu-model-migration", "cpu-feature", "node-affinity"}
KEY_CATEGORIES = ((L.CPU_MODEL, "cpu-model"), (L.CPU_MODEL_MIGRATION, "cpu-model-migration"),
                  (L.CPU_FEATURE, "cpu-feature"), (L.CPU_VENDOR, "cpu-vendor"), (L.MACHINE_TYPE, "machine-type"),
                  (L.TSC_SCHEDULING, "tsc-frequency"))


@dataclass(frozen=True)
class Reason:
    category: str
    key: Optional[str]
    message: str


@dataclass(frozen=True)
class Situation:
    """Everything the checks need about the VM, independent of the target node."""

    vm_name: str
    running: bool
    source_node: Optional[str]
    vmi: Optional[VirtualMachineInstance]
    spec: TargetSpec


def selector_category(key: str) -> str:
    if key == L.SCHEDULABLE:
        return "schedulable"
    return next((cat for prefix, cat in KEY_CATEGORIES if key.startswith(prefix)), "node-selector")


def _lack_message(key: str, value: str, node: Node, origin: str) -> str:
    have = node.labels.get(key)
    state = "lacks %s=%s" % (key, value) if have is None else "has %s=%s, not %s" % (key, have, value)
    return "%s %s; required because %s" % (node.name, state, origin)


def check_running(s: Situation, node: Node) -> List[Reason]:
    if s.running:
        return []
    return [Reason("not-running", None, "%s is not running, so there is nothing to migrate; the other reasons "
                                         "say why it could not start on %s" % (s.vm_name, node.name))]


def check_live_migratable(s: Situation, node: Node) -> List[Reason]:
    cond = s.vmi.condition("LiveMigratable") if s.vmi and s.running else None
    if cond is None or cond.status != "False":
        return []
    return [Reason("not-migratable", None, "KubeVirt marks %s as not live-migratable (%s: %s); no node can take it"
                   % (s.vm_name, cond.reason or "LiveMigratable=False", cond.message or "no message"))]


def check_source_node(s: Situation, node: Node) -> List[Reason]:
    if not s.running or node.name != s.source_node:
        return []
    return [Reason("source-node", None, "%s already runs on %s (the migration target pod's anti-affinity keeps it "
                                        "off the source node)" % (s.vm_name, node.name))]


def check_target_pod(s: Situation, node: Node) -> List[Reason]:
    if not s.spec.blocked:
        return []
    return [Reason("cpu-model-migration", None, s.spec.blocked)]


def check_node_selector(s: Situation, node: Node) -> List[Reason]:
    reasons = []
    for key in sorted(s.spec.node_selector):
        want = s.spec.node_selector[key]
        if node.labels.get(key) != want.value:
            reasons.append(Reason(selector_category(key), key, _lack_message(key, want.value, node, want.origin)))
    return reasons


def check_node_affinity(s: Situation, node: Node) -> List[Reason]:
    return [Reason("node-affinity", req.key or None, "%s fails required node affinity %s; required because %s"
                   % (node.name, describe_requirement(req), requirement_origin(s.spec, req)))
            for req in failing_requirements(s.spec.terms, node)]


def check_cordon(s: Situation, node: Node) -> List[Reason]:
    if not node.unschedulable:
        return []
    return [Reason("cordoned", None, "%s is cordoned (spec.unschedulable); uncordon it with `kubectl uncordon %s`"
                   % (node.name, node.name))]


def check_taints(s: Situation, node: Node) -> List[Reason]:
    return [Reason("taint", t.key, "%s has taint %s%s:%s, which the virt-launcher pod does not tolerate"
                   % (node.name, t.key, "=" + t.value if t.value else "", t.effect))
            for t in untolerated_taints(node.taints, s.spec.tolerations)]


def check_ready(s: Situation, node: Node) -> List[Reason]:
    if node.ready is not False:
        return []
    return [Reason("not-ready", None, "%s is not Ready" % node.name)]


CHECKS: Tuple[Callable[[Situation, Node], List[Reason]], ...] = (
    check_running, check_live_migratable, check_source_node, check_target_pod, check_node_selector,
    check_node_affinity, check_cordon, check_taints, check_ready)


def evaluate(s: Situation, node: Node) -> List[Reason]:
    """Every reason node cannot take the VM, sorted by category then key."""
    reasons = [r for check in CHECKS for r in check(s, node)]
    return sorted(reasons, key=lambda r: (CATEGORY_ORDER.index(r.category), r.key or ""))


def is_migratable(s: Situation, reasons: Sequence[Reason]) -> bool:
    return s.running and not reasons


def suggest_model(catalog: Catalog, nodes: Sequence[Optional[Node]], common: Sequence[str],
                  obsolete: frozenset) -> Optional[str]:
    """A named model all the given nodes label usable, preferring the cluster-wide common answer (best first)."""
    usable: Optional[set] = None
    for node in nodes:
        if node is not None:
            models = L.node_cpu(node.labels).models
            usable = set(models) if usable is None else usable & models
    usable = (usable or set()) - obsolete
    for model in common:
        if model in usable:
            return model
    ranked = catalog.rank(usable)
    known = [m for m in ranked if catalog.knows(m)]
    return (known or ranked or [None])[0]


def needs_cpu_fix(reasons: Sequence[Reason]) -> bool:
    return any(r.category in CPU_CATEGORIES and (r.category != "node-affinity" or (r.key or "").startswith(
        (L.CPU_FEATURE, L.OBSOLETE_HOST_MODEL))) for r in reasons)


def libvirt_warnings(catalog: Catalog, s: Situation, source: Optional[Node], target: Node) -> List[str]:
    """What the scheduler lets through but libvirt on the target would likely refuse.

    Scheduling checks only the selector keys (§3.2); with KubeVirt >= 1.8 every node
    carries `cpu-model-migration.*` for every known model, so a host-model VM can be
    placed on a CPU that lacks base features of its host model, and the migration then
    fails in libvirt with "guest CPU doesn't match specification: missing features".
    host-passthrough needs an identical CPU (spec §3.3).
    """
    if not s.running or s.vmi is None:
        return []
    target_cpu = L.node_cpu(target.labels)
    if not target_cpu.features:
        return []
    if s.vmi.cpu_model == "host-passthrough":
        source_cpu = L.node_cpu(source.labels) if source is not None else None
        if source_cpu is None or source_cpu.features == target_cpu.features:
            return []
        return ["host-passthrough: libvirt needs the same CPU on both nodes; %s offers different CPU features "
                "than %s (%s)" % (target.name, source.name, _difference(source_cpu.features, target_cpu.features))]
    models = [k[len(L.CPU_MODEL_MIGRATION):] for k in s.spec.node_selector if k.startswith(L.CPU_MODEL_MIGRATION)]
    if s.vmi.cpu_model != "host-model" or not models or not catalog.knows(models[0]):
        return []
    missing = sorted(catalog.features(models[0]) - target_cpu.features
                     - {k[len(L.CPU_FEATURE):] for k in s.spec.node_selector if k.startswith(L.CPU_FEATURE)})
    if not missing:
        return []
    return ["the scheduler would allow it, but %s's CPU lacks %s of host model %s; libvirt would likely fail the "
            "migration with \"missing features\"" % (target.name, ", ".join(missing), models[0])]


def _difference(a: frozenset, b: frozenset) -> str:
    only_a, only_b = sorted(a - b), sorted(b - a)
    parts = ["missing " + ", ".join(only_a[:6]) + (" …" if len(only_a) > 6 else "")] if only_a else []
    parts += ["extra " + ", ".join(only_b[:6]) + (" …" if len(only_b) > 6 else "")] if only_b else []
    return "; ".join(parts)
