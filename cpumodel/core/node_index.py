"""Sets of nodes as bitsets, indexed by label: what lets cluster-wide questions cost what demands name.

Bit i of a mask stands for the engine's i-th node (nodes sorted by name). For every label key a demand
names, the nodes are grouped once by their value of that key; a demand's accepting nodes are then the
intersection of a few such sets with the nodes that pass the node-level checks (cordon, readiness, taints),
computed once per node. Nothing is held per (VM, node) or per (demand, node): a cluster whose every node has
its own CPU features costs as much as one whose nodes come in six kinds.

The per-node functions in selectors.py stay the definition: a requirement's mask is the union of the value
groups whose value it accepts, asked of selectors.requirement_matches itself.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from cpumodel.core.selectors import requirement_matches, untolerated_taints
from cpumodel.objects import Node, Requirement, SelectorTerm, Toleration


def _mask(positions: Iterable[int], size: int) -> int:
    """The bitset of these positions, built in one pass (no big integer per bit)."""
    buffer = bytearray((size + 7) // 8)
    for i in positions:
        buffer[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buffer, "little")


def positions(mask: int) -> Iterator[int]:
    """The set bits of a mask, lowest first."""
    text = bin(mask)[:1:-1]  # bit 0 first
    i = text.find("1")
    while i >= 0:
        yield i
        i = text.find("1", i + 1)


def _popcount(mask: int) -> int:
    return bin(mask).count("1")


# int.bit_count is Python 3.10's; 3.9 counts the binary digits.
popcount = getattr(int, "bit_count", _popcount)


class NodeIndex:
    """Bitsets over a fixed, ordered list of nodes."""

    def __init__(self, nodes: Sequence[Node]):
        self.nodes = tuple(nodes)
        self.size = len(self.nodes)
        self.all = (1 << self.size) - 1
        self.position: Dict[str, int] = {n.name: i for i, n in enumerate(self.nodes)}
        self.cordoned = _mask((i for i, n in enumerate(self.nodes) if n.unschedulable), self.size)
        self.not_ready = _mask((i for i, n in enumerate(self.nodes) if n.ready is False), self.size)
        # Taints that can keep a pod off: few nodes carry them, so they are checked node by node.
        self.tainted: Tuple[int, ...] = tuple(i for i, n in enumerate(self.nodes)
                                              if any(t.effect in ("NoSchedule", "NoExecute") for t in n.taints))
        self._labels = [n.labels for n in self.nodes]
        self._values: Dict[str, Dict[Optional[str], int]] = {}
        self._requirements: Dict[Requirement, int] = {}
        self._tolerated: Dict[Tuple[Toleration, ...], int] = {}
        self._names: Dict[FrozenSet[str], int] = {}

    # ---- building blocks ------------------------------------------------------------------------------
    def values(self, key: str) -> Dict[Optional[str], int]:
        """value -> the nodes with that value of `key` (None: the nodes without the key)."""
        found = self._values.get(key)
        if found is None:
            values = [labels.get(key) for labels in self._labels]
            distinct = set(values)
            if not distinct:  # no nodes
                found = {}
            elif len(distinct) <= 4:  # the usual case ("true" or absent): one pass per value, at C speed
                found = {}
                values.reverse()  # bit 0 is the last character of a binary numeral
                ordered = sorted(distinct, key=lambda v: (v is None, v or ""))
                rest = self.all
                for value in ordered[:-1]:
                    found[value] = int("".join(["1" if v == value else "0" for v in values]), 2)
                    rest &= ~found[value]
                found[ordered[-1]] = rest  # the last value: every node none of the others holds
            else:  # hostnames, TSC frequencies: group the positions
                groups: Dict[Optional[str], List[int]] = {}
                for i, value in enumerate(values):
                    groups.setdefault(value, []).append(i)
                found = {value: _mask(where, self.size) for value, where in groups.items()}
            self._values[key] = found
        return found

    def equal(self, key: str, value: str) -> int:
        return self.values(key).get(value, 0)

    def requirement(self, req: Requirement) -> int:
        """The nodes a node-affinity requirement accepts, as selectors.requirement_matches decides per node."""
        found = self._requirements.get(req)
        if found is None:
            if req.is_field:
                found = _mask((i for i, n in enumerate(self.nodes) if requirement_matches(req, n)), self.size)
            else:
                found = 0
                for value, where in self.values(req.key).items():
                    probe = Node(name="", labels={} if value is None else {req.key: value})
                    if requirement_matches(req, probe):
                        found |= where
            self._requirements[req] = found
        return found

    def term(self, term: SelectorTerm) -> int:
        """A nodeSelectorTerm: its requirements ANDed; an empty term matches no node."""
        if not term.requirements:
            return 0
        found = self.all
        for req in term.requirements:
            found &= self.requirement(req)
            if not found:
                break
        return found

    def affinity(self, terms: Sequence[SelectorTerm]) -> int:
        """Required node affinity: terms ORed; none at all accepts every node."""
        if not terms:
            return self.all
        found = 0
        for term in terms:
            found |= self.term(term)
        return found

    def tolerated(self, tolerations: Tuple[Toleration, ...]) -> int:
        """The nodes none of whose NoSchedule/NoExecute taints the pod fails to tolerate."""
        found = self._tolerated.get(tolerations)
        if found is None:
            refused = [i for i in self.tainted if untolerated_taints(self.nodes[i].taints, tolerations)]
            found = self._tolerated[tolerations] = self.all & ~_mask(refused, self.size)
        return found

    # ---- names ---------------------------------------------------------------------------------------
    def of(self, names: FrozenSet[str]) -> int:
        """The mask of a set of node names (cached per set: callers pass the same few sets again and again)."""
        found = self._names.get(names)
        if found is None:
            found = self._names[names] = _mask((self.position[n] for n in names if n in self.position), self.size)
        return found

    def names(self, mask: int) -> FrozenSet[str]:
        return frozenset(self.nodes[i].name for i in positions(mask))

    def first(self, mask: int) -> Optional[Node]:
        return self.nodes[(mask & -mask).bit_length() - 1] if mask else None

    def has(self, mask: int, name: Optional[str]) -> bool:
        i = self.position.get(name or "")
        return i is not None and bool(mask >> i & 1)
