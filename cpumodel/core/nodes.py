"""Which nodes can run VMs, and why the others cannot (shared by common, why-not and set)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from cpumodel.core.labels import ARCH, TSC_FREQUENCY, TSC_SCALABLE, NodeCpu, cpu_class, int_or_none, node_cpu
from cpumodel.objects import Node


@dataclass(frozen=True)
class VmNode:
    """A node as the analyses of VM-capable nodes see it: its state and its CPU view, not its raw labels.

    Keeping no label map lets thousands of nodes be summarised page by page (common, set).
    """

    name: str
    unschedulable: bool
    ready: Optional[bool]
    cpu: NodeCpu
    arch: Optional[str] = None  # kubernetes.io/arch


ARM64 = "arm64"
ARM64_REASON = ("arm64: KubeVirt writes no CPU model labels there and runs its VMs with host-passthrough, "
                "so no named model applies (see the arm64 group)")


@dataclass(frozen=True)
class NodeSet:
    """Nodes split into those that can host VMs and those left out, with reasons."""

    capable: Tuple[VmNode, ...]
    excluded: Tuple[Tuple[str, str], ...]  # (name, reason)
    passthrough_only: Tuple[VmNode, ...] = ()  # arm64 nodes that run VMs, but never with a named model

    @property
    def cordoned(self) -> List[str]:
        return [n.name for n in self.capable if n.unschedulable]


def exclusion_reason(node: VmNode) -> Optional[str]:
    """Why a node cannot host VMs, or None. Cordoned nodes are not excluded: they come back."""
    cpu = node.cpu
    if cpu.witness:
        return "Harvester witness node (node-role.harvesterhci.io/witness): runs no VMs"
    if node.arch == ARM64 and not cpu.has_cpu_labels:
        return ARM64_REASON
    if not cpu.has_cpu_labels:
        return "no KubeVirt CPU labels (virt-handler's node-labeller has not run here, or the node is not x86)"
    if cpu.schedulable is not True:
        return 'kubevirt.io/schedulable is not "true" (virt-handler down or its heartbeat is stale)'
    if node.ready is False:
        return "node is not Ready"
    return None


class NodeCpuCache:
    """node_cpu() once per CPU class: thousands of nodes are a few hardware classes.

    The class is read from the CPU labels alone (labels.cpu_class); each node's own timer
    labels (TSC frequency, scalability, scheduling frequencies) are then put in.
    """

    # After this many nodes, a cache that found fewer repeats than new classes is dropped: on a cluster whose
    # every node has its own CPU features the class keys would only cost time and memory.
    TRIAL = 64

    def __init__(self) -> None:
        self._seen: Dict[frozenset, NodeCpu] = {}
        self._asked = 0
        self._bypass = False

    def __call__(self, labels) -> NodeCpu:
        if self._bypass:
            return node_cpu(labels)
        self._asked += 1
        if self._asked == self.TRIAL and len(self._seen) * 2 > self.TRIAL:
            self._bypass, self._seen = True, {}
            return node_cpu(labels)
        key, tsc_scheduling = cpu_class(labels)
        cpu = self._seen.get(key)
        if cpu is None:
            cpu = self._seen[key] = node_cpu(labels)
            return cpu
        tsc = int_or_none(labels.get(TSC_FREQUENCY))
        scalable = labels.get(TSC_SCALABLE)
        own = (tsc, None if scalable is None else scalable == "true", tsc_scheduling)
        if own == (cpu.tsc_frequency, cpu.tsc_scalable, cpu.tsc_scheduling):
            return cpu
        return replace(cpu, tsc_frequency=own[0], tsc_scalable=own[1], tsc_scheduling=own[2])


class CpuViews:
    """Each node's CPU view, computed once however many engines ask (what-if's two versions of the cluster share
    their Node objects)."""

    def __init__(self) -> None:
        self._views: Dict[int, Tuple[Node, NodeCpu]] = {}  # id(node) -> (node, view); the node kept alive
        self._cache = NodeCpuCache()

    def __call__(self, node: Node) -> NodeCpu:
        found = self._views.get(id(node))
        if found is None:
            found = self._views[id(node)] = (node, self._cache(node.labels))
        return found[1]


class Summarizer:
    """Node -> VmNode, page by page, with node_cpu computed once per hardware class."""

    def __init__(self) -> None:
        self.cpu_of = NodeCpuCache()

    def __call__(self, node: Node) -> VmNode:
        return VmNode(node.name, node.unschedulable, node.ready, self.cpu_of(node.labels), node.labels.get(ARCH))


def split_nodes(nodes: Sequence[Union[Node, VmNode]], cpu_of: Optional[Callable[[Node], NodeCpu]] = None) -> NodeSet:
    """Capable and excluded nodes, by name; accepts nodes or already summarised VmNodes.

    `cpu_of` is a node's CPU view when the caller already keeps them (the migration engine)."""
    capable: List[VmNode] = []
    excluded: List[Tuple[str, str]] = []
    passthrough: List[VmNode] = []
    summarize = Summarizer()
    for item in sorted(nodes, key=lambda n: n.name):
        if isinstance(item, VmNode):
            vm_node = item
        elif cpu_of is not None:
            vm_node = VmNode(item.name, item.unschedulable, item.ready, cpu_of(item), item.labels.get(ARCH))
        else:
            vm_node = summarize(item)
        reason = exclusion_reason(vm_node)
        if reason:
            excluded.append((vm_node.name, reason))
            if reason == ARM64_REASON and vm_node.cpu.schedulable and vm_node.ready is not False:
                passthrough.append(vm_node)
        else:
            capable.append(vm_node)
    return NodeSet(tuple(capable), tuple(excluded), tuple(passthrough))
