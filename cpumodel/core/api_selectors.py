"""Label and field selectors of list requests (`-l`, `fieldSelector`), as kube-apiserver evaluates them.

One implementation serves the offline source and the project's fake API server, so the two
cannot disagree.

Label selectors (k8s.io/apimachinery labels.Parse): comma-separated requirements, each
`k=v`, `k==v`, `k!=v` (also true when k is absent), `k`, `!k`, `k in (a,b)`,
`k notin (a,b)` (also true when k is absent), and the numeric `k>n`, `k<n` (k must hold an
integer). Field selectors (fields.ParseSelector): `path=v`, `path==v`, `path!=v`; a
boolean field compares as "true"/"false", a missing one as "".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Tuple

from cpumodel.errors import UsageError

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(r"^\s*(%s)\s+(in|notin)\s*\(([^)]*)\)\s*$" % _KEY)
_EQ = re.compile(r"^\s*(%s)\s*(==|=|!=)\s*(%s)\s*$" % (_KEY, _VALUE))
_CMP = re.compile(r"^\s*(%s)\s*([<>])\s*(-?\d+)\s*$" % _KEY)
_EXISTS = re.compile(r"^\s*(!?)\s*(%s)\s*$" % _KEY)
_FIELD = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # in, notin, exists, !exists, gt, lt
    values: Tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        try:
            have, bound = int(labels[self.key]), int(self.values[0])
        except (KeyError, ValueError):
            return False
        return have > bound if self.op == "gt" else have < bound


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) == self.equal


def _split(selector: str) -> List[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(part: str, selector: str) -> LabelRequirement:
    m = _SET.match(part)
    if m:
        return LabelRequirement(m.group(1), m.group(3), tuple(v.strip() for v in m.group(4).split(",") if v.strip()))
    m = _EQ.match(part)
    if m:
        return LabelRequirement(m.group(1), "notin" if m.group(3) == "!=" else "in", (m.group(4),))
    m = _CMP.match(part)
    if m:
        return LabelRequirement(m.group(1), "gt" if m.group(3) == ">" else "lt", (m.group(4),))
    m = _EXISTS.match(part)
    if m:
        return LabelRequirement(m.group(2), "!exists" if m.group(1) else "exists")
    raise UsageError("invalid label selector %r: cannot parse %r" % (selector, part.strip()))


def parse_selector(selector: str) -> List[LabelRequirement]:
    return [_requirement(part, selector) for part in _split(selector)]


def matches(reqs: List[LabelRequirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in reqs)


def parse_field_selector(selector: str) -> List[FieldRequirement]:
    reqs = []
    for clause in filter(str.strip, selector.split(",")):
        m = _FIELD.match(clause)
        if not m:
            raise UsageError("invalid field selector %r: cannot parse %r" % (selector, clause.strip()))
        reqs.append(FieldRequirement(m.group(1), m.group(2) != "!=", m.group(3)))
    return reqs


def field_value(obj: Any, path: str) -> str:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return "" if obj is None else str(obj)


def fields_match(reqs: List[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all(r.matches(obj) for r in reqs)
