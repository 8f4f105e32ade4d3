"""Room on nodes as kube-scheduler's NodeResourcesFit filter counts it (docs/kubevirt-rules.md §9).

A node has room for a pod when, for every resource the pod requests, the node's `status.allocatable` minus the
requests of the pods counted on it (bound to it and not terminated) covers the request, and one more pod fits
under its `pods` allocatable (kubernetes pkg/scheduler/framework/plugins/noderesources/fit.go, fitsRequest).
Nodes are bitsets over the engine's node index (node_index.py): which nodes lack room for a request is
computed once per distinct request, and a drain's placements change only the few nodes they use.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from cpumodel.core.node_index import NodeIndex, popcount, positions
from cpumodel.objects import Node

Request = Tuple[Tuple[str, int], ...]  # (resource, amount) sorted; cpu in millicores, the rest in units
PODS = "pods"
MEMORY, CPU = "memory", "cpu"
SCAN_DIRECTLY = 64  # a set of at most this many candidates is searched node by node, not in memory order
RANKED = 16  # best nodes kept per (request, pool) for fixes: enough to skip the drained and the used ones
UNLIMITED = float("inf")


def memory_of(request: Request) -> int:
    return dict(request).get(MEMORY, 0)


def cpu_of(request: Request) -> int:
    return dict(request).get(CPU, 0)


def needs(request: Request) -> Tuple[Tuple[str, int], ...]:
    """What a pod takes from a node: its requests and one pod slot."""
    return request + ((PODS, 1),)


def show(resource: str, value: float) -> str:
    """An amount of a resource as an operator reads it: "30 GiB of memory", "0.5 cpu", "1 pod slot"."""
    if value == UNLIMITED:
        return "unlimited %s" % resource
    if resource == CPU:
        return "%g cpu" % round(value / 1000, 3)
    if resource == PODS:
        return "%d pod slot%s" % (value, "" if value == 1 else "s")
    if resource == MEMORY or resource.startswith("hugepages-") or resource == "ephemeral-storage":
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(value) >= size:
                return "%g %s of %s" % (round(value / size, 1), unit, resource)
        return "%d B of %s" % (value, resource)
    return "%d of %s" % (value, resource)


def free_room(node: Node, used: Mapping[str, Tuple[Mapping[str, int], int]]) -> Optional[Dict[str, int]]:
    """Allocatable minus what the pods counted on the node take (their requests, and a pod slot each); None when
    the node does not report allocatable."""
    if not node.allocatable:
        return None
    requested, pods = used.get(node.name, ({}, 0))
    free = dict(node.allocatable)
    for resource, value in requested.items():
        free[resource] = free.get(resource, 0) - value
    if PODS in free:
        free[PODS] -= pods
    return free


def lacking_on(node: Node, used: Mapping[str, Tuple[Mapping[str, int], int]], request: Request
               ) -> List[Tuple[str, int, int]]:
    """(resource, requested, free) for each resource one node lacks for a pod with `request`."""
    free = free_room(node, used)
    if free is None:
        return []
    return [(resource, amount, free.get(resource, 0)) for resource, amount in needs(request)
            if (resource != PODS or PODS in free) and free.get(resource, 0) < amount]


@dataclass(frozen=True)
class Shortfall:
    """One resource a VM's target pod finds too little of on its candidates."""

    resource: str
    nodes: int  # candidates that lack it
    need: int
    best_free: float  # the most free among the candidates that lack it
    best_node: str


@dataclass(frozen=True)
class Gap:
    """What one node lacks for a pod: the least to free there."""

    node: str
    missing: Tuple[Tuple[str, float], ...]  # (resource, amount), memory first


class Room:
    """Free room of every node at one moment: allocatable minus the requests of the pods counted on it.

    `used`: node name -> (summed requests, pod count) of the pods the scheduler counts there; a node without
    allocatable (a hand-written object, a metadata-only read) has unlimited room."""

    def __init__(self, index: NodeIndex, used: Mapping[str, Tuple[Mapping[str, int], int]]):
        self.index = index
        self.free: List[Optional[Dict[str, int]]] = [free_room(node, used) for node in index.nodes]
        self.unknown = sum(1 for f in self.free if f is None)
        # Candidates in the order a placement prefers them: most free memory first, then by name.
        self.order = sorted(range(index.size), key=lambda i: (-self.free_of(i, MEMORY), i))
        self._lacking: Dict[Tuple[str, int], int] = {}
        self._lacking_request: Dict[Request, int] = {}
        self._ranked: Dict[tuple, List[int]] = {}

    def ranked(self, request: Request, pool: int, resource: Optional[str] = None) -> List[int]:
        """The RANKED best nodes of `pool`, for one request, as the room is before any placement: without a
        resource, by gap (closest to taking the pod first); with one, the nodes lacking it, most free first.
        Computed once per (request, pool): thousands of blocked VMs share a handful of requests and pools."""
        key = (request, pool, resource)
        found = self._ranked.get(key)
        if found is None:
            if resource is None:
                found = heapq.nsmallest(RANKED, positions(pool), key=lambda i: gap_key(i, request, self.free_of))
            else:
                amount = dict(needs(request))[resource]
                found = heapq.nsmallest(RANKED, positions(pool & self.lacking(resource, amount)),
                                        key=lambda i: (-self.free_of(i, resource), i))
            self._ranked[key] = found
        return found

    def free_of(self, position: int, resource: str) -> float:
        free = self.free[position]
        if free is None:
            return UNLIMITED
        if resource == PODS and PODS not in free:
            return UNLIMITED  # a node that does not say how many pods it takes is not limited by it
        return free.get(resource, 0)

    def lacking(self, resource: str, amount: int) -> int:
        """The nodes (a mask) with less than `amount` of `resource` free."""
        key = (resource, amount)
        found = self._lacking.get(key)
        if found is None:
            bits = bytearray((self.index.size + 7) // 8)
            for i in range(self.index.size):
                if self.free_of(i, resource) < amount:
                    bits[i >> 3] |= 1 << (i & 7)
            found = self._lacking[key] = int.from_bytes(bits, "little")
        return found

    def lacking_request(self, request: Request) -> int:
        found = self._lacking_request.get(request)
        if found is None:
            found = 0
            for resource, amount in needs(request):
                found |= self.lacking(resource, amount)
            self._lacking_request[request] = found
        return found

    def without_room(self, request: Request, mask: int) -> int:
        """Of the nodes in `mask`, those without room for a pod with `request`."""
        return mask & self.lacking_request(request)

    def shortfalls(self, request: Request, candidates: int, pool: Optional[int] = None) -> Tuple[Shortfall, ...]:
        return Placement(self).shortfalls(request, candidates, pool)

    def closest(self, request: Request, candidates: int, pool: Optional[int] = None) -> Optional["Gap"]:
        return Placement(self).closest(request, candidates, pool)


class Placement:
    """The VMs of one drain placed one after another: each placement uses up room for the next."""

    def __init__(self, room: Room):
        self.room = room
        self.taken: Dict[int, Dict[str, int]] = {}

    def free_of(self, position: int, resource: str) -> float:
        return self.room.free_of(position, resource) - self.taken.get(position, {}).get(resource, 0)

    def _fits_at(self, position: int, request: Request) -> bool:
        return all(self.free_of(position, resource) >= amount for resource, amount in needs(request))

    def fitting(self, request: Request, mask: int) -> int:
        """The nodes of `mask` with room for the request now."""
        found = mask & ~self.room.lacking_request(request)
        for position in self.taken:
            if mask >> position & 1:
                bit = 1 << position
                found = (found | bit) if self._fits_at(position, request) else (found & ~bit)
        return found

    def _roomiest(self, mask: int) -> int:
        """The node of `mask` with the most free memory (then the first by name)."""
        def rank(i: int):
            return -self.free_of(i, MEMORY), i

        if popcount(mask) <= SCAN_DIRECTLY:
            return min(positions(mask), key=rank)
        best = next(i for i in self.room.order if mask >> i & 1 and i not in self.taken)
        touched = [i for i in self.taken if mask >> i & 1]
        return min([best] + touched, key=rank)

    def place(self, request: Request, mask: int) -> Tuple[Optional[str], int]:
        """The node the pod goes to (None: none of `mask` has room) and the nodes that had room for it."""
        fitting = self.fitting(request, mask)
        if not fitting:
            return None, 0
        chosen = self._roomiest(fitting)
        taken = self.taken.setdefault(chosen, {})
        for resource, amount in needs(request):
            taken[resource] = taken.get(resource, 0) + amount
        return self.room.index.nodes[chosen].name, fitting

    def _best(self, ranked: List[int], within: int, rank) -> Optional[int]:
        """The best node of `within` by `rank` now: the first of the ranked ones that is
        still as ranked (not used by a placement), against the used ones; a full scan only when none of the ranked
        ones is left."""
        first = next((i for i in ranked if within >> i & 1 and i not in self.taken), None)
        if first is None:
            untouched = within
            for i in self.taken:
                untouched &= ~(1 << i)
            if untouched:
                first = min(positions(untouched), key=rank)
        choices = ([first] if first is not None else []) + [i for i in self.taken if within >> i & 1]
        return min(choices, key=rank) if choices else None

    def shortfalls(self, request: Request, candidates: int, pool: Optional[int] = None) -> Tuple[Shortfall, ...]:
        """Each resource some candidate lacks: on how many, and the most any of those has free. `pool`: the
        candidates before the drained (or source) nodes were taken out — shared by many VMs, so the ranking is
        reused."""
        found = []
        for resource, amount in needs(request):
            lacking = candidates & self.room.lacking(resource, amount)
            for position in self.taken:
                if candidates >> position & 1:
                    bit = 1 << position
                    lacking = (lacking | bit) if self.free_of(position, resource) < amount else (lacking & ~bit)
            if not lacking:
                continue
            best = self._best(self.room.ranked(request, pool or candidates, resource), lacking,
                              lambda i: (-self.free_of(i, resource), i))
            found.append(Shortfall(resource, popcount(lacking), amount, self.free_of(best, resource),  # type: ignore
                                   self.room.index.nodes[best].name))  # type: ignore[index]
        return tuple(sorted(found, key=lambda s: _resource_order(s.resource)))

    def closest(self, request: Request, candidates: int, pool: Optional[int] = None) -> Optional[Gap]:
        """The candidate that needs the least freed to take the pod: fewest resources short, then least memory,
        then least cpu, then the first by name; None without candidates."""
        best = self._best(self.room.ranked(request, pool or candidates), candidates,
                          lambda i: gap_key(i, request, self.free_of))
        if best is None:
            return None
        missing = tuple(sorted(((resource, amount - self.free_of(best, resource)) for resource, amount in needs(request)
                                if self.free_of(best, resource) < amount), key=lambda m: _resource_order(m[0])))
        return Gap(self.room.index.nodes[best].name, missing)


def gap_key(position: int, request: Request, free_of) -> tuple:
    """How far a node is from taking a pod: (resources short, memory short, cpu short, position)."""
    short = 0
    memory = cpu = 0.0
    for resource, amount in needs(request):
        free = free_of(position, resource)
        if free < amount:
            short += 1
            if resource == MEMORY:
                memory = amount - free
            elif resource == CPU:
                cpu = amount - free
    return short, memory, cpu, position


def _resource_order(resource: str) -> Tuple[int, str]:
    return {MEMORY: 0, CPU: 1}.get(resource, 2), resource


def shortfall_message(s: Shortfall, candidates: int) -> str:
    if s.resource == PODS:
        return "%d of %d candidate nodes hold as many pods as they allow" % (s.nodes, candidates)
    return "its target pod requests %s; %d of %d candidate nodes lack it (the most free: %s on %s)" % (
        show(s.resource, s.need), s.nodes, candidates, show(s.resource, s.best_free), s.best_node)


def gap_fix(gap: Optional[Gap]) -> str:
    """How much room is missing where: what to free on the candidate closest to taking the pod."""
    if gap is None:
        return ""
    return "free %s on %s (or add a node it can move to)" % (
        " and ".join(show(resource, amount) for resource, amount in gap.missing), gap.node)
