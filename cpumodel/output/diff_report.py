"""`diff` output: the pair and matrix documents and tables, from PairDiff and Matrix."""
from __future__ import annotations

from typing import Any, Dict, Optional

from cpumodel.core.diff import Matrix, PairDiff
from cpumodel.core.labels import group_keys, label_group
from cpumodel.output.render import TableStyle, brief_list, report, section, table, wrap_list


def pair_document(d: PairDiff) -> Dict[str, Any]:
    doc: Dict[str, Any] = report("DiffReport", {
        "onlyIn": {d.node_a: list(d.only_in_a), d.node_b: list(d.only_in_b)},
        "differentValues": [{"key": k, "values": {d.node_a: va, d.node_b: vb}} for k, va, vb in d.different],
        "groups": {node: {g: keys for g, keys in group_keys(only)}
                   for node, only in ((d.node_a, d.only_in_a), (d.node_b, d.only_in_b))},
    })
    if d.same:
        doc["sameValues"] = list(d.same)
    return doc


def _short(key: str) -> str:
    return key.rsplit("/", 1)[-1] if "/" in key and label_group(key) not in ("other", None) else key


def render_pair(d: PairDiff, style: TableStyle) -> str:
    wide = style.wide
    out = []
    for node, only in ((d.node_a, d.only_in_a), (d.node_b, d.only_in_b)):
        if not only:
            out.append("Only on %s: nothing\n" % node)
            continue
        rows = [[group, brief_list([_short(k) for k in keys], 0, 0 if wide else 56)]
                for group, keys in group_keys(only)]
        out.append(section("Only on %s (%d labels):" % (node, len(only)), table(["GROUP", "LABELS"], rows, style)))
    if d.different:
        rows = [[k, va, vb] for k, va, vb in d.different]
        out.append(section("Different values:", table(["LABEL", d.node_a, d.node_b], rows, style)))
    if d.same:
        out.append(section("Same on both (%d labels):" % len(d.same), wrap_list(list(d.same), 96, 0 if wide else 30)))
    if not (d.only_in_a or d.only_in_b or d.different):
        out.append("%s and %s carry the same KubeVirt CPU labels\n" % (d.node_a, d.node_b))
    return "\n".join(out)


def matrix_document(m: Matrix) -> Dict[str, Any]:
    heads = [c[0] for c in m.columns]
    return report("DiffMatrixReport", {
        "nodes": sorted(n for c in m.columns for n in c),
        "columns": [{"name": c[0], "nodes": list(c)} for c in m.columns],
        "rows": [{"key": r.key, "group": r.group, "values": dict(zip(heads, r.values))} for r in m.rows],
        "perNodeValues": {key: dict(sorted(values.items())) for key, values in sorted(m.per_node.items())},
    })


def _cell(value: Optional[str]) -> str:
    return "-" if value is None else ("✓" if value == "true" else value)


def render_matrix(m: Matrix, style: TableStyle) -> str:
    if not m.rows:
        return "no KubeVirt CPU label differs between the %d nodes\n" % sum(len(c) for c in m.columns)
    headers = ["GROUP", "LABEL"] + ["%s (+%d)" % (c[0], len(c) - 1) if len(c) > 1 else c[0] for c in m.columns]
    rows = [[r.group, _short(r.key)] + [_cell(v) for v in r.values] for r in m.rows]
    note = ""
    if any(len(c) > 1 for c in m.columns):
        note = "\n(+N) columns stand for nodes whose labels are the same but for their measured TSC timer: %s\n" % "; ".join(
            "%s = %s" % (c[0], ", ".join(c[1:])) for c in m.columns if len(c) > 1)
    return table(headers, rows, style) + note


