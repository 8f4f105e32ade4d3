"""Which KubeVirt CPU/scheduling labels differ between nodes (issue: `diff`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from cpumodel.core.labels import GROUP_ORDER, TSC_FREQUENCY, TSC_SCHEDULING, kubevirt_labels, label_group
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
    columns: Tuple[Tuple[str, ...], ...]  # each column: nodes whose KubeVirt labels differ only in their timer
    rows: Tuple[MatrixRow, ...]
    per_node: Dict[str, Dict[str, str]]  # timer key -> node -> its own value (shown as ranges per column)


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


TSC_SCHEDULING_ROW = TSC_SCHEDULING + "*"  # one row for every node's own scheduling frequency label


def _split_timer(labels: Dict[str, str]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """(the labels that make a column, the node's own timer values): the measured TSC frequency
    differs a little on every node, so it would otherwise give each node a column of its own."""
    shared, own = {}, {}
    for key, value in labels.items():
        if key == TSC_FREQUENCY:
            own[key] = value
        elif key.startswith(TSC_SCHEDULING):
            if value == "true":
                own.setdefault(TSC_SCHEDULING_ROW, []).append(key[len(TSC_SCHEDULING):])  # type: ignore[attr-defined]
        else:
            shared[key] = value
    if TSC_SCHEDULING_ROW in own:
        own[TSC_SCHEDULING_ROW] = ",".join(sorted(own[TSC_SCHEDULING_ROW]))  # type: ignore[arg-type]
    return shared, own


def _span(values: List[str]) -> Optional[str]:
    """The values of one column: one value, or the range lowest..highest."""
    if not values:
        return None
    numbers = sorted({int(p) for v in values for p in v.split(",") if p.isdigit()})
    if numbers and len(numbers) > 1:
        return "%d..%d" % (numbers[0], numbers[-1])
    return values[0] if len(set(values)) == 1 else ",".join(sorted(set(values)))


def diff_matrix(nodes: Sequence[Node], include_all: bool = False) -> Matrix:
    groups: Dict[Tuple, List[str]] = {}
    shared_of: Dict[Tuple, Dict[str, str]] = {}
    per_node: Dict[str, Dict[str, str]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        shared, own = _split_timer(kubevirt_labels(node.labels))
        key = tuple(sorted(shared.items()))
        groups.setdefault(key, []).append(node.name)
        shared_of[key] = shared
        for timer, value in own.items():
            per_node.setdefault(timer, {})[node.name] = value
    columns = [(tuple(names), shared_of[key]) for key, names in groups.items()]
    keys = sorted({k for _, labels in columns for k in labels} | set(per_node),
                  key=lambda k: (GROUP_ORDER.index(label_group(k) or "other"), k))
    rows = []
    for key in keys:
        if key in per_node:
            values = tuple(_span([per_node[key][n] for n in names if n in per_node[key]]) for names, _ in columns)
        else:
            values = tuple(labels.get(key) for _, labels in columns)
        if include_all or len(set(values)) > 1:
            rows.append(MatrixRow(key, label_group(key) or "other", values))
    return Matrix(tuple(names for names, _ in columns), tuple(rows), per_node)
