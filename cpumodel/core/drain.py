"""`drain-check`: what a node drain does to every VM on the drained nodes, and the one fix for the blocked ones.

KubeVirt's eviction (docs/kubevirt-rules.md §8): the VMI's `spec.evictionStrategy`, else the
KubeVirt CR's `spec.configuration.evictionStrategy`, else `None`. `LiveMigrate` migrates or the
drain waits for ever; `LiveMigrateIfPossible` migrates when the VMI is live-migratable and shuts
it down otherwise; `None` shuts down; `External` leaves it to another controller. On Harvester
the VM label `harvesterhci.io/maintain-mode-strategy` decides maintenance mode: its `Shutdown*`
values shut the VM down whatever the eviction strategy. A migrating VM needs a node that accepts
its target pod: the migration engine answers that, node by node, for the candidate nodes (not
drained, VM-capable, not cordoned, Ready).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core.catalog import Catalog
from cpumodel.core.labels import node_cpu
from cpumodel.core.migration import MigrationEngine, Situation, VmState, libvirt_warnings, needs_cpu_fix
from cpumodel.core.nodes import split_nodes
from cpumodel.core.reasons import Category, Reason
from cpumodel.objects import KubeVirtConfig, Node, Pod, VirtualMachineInstance

LIVE_MIGRATE, IF_POSSIBLE, EXTERNAL, NO_EVICTION = "LiveMigrate", "LiveMigrateIfPossible", "External", "None"
MAINTAIN_MODE_LABEL = "harvesterhci.io/maintain-mode-strategy"
SHUTDOWN_MAINTAIN_MODES = frozenset({"ShutdownAndRestartAfterEnable", "ShutdownAndRestartAfterDisable", "Shutdown"})
FIX_MODELS_TRIED = 24  # best-ranked candidate models simulated for the fix


class Action(str, enum.Enum):
    MIGRATE = "migrate"
    SHUTDOWN = "shutdown"
    BLOCKED = "blocked"
    EXTERNAL = "external"


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
class VmDrain:
    vm: str
    namespace: str
    node: str
    eviction_strategy: str
    maintain_mode_strategy: Optional[str]
    action: Action
    targets: Tuple[str, ...]
    reasons: Tuple[BlockingKey, ...]
    warnings: Tuple[DrainWarning, ...]
    suggestion: Optional[str]  # the model that would unblock it


@dataclass(frozen=True)
class DrainResult:
    drained: Tuple[str, ...]
    candidates: Tuple[str, ...]
    vms: Tuple[VmDrain, ...]
    fix: Optional[Fix]

    @property
    def summary(self) -> Dict[str, int]:
        counts = {action.value: 0 for action in (Action.MIGRATE, Action.SHUTDOWN, Action.BLOCKED, Action.EXTERNAL)}
        for vm in self.vms:
            counts[vm.action.value] += 1
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


def eviction_strategy(vmi: VirtualMachineInstance, kubevirt: Optional[KubeVirtConfig]) -> str:
    return vmi.eviction_strategy or (kubevirt.eviction_strategy if kubevirt else None) or NO_EVICTION


def live_migratable(vmi: VirtualMachineInstance) -> bool:
    cond = vmi.condition("LiveMigratable")
    return cond is None or cond.status != "False"


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


def candidate_nodes(engine: MigrationEngine, drained: Sequence[str]) -> Tuple[Node, ...]:
    capable = {n.name for n in split_nodes(engine.nodes).capable}
    return tuple(n for n in engine.nodes if n.name in capable and n.name not in drained
                 and not n.unschedulable and n.ready is not False)


def blocking_keys(engine: MigrationEngine, s: Situation, candidates: Sequence[Node]) -> Tuple[BlockingKey, ...]:
    """Each reason once, with the number of candidates it blocks; those that block every candidate first."""
    if not candidates:
        return (BlockingKey(Category.SCHEDULABLE, None, "no other node can take VMs: every other node is drained, "
                            "cordoned, not Ready or not VM-capable", 0),)
    counted: Dict[Tuple[Category, Optional[str]], List[Reason]] = {}
    for node in candidates:
        for reason in engine.reasons(s, node):
            counted.setdefault((reason.category, reason.key), []).append(reason)
    keys = []
    for (category, key), reasons in counted.items():
        first = reasons[0]
        why = "required because %s" % first.origin if first.origin else first.message
        keys.append(BlockingKey(category, key, why, len(reasons)))
    return tuple(sorted(keys, key=lambda k: (-k.nodes, k.category.rank, k.key or "")))


def drain_warnings(catalog: Catalog, engine: MigrationEngine, s: Situation, vm: RunningVm,
                   targets: Sequence[Node]) -> Tuple[DrainWarning, ...]:
    """What the labels allow but libvirt or QEMU is known to refuse (never changes the action)."""
    found: List[DrainWarning] = []
    source = engine.by_name.get(s.source_node or "")
    refused = [libvirt_warnings(catalog, s, source, t) for t in targets]
    if targets and all(refused):
        code = "host-passthrough-cpu" if "host-passthrough" in refused[0][0] else "missing-cpu-features"
        found.append(DrainWarning(code, "every target the scheduler allows is likely refused by libvirt: %s"
                                  % refused[0][0]))
    if "kubevirt.io/outdatedLauncherImage" in vm.vmi.labels:
        found.append(DrainWarning("outdated-launcher", "the VM runs an outdated virt-launcher (a KubeVirt update is "
                                  "under way): its migration target uses the new one, which may offer other CPU "
                                  "models and features"))
    if vm.vmi.threads > 1:
        lacking = [t.name for t in targets if "ht" not in node_cpu(t.labels).features]
        if lacking and len(lacking) == len(targets):
            found.append(DrainWarning("threads-need-ht", "the VM has %d threads per core; with QEMU 10 and later the "
                                      "target CPU must offer ht, which %s lack" % (vm.vmi.threads, ", ".join(lacking))))
    return tuple(found)


def check_drain(catalog: Catalog, engine: MigrationEngine, drained: Sequence[str], running: Sequence[RunningVm],
                obsolete: frozenset) -> DrainResult:
    candidates = candidate_nodes(engine, drained)
    results, blocked_states = [], []
    for vm in sorted(running, key=lambda r: (r.vmi.namespace, r.vmi.name)):
        state = VmState(vm.vmi.name, vm.vmi.namespace, None, vm.vmi, vm.launcher)
        s = engine.situation(state)
        targets = [n for n in candidates if engine.accepts(s, n)]
        strategy = eviction_strategy(vm.vmi, engine.kubevirt)
        action = decide(strategy, vm.maintain_mode, live_migratable(vm.vmi), bool(targets))
        reasons = blocking_keys(engine, s, candidates) if action is Action.BLOCKED else ()
        if action is Action.BLOCKED and needs_cpu_fix([Reason(k.category, k.key, k.message) for k in reasons]):
            blocked_states.append((state, s))
        results.append(VmDrain(vm.vmi.name, vm.vmi.namespace, vm.vmi.node_name or "", strategy, vm.maintain_mode,
                               action, tuple(t.name for t in targets), reasons,
                               drain_warnings(catalog, engine, s, vm, targets) if action is Action.MIGRATE else (),
                               None))
    fix, per_vm = best_fix(catalog, engine, blocked_states, candidates, obsolete)
    results = [replace(r, suggestion=per_vm.get((r.namespace, r.vm))) for r in results]
    return DrainResult(tuple(drained), tuple(n.name for n in candidates), tuple(results), fix)


def best_fix(catalog: Catalog, engine: MigrationEngine, blocked: Sequence[Tuple[VmState, Situation]],
             candidates: Sequence[Node], obsolete: frozenset) -> Tuple[Optional[Fix], Mapping[Tuple[str, str], str]]:
    """The named model that unblocks the most VMs, each restarted with it (which also drops sticky constraints).

    A model is tried only if it is usable on the VM's source node and on some candidate; the
    simulation asks the engine again, so every other constraint (machine type, vendor, …) still counts.
    """
    if not blocked or not candidates:
        return None, {}
    offered = frozenset().union(*(node_cpu(n.labels).models for n in candidates)) - obsolete
    sources = {s.source_node: node_cpu(engine.by_name[s.source_node].labels).models  # type: ignore[index]
               for _, s in blocked if s.source_node in engine.by_name}
    tried = [m for m in catalog.rank(offered & frozenset().union(*sources.values())) if catalog.knows(m)]
    unblocked: Dict[str, List[Tuple[str, str]]] = {}
    for model in tried[:FIX_MODELS_TRIED]:
        for state, s in blocked:
            if model not in sources.get(s.source_node, ()):
                continue
            restarted = replace(state, vmi=replace(state.vmi, cpu_model=model), launcher=None)
            moved = engine.situation(restarted)
            if any(engine.accepts(moved, n) for n in candidates):
                unblocked.setdefault(model, []).append((state.namespace, state.name))
    if not unblocked:
        return None, {}
    best = max(unblocked, key=lambda m: (len(unblocked[m]), -tried.index(m)))
    per_vm: Dict[Tuple[str, str], str] = {}
    for model in sorted(unblocked, key=tried.index):  # each VM's best model, the overall one first
        for vm in unblocked[model]:
            per_vm.setdefault(vm, best if vm in unblocked[best] else model)
    return Fix(best, tuple(sorted(unblocked[best]))), per_vm
