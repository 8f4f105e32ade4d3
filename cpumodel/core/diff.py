"""Which KubeVirt CPU/scheduling labels differ between nodes (issue: `diff`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from cpumodel.core.labels import GROUP_ORDER, kubevirt_labels, label_group
from cpumodel.objects import Node


@dataclass(frozen=True)
class PairDiff:
    node_a: str
    node_b: str
    only_in_a: Tuple[str, ...]
    only_in_b: Tuple[str, ...]
    different: Tuple[Tuple[str, str, str], ...]  # key, value on a, value on b
    same: Tuple[str, ...]  # filled only with --all


@dataclass(frozen=True)
class MatrixRow:
    key: str
    group: str
    values: Tuple[Optional[str], ...]  # one per column; None = label absent


@dataclass(frozen=True)
class Matrix:
    columns: Tuple[Tuple[str, ...], ...]  # each column: nodes with identical KubeVirt labels
    rows: Tuple[MatrixRow, ...]


def diff_pair(a: Node, b: Node, include_same: bool = False) -> PairDiff:
    la, lb = kubevirt_labels(a.labels), kubevirt_labels(b.labels)
    shared = la.keys() & lb.keys()
    return PairDiff(
        node_a=a.name,
        node_b=b.name,
        only_in_a=tuple(sorted(la.keys() - lb.keys())),
        only_in_b=tuple(sorted(lb.keys() - la.keys())),
        different=tuple((k, la[k], lb[k]) for k in sorted(shared) if la[k] != lb[k]),
        same=tuple(sorted(k for k in shared if la[k] == lb[k])) if include_same else (),
    )


def _columns(nodes: Sequence[Node]) -> List[Tuple[Tuple[str, ...], Dict[str, str]]]:
    """Nodes with identical KubeVirt label sets share one column, named by its first node."""
    groups: Dict[Tuple, List[str]] = {}
    labels_of: Dict[Tuple, Dict[str, str]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        labels = kubevirt_labels(node.labels)
        key = tuple(sorted(labels.items()))
        groups.setdefault(key, []).append(node.name)
        labels_of[key] = labels
    return [(tuple(names), labels_of[key]) for key, names in groups.items()]


def diff_matrix(nodes: Sequence[Node], include_all: bool = False) -> Matrix:
    columns = _columns(nodes)
    keys = sorted({k for _, labels in columns for k in labels},
                  key=lambda k: (GROUP_ORDER.index(label_group(k) or "other"), k))
    rows = []
    for key in keys:
        values = tuple(labels.get(key) for _, labels in columns)
        if include_all or len(set(values)) > 1:
            rows.append(MatrixRow(key, label_group(key) or "other", values))
    return Matrix(tuple(names for names, _ in columns), tuple(rows))
