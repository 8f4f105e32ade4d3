"""Predict the scheduling constraints of a VM's next virt-launcher pod.

Implements spec/kubevirt-scheduling.md §2 (template rendering, nodeselectorrenderer.go
and template.go) and §3.1-§3.2 (createTargetPod and the host-model rule of
prepareNodeSelectorForHostCpuModel). Every constraint carries its origin, so a
reason can say where it came from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from cpumodel.core import labels as L
from cpumodel.core.selectors import add_does_not_exist
from cpumodel.model import (KubeVirtConfig, Node, Pod, Requirement, SelectorTerm, Toleration,
                            VirtualMachine, VirtualMachineInstance)

HOST_MODEL = "host-model"
HOST_PASSTHROUGH = "host-passthrough"
NEWEST_RULES = (99, 0, 0)
LAUNCH_SECURITY_LABELS = {"sev": "kubevirt.io/sev", "snp": "kubevirt.io/sev-snp", "tdx": "kubevirt.io/tdx"}

ORIGIN_SCHEDULABLE = "KubeVirt puts it on every virt-launcher pod"
ORIGIN_INHERITED = ("inherited from an earlier migration: the VM's current virt-launcher pod carries it "
                    "and KubeVirt copies it to every migration target; a VM restart clears it")


@dataclass(frozen=True)
class Constraint:
    value: str
    origin: str


@dataclass
class TargetSpec:
    """nodeSelector and required node affinity of the pod KubeVirt would create, with origins."""

    node_selector: Dict[str, Constraint] = field(default_factory=dict)
    terms: Tuple[SelectorTerm, ...] = ()
    affinity_origins: Dict[str, str] = field(default_factory=dict)
    tolerations: Tuple[Toleration, ...] = ()
    notes: List[str] = field(default_factory=list)
    blocked: Optional[str] = None  # KubeVirt cannot even create the target pod

    def require(self, key: str, value: str, origin: str) -> None:
        self.node_selector[key] = Constraint(value, origin)

    def forbid(self, key: str, origin: str) -> None:
        self.terms = add_does_not_exist(self.terms, key)
        self.affinity_origins[key] = origin


def parse_version(text: Optional[str]) -> Optional[Tuple[int, int, int]]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def has_vendor_rule(version: Tuple[int, int, int]) -> bool:
    """The migration cpu-vendor selector: ≥1.8.0, 1.7.x with x≥1, 1.6.x with x≥4 (§1.7 backports)."""
    major_minor = version[:2]
    return version >= (1, 8, 0) or (major_minor == (1, 7) and version[2] >= 1) or (major_minor == (1, 6) and version[2] >= 4)


def has_machine_type_rule(version: Tuple[int, int, int]) -> bool:
    """The machine-type selector first shipped in v1.5.1 (kubevirt PR #13690)."""
    return version >= (1, 5, 1)


def model_origin(vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig], model: Optional[str]) -> str:
    """Where a VMI's CPU model came from: VM spec > KubeVirt cpuModel > host-model (§2.2)."""
    if vm is not None and vm.cpu_model:
        return "the VM spec sets cpu.model %s (spec.template.spec.domain.cpu.model)" % vm.cpu_model
    if kubevirt is not None and kubevirt.cpu_model and kubevirt.cpu_model == model:
        return "the cluster default model %s (KubeVirt %s/%s spec.configuration.cpuModel)" % (
            model, kubevirt.namespace, kubevirt.name)
    if model in (None, HOST_MODEL):
        return "the VM uses host-model (no model in the VM spec or the cluster default)"
    return "the VMI's cpu.model %s" % model


def _selector_origin(key: str) -> str:
    if key == L.HOSTNAME:
        return ("a leftover kubernetes.io/hostname pin in the VM's nodeSelector (older Harvester Migrate actions "
                "wrote it; remove it from spec.template.spec.nodeSelector)")
    return "the VM spec's nodeSelector (spec.template.spec.nodeSelector)"


def render_template(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig],
                    version: Tuple[int, int, int]) -> TargetSpec:
    """The launcher pod's constraints rendered from the VMI (§2.1, §2.3, §2.4)."""
    spec = TargetSpec(tolerations=vmi.tolerations)
    spec.require(L.SCHEDULABLE, "true", ORIGIN_SCHEDULABLE)
    if vmi.architecture:
        spec.require(L.ARCH, vmi.architecture.lower(), "the VM's architecture (spec.architecture)")
    for key, value in (kubevirt.node_selectors if kubevirt else {}).items():
        spec.require(key, value, "the cluster-wide nodeSelectors (KubeVirt developerConfiguration.nodeSelectors)")
    for key, value in vmi.node_selector.items():
        spec.require(key, value, _selector_origin(key))
    if vmi.dedicated_cpu:
        key = "kubevirt.io/cpumanager" if version >= (1, 8, 0) else "cpumanager"
        spec.require(key, "true", "the VM asks for dedicated CPUs (dedicatedCpuPlacement)")
    model = vmi.cpu_model
    if model and model not in (HOST_MODEL, HOST_PASSTHROUGH):
        spec.require(L.CPU_MODEL + model, "true", model_origin(vm, kubevirt, model))
    if vmi.machine_type and has_machine_type_rule(version):
        spec.require(L.MACHINE_TYPE + vmi.machine_type, "true",
                     "the VM's resolved machine type %s (status.machine.type)" % vmi.machine_type)
    for feature in vmi.cpu_features:
        if feature.policy in ("", "require"):
            spec.require(L.CPU_FEATURE + feature.name, "true",
                         "the VM spec requires CPU feature %s (cpu.features)" % feature.name)
    if vmi.tsc_required and vmi.tsc_frequency:
        spec.require(L.TSC_SCHEDULING + str(vmi.tsc_frequency), "true",
                     "the VM needs a stable TSC frequency of %d Hz (invtsc or Hyper-V reenlightenment; "
                     "status.topologyHints.tscFrequency)" % vmi.tsc_frequency)
    if vmi.realtime:
        spec.require("kubevirt.io/realtime", "true", "the VM asks for realtime CPUs")
    for sec in vmi.launch_security:
        key = LAUNCH_SECURITY_LABELS.get(sec)
        if key:
            spec.require(key, "true", "the VM uses %s launch security" % sec)
    spec.terms = vmi.required_terms
    for term in vmi.required_terms:
        for req in term.requirements:
            spec.affinity_origins.setdefault(req.key, "the VM spec's node affinity (spec.template.spec.affinity)")
    if model in (None, HOST_MODEL):
        spec.forbid(L.OBSOLETE_HOST_MODEL, "host-model VMs avoid nodes whose host model is obsolete")
    for feature in vmi.cpu_features:
        if feature.policy == "forbid":
            spec.forbid(L.CPU_FEATURE + feature.name,
                        "the VM spec forbids CPU feature %s (cpu.features policy forbid)" % feature.name)
    return spec


def _migrated_before(pod: Optional[Pod]) -> bool:
    return pod is not None and any(L.CPU_FEATURE in k or L.CPU_MODEL_MIGRATION in k for k in pod.node_selector)


def add_host_model_rule(spec: TargetSpec, source_pod: Optional[Pod], source_node: Optional[Node]) -> None:
    """prepareNodeSelectorForHostCpuModel (§3.2): copy the sticky keys, else derive from the source node."""
    if _migrated_before(source_pod):
        for key, value in source_pod.node_selector.items():  # type: ignore[union-attr]
            if L.CPU_FEATURE in key or L.CPU_MODEL_MIGRATION in key:
                spec.require(key, value, ORIGIN_INHERITED)
        spec.notes.append("host-model constraints are inherited from an earlier migration (sticky); "
                          "a VM restart clears them")
        return
    if source_node is None:
        spec.blocked = "the source node object is gone, so KubeVirt cannot compute host-model constraints"
        return
    cpu = L.node_cpu(source_node.labels)
    if cpu.host_model is None:
        spec.blocked = ('unable to locate host cpu model: node %s has no host-model-cpu.node.kubevirt.io label, '
                        "so KubeVirt cannot create a migration target pod for this host-model VM" % source_node.name)
        return
    spec.require(L.CPU_MODEL_MIGRATION + cpu.host_model, "true",
                 "the VM uses host-model and booted on %s, whose host model is %s "
                 "(host-model-cpu.node.kubevirt.io/%s)" % (source_node.name, cpu.host_model, cpu.host_model))
    for feature in sorted(cpu.host_model_required):
        spec.require(L.CPU_FEATURE + feature, "true",
                     "the host model of %s requires %s (host-model-required-features.node.kubevirt.io/%s)"
                     % (source_node.name, feature, feature))
    spec.notes.append("first migration of a host-model VM: KubeVirt derives the constraints from %s's labels "
                      "and they stick to the VM until it restarts" % source_node.name)


def add_vendor_rule(spec: TargetSpec, source_node: Optional[Node]) -> None:
    """createTargetPod step 6 (§3.1): keep migrations within the source node's CPU vendor."""
    if any(k.startswith(L.CPU_VENDOR) for k in spec.node_selector) or source_node is None:
        return
    vendor = L.node_cpu(source_node.labels).vendor
    if vendor:
        spec.require(L.CPU_VENDOR + vendor, "true",
                     "KubeVirt ≥ 1.8 keeps a migration on the source node's CPU vendor (%s on %s)"
                     % (vendor, source_node.name))


def migration_target(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig],
                     source_pod: Optional[Pod], source_node: Optional[Node]) -> TargetSpec:
    """What createTargetPod would ask of a migration target, for the cluster's KubeVirt version."""
    parsed = parse_version(kubevirt.version if kubevirt else None)
    version = parsed or NEWEST_RULES
    spec = render_template(vmi, vm, kubevirt, version)
    if parsed is None:
        spec.notes.append("KubeVirt version unknown (no status.observedKubeVirtVersion): assuming the newest rules")
    if vmi.cpu_model == HOST_MODEL:
        add_host_model_rule(spec, source_pod, source_node)
    if has_vendor_rule(version):
        add_vendor_rule(spec, source_node)
    return spec


def fresh_start(vmi: VirtualMachineInstance, vm: Optional[VirtualMachine], kubevirt: Optional[KubeVirtConfig]) -> TargetSpec:
    """Constraints of a first launcher pod: the template alone, no migration rules."""
    parsed = parse_version(kubevirt.version if kubevirt else None)
    return render_template(vmi, vm, kubevirt, parsed or NEWEST_RULES)


def requirement_origin(spec: TargetSpec, req: Requirement) -> str:
    return spec.affinity_origins.get(req.key, "the pod's required node affinity")
