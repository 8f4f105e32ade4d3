"""The migration engine: which nodes would accept a VM's next virt-launcher pod, and why not.

A VM's `Situation` holds the predicted pod constraints (launcher_pod.py). Checking a node
splits in two: the VM-wide checks (not running, not live-migratable, the source node, a
target pod KubeVirt cannot build) and the node checks the scheduler makes (nodeSelector,
required node affinity, cordon, taints, readiness; docs/kubevirt-rules.md §3.4, §4), plus the VM's
own pod (anti-)affinity, which depends on where other pods run (pod_affinity.py, §3.6).

The node checks depend only on the pod's `Demand` and on the few labels it names, so they
are computed once per (demand, class of nodes that look alike to it) and shared by every
VM with that demand: a cluster-wide question over 10,000 VMs and 5,000 nodes costs a few
demands × a few node classes, not 50 million evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from cpumodel.core import labels as L
from cpumodel.core.catalog import Catalog
from cpumodel.core.labels import NodeCpu
from cpumodel.core.node_index import NodeIndex, popcount
from cpumodel.core.nodes import NodeCpuCache
from cpumodel.core.launcher_pod import Demand, PodConstraints, fresh_start, migration_target, start_vmi
from cpumodel.core.pod_affinity import Placement, first_of_its_kind, violations
from cpumodel.core.pod_affinity import describe as describe_placement
from cpumodel.core.reasons import CPU_CATEGORIES, Category, Reason, selector_category
from cpumodel.core.selectors import describe_requirement, failing_requirements, untolerated_taints
from cpumodel.objects import (HOST_MODEL, HOST_PASSTHROUGH, CpuProfile, KubeVirtConfig, Node, Pod, Requirement, Taint,
                              VirtualMachine, VirtualMachineInstance)


T = TypeVar("T")
PENDING_PHASES = ("Pending", "Scheduling", "Scheduled")  # a VMI whose pod is not running yet


@dataclass(frozen=True)
class VmState:
    """What was read about one VM: the VM, its VMI and the VMI's current launcher pod (any may be absent)."""

    name: str
    namespace: str
    vm: Optional[VirtualMachine]
    vmi: Optional[VirtualMachineInstance]
    launcher: Optional[Pod]
    profile: Optional[CpuProfile] = None  # what the VM's instancetype and preference give its CPU
    placements: Tuple[Placement, ...] = ()  # where pods its pod (anti-)affinity terms look for run


@dataclass(frozen=True)
class Situation:
    """Everything the checks need about the VM, independent of the target node."""

    vm_name: str
    running: bool
    source_node: Optional[str]
    vmi: Optional[VirtualMachineInstance]
    constraints: PodConstraints
    placements: Tuple[Placement, ...] = ()
    own_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeVerdict:
    node: str
    migratable: bool
    reasons: Tuple[Reason, ...]
    warnings: Tuple[str, ...] = ()


# What a node lacks for a demand, without the node's name, so that alike nodes share it.
@dataclass(frozen=True)
class MissingLabel:
    key: str
    want: str
    have: Optional[str]


@dataclass(frozen=True)
class FailedAffinity:
    requirement: Requirement


@dataclass(frozen=True)
class NodeState:
    """cordoned, untolerated taint or not Ready."""

    category: Category
    taint: Optional[Taint] = None


Failure = Union[MissingLabel, FailedAffinity, NodeState]


def situation(state: VmState, nodes: Dict[str, Node], kubevirt: Optional[KubeVirtConfig],
              cpu_of: Optional[Callable[[Node], NodeCpu]] = None) -> Situation:
    """A running VM is judged as a migration; anything else as a fresh start (not-running)."""
    vmi = state.vmi
    if vmi is not None and vmi.running:
        source = nodes.get(vmi.node_name)  # type: ignore[arg-type]
        cpu = cpu_of(source) if cpu_of is not None and source is not None else None
        constraints = migration_target(vmi, state.vm, kubevirt, state.launcher, source, cpu)
        return Situation(state.name, True, vmi.node_name, vmi, constraints, state.placements, vmi.labels)
    if vmi is not None and vmi.phase in PENDING_PHASES:
        # Its launcher pod waits to be scheduled with the model written into the VMI at creation,
        # whatever the VM spec or the cluster default says now.
        base = vmi
        note = "%s is not running yet: its VMI waits to be scheduled; showing where its pod could land" % state.name
    else:
        base = start_vmi(state.vm, kubevirt, state.profile) if state.vm is not None else vmi
        note = "%s is not running: showing whether a fresh start could land on each node" % state.name
        if state.profile is not None and state.profile.model and state.vm is not None and not state.vm.cpu_model:
            note += "; its CPU model %s comes from %s" % (state.profile.model, state.profile.instancetype)
    return Situation(state.name, False, None, vmi, fresh_start(base, state.vm, kubevirt, note),  # type: ignore[arg-type]
                     state.placements, base.labels if base is not None else {})


def launchers_by_vmi(pods: Sequence[Pod]) -> Dict[str, List[Pod]]:
    """virt-launcher pods (current and migration targets) by the uid of their VMI: KubeVirt labels each with it
    (`kubevirt.io/created-by`)."""
    found: Dict[str, List[Pod]] = {}
    for pod in pods:
        found.setdefault(pod.labels.get("kubevirt.io/created-by", ""), []).append(pod)
    return found


def current_launcher(vmi: VirtualMachineInstance, pods: Sequence[Pod]) -> Optional[Pod]:
    """KubeVirt's CurrentVMIPod: the VMI's launcher pod on status.nodeName, newest first (kubevirt-rules §3.5)."""
    own = [p for p in pods if p.node_name == vmi.node_name and (not p.owner_uids or vmi.uid in p.owner_uids)]
    return max(own, key=lambda p: (p.created, p.name)) if own else None


def vm_reasons(s: Situation, node: Node) -> List[Reason]:
    """The checks that do not depend on the node's labels, in reporting order."""
    reasons = []
    if not s.running:
        reasons.append(Reason(Category.NOT_RUNNING, None, "%s is not running, so there is nothing to migrate; the "
                              "other reasons say why it could not start on %s" % (s.vm_name, node.name)))
    cond = s.vmi.condition("LiveMigratable") if s.vmi and s.running else None
    if cond is not None and cond.status == "False":
        reasons.append(Reason(Category.NOT_MIGRATABLE, None, "KubeVirt marks %s as not live-migratable (%s: %s); "
                              "no node can take it" % (s.vm_name, cond.reason or "LiveMigratable=False",
                                                        cond.message or "no message")))
    if s.running and node.name == s.source_node:
        reasons.append(Reason(Category.SOURCE_NODE, None, "%s already runs on %s (the migration target pod's "
                              "anti-affinity keeps it off the source node)" % (s.vm_name, node.name)))
    if s.constraints.blocked:
        reasons.append(Reason(Category.CPU_MODEL_MIGRATION, None, s.constraints.blocked))
    return reasons


ORIGIN_POD_AFFINITY = "the VM spec's pod affinity (spec.template.spec.affinity), which KubeVirt copies to every " \
                      "virt-launcher pod, migration targets included"


def pod_reasons(s: Situation, node: Node) -> List[Reason]:
    return [Reason(Category.POD_AFFINITY, p.term.topology_key,
                   "%s; required because %s" % (describe_placement(p, node, pods), ORIGIN_POD_AFFINITY),
                   ORIGIN_POD_AFFINITY) for p, pods in violations(s.placements, s.own_labels, node)]


def node_failures(demand: Demand, node: Node) -> Tuple[Failure, ...]:
    """Everything the scheduler would hold against the node for this demand, in check order."""
    found: List[Failure] = [MissingLabel(key, want, node.labels.get(key)) for key, want in demand.node_selector
                            if node.labels.get(key) != want]
    found += [FailedAffinity(req) for req in failing_requirements(demand.terms, node)]
    if node.unschedulable:
        found.append(NodeState(Category.CORDONED))
    found += [NodeState(Category.TAINT, t) for t in untolerated_taints(node.taints, demand.tolerations)]
    if node.ready is False:
        found.append(NodeState(Category.NOT_READY))
    return tuple(found)


def failure_key(failure: Failure) -> Tuple[Category, Optional[str]]:
    """What a failure is about, without the node: its category and label key."""
    if isinstance(failure, MissingLabel):
        return selector_category(failure.key), failure.key
    if isinstance(failure, FailedAffinity):
        return Category.NODE_AFFINITY, failure.requirement.key or None
    return failure.category, failure.taint.key if failure.taint else None


def failure_origin(failure: Failure, constraints: PodConstraints) -> Optional[str]:
    if isinstance(failure, MissingLabel):
        return next(c.origin for c in constraints.node_selector if c.key == failure.key)
    if isinstance(failure, FailedAffinity):
        return constraints.requirement_origin(failure.requirement)
    return None


def failure_reason(failure: Failure, node: Node, constraints: PodConstraints) -> Reason:
    if isinstance(failure, MissingLabel):
        origin = next(c.origin for c in constraints.node_selector if c.key == failure.key)
        state = ("lacks %s=%s" % (failure.key, failure.want) if failure.have is None
                 else "has %s=%s, not %s" % (failure.key, failure.have, failure.want))
        return Reason(selector_category(failure.key), failure.key,
                      "%s %s; required because %s" % (node.name, state, origin), origin)
    if isinstance(failure, FailedAffinity):
        req = failure.requirement
        origin = constraints.requirement_origin(req)
        return Reason(Category.NODE_AFFINITY, req.key or None, "%s fails required node affinity %s; required "
                      "because %s" % (node.name, describe_requirement(req), origin), origin)
    if failure.category is Category.CORDONED:
        return Reason(Category.CORDONED, None, "%s is cordoned (spec.unschedulable); uncordon it with "
                      "`kubectl uncordon %s`" % (node.name, node.name))
    if failure.category is Category.TAINT:
        t = failure.taint
        return Reason(Category.TAINT, t.key, "%s has taint %s%s:%s, which the virt-launcher pod does not tolerate"  # type: ignore[union-attr]
                      % (node.name, t.key, "=" + t.value if t.value else "", t.effect))  # type: ignore[union-attr]
    return Reason(Category.NOT_READY, None, "%s is not Ready" % node.name)


class MigrationEngine:
    """Verdicts of every node for any number of VMs. Cluster-wide questions go through the node index
    (node_index.py): a demand's accepting nodes are an intersection of the sets its labels name, so the cost
    grows with what demands name, not with demands x kinds of node."""

    def __init__(self, nodes: Sequence[Node], kubevirt: Optional[KubeVirtConfig],
                 views: Optional[Callable[[Node], NodeCpu]] = None):
        """`views`: a node's CPU view, when the caller keeps them across engines (what-if's two clusters)."""
        self.nodes = tuple(sorted(nodes, key=lambda n: n.name))
        self._views = views
        self.by_name = {n.name: n for n in self.nodes}
        self.kubevirt = kubevirt
        self.index = NodeIndex(self.nodes)
        self._failures: Dict[Tuple[Demand, tuple], Tuple[Failure, ...]] = {}
        self._accepting: Dict[Demand, int] = {}
        self._fitting: Dict[Demand, FrozenSet[str]] = {}
        self._fitting_among: Dict[FrozenSet[str], Dict[Demand, FrozenSet[str]]] = {}
        self._last_set: Dict[int, tuple] = {}  # id of a per-set cache -> (the set last asked, its table)
        self._cpus: Dict[str, NodeCpu] = {}
        self._cpu_cache = NodeCpuCache()
        self._counts: Dict[FrozenSet[str], Dict[Demand, Dict[Tuple[Category, Optional[str]], Tuple[int, Failure]]]] = {}
        self._topology: Dict[str, Dict[str, FrozenSet[str]]] = {}

    def situation(self, state: VmState) -> Situation:
        return situation(state, self.by_name, self.kubevirt, self.cpu)

    def cpu(self, node: Node) -> NodeCpu:
        """node_cpu, once per node (and once per identical label set)."""
        found = self._cpus.get(node.name)
        if found is None:
            found = self._cpus[node.name] = self._views(node) if self._views else self._cpu_cache(node.labels)
        return found

    def failures(self, demand: Demand, node: Node) -> Tuple[Failure, ...]:
        """One node's failures with their details (for the nodes a report shows)."""
        looks = (tuple(node.labels.get(k) for k in demand.label_keys), node.unschedulable, node.taints, node.ready,
                 node.name if demand.uses_node_name else None)
        cached = self._failures.get((demand, looks))
        if cached is None:
            cached = self._failures[(demand, looks)] = node_failures(demand, node)
        return cached

    def accepting(self, demand: Demand) -> int:
        """The nodes (a mask) whose labels, cordon, taints and readiness accept the demand: what node_failures
        finds nothing against, for every node at once."""
        found = self._accepting.get(demand)
        if found is None:
            index = self.index
            found = index.all & ~index.cordoned & ~index.not_ready
            for key, want in demand.node_selector:
                if not found:
                    break
                found &= index.equal(key, want)
            if found and demand.terms:
                found &= index.affinity(demand.terms)
            if found and index.tainted:
                found &= index.tolerated(demand.tolerations)
            self._accepting[demand] = found
        return found

    def reasons(self, s: Situation, node: Node) -> Tuple[Reason, ...]:
        """Every reason the node cannot take the VM, sorted by category then key."""
        found = vm_reasons(s, node)
        found += [failure_reason(f, node, s.constraints) for f in self.failures(s.constraints.demand, node)]
        found += pod_reasons(s, node)
        return tuple(sorted(found, key=lambda r: r.sort_key))

    def accepts(self, s: Situation, node: Node) -> bool:
        """The verdict alone, without building messages (cluster-wide questions ask it millions of times)."""
        return s.running and not vm_reasons(s, node) \
            and self.index.has(self.accepting(s.constraints.demand), node.name) \
            and not violations(s.placements, s.own_labels, node)

    def fitting(self, s: Situation) -> FrozenSet[str]:
        """Every node the scheduler would place the pod on: one intersection of label sets per distinct demand,
        then the VM's own pod (anti-)affinity, which depends on the node itself."""
        if s.constraints.blocked:
            return frozenset()
        demand = s.constraints.demand
        found = self._fitting.get(demand)
        if found is None:
            found = self._fitting[demand] = self.index.names(self.accepting(demand))
        return self.pod_filter(s, found) if s.placements else found

    def pod_filter(self, s: Situation, names: FrozenSet[str]) -> FrozenSet[str]:
        """The nodes the VM's pod (anti-)affinity leaves of `names`, by whole topology domains (as `violations`
        decides per node): thousands of VMs with such terms must not each walk every node."""
        for p in s.placements:
            index = self.topology(p.term.topology_key)
            inside = frozenset().union(*(index.get(value, ()) for value in p.domains))
            if p.term.anti:
                names = names - inside
            elif not first_of_its_kind(p, s.own_labels):
                names = names & inside
        return names

    def topology(self, key: str) -> Dict[str, FrozenSet[str]]:
        """Topology value -> the nodes in that domain, for one topology key."""
        found = self._topology.get(key)
        if found is None:
            found = self._topology[key] = {value: self.index.names(where)
                                           for value, where in self.index.values(key).items() if value is not None}
        return found

    def fitting_among(self, s: Situation, names: FrozenSet[str]) -> FrozenSet[str]:
        """`fitting` within a fixed set of nodes, shared by every VM with the same demand."""
        if s.placements:
            return self.fitting(s) & names
        if s.constraints.blocked:
            return frozenset()
        table = self._per_set(self._fitting_among, names)
        found = table.get(s.constraints.demand)
        if found is None:
            found = table[s.constraints.demand] = self.index.names(self.accepting(s.constraints.demand)
                                                                    & self.index.of(names))
        return found

    def _per_set(self, tables: Dict[FrozenSet[str], Dict[Demand, T]], names: FrozenSet[str]) -> Dict[Demand, T]:
        """The cache of one set of nodes. Callers ask about one set (the VM-capable nodes, a drain's eligible
        ones) thousands of times in a row: it is found by identity, as two equal sets of thousands of names
        would be compared name by name in every lookup of a (demand, set) key."""
        last = self._last_set.get(id(tables))
        if last is not None and last[0] is names:
            return last[1]
        table = tables.setdefault(names, {})
        self._last_set[id(tables)] = (names, table)
        return table

    def failure_counts(self, demand: Demand, names: FrozenSet[str]
                       ) -> Dict[Tuple[Category, Optional[str]], Tuple[int, Failure]]:
        """For the named nodes: each (category, key) that fails, on how many of them, and one such failure (that of
        the first such node) — what summing node_failures over the nodes gives, from the node index."""
        table = self._per_set(self._counts, names)
        counts = table.get(demand)
        if counts is None:
            counts = table[demand] = self._failure_counts(demand, self.index.of(names))
        return counts

    def _failure_counts(self, demand: Demand, candidates: int
                        ) -> Dict[Tuple[Category, Optional[str]], Tuple[int, Failure]]:
        index = self.index
        counts: Dict[Tuple[Category, Optional[str]], Tuple[int, Failure]] = {}

        def add(key: Tuple[Category, Optional[str]], failing: int, sample) -> None:
            count = popcount(failing)
            if count:
                seen = counts.get(key)
                counts[key] = (seen[0] + count, seen[1]) if seen else (count, sample(index.first(failing)))

        for key, want in demand.node_selector:
            add((selector_category(key), key), candidates & ~index.equal(key, want),
                lambda node, key=key, want=want: MissingLabel(key, want, node.labels.get(key)))
        if demand.terms:
            refused = candidates & ~index.affinity(demand.terms)
            if refused:
                # node_failures lists, per refused node, every requirement of every term it fails (each once),
                # or EmptyTerm when it fails none (only empty terms were left): counted per label key.
                requirements = list(dict.fromkeys(r for t in demand.terms for r in t.requirements))
                empty = Requirement("", "EmptyTerm")
                by_key: Dict[Optional[str], List[Tuple[Requirement, int]]] = {}
                passes_all = refused
                for req in requirements:
                    failing = refused & ~index.requirement(req)
                    passes_all &= ~failing
                    by_key.setdefault(req.key or None, []).append((req, failing))
                by_key.setdefault(None, []).append((empty, passes_all))
                for key, failing_reqs in by_key.items():
                    count = sum(popcount(failing) for _, failing in failing_reqs)
                    if count:
                        first = min(((f & -f).bit_length() - 1, order) for order, (_, f) in enumerate(failing_reqs)
                                    if f)
                        counts[(Category.NODE_AFFINITY, key)] = (count, FailedAffinity(failing_reqs[first[1]][0]))
        add((Category.CORDONED, None), candidates & index.cordoned, lambda node: NodeState(Category.CORDONED))
        for i in index.tainted:
            if candidates >> i & 1:
                node = index.nodes[i]
                for taint in untolerated_taints(node.taints, demand.tolerations):
                    add((Category.TAINT, taint.key), 1 << i, lambda node, taint=taint: NodeState(Category.TAINT, taint))
        add((Category.NOT_READY, None), candidates & index.not_ready, lambda node: NodeState(Category.NOT_READY))
        return counts

    def verdict(self, s: Situation, node: Node, catalog: Optional[Catalog] = None) -> NodeVerdict:
        reasons = self.reasons(s, node)
        ok = s.running and not reasons
        warnings = tuple(libvirt_warnings(catalog, s, self.by_name.get(s.source_node or ""), node, self.cpu)) \
            if ok and catalog is not None else ()
        return NodeVerdict(node.name, ok, reasons, warnings)


def live_migratable(vmi: VirtualMachineInstance) -> bool:
    cond = vmi.condition("LiveMigratable")
    return cond is None or cond.status != "False"


def needs_cpu_fix(reasons: Sequence[Reason]) -> bool:
    """Whether a named CPU model would clear some of these reasons."""
    return any(r.category in CPU_CATEGORIES and (r.category is not Category.NODE_AFFINITY or (r.key or "").startswith(
        (L.CPU_FEATURE, L.OBSOLETE_HOST_MODEL))) for r in reasons)


def suggest_model(catalog: Catalog, nodes: Sequence[Optional[Node]], common: Sequence[str],
                  obsolete: frozenset) -> Optional[str]:
    """A named model all the given nodes label usable, preferring the cluster-wide common answer (best first)."""
    usable: Optional[set] = None
    for node in nodes:
        if node is not None:
            models = L.node_cpu(node.labels).models
            usable = set(models) if usable is None else usable & models
    usable = (usable or set()) - obsolete
    for model in common:
        if model in usable:
            return model
    ranked = catalog.rank(usable)
    known = [m for m in ranked if catalog.knows(m)]
    return (known or ranked or [None])[0]


def libvirt_warnings(catalog: Catalog, s: Situation, source: Optional[Node], target: Node,
                     cpu_of: Callable[[Node], NodeCpu] = lambda node: L.node_cpu(node.labels)) -> List[str]:
    """What the scheduler lets through but libvirt on the target would likely refuse (kubevirt-rules §3.3-§3.4)."""
    check = libvirt_check(catalog, s, source, cpu_of)
    return check(target) if check is not None else []


def libvirt_check(catalog: Catalog, s: Situation, source: Optional[Node],
                  cpu_of: Callable[[Node], NodeCpu] = lambda node: L.node_cpu(node.labels)
                  ) -> Optional[Callable[[Node], List[str]]]:
    """The per-target check of libvirt_warnings with the VM's part worked out once (None: nothing to check).

    With KubeVirt >= 1.8 every node carries `cpu-model-migration.*` for every known model, so
    a host-model VM can be placed on a CPU that lacks base features of its host model, and
    the migration then fails in libvirt with "missing features". host-passthrough needs an
    identical CPU.
    """
    if not s.running or s.vmi is None:
        return None
    if s.vmi.cpu_model == HOST_PASSTHROUGH:
        source_cpu = cpu_of(source) if source is not None else None
        if source_cpu is None:
            return None

        def passthrough(target: Node) -> List[str]:
            target_cpu = cpu_of(target)
            if not target_cpu.features or source_cpu.features == target_cpu.features:  # type: ignore[union-attr]
                return []
            return ["host-passthrough: libvirt needs the same CPU on both nodes; %s offers different CPU features "
                    "than %s (%s)" % (target.name, source.name,  # type: ignore[union-attr]
                                      _difference(source_cpu.features, target_cpu.features))]  # type: ignore[union-attr]
        return passthrough
    models = s.constraints.selector_keys(L.CPU_MODEL_MIGRATION)
    if s.vmi.cpu_model != HOST_MODEL or not models or not catalog.knows(models[0]):
        return None
    # A look-up per feature of the model, not a pass over the node's hundreds of labels.
    wanted = catalog.features(models[0]) - set(s.constraints.selector_keys(L.CPU_FEATURE))

    def host_model(target: Node) -> List[str]:
        missing = sorted(wanted - cpu_of(target).features)  # the node's cpu-feature labels, as a set
        if not missing or len(missing) == len(wanted):  # nothing missing, or a node without CPU labels at all
            return []
        return ["the scheduler would allow it, but %s's CPU lacks %s of host model %s; libvirt would likely fail the "
                "migration with \"missing features\"" % (target.name, ", ".join(missing), models[0])]
    return host_model


def _difference(a: frozenset, b: frozenset) -> str:
    only_a, only_b = sorted(a - b), sorted(b - a)
    parts = ["missing " + ", ".join(only_a[:6]) + (" …" if len(only_a) > 6 else "")] if only_a else []
    parts += ["extra " + ", ".join(only_b[:6]) + (" …" if len(only_b) > 6 else "")] if only_b else []
    return "; ".join(parts)
