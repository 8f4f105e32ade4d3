"""Which nodes can run VMs, and why the others cannot (shared by common, why-not and set)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

from cpumodel.core.labels import HOSTNAME, TSC_FREQUENCY, NodeCpu, int_or_none, node_cpu
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


@dataclass(frozen=True)
class NodeSet:
    """Nodes split into those that can host VMs and those left out, with reasons."""

    capable: Tuple[VmNode, ...]
    excluded: Tuple[Tuple[str, str], ...]  # (name, reason)

    @property
    def cordoned(self) -> List[str]:
        return [n.name for n in self.capable if n.unschedulable]


def exclusion_reason(node: VmNode) -> Optional[str]:
    """Why a node cannot host VMs, or None. Cordoned nodes are not excluded: they come back."""
    cpu = node.cpu
    if cpu.witness:
        return "Harvester witness node (node-role.harvesterhci.io/witness): runs no VMs"
    if not cpu.has_cpu_labels:
        return "no KubeVirt CPU labels (virt-handler's node-labeller has not run here, or the node is not x86)"
    if cpu.schedulable is not True:
        return 'kubevirt.io/schedulable is not "true" (virt-handler down or its heartbeat is stale)'
    if node.ready is False:
        return "node is not Ready"
    return None


# Labels that differ between otherwise identical nodes; NodeCpu takes them from the node itself.
_PER_NODE = (HOSTNAME, TSC_FREQUENCY)


class NodeCpuCache:
    """node_cpu() once per distinct label set: thousands of nodes are a few hardware classes.

    The key is the node's label items minus the per-node ones (hostname, measured TSC
    frequency); building it is C-level work, far cheaper than re-reading hundreds of labels.
    """

    def __init__(self) -> None:
        self._seen: Dict[frozenset, NodeCpu] = {}

    def __call__(self, labels) -> NodeCpu:
        items = frozenset(labels.items())
        own = {(k, labels[k]) for k in _PER_NODE if k in labels}
        key = items - own if own else items
        cpu = self._seen.get(key)
        if cpu is None:
            cpu = self._seen[key] = node_cpu(labels)
            return cpu
        tsc = int_or_none(labels.get(TSC_FREQUENCY))
        return cpu if cpu.tsc_frequency == tsc else replace(cpu, tsc_frequency=tsc)


class Summarizer:
    """Node -> VmNode, page by page, with node_cpu computed once per hardware class."""

    def __init__(self) -> None:
        self.cpu_of = NodeCpuCache()

    def __call__(self, node: Node) -> VmNode:
        return VmNode(node.name, node.unschedulable, node.ready, self.cpu_of(node.labels))


def split_nodes(nodes: Sequence[Union[Node, VmNode]]) -> NodeSet:
    """Capable and excluded nodes, by name; accepts nodes or already summarised VmNodes."""
    capable: List[VmNode] = []
    excluded: List[Tuple[str, str]] = []
    summarize = Summarizer()
    for item in sorted(nodes, key=lambda n: n.name):
        vm_node = item if isinstance(item, VmNode) else summarize(item)
        reason = exclusion_reason(vm_node)
        if reason:
            excluded.append((vm_node.name, reason))
        else:
            capable.append(vm_node)
    return NodeSet(tuple(capable), tuple(excluded))
