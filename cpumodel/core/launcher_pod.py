"""Predict the scheduling constraints of a VM's next virt-launcher pod, each with its origin.

Implements docs/kubevirt-rules.md §2 (rendering: nodeselectorrenderer.go, template.go,
the CPU-model defaulting of defaults.go) and §3.1-§3.2 (createTargetPod and the
host-model rule of prepareNodeSelectorForHostCpuModel), with the version gates of §5.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

from cpumodel.core import labels as L
from cpumodel.core.selectors import add_does_not_exist
from cpumodel.objects import (HOST_MODEL, HOST_PASSTHROUGH, CpuFeature, CpuProfile, KubeVirtConfig, Node, Pod, Requirement, SelectorTerm, Toleration,
                              VirtualMachine, VirtualMachineInstance, is_named_model)

Version = Tuple[int, int, int]
NEWEST_RULES: Version = (99, 0, 0)
DEFAULT_MACHINE_TYPE = "q35"  # what the webhook fills in on amd64 when the VM names none
# Launch security (nodeselectorrenderer.go, template.go newNodeSelectorRenderer; pkg/util amd64.go, s390x.go):
# the node label each kind of guest selects, and the release whose launcher pod first carries it
# (kubevirt-rules §5). IsSEVVMI is true for SEV and SEV-SNP alike, so an SNP guest selects both.
LAUNCH_SECURITY_SELECTORS = (
    ("sev", "kubevirt.io/sev", (0, 0, 0), "SEV"),
    ("snp", "kubevirt.io/sev", (1, 7, 0), "SEV-SNP (which KubeVirt counts as SEV too)"),
    ("sev-es", "kubevirt.io/sev-es", (1, 5, 0), "SEV-ES"),
    ("snp", "kubevirt.io/sev-snp", (1, 7, 0), "SEV-SNP"),
    ("s390-pv", "kubevirt.io/s390-pv", (1, 6, 0), "s390x Secure Execution"),
    ("tdx", "kubevirt.io/tdx", (1, 7, 0), "TDX"),
)
CROSS_ARCH_GATE = "CrossArchitectureVirtualization"  # alpha in v1.9.0 (virt-config/featuregate/active.go)
CROSS_ARCH_SINCE: Tuple[int, int, int] = (1, 9, 0)
VM_ARCH_LABEL = "kubevirt.io/vm-arch-"  # v1.VMArchLabel
HYPERV_STRICT_CHECK = "HypervStrictCheck"
# Enlightenments that need a node label under HypervStrictCheck (makeHVFeatureLabelTable): VMI feature -> label.
HYPERV_NODE_LABELS = {"vpindex": "vpindex", "runtime": "runtime", "reset": "reset", "synic": "synic",
                      "synictimer": "synictimer", "frequencies": "frequencies", "reenlightenment": "reenlightenment",
                      "tlbflush": "tlbflush", "ipi": "ipi"}
ARM64 = "arm64"

ORIGIN_SCHEDULABLE = "KubeVirt puts it on every virt-launcher pod"
ORIGIN_INHERITED = ("inherited from an earlier migration: the VM's current virt-launcher pod carries it "
                    "and KubeVirt copies it to every migration target; a VM restart clears it")
ORIGIN_AFFINITY = "the pod's required node affinity"


@dataclass(frozen=True)
class Constraint:
    """One nodeSelector entry of the predicted pod."""

    key: str
    value: str
    origin: str


@dataclass(frozen=True)
class Demand:
    """What a node must offer: the part of a pod's constraints that decides acceptance.

    Hashable, so that VMs with the same demand are evaluated once per class of nodes.
    """

    node_selector: Tuple[Tuple[str, str], ...]  # sorted (key, value)
    terms: Tuple[SelectorTerm, ...]
    tolerations: Tuple[Toleration, ...]

    @property
    def label_keys(self) -> Tuple[str, ...]:
        keys = [k for k, _ in self.node_selector]
        keys += [r.key for t in self.terms for r in t.requirements if not r.is_field]
        return tuple(dict.fromkeys(keys))

    @property
    def uses_node_name(self) -> bool:
        return any(r.is_field for t in self.terms for r in t.requirements)


@dataclass(frozen=True)
class PodConstraints:
    """The predicted pod's nodeSelector and required node affinity, with where each came from."""

    node_selector: Tuple[Constraint, ...]  # sorted by key
    terms: Tuple[SelectorTerm, ...]
    affinity_origins: Tuple[Tuple[str, str], ...]
    tolerations: Tuple[Toleration, ...]
    notes: Tuple[str, ...]
    blocked: Optional[str] = None  # KubeVirt cannot even create the pod

    @cached_property
    def demand(self) -> Demand:
        return Demand(tuple((c.key, c.value) for c in self.node_selector), self.terms, self.tolerations)

    def requirement_origin(self, req: Requirement) -> str:
        return dict(self.affinity_origins).get(req.key, ORIGIN_AFFINITY)

    def selector_keys(self, prefix: str) -> List[str]:
        return [c.key[len(prefix):] for c in self.node_selector if c.key.startswith(prefix)]


@dataclass
class _Builder:
    """Mutable while the rules apply, frozen into PodConstraints at the end."""

    node_selector: Dict[str, Constraint] = field(default_factory=dict)
    terms: Tuple[SelectorTerm, ...] = ()
    affinity_origins: Dict[str, str] = field(default_factory=dict)
    tolerations: Tuple[Toleration, ...] = ()
    notes: List[str] = field(default_factory=list)
    blocked: Optional[str] = None

    def require(self, key: str, value: str, origin: str) -> None:
        self.node_selector[key] = Constraint(key, value, origin)

    def forbid(self, key: str, origin: str) -> None:
        self.terms = add_does_not_exist(self.terms, key)
        self.affinity_origins[key] = origin

    def freeze(self) -> PodConstraints:
        return PodConstraints(tuple(self.node_selector[k] for k in sorted(self.node_selector)), self.terms,
                              tuple(sorted(self.affinity_origins.items())), self.tolerations, tuple(self.notes),
                              self.blocked)


def has_vendor_rule(version: Version) -> bool:
    """The migration cpu-vendor selector: ≥1.8.0, 1.7.x with x≥1, 1.6.x with x≥4 (kubevirt-rules §5)."""
    major_minor = version[:2]
    return version >= (1, 8, 0) or (major_minor == (1, 7) and version[2] >= 1) or (major_minor == (1, 6) and version[2] >= 4)


def launch_security_selectors(kinds: Sequence[str], version: Version) -> List[Tuple[str, str]]:
    """(node label, why) for the launch security a VMI asks for, as the cluster's release renders them."""
    found: Dict[str, str] = {}
    for kind, label, since, name in LAUNCH_SECURITY_SELECTORS:
        if kind in kinds and version >= since:
            found.setdefault(label, "the VM uses %s launch security" % name)
    return list(found.items())


def cross_architecture(kubevirt: Optional[KubeVirtConfig], version: Version) -> bool:
    """The CrossArchitectureVirtualization feature gate, in a release that knows it."""
    return kubevirt is not None and CROSS_ARCH_GATE in kubevirt.feature_gates and version >= CROSS_ARCH_SINCE


def has_machine_type_rule(version: Version) -> bool:
    """The machine-type selector first shipped in v1.5.1 (kubevirt PR #13690)."""
    return version >= (1, 5, 1)


def vendor_rule_in_effect(kubevirt: Optional[KubeVirtConfig], version: Version) -> bool:
    """The vendor rule as a target pod showed it (observe_vendor_rule), else as the version has it."""
    if kubevirt is not None and kubevirt.vendor_rule is not None:
        return kubevirt.vendor_rule
    return has_vendor_rule(version)


def machine_type_rule_in_effect(kubevirt: Optional[KubeVirtConfig], version: Version) -> bool:
    """The machine-type selector as upgrade-check sets it, else as the version has it."""
    if kubevirt is not None and kubevirt.machine_type_rule is not None:
        return kubevirt.machine_type_rule
    return has_machine_type_rule(version)


MIGRATION_JOB_LABEL = "kubevirt.io/migrationJobUID"  # on every pod KubeVirt created as a migration target


def observe_vendor_rule(kubevirt: Optional[KubeVirtConfig], pods: Sequence[Pod], nodes: Sequence[Node]
                        ) -> Tuple[Optional[KubeVirtConfig], Optional[str]]:
    """Whether this cluster's KubeVirt adds the source vendor to migration targets, as its newest target pod
    shows (kubevirt-rules §5): the rule came and went between patch releases and builds, so a pod KubeVirt
    rendered outranks the version number. A pod without the key proves nothing unless every node carries a
    vendor label (the source did too). Returns the configuration to use and a note when the two disagree."""
    targets = [p for p in pods if MIGRATION_JOB_LABEL in p.labels]
    if kubevirt is None or not targets:
        return kubevirt, None
    newest = max(targets, key=lambda p: (p.created, p.name))
    seen: Optional[bool] = any(k.startswith(L.CPU_VENDOR) for k in newest.node_selector)
    labelled = [n for n in nodes if any(k.startswith(L.CPU_MODEL) for k in n.labels)]
    if not seen and not (labelled and all(any(k.startswith(L.CPU_VENDOR) for k in n.labels) for n in labelled)):
        seen = None
    if seen is None:
        return kubevirt, None
    expected = has_vendor_rule(kubevirt.release) if kubevirt.release else None
    note = None
    if expected is not None and expected != seen:
        note = ("KubeVirt %s %s the source node's cpu-vendor selector to migration targets by its version, but the "
                "newest target pod %s/%s carries %s: following the pod" % (
                    kubevirt.version, "adds" if expected else "does not add", newest.namespace, newest.name,
                    "one" if seen else "none"))
    return replace(kubevirt, vendor_rule=seen), note


def model_origin(vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig], model: Optional[str]) -> str:
    """Where a VMI's CPU model came from: VM spec > KubeVirt cpuModel > host-model (kubevirt-rules §2.2)."""
    if vm is not None and vm.cpu_model:
        return "the VM spec sets cpu.model %s (spec.template.spec.domain.cpu.model)" % vm.cpu_model
    if kubevirt is not None and kubevirt.cpu_model and kubevirt.cpu_model == model:
        return "the cluster default model %s (%s)" % (model, kubevirt.model_field.described())
    if model in (None, HOST_MODEL):
        return "the VM uses host-model (no model in the VM spec or the cluster default)"
    return "the VMI's cpu.model %s" % model


def _selector_origin(key: str) -> str:
    if key == L.HOSTNAME:
        return ("a leftover kubernetes.io/hostname pin in the VM's nodeSelector (older Harvester Migrate actions "
                "wrote it; remove it from spec.template.spec.nodeSelector)")
    return "the VM spec's nodeSelector (spec.template.spec.nodeSelector)"


def _render(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig],
            version: Version) -> _Builder:
    """The launcher pod's constraints rendered from the VMI (kubevirt-rules §2.1, §2.3)."""
    pod = _Builder(tolerations=vmi.tolerations)
    pod.require(L.SCHEDULABLE, "true", ORIGIN_SCHEDULABLE)
    if vmi.architecture:
        pod.require(L.ARCH, vmi.architecture.lower(), "the VM's architecture (spec.architecture)")
    for key, value in (kubevirt.node_selectors if kubevirt else {}).items():
        pod.require(key, value, "the cluster-wide nodeSelectors (KubeVirt developerConfiguration.nodeSelectors)")
    for key, value in vmi.node_selector.items():
        pod.require(key, value, _selector_origin(key))
    if vmi.architecture and cross_architecture(kubevirt, version):
        # WithoutNativeArchSelector drops kubernetes.io/arch whoever set it; template.go then selects the nodes
        # whose virt-handler can run this architecture (kubevirt-rules §2.1).
        pod.node_selector.pop(L.ARCH, None)
        pod.require(VM_ARCH_LABEL + vmi.architecture, "true", "the VM's architecture %s, run by any node that can "
                    "emulate it (feature gate %s)" % (vmi.architecture, CROSS_ARCH_GATE))
    if vmi.dedicated_cpu:
        key = "kubevirt.io/cpumanager" if version >= (1, 8, 0) else "cpumanager"
        pod.require(key, "true", "the VM asks for dedicated CPUs (dedicatedCpuPlacement)")
    model = vmi.cpu_model
    if is_named_model(model):
        pod.require(L.CPU_MODEL + model, "true", model_origin(vm, kubevirt, model))  # type: ignore[operator]
    if vmi.machine_type and machine_type_rule_in_effect(kubevirt, version):
        pod.require(L.MACHINE_TYPE + vmi.machine_type, "true",
                    "the VM's resolved machine type %s (status.machine.type)" % vmi.machine_type)
    for feature in vmi.cpu_features:
        if feature.policy in ("", "require"):
            pod.require(L.CPU_FEATURE + feature.name, "true",
                        "the VM spec requires CPU feature %s (cpu.features)" % feature.name)
    if vmi.tsc_required and vmi.tsc_frequency:
        pod.require(L.TSC_SCHEDULING + str(vmi.tsc_frequency), "true",
                    "the VM needs a stable TSC frequency of %d Hz (invtsc or Hyper-V reenlightenment; "
                    "status.topologyHints.tscFrequency)" % vmi.tsc_frequency)
    if vmi.realtime:
        pod.require("kubevirt.io/realtime", "true", "the VM asks for realtime CPUs")
    for key, why in launch_security_selectors(vmi.launch_security, version):
        pod.require(key, "true", why)
    if kubevirt is not None and HYPERV_STRICT_CHECK in kubevirt.feature_gates:
        _add_hyperv_rule(pod, vmi)
    pod.terms = vmi.required_terms
    for term in vmi.required_terms:
        for req in term.requirements:
            pod.affinity_origins.setdefault(req.key, "the VM spec's node affinity (spec.template.spec.affinity)")
    if model in (None, HOST_MODEL):
        pod.forbid(L.OBSOLETE_HOST_MODEL, "host-model VMs avoid nodes whose host model is obsolete")
    for feature in vmi.cpu_features:
        if feature.policy == "forbid":
            pod.forbid(L.CPU_FEATURE + feature.name,
                       "the VM spec forbids CPU feature %s (cpu.features policy forbid)" % feature.name)
    return pod


def _add_hyperv_rule(pod: _Builder, vmi: VirtualMachineInstance) -> None:
    """Feature gate HypervStrictCheck (nodeselectorrenderer.go hypervNodeSelectors): each enabled enlightenment
    needs its hyperv.node.kubevirt.io label, and evmcs an Intel CPU, whatever the KubeVirt version."""
    for feature in vmi.hyperv:
        label = HYPERV_NODE_LABELS.get(feature)
        if label:
            pod.require(L.HYPERV + label, "true", "the VM enables the Hyper-V enlightenment %s and KubeVirt's "
                        "HypervStrictCheck feature gate is on" % feature)
    if "evmcs" in vmi.hyperv:
        pod.require(L.CPU_VENDOR + "Intel", "true", "the VM enables Hyper-V evmcs (Intel only) and KubeVirt's "
                    "HypervStrictCheck feature gate is on")


def migrated_before(pod: Optional[Pod]) -> bool:
    """KubeVirt's migratedAtLeastOnce: the pod already carries host-model keys (kubevirt-rules §3.2)."""
    return pod is not None and any(L.CPU_FEATURE in k or L.CPU_MODEL_MIGRATION in k for k in pod.node_selector)


def _add_host_model_rule(pod: _Builder, source_pod: Optional[Pod], source_node: Optional[Node],
                         cpu: Optional[L.NodeCpu]) -> None:
    """prepareNodeSelectorForHostCpuModel (kubevirt-rules §3.2): copy the sticky keys, else read the source node."""
    if migrated_before(source_pod):
        for key, value in source_pod.node_selector.items():  # type: ignore[union-attr]
            if L.CPU_FEATURE in key or L.CPU_MODEL_MIGRATION in key:
                pod.require(key, value, ORIGIN_INHERITED)
        pod.notes.append("host-model constraints are inherited from an earlier migration (sticky); "
                         "a VM restart clears them")
        return
    if source_node is None or cpu is None:
        pod.blocked = "the source node object is gone, so KubeVirt cannot compute host-model constraints"
        return
    if cpu.host_model is None:
        pod.blocked = ('unable to locate host cpu model: node %s has no host-model-cpu.node.kubevirt.io label, '
                       "so KubeVirt cannot create a migration target pod for this host-model VM" % source_node.name)
        return
    pod.require(L.CPU_MODEL_MIGRATION + cpu.host_model, "true",
                "the VM uses host-model and booted on %s, whose host model is %s "
                "(host-model-cpu.node.kubevirt.io/%s)" % (source_node.name, cpu.host_model, cpu.host_model))
    for feature in sorted(cpu.host_model_required):
        pod.require(L.CPU_FEATURE + feature, "true",
                    "the host model of %s requires %s (host-model-required-features.node.kubevirt.io/%s)"
                    % (source_node.name, feature, feature))
    pod.notes.append("first migration of a host-model VM: KubeVirt derives the constraints from %s's labels "
                     "and they stick to the VM until it restarts" % source_node.name)


def _add_vendor_rule(pod: _Builder, source_node: Optional[Node], cpu: Optional[L.NodeCpu]) -> None:
    """createTargetPod (kubevirt-rules §3.1 step 4): keep migrations within the source node's CPU vendor."""
    if any(k.startswith(L.CPU_VENDOR) for k in pod.node_selector) or source_node is None or cpu is None:
        return
    vendor = cpu.vendor
    if vendor:
        pod.require(L.CPU_VENDOR + vendor, "true",
                    "KubeVirt ≥ 1.8 keeps a migration on the source node's CPU vendor (%s on %s)"
                    % (vendor, source_node.name))


def _version(kubevirt: Optional[KubeVirtConfig]) -> Tuple[Version, Optional[str]]:
    parsed = kubevirt.release if kubevirt else None
    if parsed is None:
        return NEWEST_RULES, "KubeVirt version unknown (no status.observedKubeVirtVersion): assuming the newest rules"
    return parsed, None


def migration_target(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig],
                     source_pod: Optional[Pod], source_node: Optional[Node],
                     source_cpu: Optional[L.NodeCpu] = None) -> PodConstraints:
    """What createTargetPod would ask of a migration target, for the cluster's KubeVirt version.

    `source_cpu` is the source node's CPU view when the caller already has it (node_cpu is the
    costly step when thousands of VMs are predicted)."""
    if source_node is not None and source_cpu is None:
        source_cpu = L.node_cpu(source_node.labels)
    version, unknown = _version(kubevirt)
    pod = _render(vmi, vm, kubevirt, version)
    if unknown:
        pod.notes.append(unknown)
    if vmi.cpu_model == HOST_MODEL:
        _add_host_model_rule(pod, source_pod, source_node, source_cpu)
    if vendor_rule_in_effect(kubevirt, version):
        _add_vendor_rule(pod, source_node, source_cpu)
    return pod.freeze()


def start_vmi(vm: VirtualMachine, kubevirt: Optional[KubeVirtConfig],
              profile: Optional[CpuProfile] = None) -> VirtualMachineInstance:
    """The VMI a start would create: the template, what its instancetype and preference add, then the
    webhook's defaulting (kubevirt-rules §2.2)."""
    template = vm.template
    profile = profile or CpuProfile()
    if profile.preferred_features:
        named = {f.name for f in template.cpu_features}
        template = replace(template, cpu_features=template.cpu_features + tuple(
            f for f in profile.preferred_features if f.name not in named))
    template = hyperv_defaults(template)
    model, _ = start_cpu_model(template.cpu_model, profile.model, template.architecture,
                               kubevirt.cpu_model if kubevirt else None)
    default_machine = "virt" if (template.architecture or "").lower() == ARM64 else DEFAULT_MACHINE_TYPE
    return replace(template, cpu_model=model, machine_type=template.machine_type or default_machine)


# What each Hyper-V enlightenment needs enabled too (pkg/defaults/hyperv.go getHypervFeatureDependencies, the same
# in pkg/virt-api/webhooks/hyperv.go before v1.5.0): the VMI webhook enables a missing one on the user's behalf.
HYPERV_REQUIRES = {"evmcs": "vapic", "ipi": "vpindex", "tlbflush": "vpindex", "synictimer": "synic",
                   "synic": "vpindex"}


def hyperv_defaults(vmi: VirtualMachineInstance) -> VirtualMachineInstance:
    """What the VMI mutating webhook adds before the pod exists (SetHypervFeatureDependencies): each enabled
    enlightenment's dependencies, and for evmcs the CPU feature vmx with policy require (setEVMCSDependency) —
    so a stopped VM's next pod asks for cpu-feature.node.kubevirt.io/vmx, and under HypervStrictCheck for the
    labels of the added enlightenments. A running VMI already holds them."""
    enabled = set(vmi.hyperv)
    for feature in ("evmcs", "ipi", "tlbflush", "synictimer", "synic"):  # KubeVirt's order: leaves first
        needed = HYPERV_REQUIRES[feature]
        if feature in enabled and needed not in enabled:
            if needed in vmi.hyperv_disabled:
                return vmi  # turned off by the user: the webhook stops here, and validation rejects the VMI
            enabled.add(needed)
    features = vmi.cpu_features
    if "evmcs" in enabled:
        if any(f.name == "vmx" for f in features):
            features = tuple(replace(f, policy="require") if f.name == "vmx" else f for f in features)
        else:
            features = features + (CpuFeature("vmx", "require"),)
    if enabled == set(vmi.hyperv) and features == vmi.cpu_features:
        return vmi
    return replace(vmi, hyperv=tuple(sorted(enabled)), cpu_features=features)


def start_cpu_model(vm_model: Optional[str], instancetype_model: Optional[str], architecture: Optional[str],
                    cluster_default: Optional[str]) -> Tuple[str, str]:
    """The CPU model a VMI gets when it starts, and whose it is (kubevirt-rules §2.2): the VM spec's
    (`vm`), else its instancetype's (`instancetype`), else — on arm64, whose defaulting runs before the
    cluster default (pkg/defaults: setDefaultCPUArch before setDefaultCPUModel) — host-passthrough
    (`kubevirt-default`), else the cluster default (`cluster-default`), else host-model (`kubevirt-default`).
    Every command asks this one function."""
    if vm_model:
        return vm_model, "vm"
    if instancetype_model:
        return instancetype_model, "instancetype"
    if (architecture or "").lower() == ARM64:
        return HOST_PASSTHROUGH, "kubevirt-default"
    if cluster_default:
        return cluster_default, "cluster-default"
    return HOST_MODEL, "kubevirt-default"


def fresh_start(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig],
                note: str) -> PodConstraints:
    """Constraints of a first launcher pod: the template alone, no migration rules."""
    pod = _render(vmi, vm, kubevirt, _version(kubevirt)[0])
    pod.notes.append(note)
    return pod.freeze()
