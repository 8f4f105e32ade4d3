"""The highest common CPU model of a set of nodes, EVC-style (issue: `common`).

Common models are the intersection of the nodes' usable `cpu-model.node.kubevirt.io/*`
labels (QEMU decided usability per host) minus KubeVirt's obsolete models
(docs/kubevirt-rules.md §1.1-§1.2). The recommendation is the best of them
under the catalog's feature-superset order (catalog.py states the law).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.labels import ARCH, CPU_VENDOR
from cpumodel.core.nodes import ARM64, NodeSet, VmNode
from cpumodel.objects import FieldRef, KubeVirtConfig, is_named_model



@dataclass(frozen=True)
class HeldBack:
    model: str
    equivalents: Tuple[str, ...]
    missing_on: Tuple[str, ...]
    extra_features: Tuple[str, ...]  # what the model adds over the recommendation


@dataclass(frozen=True)
class VendorGroup:
    vendor: str
    nodes: Tuple[str, ...]
    recommended: Optional[str]
    node_selector: Dict[str, str]


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one architecture and CPU vendor: VMs pinned to a group can share its best model."""

    arch: str
    vendor: Optional[str]
    nodes: Tuple[str, ...]
    recommended: Optional[str]
    common_models: Tuple[str, ...]
    node_selector: Dict[str, str]
    note: Optional[str] = None


@dataclass(frozen=True)
class ClusterDefault:
    model: Optional[str]  # None: no cpuModel set, VMs without a model use host-model
    location: Optional[str]  # namespace/name of the KubeVirt CR
    supported_by_all: Optional[bool]
    missing_on: Tuple[str, ...]
    owner: Optional[FieldRef] = None  # the field that holds it (the HyperConverged CR's on OpenShift)


@dataclass(frozen=True)
class CommonResult:
    recommended: Optional[str]
    common_models: Tuple[str, ...]
    maximal_models: Tuple[str, ...]
    equivalents: Tuple[str, ...]
    unranked: Tuple[str, ...]
    nodes: Tuple[str, ...]
    cordoned: Tuple[str, ...]
    excluded: Tuple[Tuple[str, str], ...]
    held_back: Tuple[HeldBack, ...]
    vendor_groups: Tuple[VendorGroup, ...]
    cluster_default: ClusterDefault
    obsolete_source: str
    groups: Tuple[NodeGroup, ...] = ()


def hardware_classes(nodes: Sequence[VmNode]) -> Dict[FrozenSet[str], List[str]]:
    """Nodes grouped by identical usable-model sets: thousands of nodes collapse to a few classes."""
    classes: Dict[FrozenSet[str], List[str]] = {}
    for n in nodes:
        classes.setdefault(n.cpu.models, []).append(n.name)
    return classes


def common_models(classes: Dict[FrozenSet[str], List[str]], obsolete: frozenset) -> FrozenSet[str]:
    sets = list(classes)
    if not sets:
        return frozenset()
    return frozenset.intersection(*sets) - obsolete


def pick_recommended(catalog: Catalog, ranked: Sequence[str]) -> Optional[str]:
    known = [m for m in ranked if catalog.knows(m)]
    return known[0] if known else (ranked[0] if ranked else None)


def held_back_models(catalog: Catalog, classes: Dict[FrozenSet[str], List[str]], recommended: Optional[str],
                     obsolete: frozenset) -> Tuple[HeldBack, ...]:
    """Every model strictly better than the recommendation that some node offers, and who lacks it."""
    if recommended is None or not catalog.knows(recommended):
        return ()
    offered = frozenset().union(*classes) - obsolete
    better = [m for m in offered if catalog.strictly_better(m, recommended)]
    result = []
    for cls in catalog.equivalence_classes(better):
        head = cls[0]
        missing = sorted(name for models, names in classes.items() if not set(cls) & models for name in names)
        extra = sorted(catalog.features(head) - catalog.features(recommended))
        result.append(HeldBack(head, tuple(cls[1:]), tuple(missing), tuple(extra)))
    return tuple(sorted(result, key=lambda h: (len(h.missing_on), catalog.sort_key(h.model))))


def vendor_groups(catalog: Catalog, nodes: Sequence[VmNode], obsolete: frozenset) -> Tuple[VendorGroup, ...]:
    by_vendor: Dict[str, List[VmNode]] = {}
    for n in nodes:
        by_vendor.setdefault(n.cpu.vendor or "unknown", []).append(n)
    if len(by_vendor) < 2:
        return ()
    groups = []
    for vendor in sorted(by_vendor):
        members = by_vendor[vendor]
        best = pick_recommended(catalog, catalog.rank(common_models(hardware_classes(members), obsolete)))
        selector = {CPU_VENDOR + vendor: "true"} if vendor != "unknown" else {}
        groups.append(VendorGroup(vendor, tuple(n.name for n in members), best, selector))
    return tuple(groups)


ARM64_NOTE = ("KubeVirt runs arm64 VMs with host-passthrough and writes no CPU labels for arm64 nodes: "
              "keep such VMs on identical hosts, and pin them to the group with its nodeSelector")


def node_groups(catalog: Catalog, node_set: NodeSet, obsolete: frozenset) -> Tuple[NodeGroup, ...]:
    """One group per (architecture, vendor), when the VM-capable nodes differ in either."""
    keyed: Dict[Tuple[str, str], List[VmNode]] = {}
    for n in node_set.capable:
        keyed.setdefault((n.arch or "amd64", n.cpu.vendor or ""), []).append(n)
    for n in node_set.passthrough_only:
        keyed.setdefault((n.arch or ARM64, ""), []).append(n)
    if len(keyed) < 2:
        return ()
    groups = []
    for (arch, vendor), members in sorted(keyed.items()):
        selector = {ARCH: arch}
        if vendor:
            selector[CPU_VENDOR + vendor] = "true"
        names = tuple(n.name for n in members)
        if not any(n.cpu.has_cpu_labels for n in members):
            groups.append(NodeGroup(arch, vendor or None, names, None, (), selector, ARM64_NOTE))
            continue
        ranked = tuple(catalog.rank(common_models(hardware_classes(members), obsolete)))
        groups.append(NodeGroup(arch, vendor or None, names, pick_recommended(catalog, ranked), ranked, selector))
    return tuple(groups)


def cluster_default(kubevirt: Optional[KubeVirtConfig], nodes: Sequence[VmNode]) -> ClusterDefault:
    if kubevirt is None:
        return ClusterDefault(None, None, None, ())
    location = "%s/%s" % (kubevirt.namespace, kubevirt.name)
    model = kubevirt.cpu_model
    if not is_named_model(model):
        return ClusterDefault(model, location, None, (), kubevirt.model_field)
    missing = tuple(n.name for n in nodes if model not in n.cpu.models)
    return ClusterDefault(model, location, not missing, missing, kubevirt.model_field)


def obsolete_source(kubevirt: Optional[KubeVirtConfig]) -> str:
    if kubevirt is None or kubevirt.obsolete_cpu_models is None:
        return "KubeVirt's built-in default list"
    if kubevirt.model_owner is not None:
        return ("KubeVirt CR spec.configuration.obsoleteCPUModels, which HCO fills with its built-in list "
                "plus the HyperConverged CR's own")
    return "KubeVirt CR spec.configuration.obsoleteCPUModels"


def analyse_common(catalog: Catalog, node_set: NodeSet, kubevirt: Optional[KubeVirtConfig]) -> CommonResult:
    nodes = node_set.capable
    obsolete = cluster_obsolete_models(kubevirt)
    classes = hardware_classes(nodes)
    common = common_models(classes, obsolete)
    ranked = catalog.rank(common)
    recommended = pick_recommended(catalog, ranked)
    equivalents = tuple(m for m in ranked if m != recommended and recommended and catalog.knows(m)
                        and catalog.equivalent(m, recommended))
    return CommonResult(
        recommended=recommended,
        common_models=tuple(ranked),
        maximal_models=tuple(catalog.maximal(common)),
        equivalents=equivalents,
        unranked=tuple(m for m in ranked if not catalog.knows(m)),
        nodes=tuple(n.name for n in nodes),
        cordoned=tuple(node_set.cordoned),
        excluded=node_set.excluded,
        held_back=held_back_models(catalog, classes, recommended, obsolete),
        vendor_groups=vendor_groups(catalog, nodes, obsolete),
        cluster_default=cluster_default(kubevirt, nodes),
        obsolete_source=obsolete_source(kubevirt),
        groups=node_groups(catalog, node_set, obsolete),
    )
