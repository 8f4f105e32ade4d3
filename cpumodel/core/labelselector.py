"""Kubernetes label-selector strings (`-l`), parsed and matched as kube-apiserver does.

Grammar (k8s.io/apimachinery labels.Parse): comma-separated requirements, each
`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)` or `k notin (a,b)`.
"""
from __future__ import annotations

import re
from typing import List, Mapping, Tuple

from cpumodel.errors import UsageError

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(r"^\s*(%s)\s+(in|notin)\s*\(([^)]*)\)\s*$" % _KEY)
_EQ = re.compile(r"^\s*(%s)\s*(==|=|!=)\s*(%s)\s*$" % (_KEY, _VALUE))
_EXISTS = re.compile(r"^\s*(!?)\s*(%s)\s*$" % _KEY)

Requirement = Tuple[str, str, Tuple[str, ...]]  # key, op (in, notin, exists, !exists), values


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


def parse_selector(selector: str) -> List[Requirement]:
    reqs: List[Requirement] = []
    for part in _split(selector):
        m = _SET.match(part)
        if m:
            values = tuple(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append((m.group(1), m.group(3), values))
            continue
        m = _EQ.match(part)
        if m:
            reqs.append((m.group(1), "notin" if m.group(3) == "!=" else "in", (m.group(4),)))
            continue
        m = _EXISTS.match(part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", ()))
            continue
        raise UsageError("invalid label selector %r: cannot parse %r" % (selector, part.strip()))
    return reqs


def matches(reqs: List[Requirement], labels: Mapping[str, str]) -> bool:
    for key, op, values in reqs:
        present = key in labels
        if op == "in" and not (present and labels[key] in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True
