"""Kubernetes scheduling predicates the way kube-scheduler applies them.

- nodeSelector: every key must be present with exactly the given value
  (NodeAffinity plugin, `ErrReasonPod`).
- required node affinity: terms are ORed, a term's requirements are ANDed; an
  empty term matches nothing; operators In/NotIn/Exists/DoesNotExist/Gt/Lt;
  matchFields supports `metadata.name` only (k8s component-helpers
  nodeaffinity).
- taints: NoSchedule and NoExecute taints need a matching toleration
  (TaintToleration plugin); PreferNoSchedule never blocks.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

from cpumodel.objects import Node, Requirement, SelectorTerm, Taint, Toleration


def requirement_matches(req: Requirement, node: Node) -> bool:
    if req.is_field:
        value: Optional[str] = node.name if req.key == "metadata.name" else None
        present = value is not None
    else:
        present = req.key in node.labels
        value = node.labels.get(req.key)
    op = req.operator
    if op == "In":
        return present and value in req.values
    if op == "NotIn":
        return not present or value not in req.values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            have, want = int(value or ""), int(req.values[0])
        except (ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    return False  # an unknown operator never matches, as in the scheduler


def term_matches(term: SelectorTerm, node: Node) -> bool:
    return bool(term.requirements) and all(requirement_matches(r, node) for r in term.requirements)


def failing_requirements(terms: Sequence[SelectorTerm], node: Node) -> List[Requirement]:
    """Why required node affinity rejects the node: [] if some term matches.

    With several ORed terms, the failures of every term are returned, since the
    node would have to fix at least one term's worth of them.
    """
    if not terms or any(term_matches(t, node) for t in terms):
        return []
    failures: List[Requirement] = []
    for term in terms:
        failures.extend(r for r in term.requirements if not requirement_matches(r, node) and r not in failures)
    # Only empty terms failed: the scheduler treats an empty nodeSelectorTerm as matching nothing.
    return failures or [Requirement("", "EmptyTerm")]


def describe_requirement(req: Requirement) -> str:
    if req.operator == "EmptyTerm":
        return "an empty nodeSelectorTerm (it matches no node)"
    values = ",".join(req.values)
    if req.operator in ("Exists", "DoesNotExist"):
        return "%s %s" % (req.key, req.operator)
    return "%s %s [%s]" % (req.key, req.operator, values)


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.operator == "Exists":
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def untolerated_taints(taints: Iterable[Taint], tolerations: Sequence[Toleration]) -> List[Taint]:
    return [t for t in taints
            if t.effect in ("NoSchedule", "NoExecute") and not any(tolerates(tol, t) for tol in tolerations)]


def add_does_not_exist(terms: Tuple[SelectorTerm, ...], key: str) -> Tuple[SelectorTerm, ...]:
    """KubeVirt's modifyNodeAffintyToRejectLabel: append `key DoesNotExist` to every term (or make one)."""
    req = Requirement(key, "DoesNotExist")
    if not terms:
        return (SelectorTerm((req,)),)
    return tuple(SelectorTerm(t.requirements + (req,)) for t in terms)
