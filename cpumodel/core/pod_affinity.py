"""The VM's own required pod (anti-)affinity, which KubeVirt copies into every launcher pod and every
migration target pod (docs/kubevirt-rules.md §3.6).

Unlike label selectors this depends on where other pods run, so it is judged per node from
`Placement`s -- the topology domains where pods matching each term run -- not per class of nodes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from cpumodel.core.api_selectors import matches, parse_selector
from cpumodel.objects import Node, Pod, PodAffinityTerm, VirtualMachine, VirtualMachineInstance

ACTIVE_PHASES = ("Pending", "Running", "Unknown", "")  # pods that still occupy their node
VALUES_PER_QUERY = 100  # keeps a batched `key in (...)` selector well inside URL limits
# A selector on one key: `key=value` or `key in (values)`.
_ONE_KEY = re.compile(r"^([^,=!()\s]+)(?:=([^,=!()\s]+)| in \(([^()]*)\))$")


@dataclass(frozen=True)
class Placement:
    """Where pods matching one term run: topology value -> the pods there (namespace/name)."""

    term: PodAffinityTerm
    domains: Mapping[str, Tuple[str, ...]]
    namespace: str  # the VM's: what the term means by "no namespaces"

    def pods_in(self, node: Node) -> Tuple[str, ...]:
        value = node.labels.get(self.term.topology_key)
        return self.domains.get(value, ()) if value is not None else ()


def term_namespaces(term: PodAffinityTerm, namespace: str) -> Optional[Tuple[str, ...]]:
    """The namespaces whose pods a term looks at; None: every namespace."""
    if term.any_namespace:
        return None
    return term.namespaces or (namespace,)


class NearbyPods:
    """The active pods on known nodes, indexed by namespace and by each label, so that thousands of VMs with
    pod (anti-)affinity look only at the pods their terms could select."""

    def __init__(self, pods: Iterable[Pod], nodes: Mapping[str, Node]):
        self.nodes = nodes
        self.by_namespace: Dict[str, List[Pod]] = {}
        self.by_label: Dict[Tuple[str, str, str], List[Pod]] = {}
        for pod in pods:
            if pod.node_name not in nodes or pod.phase not in ACTIVE_PHASES:
                continue
            self.by_namespace.setdefault(pod.namespace, []).append(pod)
            for key, value in pod.labels.items():
                self.by_label.setdefault((pod.namespace, key, value), []).append(pod)

    def candidates(self, term: PodAffinityTerm, namespace: str) -> Iterable[Pod]:
        """A superset of the pods the term selects (a one-key selector narrows it by the index)."""
        spaces = term_namespaces(term, namespace)
        spaces = tuple(self.by_namespace) if spaces is None else spaces
        one_key = _ONE_KEY.match(term.selector)
        for ns in spaces:
            if one_key:
                values = [one_key.group(2)] if one_key.group(2) else one_key.group(3).split(",")
                for value in dict.fromkeys(v.strip() for v in values):
                    yield from self.by_label.get((ns, one_key.group(1), value), ())
            else:
                yield from self.by_namespace.get(ns, ())


def placement(term: PodAffinityTerm, namespace: str, nearby: NearbyPods) -> Placement:
    """The domains of the active pods that match the term, in its namespaces, on known nodes. The VM's own
    launcher pod counts, as it does for the scheduler placing the migration target (the source pod runs
    until the migration completes), and so do pods on nodes being drained, for the same reason."""
    reqs = parse_selector(term.selector) if term.selector else []
    domains: Dict[str, List[str]] = {}
    for pod in nearby.candidates(term, namespace):
        value = nearby.nodes[pod.node_name].labels.get(term.topology_key)  # type: ignore[index]
        if value is not None and matches(reqs, pod.labels):
            domains.setdefault(value, []).append("%s/%s" % (pod.namespace, pod.name))
    return Placement(term, {k: tuple(sorted(v)) for k, v in domains.items()}, namespace)


def violations(placements: Tuple[Placement, ...], own_labels: Mapping[str, str], node: Node
               ) -> List[Tuple[Placement, Tuple[str, ...]]]:
    """Each term the node breaks, with the pods that make it so (anti-affinity) or () (affinity)."""
    found = []
    for p in placements:
        there = p.pods_in(node)
        if p.term.anti:
            if there:
                found.append((p, there))
        elif not there and not first_of_its_kind(p, own_labels):
            found.append((p, ()))
    return found


def first_of_its_kind(p: Placement, own_labels: Mapping[str, str]) -> bool:
    """The scheduler lets the first pod of a group through its own affinity: no matching pod runs anywhere,
    and the pod itself matches the term (InterPodAffinity's self-affinity rule)."""
    if p.domains:
        return False
    return matches(parse_selector(p.term.selector) if p.term.selector else [], own_labels)


def describe(p: Placement, node: Node, pods: Tuple[str, ...]) -> str:
    t = p.term
    where = "%s=%s" % (t.topology_key, node.labels.get(t.topology_key)) if t.topology_key in node.labels \
        else "no %s label" % t.topology_key
    selector = t.selector or "every pod"
    if t.anti:
        shown = ", ".join(pods[:3]) + (" (+%d more)" % (len(pods) - 3) if len(pods) > 3 else "")
        return ("%s is in the same %s domain (%s) as %s, which match%s the VM's pod anti-affinity %s"
                % (node.name, t.topology_key, where, shown, "es" if len(pods) == 1 else "", selector))
    return ("%s (%s) runs no pod matching the VM's pod affinity %s within %s"
            % (node.name, where, selector, t.topology_key))


def placements(terms: Tuple[PodAffinityTerm, ...], namespace: str, nearby: NearbyPods) -> Tuple[Placement, ...]:
    return tuple(placement(t, namespace, nearby) for t in terms)


def terms_of(vm: Optional[VirtualMachine], vmi: Optional[VirtualMachineInstance]) -> Tuple[PodAffinityTerm, ...]:
    """The terms of the pod in question: the running VMI's for a migration, else the next start's (the VM's)."""
    if vmi is not None and (vmi.running or vm is None):
        return vmi.pod_terms
    return vm.template.pod_terms if vm is not None else ()




def pod_queries(wanted: Iterable[Tuple[PodAffinityTerm, str]]) -> List[Tuple[Optional[str], str]]:
    """The pod lists that answer these (term, VM namespace) pairs: (namespace or None for all, label selector).

    Terms that select on one key (`app=db`, `app in (db,cache)`) are batched per namespace and key into
    `key in (...)` lists, so a thousand VMs with a selector each cost a handful of requests, not a thousand;
    each term is matched again locally (`placement`), so a wider list never widens an answer."""
    plain: Dict[Tuple[Optional[str], str], None] = {}
    by_key: Dict[Tuple[Optional[str], str], Dict[str, None]] = {}
    for term, namespace in wanted:
        spaces = term_namespaces(term, namespace)
        one_key = _ONE_KEY.match(term.selector)
        for ns in spaces if spaces is not None else (None,):
            if one_key:
                values = [one_key.group(2)] if one_key.group(2) else one_key.group(3).split(",")
                by_key.setdefault((ns, one_key.group(1)), {}).update(dict.fromkeys(v.strip() for v in values))
            else:
                plain[(ns, term.selector)] = None
    queries = list(plain)
    for (ns, key), values in by_key.items():
        ordered = sorted(values)
        for start in range(0, len(ordered), VALUES_PER_QUERY):
            queries.append((ns, "%s in (%s)" % (key, ",".join(ordered[start:start + VALUES_PER_QUERY]))))
    return queries
