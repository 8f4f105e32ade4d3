"""KubeVirt's node-label vocabulary (docs/kubevirt-rules.md §1) as a typed view.

A node's labels are read once into a NodeCpu; analyses never rescan raw labels.
Only labels with the value "true" count for the boolean families, because the
launcher pod's nodeSelector asks for exactly `"true"`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

CPU_MODEL = "cpu-model.node.kubevirt.io/"
CPU_MODEL_MIGRATION = "cpu-model-migration.node.kubevirt.io/"
CPU_FEATURE = "cpu-feature.node.kubevirt.io/"
HOST_MODEL_CPU = "host-model-cpu.node.kubevirt.io/"
HOST_MODEL_REQUIRED = "host-model-required-features.node.kubevirt.io/"
CPU_VENDOR = "cpu-vendor.node.kubevirt.io/"
CPU_TIMER = "cpu-timer.node.kubevirt.io/"
TSC_FREQUENCY = CPU_TIMER + "tsc-frequency"
TSC_SCALABLE = CPU_TIMER + "tsc-scalable"
TSC_SCHEDULING = "scheduling.node.kubevirt.io/tsc-frequency-"
MACHINE_TYPE = "machine-type.node.kubevirt.io/"
HYPERV = "hyperv.node.kubevirt.io/"
OBSOLETE_HOST_MODEL = "node-labeller.kubevirt.io/obsolete-host-model"
SCHEDULABLE = "kubevirt.io/schedulable"
WITNESS = "node-role.harvesterhci.io/witness"
HOSTNAME = "kubernetes.io/hostname"
ARCH = "kubernetes.io/arch"

# Single-key labels written by KubeVirt that matter for scheduling (kubevirt-rules §1.1).
OTHER_KUBEVIRT_KEYS = (
    SCHEDULABLE, "kubevirt.io/cpumanager", "cpumanager", "kubevirt.io/realtime", "kubevirt.io/sev",
    "kubevirt.io/sev-es", "kubevirt.io/sev-snp", "kubevirt.io/s390-pv", "kubevirt.io/tdx",
    "kubevirt.io/ksm-enabled", OBSOLETE_HOST_MODEL,
)

# Label groups for `diff`, in display order: (group name, predicate on key).
GROUPS: Tuple[Tuple[str, str], ...] = (
    ("models", CPU_MODEL),
    ("migration models", CPU_MODEL_MIGRATION),
    ("features", CPU_FEATURE),
    ("host model", HOST_MODEL_CPU),
    ("host model required features", HOST_MODEL_REQUIRED),
    ("vendor", CPU_VENDOR),
    ("tsc", CPU_TIMER),
    ("tsc", TSC_SCHEDULING),
    ("machine types", MACHINE_TYPE),
    ("hyper-v", HYPERV),
)
GROUP_ORDER = ("models", "migration models", "features", "host model", "host model required features",
               "vendor", "tsc", "machine types", "hyper-v", "other")


def label_group(key: str) -> Optional[str]:
    """The diff group of a KubeVirt CPU/scheduling label key, or None for unrelated labels."""
    for name, prefix in GROUPS:
        if key.startswith(prefix):
            return name
    if key in OTHER_KUBEVIRT_KEYS or key.startswith("kubevirt.io/vm-arch-"):
        return "other"
    return None


def is_kubevirt_label(key: str) -> bool:
    return label_group(key) is not None


# Prefix families whose `<prefix><suffix>: "true"` labels become sets, in one pass over the labels.
_FAMILIES = (CPU_MODEL, CPU_MODEL_MIGRATION, CPU_FEATURE, HOST_MODEL_CPU, HOST_MODEL_REQUIRED, CPU_VENDOR,
             MACHINE_TYPE, HYPERV)


_FAMILY_BY_DOMAIN = {prefix[:-1]: prefix for prefix in _FAMILIES}  # "cpu-model.node.kubevirt.io" -> its prefix
_TSC_DOMAIN, _, _TSC_NAME = TSC_SCHEDULING.partition("/")
# Label key -> (family prefix, interned suffix), or None for a key outside the families: nodes share most keys,
# so each is split once per process, not once per node (thousands of nodes x hundreds of labels).
_SPLIT: Dict[str, Optional[Tuple[str, str]]] = {}
_UNSEEN = object()


def _split(key: str) -> Optional[Tuple[str, str]]:
    domain, slash, name = key.partition("/")
    prefix = _FAMILY_BY_DOMAIN.get(domain) if slash else None
    if prefix is not None:
        found: Optional[Tuple[str, str]] = (prefix, sys.intern(name))
    elif domain == _TSC_DOMAIN and name.startswith(_TSC_NAME):
        found = (TSC_SCHEDULING, name[len(_TSC_NAME):])
    else:
        found = None
    _SPLIT[key] = found
    return found


def _families(labels: Mapping[str, str]) -> Dict[str, set]:
    """One pass over the labels (nodes carry hundreds): suffix sets per prefix family."""
    found: Dict[str, set] = {prefix: set() for prefix in _FAMILIES}
    found[TSC_SCHEDULING] = set()
    get = _SPLIT.get
    for key, value in labels.items():
        if value != "true":
            continue
        split = get(key, _UNSEEN)
        if split is _UNSEEN:
            split = _split(key)
        if split is not None:
            found[split[0]].add(split[1])
    return found


# What makes two nodes the same CPU class: everything node_cpu reads except the measured timer.
_CLASS_FAMILIES = frozenset(_FAMILIES)
_CLASS_KEYS = frozenset({SCHEDULABLE, OBSOLETE_HOST_MODEL, WITNESS})


def cpu_class(labels: Mapping[str, str]) -> Tuple[frozenset, frozenset]:
    """(the labels that decide a node's CPU class, its own TSC scheduling frequencies), in one pass.

    Real nodes of one hardware class still differ in their measured TSC frequency, hostname,
    zone and feature-discovery labels; only the CPU-class labels go into the key.
    """
    own, tsc = [], []
    for key, value in labels.items():
        slash = key.find("/")
        if key[:slash + 1] in _CLASS_FAMILIES or key in _CLASS_KEYS:
            own.append((key, value))
        elif value == "true" and key.startswith(TSC_SCHEDULING):
            tsc.append(key[len(TSC_SCHEDULING):])
    return frozenset(own), frozenset(tsc)


def int_or_none(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class NodeCpu:
    """What one node's labels say about the CPUs it can give to VMs."""

    models: frozenset
    migration_models: frozenset
    features: frozenset
    host_model: Optional[str]
    host_model_required: frozenset
    vendor: Optional[str]
    tsc_frequency: Optional[int]
    tsc_scalable: Optional[bool]
    tsc_scheduling: frozenset
    machine_types: frozenset
    hyperv: frozenset
    schedulable: Optional[bool]
    obsolete_host_model: bool
    witness: bool

    @property
    def has_cpu_labels(self) -> bool:
        """KubeVirt's labeller ran here (arm64 and non-KubeVirt nodes carry none)."""
        return bool(self.models or self.migration_models or self.features or self.host_model)


def node_cpu(labels: Mapping[str, str]) -> NodeCpu:
    f = _families(labels)
    host_models = sorted(f[HOST_MODEL_CPU])
    vendors = sorted(f[CPU_VENDOR])
    scalable = labels.get(TSC_SCALABLE)
    schedulable = labels.get(SCHEDULABLE)
    return NodeCpu(
        models=frozenset(f[CPU_MODEL]),
        migration_models=frozenset(f[CPU_MODEL_MIGRATION]),
        features=frozenset(f[CPU_FEATURE]),
        host_model=host_models[0] if host_models else None,
        host_model_required=frozenset(f[HOST_MODEL_REQUIRED]),
        vendor=vendors[0] if vendors else None,
        tsc_frequency=int_or_none(labels.get(TSC_FREQUENCY)),
        tsc_scalable=None if scalable is None else scalable == "true",
        tsc_scheduling=frozenset(f[TSC_SCHEDULING]),
        machine_types=frozenset(f[MACHINE_TYPE]),
        hyperv=frozenset(f[HYPERV]),
        schedulable=None if schedulable is None else schedulable == "true",
        obsolete_host_model=labels.get(OBSOLETE_HOST_MODEL) == "true",
        witness=WITNESS in labels,
    )


def cpu_labels(cpu: NodeCpu) -> Dict[str, str]:
    """The node labels KubeVirt writes for this CPU view: the inverse of node_cpu (kubevirt-rules §1.1).

    Builders of test clusters, benchmarks and the demo use it, so their labels follow this
    one vocabulary.
    """
    labels: Dict[str, str] = {}
    for prefix, names in ((CPU_MODEL, cpu.models), (CPU_MODEL_MIGRATION, cpu.migration_models),
                          (CPU_FEATURE, cpu.features), (HOST_MODEL_REQUIRED, cpu.host_model_required),
                          (MACHINE_TYPE, cpu.machine_types), (HYPERV, cpu.hyperv), (TSC_SCHEDULING, cpu.tsc_scheduling)):
        labels.update({prefix + name: "true" for name in names})
    if cpu.host_model:
        labels[HOST_MODEL_CPU + cpu.host_model] = "true"
    if cpu.vendor:
        labels[CPU_VENDOR + cpu.vendor] = "true"
    if cpu.tsc_frequency is not None:
        labels[TSC_FREQUENCY] = str(cpu.tsc_frequency)
    if cpu.tsc_scalable is not None:
        labels[TSC_SCALABLE] = "true" if cpu.tsc_scalable else "false"
    if cpu.schedulable is not None:
        labels[SCHEDULABLE] = "true" if cpu.schedulable else "false"
    if cpu.obsolete_host_model:
        labels[OBSOLETE_HOST_MODEL] = "true"
    if cpu.witness:
        labels[WITNESS] = "true"
    return labels


def kubevirt_labels(labels: Mapping[str, str]) -> Dict[str, str]:
    """Only the KubeVirt CPU/scheduling labels of a node (what diff compares)."""
    return {k: v for k, v in labels.items() if is_kubevirt_label(k)}


def group_keys(keys: Iterable[str]) -> List[Tuple[str, List[str]]]:
    """Keys grouped by diff group, groups in display order, keys sorted."""
    grouped: Dict[str, List[str]] = {}
    for key in keys:
        grouped.setdefault(label_group(key) or "other", []).append(key)
    return [(g, sorted(grouped[g])) for g in GROUP_ORDER if g in grouped]
