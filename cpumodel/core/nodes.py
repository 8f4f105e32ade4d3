"""Which nodes can run VMs, and why the others cannot (shared by common, why-not and set)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from cpumodel.core.labels import NodeCpu, node_cpu
from cpumodel.model import Node


@dataclass(frozen=True)
class VmNode:
    node: Node
    cpu: NodeCpu

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class NodeSet:
    """Nodes split into those that can host VMs and those left out, with reasons."""

    capable: Tuple[VmNode, ...]
    excluded: Tuple[Tuple[str, str], ...]  # (name, reason)

    @property
    def cordoned(self) -> List[str]:
        return [n.name for n in self.capable if n.node.unschedulable]

    def by_name(self) -> Dict[str, VmNode]:
        return {n.name: n for n in self.capable}


def exclusion_reason(node: Node, cpu: NodeCpu) -> Optional[str]:
    """Why a node cannot host VMs, or None. Cordoned nodes are not excluded: they come back."""
    if cpu.witness:
        return "Harvester witness node (node-role.harvesterhci.io/witness): runs no VMs"
    if not cpu.has_cpu_labels:
        return "no KubeVirt CPU labels (virt-handler's node-labeller has not run here, or the node is not x86)"
    if cpu.schedulable is not True:
        return 'kubevirt.io/schedulable is not "true" (virt-handler down or its heartbeat is stale)'
    if node.ready is False:
        return "node is not Ready"
    return None


def split_nodes(nodes: Sequence[Node]) -> NodeSet:
    capable: List[VmNode] = []
    excluded: List[Tuple[str, str]] = []
    for node in sorted(nodes, key=lambda n: n.name):
        cpu = node_cpu(node.labels)
        reason = exclusion_reason(node, cpu)
        if reason:
            excluded.append((node.name, reason))
        else:
            capable.append(VmNode(node, cpu))
    return NodeSet(tuple(capable), tuple(excluded))
