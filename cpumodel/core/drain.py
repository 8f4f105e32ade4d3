"""`drain-check`: what a node drain does to every VM on the drained nodes, and the one fix for the blocked ones.

KubeVirt's eviction (docs/kubevirt-rules.md §8): the VMI's `spec.evictionStrategy`, else the
KubeVirt CR's `spec.configuration.evictionStrategy`, else `None`. `LiveMigrate` migrates or the
drain waits for ever; `LiveMigrateIfPossible` migrates when the VMI is live-migratable and shuts
it down otherwise; `None` shuts down; `External` leaves it to another controller. On Harvester
the VM label `harvesterhci.io/maintain-mode-strategy` decides maintenance mode: its `Shutdown*`
values shut the VM down whatever the eviction strategy. A migrating VM needs a node that accepts
its target pod: the migration engine answers that, node by node, for the candidate nodes (not
drained, VM-capable, not cordoned, Ready); then room on them (capacity.py): the drain's VMs are placed
one after another, and one that fits nowhere blocks the drain (kubevirt-rules §10).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from itertools import islice
from typing import Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core import labels as L
from cpumodel.core.catalog import Catalog
from cpumodel.core.launcher_pod import Demand
from cpumodel.core.migration import (ORIGIN_POD_AFFINITY, MigrationEngine, Situation, VmState, current_launcher,
                                     failure_key, failure_origin,
                                     libvirt_check, live_migratable, needs_cpu_fix, vm_reasons)
from cpumodel.core.capacity import (Placement, Request, Room, cpu_of, gap_fix, memory_of,
                                     shortfall_message)
from cpumodel.core.node_index import NodeIndex, popcount, positions
from cpumodel.core.nodes import split_nodes
from cpumodel.core.pod_affinity import NearbyPods, placements, violations
from cpumodel.core.reasons import Category, Reason
from cpumodel.objects import KubeVirtConfig, Node, Pod, VirtualMachineInstance

LIVE_MIGRATE, IF_POSSIBLE, EXTERNAL, NO_EVICTION = "LiveMigrate", "LiveMigrateIfPossible", "External", "None"
MAINTAIN_MODE_LABEL = "harvesterhci.io/maintain-mode-strategy"
HARVESTER_DEFAULT_MAINTAIN_MODE = "Migrate"  # a VM without the label, on Harvester
SHUTDOWN_MAINTAIN_MODES = frozenset({"ShutdownAndRestartAfterEnable", "ShutdownAndRestartAfterDisable", "Shutdown"})
FIX_MODELS_TRIED = 24  # best-ranked candidate models simulated for the fix


class Action(str, enum.Enum):
    MIGRATE = "migrate"
    SHUTDOWN = "shutdown"
    BLOCKED = "blocked"
    EXTERNAL = "external"
    STOPPED = "stopped"  # upgrade-check: the platform stops a VM whose evacuation failed (Harvester ≥ v1.7)


@dataclass(frozen=True)
class BlockingKey:
    """One reason that keeps candidate nodes from taking the VM, and on how many of them it does."""

    category: Category
    key: Optional[str]
    message: str
    nodes: int


@dataclass(frozen=True)
class DrainWarning:
    code: str
    message: str


@dataclass(frozen=True)
class Fix:
    model: str
    vms: Tuple[Tuple[str, str], ...]  # (namespace, name) it unblocks

    @property
    def commands(self) -> Tuple[str, ...]:
        by_namespace: Dict[str, List[str]] = {}
        for namespace, name in self.vms:
            by_namespace.setdefault(namespace, []).append("vm/" + name)
        return tuple("kubectl cpumodel set %s %s -n %s --restart" % (" ".join(vms), self.model, ns)
                     for ns, vms in sorted(by_namespace.items()))


@dataclass(frozen=True)
class Targets:
    """The nodes a VM would migrate to, as a bitset over the engine's node index (node_index.py).

    A mask costs a few hundred bytes whatever the cluster, and names are made only when shown.
    """

    index: Optional[NodeIndex] = None
    mask: int = 0
    pool: int = 0  # the nodes the labels accept, drained ones included: shared by VMs alike, so a cache key

    def __len__(self) -> int:
        return popcount(self.mask)

    def names(self, limit: int = 0) -> Tuple[str, ...]:
        """In name order (the index's order); the first `limit` when it is set."""
        if self.index is None:
            return ()
        found = positions(self.mask)
        return tuple(self.index.nodes[i].name for i in (islice(found, limit) if limit else found))


@dataclass(frozen=True)
class VmDrain:
    vm: str
    namespace: str
    node: str
    eviction_strategy: str
    maintain_mode_strategy: Optional[str]
    action: Action
    targets: Targets
    reasons: Tuple[BlockingKey, ...]
    warnings: Tuple[DrainWarning, ...]
    suggestion: Optional[str]  # the model that would unblock it
    requests: Optional[Request] = None  # its target pod's (the current launcher's); None: not known
    placed_on: Optional[str] = None  # where capacity placement put it
    room_fix: Optional[str] = None  # how much room is missing where, when room is all that blocks it


@dataclass(frozen=True)
class DrainResult:
    drained: Tuple[str, ...]
    eligible: FrozenSet[str]  # nodes that can take VMs at all; the candidates are these minus the drained
    vms: Tuple[VmDrain, ...]
    fix: Optional[Fix]
    capacity: bool = False  # whether room on the targets was counted

    @property
    def candidates(self) -> Tuple[str, ...]:
        return tuple(sorted(self.eligible - frozenset(self.drained)))

    @property
    def summary(self) -> Dict[str, int]:
        counts = {action.value: 0 for action in (Action.MIGRATE, Action.SHUTDOWN, Action.BLOCKED, Action.EXTERNAL)}
        for vm in self.vms:
            counts[vm.action.value] = counts.get(vm.action.value, 0) + 1
        return counts

    @property
    def blocked(self) -> Tuple[VmDrain, ...]:
        return tuple(v for v in self.vms if v.action is Action.BLOCKED)


@dataclass(frozen=True)
class RunningVm:
    """A VMI on a node, with its current launcher pod and what its VM says about maintenance."""

    vmi: VirtualMachineInstance
    launcher: Optional[Pod]
    maintain_mode: Optional[str]


def running_vms(vmis: Sequence[VirtualMachineInstance], by_vmi: Mapping[str, Sequence[Pod]],
                maintain_modes: Mapping[Tuple[str, str], str], harvester: bool) -> List[RunningVm]:
    """The running VMIs with their current launcher pod (`by_vmi`: launchers_by_vmi) and maintain-mode strategy
    (Harvester's default when the VM has no label: `Migrate`)."""
    default = HARVESTER_DEFAULT_MAINTAIN_MODE if harvester else None
    return [RunningVm(v, current_launcher(v, by_vmi.get(v.uid, [])), maintain_modes.get((v.namespace, v.name), default))
            for v in vmis if v.running]


def eviction_strategy(vmi: VirtualMachineInstance, kubevirt: Optional[KubeVirtConfig]) -> str:
    return vmi.eviction_strategy or (kubevirt.eviction_strategy if kubevirt else None) or NO_EVICTION


def decide(strategy: str, maintain_mode: Optional[str], live: bool, has_target: bool) -> Action:
    """The action of one VM (the drain-check table in docs/json-contract.md)."""
    if maintain_mode in SHUTDOWN_MAINTAIN_MODES:
        return Action.SHUTDOWN
    if strategy == EXTERNAL:
        return Action.EXTERNAL
    if strategy == LIVE_MIGRATE:
        return Action.MIGRATE if live and has_target else Action.BLOCKED
    if strategy == IF_POSSIBLE:
        if not live:
            return Action.SHUTDOWN
        return Action.MIGRATE if has_target else Action.BLOCKED
    return Action.SHUTDOWN


class DrainPlanner:
    """Drain checks over one engine: the nodes that could ever take a VM, and work shared between steps."""

    def __init__(self, catalog: Catalog, engine: MigrationEngine, obsolete: frozenset, pods: Sequence[Pod] = ()):
        """`pods`: those the VMs' pod (anti-)affinity terms look at."""
        self.catalog, self.engine, self.obsolete = catalog, engine, obsolete
        self.nearby = NearbyPods(pods, engine.by_name)
        self.capable = frozenset(n.name for n in split_nodes(engine.nodes, engine.cpu).capable)
        # Targets are VM-capable, schedulable and Ready; a step also leaves out the drained nodes.
        self.eligible = frozenset(n.name for n in engine.nodes if n.name in self.capable and not n.unschedulable
                                  and n.ready is not False)
        self._warned: Dict[tuple, Tuple[DrainWarning, ...]] = {}
        self._offered: Optional[FrozenSet[str]] = None

    def pool(self, s: Situation) -> FrozenSet[str]:
        if not s.running or not live_migratable(s.vmi):  # type: ignore[arg-type]
            return frozenset()
        return self.engine.fitting_among(s, self.eligible)

    def needed(self, drained: Sequence[str], running: Sequence[RunningVm]) -> FrozenSet[str]:
        """The nodes whose room a drain of `drained` asks about: every target the labels allow some VM."""
        gone = frozenset(drained)
        found: set = set()
        for vm in running:
            found |= self.pool(self.engine.situation(self._state(vm)))
        return frozenset(found - gone)

    def _state(self, vm: RunningVm) -> VmState:
        nearby = placements(vm.vmi.pod_terms, vm.vmi.namespace, self.nearby) if vm.vmi.pod_terms else ()
        return VmState(vm.vmi.name, vm.vmi.namespace, None, vm.vmi, vm.launcher, None, nearby)

    def check(self, drained: Sequence[str], running: Sequence[RunningVm], room: Optional[Room] = None,
              explain: bool = True) -> DrainResult:
        """`room`: the nodes' free room (capacity.py); None leaves room out of the answer. Without `explain`, the
        actions and targets only: no reasons, libvirt warnings or fix (what-if compares actions)."""
        gone = frozenset(drained)
        index = self.engine.index
        away = index.of(gone)
        candidates = len(self.eligible) - len(gone & self.eligible)
        results, blocked_states, seen = [], [], {}
        for vm in sorted(running, key=lambda r: (r.vmi.namespace, r.vmi.name)):
            state = self._state(vm)
            s = self.engine.situation(state)
            seen[(vm.vmi.namespace, vm.vmi.name)] = vm, s
            pool = index.of(self.pool(s))
            targets = Targets(index, pool & ~away, pool)
            strategy = eviction_strategy(vm.vmi, self.engine.kubevirt)
            action = decide(strategy, vm.maintain_mode, live_migratable(vm.vmi), bool(targets.mask))
            reasons = self.blocking_keys(s, gone, candidates) if action is Action.BLOCKED and explain else ()
            if action is Action.BLOCKED and needs_cpu_fix([Reason(k.category, k.key, k.message) for k in reasons]):
                blocked_states.append((state, s))
            results.append(VmDrain(vm.vmi.name, vm.vmi.namespace, vm.vmi.node_name or "", strategy, vm.maintain_mode,
                                   action, targets, reasons, (), None,
                                   vm.launcher.requests if vm.launcher is not None else None))
        if room is not None:
            results = self.place(results, room)
        if not explain:
            return DrainResult(tuple(drained), self.eligible, tuple(results), None, room is not None)
        results = [replace(r, warnings=self.warnings(seen[(r.namespace, r.vm)][1], seen[(r.namespace, r.vm)][0],
                                                     r.targets)) if r.action is Action.MIGRATE else r for r in results]
        fix, per_vm = self.best_fix(blocked_states, gone)
        results = [replace(r, suggestion=per_vm.get((r.namespace, r.vm))) for r in results]
        return DrainResult(tuple(drained), self.eligible, tuple(results), fix, room is not None)

    def place(self, results: List[VmDrain], room: Room) -> List[VmDrain]:
        """The migrating VMs placed one after another, largest memory request first, each on the target with the
        most free memory (contract "drain-check capacity"); a VM no target has room for blocks the drain as the
        scheduler leaves its target pod Pending. A VM whose requests are not known keeps its targets."""
        placement = Placement(room)
        order = sorted((i for i, r in enumerate(results) if r.action is Action.MIGRATE and r.requests is not None),
                       key=lambda i: (-memory_of(results[i].requests), -cpu_of(results[i].requests),  # type: ignore
                                      results[i].namespace, results[i].vm))
        for i in order:
            r = results[i]
            node, fitting = placement.place(r.requests, r.targets.mask)  # type: ignore[arg-type]
            if node is not None:
                results[i] = replace(r, targets=Targets(r.targets.index, fitting, r.targets.pool), placed_on=node)
                continue
            shortfalls = placement.shortfalls(r.requests, r.targets.mask, r.targets.pool)  # type: ignore[arg-type]
            count = len(r.targets)
            reasons = tuple(BlockingKey(Category.CAPACITY, s.resource, shortfall_message(s, count), s.nodes)
                            for s in shortfalls)
            action = decide(r.eviction_strategy, r.maintain_mode_strategy, True, False)
            results[i] = replace(r, action=action, targets=Targets(r.targets.index, 0, r.targets.pool), reasons=reasons,
                                 room_fix=gap_fix(placement.closest(r.requests, r.targets.mask,  # type: ignore
                                                                    r.targets.pool)))
        return results

    def blocking_keys(self, s: Situation, gone: FrozenSet[str], candidates: int) -> Tuple[BlockingKey, ...]:
        """Each reason once, with the number of candidates it blocks; those that block every candidate first."""
        if not candidates:
            return (BlockingKey(Category.SCHEDULABLE, None, "no other node can take VMs: every other node is "
                                "drained, cordoned, not Ready or not VM-capable", 0),)
        keys = [BlockingKey(r.category, r.key, r.message, candidates)
                for r in vm_reasons(s, self.engine.nodes[0]) if r.category is not Category.SOURCE_NODE]
        counts = dict(self.engine.failure_counts(s.constraints.demand, self.eligible))
        for name in gone & self.eligible:  # the drained nodes are no candidates
            for failure in self.engine.failures(s.constraints.demand, self.engine.by_name[name]):
                count, sample = counts[failure_key(failure)]
                counts[failure_key(failure)] = (count - 1, sample)
        for (category, key), (count, sample) in counts.items():
            if count > 0:
                origin = failure_origin(sample, s.constraints)
                why = "required because %s" % origin if origin else category.value
                keys.append(BlockingKey(category, key, why, count))
        keys += self.pod_blocking_keys(s, gone)
        return tuple(sorted(keys, key=lambda k: (-k.nodes, k.category.rank, k.key or "")))

    def pod_blocking_keys(self, s: Situation, gone: FrozenSet[str]) -> List[BlockingKey]:
        """The VM's pod (anti-)affinity terms, each with the number of candidates it rules out."""
        if not s.placements:
            return []
        counts: Dict[str, int] = {}
        for name in self.eligible - gone:
            for p, _ in violations(s.placements, s.own_labels, self.engine.by_name[name]):
                counts[p.term.topology_key] = counts.get(p.term.topology_key, 0) + 1
        return [BlockingKey(Category.POD_AFFINITY, key, "required because %s" % ORIGIN_POD_AFFINITY, count)
                for key, count in counts.items()]

    def warnings(self, s: Situation, vm: RunningVm, targets: Targets) -> Tuple[DrainWarning, ...]:
        """What the labels allow but libvirt or QEMU is known to refuse (never changes the action)."""
        source = self.engine.by_name.get(s.source_node or "")
        key = (s.constraints.demand, self.engine.cpu(source).features if source else None, vm.vmi.cpu_model,
               vm.vmi.threads, targets.mask)
        found = self._warned.get(key)
        if found is None:
            found = self._warned[key] = self._cpu_warnings(s, vm, source, targets)
        if "kubevirt.io/outdatedLauncherImage" in vm.vmi.labels:
            found += (DrainWarning("outdated-launcher", "the VM runs an outdated virt-launcher (a KubeVirt update "
                                   "is under way): its migration target uses the new one, which may offer other CPU "
                                   "models and features"),)
        return found

    def _targets(self, targets: Targets) -> Iterator[Node]:
        """The targets in name order (the engine's order)."""
        index = self.engine.index
        for i in positions(targets.mask):
            yield index.nodes[i]

    def _cpu_warnings(self, s: Situation, vm: RunningVm, source, targets: Targets) -> Tuple[DrainWarning, ...]:
        """Asked of the first target of each distinct CPU, in name order, and only until the answer is known: one
        target libvirt would accept (or one offering ht) settles it."""
        found = []
        check = libvirt_check(self.catalog, s, source, self.engine.cpu)
        if check is not None:
            seen: set = set()
            first: Optional[str] = None
            for node in self._targets(targets):
                features = self.engine.cpu(node).features
                if features in seen:
                    continue
                seen.add(features)
                refused = check(node)
                if not refused:
                    first = None
                    break
                first = first or refused[0]
            if first:
                code = "host-passthrough-cpu" if "host-passthrough" in first else "missing-cpu-features"
                found.append(DrainWarning(code, "every target the scheduler allows is likely refused by libvirt: %s"
                                          % first))
        if vm.vmi.threads > 1 and len(targets) and not any(
                "ht" in self.engine.cpu(node).features for node in self._targets(targets)):
            found.append(DrainWarning("threads-need-ht", "the VM has %d threads per core; with QEMU 10 and later "
                                      "the target CPU must offer ht, which no target offers" % vm.vmi.threads))
        return tuple(found)

    def _restart_fits(self, state: VmState, models: Sequence[str], room: int, gone: FrozenSet[str]) -> List[str]:
        """The models among `models` with which the VM, restarted, would have a target. A restart with a named
        model renders the same pod whatever the model but for its cpu-model key (kubevirt-rules §2.1; no
        host-model keys are inherited), so the pod is predicted once and only that key changes; a VM whose own
        spec names a cpu-model key, or with pod (anti-)affinity, is predicted model by model."""
        first = self.engine.situation(replace(state, vmi=replace(state.vmi, cpu_model=models[0]), launcher=None))
        own_model_keys = any(k.startswith(L.CPU_MODEL) for k in state.vmi.node_selector)  # type: ignore[union-attr]
        if first.placements or own_model_keys or first.constraints.blocked or not first.running \
                or not live_migratable(first.vmi):  # type: ignore[arg-type]
            fits = []
            for model in models:
                restarted = replace(state, vmi=replace(state.vmi, cpu_model=model), launcher=None)
                if self.pool(self.engine.situation(restarted)) - gone:
                    fits.append(model)
            return fits
        demand = first.constraints.demand
        rest = tuple(pair for pair in demand.node_selector if pair[0] != L.CPU_MODEL + models[0])
        fits = []
        for model in models:
            selector = tuple(sorted(rest + ((L.CPU_MODEL + model, "true"),)))
            if self.engine.accepting(Demand(selector, demand.terms, demand.tolerations)) & room:
                fits.append(model)
        return fits

    def best_fix(self, blocked: Sequence[Tuple[VmState, Situation]], gone: FrozenSet[str]
                 ) -> Tuple[Optional[Fix], Mapping[Tuple[str, str], str]]:
        """The named model that unblocks the most VMs, each restarted with it (which also drops sticky constraints).

        A model is tried only if it is usable on the VM's source node and on some target node;
        the simulation asks the engine again, so every other constraint (machine type, vendor, …) counts.
        """
        if not blocked or not self.eligible - gone:
            return None, {}
        if self._offered is None:
            self._offered = frozenset().union(*(self.engine.cpu(self.engine.by_name[n]).models
                                                for n in self.eligible)) - self.obsolete
        sources = {s.source_node: self.engine.cpu(self.engine.by_name[s.source_node]).models  # type: ignore[index]
                   for _, s in blocked if s.source_node in self.engine.by_name}
        tried = [m for m in self.catalog.rank(self._offered & frozenset().union(*sources.values()))
                 if self.catalog.knows(m)]
        unblocked: Dict[str, List[Tuple[str, str]]] = {}
        tried = tried[:FIX_MODELS_TRIED]
        index = self.engine.index
        room = index.of(self.eligible) & ~index.of(gone)
        for state, s in blocked:
            offered = sources.get(s.source_node, frozenset())
            models = [m for m in tried if m in offered]
            if not models:
                continue
            for model in self._restart_fits(state, models, room, gone):
                unblocked.setdefault(model, []).append((state.namespace, state.name))
        if not unblocked:
            return None, {}
        best = max(unblocked, key=lambda m: (len(unblocked[m]), -tried.index(m)))
        per_vm: Dict[Tuple[str, str], str] = {}
        for model in sorted(unblocked, key=tried.index):  # each VM's best model, the overall one first
            for vm in unblocked[model]:
                per_vm.setdefault(vm, best if vm in unblocked[best] else model)
        return Fix(best, tuple(sorted(unblocked[best]))), per_vm
