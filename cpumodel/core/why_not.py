"""`why-not` as a pure analysis: the engine's verdicts for one VM, and the CPU model that fixes them."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence, Tuple

from cpumodel.core.capacity import PODS, Request, lacking_on, show
from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.highest_common import analyse_common
from cpumodel.core.migration import MigrationEngine, NodeVerdict, Situation, VmState, needs_cpu_fix, suggest_model
from cpumodel.core.nodes import split_nodes
from cpumodel.core.reasons import Category, Reason
from cpumodel.objects import Event, KubeVirtConfig, Node, Pod


@dataclass(frozen=True)
class Suggestion:
    model: str
    command: str
    note: str


@dataclass(frozen=True)
class MigrationAttempt:
    """A migration that has not succeeded, with its target pods (from the cluster, for context)."""

    name: str
    phase: str
    target_node: Optional[str]
    target_pods: Tuple[Tuple[Pod, Optional[str]], ...]  # (pod, why it is unschedulable)


@dataclass(frozen=True)
class WhyNotResult:
    vm: str
    namespace: str
    situation: Situation
    target: Optional[str]  # None: every node but the source
    verdicts: Tuple[NodeVerdict, ...]
    suggestion: Optional[Suggestion]
    cpu_model: Optional[str]
    migrations: Tuple[MigrationAttempt, ...]
    events: Tuple[Event, ...]

    @property
    def migratable(self) -> bool:
        """To the target; without one, to some node."""
        return any(v.migratable for v in self.verdicts)


def suggest(catalog: Catalog, state: VmState, s: Situation, source: Optional[Node], target: Optional[Node],
            common: Sequence[str], obsolete: frozenset) -> Optional[Suggestion]:
    """A named model that the source, the target (or every node) and ideally all VM-capable nodes offer."""
    best = suggest_model(catalog, [source, target], common, obsolete)
    if best is None or (s.vmi is not None and s.running and best == s.vmi.cpu_model):
        return None  # nothing usable, or the model the VM already has
    command = "kubectl cpumodel set vm/%s %s -n %s" % (state.name, best, state.namespace)
    everywhere = " and on every VM-capable node" if best in common else ""
    where = " and ".join(n for n in (s.source_node, target.name if target else None) if n) or "the nodes"
    when = ("it takes effect at the VM's next restart (add --restart to restart now)" if s.running
            else "the VM uses it when it next starts")
    profile = state.profile
    if profile is not None and profile.model and not (state.vm and state.vm.cpu_model):
        # KubeVirt rejects a VM that sets cpu.model beside an instancetype that sets one (pkg/instancetype/apply).
        scope = "" if profile.instancetype.startswith("VirtualMachineCluster") else " -n %s" % state.namespace
        command = "kubectl patch %s%s --type merge -p '{\"spec\":{\"cpu\":{\"model\":\"%s\"}}}'" % (
            profile.instancetype.lower(), scope, best)
        when = ("its model comes from %s, so change it there (every VM using it follows) or pick an instancetype "
                "without a model; %s" % (profile.instancetype, when))
        if profile.revision:
            when = ("its model comes from the snapshot of %s in ControllerRevision %s, which KubeVirt keeps using: "
                    "change the instancetype, stop the VM, remove spec.instancetype.revisionName so that KubeVirt "
                    "takes a new snapshot, and start it" % (profile.instancetype, profile.revision))
    return Suggestion(best, command, "%s is usable on %s%s; %s" % (best, where, everywhere, when))


def with_room(result: WhyNotResult, nodes: Sequence[Node], used: Mapping[str, Tuple[Mapping[str, int], int]],
              request: Request) -> WhyNotResult:
    """The verdicts with room on each node the labels accept (kubevirt-rules §10): a node without room for the
    target pod (the running launcher's requests) does not take the VM."""
    by_name = {n.name: n for n in nodes}
    verdicts = []
    for v in result.verdicts:
        lacking = lacking_on(by_name[v.node], used, request) if v.migratable else []
        if lacking:
            reasons = tuple(Reason(Category.CAPACITY, resource, "%s has %s free; the target pod requests %s" % (
                v.node, show(resource, free), show(resource, need)) if resource != PODS else
                "%s holds as many pods as it allows" % v.node) for resource, need, free in lacking)
            v = replace(v, migratable=False, reasons=v.reasons + reasons, warnings=())
        verdicts.append(v)
    return replace(result, verdicts=tuple(verdicts))


def explain(catalog: Catalog, state: VmState, nodes: Sequence[Node], kubevirt: Optional[KubeVirtConfig],
            target: Optional[str], migrations: Tuple[MigrationAttempt, ...] = (),
            events: Tuple[Event, ...] = ()) -> WhyNotResult:
    """Why the VM cannot move to `target` (or to each node but its own), and the fix."""
    engine = MigrationEngine(nodes, kubevirt)
    s = engine.situation(state)
    analysis = analyse_common(catalog, split_nodes(engine.nodes, engine.cpu), kubevirt)
    common = list(analysis.common_models)
    obsolete = cluster_obsolete_models(kubevirt)
    source = engine.by_name.get(s.source_node or "")
    if target is not None:
        node = engine.by_name[target]
        verdicts: Tuple[NodeVerdict, ...] = (engine.verdict(s, node, catalog),)
        wants_fix = needs_cpu_fix(verdicts[0].reasons) or bool(verdicts[0].warnings)
        fix_target: Optional[Node] = node
    else:
        verdicts = tuple(engine.verdict(s, n, catalog) for n in engine.nodes if n.name != s.source_node)
        capable = set(analysis.nodes)
        wants_fix = any(needs_cpu_fix(v.reasons) for v in verdicts if v.node in capable)
        fix_target = None
    fix = suggest(catalog, state, s, source, fix_target, common, obsolete) if wants_fix else None
    model_now = s.vmi.cpu_model if s.vmi and s.running else (state.vm.cpu_model if state.vm else None)
    return WhyNotResult(state.name, state.namespace, s, target, verdicts, fix, model_now, migrations, events)
