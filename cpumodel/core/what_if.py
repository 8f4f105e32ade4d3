"""`what-if`: a change to the cluster as read -- nodes removed or added, the cluster's or a VM's CPU model changed --
judged by the same analyses as `common`, `audit -A` and `drain-check --all`, before and after.

Nothing is written. The cluster after the change is the cluster as read with the change made to its objects, as a
person would make it by hand in a snapshot (a Node removed or added, the KubeVirt CR's cpuModel or a VM's
spec.template.spec.domain.cpu.model set), and every answer comes from running the analyses on each version; so
`before` is what those commands say today and `after` what they will say once the change is real.

A model change reaches a VM when KubeVirt renders its next virt-launcher pod from the VM spec, at its next start:
a running VM keeps the CPU of its running VMI, and its next migration target pod too (kubevirt-rules §2.2), so its
reach and drain action change only with the nodes, and the new model shows as restart-pending. `afterRestart`
gives what it would reach once restarted with the new model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core.audit import Auditor, Risk, audit_each, cpu_choice
from cpumodel.core.capacity import Room
from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.drain import DrainPlanner, running_vms
from cpumodel.core.highest_common import CommonResult, analyse_common
from cpumodel.core.launcher_pod import observe_vendor_rule
from cpumodel.core.migration import MigrationEngine
from cpumodel.core.nodes import CpuViews, NodeSet, split_nodes
from cpumodel.core.pod_affinity import NearbyPods
from cpumodel.objects import CpuProfile, KubeVirtConfig, Node, Pod, VirtualMachine, VirtualMachineInstance

REMOVE_NODE, ADD_NODE, CLUSTER_MODEL, VM_MODEL = "remove-node", "add-node", "cluster-model", "vm-model"
NEXT_MIGRATION, NEXT_START = "next-migration", "next-start"

Usage = Mapping[str, Tuple[Mapping[str, int], int]]  # node -> (summed requests, pod count): reader.node_usage


@dataclass(frozen=True)
class Change:
    kind: str  # REMOVE_NODE, ADD_NODE, CLUSTER_MODEL, VM_MODEL
    node: Optional[str] = None  # remove-node, add-node
    source: Optional[str] = None  # add-node: the file the node came from
    vm: Optional[Tuple[str, str]] = None  # vm-model: (namespace, name)
    model: Optional[str] = None  # cluster-model, vm-model: the new value
    previous: Optional[str] = None  # cluster-model, vm-model: the value as read (None: not set)


@dataclass(frozen=True)
class Cluster:
    """One version of the cluster: everything `common`, `audit -A` and `drain-check --all` read."""

    nodes: Tuple[Node, ...]
    kubevirt: Optional[KubeVirtConfig]
    vms: Tuple[VirtualMachine, ...]
    vmis: Mapping[Tuple[str, str], VirtualMachineInstance]
    launchers: Mapping[str, List[Pod]]  # by the VMI's uid: current and migration target pods
    profiles: Mapping[Tuple[str, str], CpuProfile]
    nearby: Sequence[Pod]  # the pods the VMs' pod (anti-)affinity terms look at
    maintain_modes: Mapping[Tuple[str, str], str]  # Harvester's maintain-mode label, per VM
    harvester: bool
    usage: Optional[Usage]  # None: room on the nodes is not counted


def apply(cluster: Cluster, changes: Sequence[Change], added: Mapping[str, Node]) -> Cluster:
    """The cluster with the changes made, as by hand: `added` holds the nodes of the add-node changes by name."""
    gone = {c.node for c in changes if c.kind == REMOVE_NODE}
    nodes = tuple(n for n in cluster.nodes if n.name not in gone) + tuple(
        added[c.node] for c in changes if c.kind == ADD_NODE)  # type: ignore[index]
    kubevirt = cluster.kubevirt
    for c in changes:
        if c.kind == CLUSTER_MODEL:
            kubevirt = replace(kubevirt, cpu_model=c.model) if kubevirt is not None else KubeVirtConfig(
                "", "", c.model, None, {}, None)
    models = {c.vm: c.model for c in changes if c.kind == VM_MODEL}
    vms = tuple(with_model(vm, models[(vm.namespace, vm.name)]) if (vm.namespace, vm.name) in models else vm
                for vm in cluster.vms)
    return replace(cluster, nodes=nodes, kubevirt=kubevirt, vms=vms)


def with_model(vm: VirtualMachine, model: Optional[str]) -> VirtualMachine:
    """The VM with spec.template.spec.domain.cpu.model set (None: removed)."""
    return replace(vm, cpu_model=model, template=replace(vm.template, cpu_model=model))


@dataclass(frozen=True)
class VmOutlook:
    reach: int
    action: Optional[str]  # in the drain of its node alone; None: not running (or on no VM-capable node)
    risks: Tuple[Risk, ...]
    running: bool

    @property
    def codes(self) -> Tuple[str, ...]:
        return tuple(r.code for r in self.risks)


@dataclass(frozen=True)
class DrainOutlook:
    blocked: Tuple[Tuple[str, str], ...]  # the VMs that would hang the drain of this node alone


@dataclass(frozen=True)
class Outlook:
    """What the analyses say of one version of the cluster."""

    common: CommonResult
    node_set: NodeSet
    vms: Mapping[Tuple[str, str], VmOutlook]
    drains: Mapping[str, DrainOutlook]  # every VM-capable node
    restarted: Mapping[Tuple[str, str], int]  # running VMs asked about: reach once restarted with their spec

    @property
    def capable(self) -> int:
        return len(self.node_set.capable)


def look(catalog: Catalog, cluster: Cluster, pods: Sequence[Pod], views: CpuViews,
         restart: Sequence[Tuple[str, str]] = ()) -> Outlook:
    """`common`, `audit -A` and `drain-check --all` on one version of the cluster. `pods`: every launcher (the
    vendor rule as the newest migration target pod shows it); `restart`: running VMs whose reach at their next
    start is wanted too."""
    kubevirt, _ = observe_vendor_rule(cluster.kubevirt, pods, cluster.nodes)
    engine = MigrationEngine(cluster.nodes, kubevirt, views)
    node_set = split_nodes(engine.nodes, engine.cpu)
    common = analyse_common(catalog, node_set, kubevirt)
    room = Room(engine.index, cluster.usage) if cluster.usage is not None else None
    auditor = Auditor(catalog, engine, node_set, common, room)
    nearby = NearbyPods(cluster.nearby, engine.by_name)
    audited = audit_each(auditor, nearby, cluster.vms, cluster.vmis, cluster.launchers, cluster.profiles)
    planner = DrainPlanner(catalog, engine, cluster_obsolete_models(kubevirt), cluster.nearby)
    on_node: Dict[str, list] = {}
    running = running_vms(list(cluster.vmis.values()), cluster.launchers, cluster.maintain_modes, cluster.harvester)
    for vm in running:
        on_node.setdefault(vm.vmi.node_name or "", []).append(vm)
    actions: Dict[Tuple[str, str], str] = {}
    drains: Dict[str, DrainOutlook] = {}
    for node in node_set.capable:
        step = planner.check((node.name,), on_node.get(node.name, []), room, explain=False)
        drains[node.name] = DrainOutlook(tuple((v.namespace, v.vm) for v in step.blocked))
        actions.update(((v.namespace, v.vm), v.action.value) for v in step.vms)
    vms = {(a.namespace, a.vm): VmOutlook(a.reach, actions.get((a.namespace, a.vm)) if a.running else None, a.risks,
                                          a.running) for a in audited}
    wanted = set(restart)
    stopped = [vm for vm in cluster.vms if (vm.namespace, vm.name) in wanted]
    restarted = {(a.namespace, a.vm): a.reach for a in audit_each(auditor, nearby, stopped, {}, {}, cluster.profiles)}
    return Outlook(common, node_set, vms, drains, restarted)


@dataclass(frozen=True)
class VmChange:
    namespace: str
    vm: str
    node: Optional[str]  # where it runs now (None: stopped)
    before: VmOutlook
    after: VmOutlook
    applies_at: str  # NEXT_MIGRATION (running: its next target pod keeps its running CPU) or NEXT_START
    after_restart: Optional[int]  # a running VM whose next start changes: its reach once restarted

    @property
    def lost(self) -> bool:
        return self.before.reach > 0 and self.after.reach == 0

    @property
    def gained(self) -> Tuple[str, ...]:
        return tuple(c for c in self.after.codes if c not in self.before.codes)

    @property
    def dropped(self) -> Tuple[str, ...]:
        return tuple(c for c in self.before.codes if c not in self.after.codes)


@dataclass(frozen=True)
class DrainChange:
    node: str
    before: Optional[DrainOutlook]  # None: the node is not VM-capable (or does not exist) on that side
    after: Optional[DrainOutlook]

    @property
    def changed(self) -> bool:
        if self.before is None or self.after is None:
            return (self.before is None) != (self.after is None)
        return bool(self.before.blocked) != bool(self.after.blocked)

    @property
    def now_blocks(self) -> bool:
        """A drain that did not block now does (a node that could not be drained before does not count)."""
        return self.before is not None and not self.before.blocked and self.after is not None \
            and bool(self.after.blocked)


@dataclass(frozen=True)
class WhatIfResult:
    changes: Tuple[Change, ...]
    before: Outlook
    after: Outlook
    vms: Tuple[VmChange, ...]  # every VM whose reach, drain action or risks change: lost first, then by name
    drains: Tuple[DrainChange, ...]  # every node VM-capable on either side, by name

    @property
    def lost(self) -> Tuple[VmChange, ...]:
        return tuple(v for v in self.vms if v.lost)

    @property
    def alarming(self) -> bool:
        """--exit-code 3: a VM left with nowhere to go, or a drain that did not block now does."""
        return bool(self.lost) or any(d.now_blocks for d in self.drains)


def what_if(catalog: Catalog, cluster: Cluster, changes: Sequence[Change], added: Mapping[str, Node],
            pods: Sequence[Pod]) -> WhatIfResult:
    """The changes judged: both versions through the same analyses, and what differs between them."""
    after_cluster = apply(cluster, changes, added)
    restart = next_start_changes(cluster, after_cluster)
    views = CpuViews()
    before = look(catalog, cluster, pods, views)
    after = look(catalog, after_cluster, pods, views, restart)
    found = []
    for key, b in before.vms.items():
        a = after.vms[key]
        if b.reach == a.reach and b.action == a.action and b.codes == a.codes and key not in after.restarted:
            continue
        vmi = cluster.vmis.get(key)
        found.append(VmChange(key[0], key[1], vmi.node_name if b.running and vmi else None, b, a,
                              NEXT_MIGRATION if b.running else NEXT_START, after.restarted.get(key)))
    found.sort(key=lambda v: (not v.lost, v.namespace, v.vm))
    drains = tuple(DrainChange(n, before.drains.get(n), after.drains.get(n))
                   for n in sorted(set(before.drains) | set(after.drains)))
    return WhatIfResult(tuple(changes), before, after, tuple(found), drains)


def next_start_changes(before: Cluster, after: Cluster) -> List[Tuple[str, str]]:
    """The running VMs whose next start gets another CPU after the changes (audit's `cpu`)."""
    old_default, new_default = (side.kubevirt.cpu_model if side.kubevirt else None for side in (before, after))
    changed = []
    for old, new in zip(before.vms, after.vms):
        key = (old.namespace, old.name)
        vmi = before.vmis.get(key)
        if vmi is not None and vmi.running and cpu_choice(old, old_default, before.profiles.get(key)) \
                != cpu_choice(new, new_default, after.profiles.get(key)):
            changed.append(key)
    return changed
