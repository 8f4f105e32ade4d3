"""`audit`: every VirtualMachine's CPU mode, where its model comes from, its reach and its migration risks.

`cpu` describes what the VM gets at its next start (kubevirt-rules §2.2: VM spec, else the
cluster default, else host-model). Reach counts the VM-capable nodes its next migration
target pod (a stopped VM: its launcher pod) would be accepted on, from the migration engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core import labels as L
from cpumodel.core.capacity import PODS, Room, gap_fix, show
from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.highest_common import CommonResult
from cpumodel.core.launcher_pod import migrated_before, start_cpu_model, start_vmi
from cpumodel.core.migration import MigrationEngine, Situation, VmState, current_launcher, live_migratable
from cpumodel.core.node_index import popcount
from cpumodel.core.nodes import NodeSet
from cpumodel.core.pod_affinity import NearbyPods, Placement, placements, terms_of
from cpumodel.objects import HOST_MODEL, HOST_PASSTHROUGH, CpuProfile, Pod, VirtualMachine, VirtualMachineInstance

NAMED = "named"
BLOCKING_RISKS = ("no-target", "not-migratable", "host-model-sticky")  # --exit-code 3
CPU_RISKS = frozenset({"host-model-sticky", "host-model", "host-passthrough", "model-not-everywhere", "no-target",
                       "single-target", "obsolete-model"})
REACH_NAMED = 3  # reachable nodes are named when there are at most this many
LACKING_NAMED = 8  # nodes named in a model-not-everywhere message


@dataclass(frozen=True)
class CpuChoice:
    mode: str  # named, host-model, host-passthrough
    model: Optional[str]
    origin: str  # vm, instancetype, cluster-default, kubevirt-default


@dataclass(frozen=True)
class Risk:
    code: str
    message: str


@dataclass(frozen=True)
class VmAudit:
    vm: str
    namespace: str
    running: bool
    node: Optional[str]
    cpu: CpuChoice
    reach: int
    reachable: Tuple[str, ...]  # named only when there are at most REACH_NAMED
    risks: Tuple[Risk, ...]
    suggestion: Optional[str]

    @property
    def codes(self) -> Tuple[str, ...]:
        return tuple(r.code for r in self.risks)


@dataclass(frozen=True)
class AuditFix:
    command: str
    vms: Tuple[str, ...]


@dataclass(frozen=True)
class AuditResult:
    vms: Tuple[VmAudit, ...]
    capable: int
    recommended: Optional[str]
    fixes: Tuple[AuditFix, ...]

    @property
    def by_risk(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for vm in self.vms:
            for code in vm.codes:
                counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def at_risk(self) -> int:
        return sum(1 for vm in self.vms if vm.risks)

    @property
    def blocking(self) -> bool:
        return any(code in BLOCKING_RISKS for vm in self.vms for code in vm.codes)


def cpu_choice(vm: VirtualMachine, cluster_default: Optional[str], profile: Optional[CpuProfile]) -> CpuChoice:
    """What the VM runs, or would run at its next start: launcher_pod.start_cpu_model, the one rule."""
    model, origin = start_cpu_model(vm.cpu_model, profile.model if profile is not None else None,
                                    vm.template.architecture, cluster_default)
    mode = model if model in (HOST_MODEL, HOST_PASSTHROUGH) else NAMED
    return CpuChoice(mode, model if mode == NAMED else None, origin)


def hostname_pinned(vm: VirtualMachine) -> bool:
    """A kubernetes.io/hostname pin in the VM spec (not the migration's own anti-affinity, which is the pod's)."""
    template = vm.template
    return L.HOSTNAME in template.node_selector or any(
        (r.key == L.HOSTNAME and not r.is_field) or (r.is_field and r.key == "metadata.name")
        for term in template.required_terms for r in term.requirements)


class Auditor:
    def __init__(self, catalog: Catalog, engine: MigrationEngine, node_set: NodeSet, common: CommonResult,
                 room: Optional[Room] = None):
        """`room`: the nodes' free room (capacity.py), for the no-room risk; None leaves it out."""
        self.catalog, self.engine, self.common, self.room = catalog, engine, common, room
        self.capable = [engine.by_name[n.name] for n in node_set.capable]
        cpus = [n.cpu for n in node_set.capable]
        self.host_models = sorted({c.host_model for c in cpus if c.host_model})
        self.cpu_kinds = len({c.features for c in cpus})
        kubevirt = engine.kubevirt
        self.cluster_default = kubevirt.cpu_model if kubevirt else None
        self.obsolete = cluster_obsolete_models(kubevirt)
        self.usable: Dict[str, frozenset] = {n.name: n.cpu.models for n in node_set.capable}
        self.capable_names = frozenset(self.usable)
        self._lacking_by_model: Dict[str, List[str]] = {}


    def reach(self, s: Situation) -> Tuple[int, Tuple[str, ...], FrozenSet[str]]:
        """How many VM-capable nodes take the VM (its source excluded), their names when few, and the nodes."""
        if s.running and not live_migratable(s.vmi):  # type: ignore[arg-type]
            return 0, (), frozenset()
        pool = self.engine.fitting_among(s, self.capable_names)
        count = len(pool) - (s.source_node in pool)
        names = tuple(sorted(pool - {s.source_node})) if count <= REACH_NAMED else ()
        return count, names, pool

    def room_risk(self, s: Situation, launcher: Optional[Pod], pool: FrozenSet[str]) -> List[Risk]:
        """no-room: CPU-compatible targets, none with room for the target pod (the launcher's requests)."""
        if self.room is None or launcher is None or not s.running:
            return []
        index = self.engine.index
        everywhere = index.of(pool)
        source = index.position.get(s.source_node or "")
        targets = everywhere & ~(1 << source) if source is not None else everywhere
        if not targets or self.room.without_room(launcher.requests, targets) != targets:
            return []
        shortfalls = self.room.shortfalls(launcher.requests, targets, everywhere)
        return [Risk("no-room", "none of its %d CPU-compatible targets has room for its target pod (%s); %s" % (
            popcount(targets), "; ".join("%s requested, at most %s free, on %s" % (
                show(x.resource, x.need), show(x.resource, x.best_free), x.best_node) if x.resource != PODS
                else "%d full of pods" % x.nodes for x in shortfalls),
            gap_fix(self.room.closest(launcher.requests, targets, everywhere))))]

    def audit(self, vm: VirtualMachine, vmi: Optional[VirtualMachineInstance], pods: Sequence[Pod],
              profile: Optional[CpuProfile] = None, nearby: Tuple[Placement, ...] = ()) -> VmAudit:
        running = vmi is not None and vmi.running
        launcher = current_launcher(vmi, pods) if running else None  # type: ignore[arg-type]
        s = self.engine.situation(VmState(vm.name, vm.namespace, vm, vmi if running else None, launcher,
                                          profile, nearby))
        cpu = cpu_choice(vm, self.cluster_default, profile)
        reach, reachable, pool = self.reach(s)
        sticky = running and s.vmi.cpu_model == HOST_MODEL and migrated_before(launcher)  # type: ignore[union-attr]
        risks = self.risks(vm, s, cpu, reach, reachable, sticky, profile) + tuple(self.room_risk(s, launcher, pool))
        # A VM's own model would conflict with its instancetype's (KubeVirt rejects it): no per-VM fix then.
        fix = self.common.recommended if self.common.recommended and any(r.code in CPU_RISKS for r in risks) \
            and cpu.model != self.common.recommended and cpu.origin != "instancetype" else None
        return VmAudit(vm.name, vm.namespace, s.running, s.source_node, cpu, reach, reachable, risks, fix)

    def risks(self, vm: VirtualMachine, s: Situation, cpu: CpuChoice, reach: int, reachable: Sequence[str],
              sticky: bool, profile: Optional[CpuProfile]) -> Tuple[Risk, ...]:
        found: List[Risk] = []
        if sticky:
            found.append(Risk("host-model-sticky", "carries host-model constraints from an earlier migration "
                                                   "(they came from another node's CPU); a restart clears them"))
        if cpu.mode == HOST_MODEL and len(self.host_models) > 1:
            found.append(Risk("host-model", "host-model in a cluster whose nodes have %d host models (%s): it can only "
                                            "move to nodes like the one it starts on"
                              % (len(self.host_models), ", ".join(self.host_models))))
        if cpu.mode == HOST_PASSTHROUGH and self.cpu_kinds > 1:
            found.append(Risk("host-passthrough", "host-passthrough in a cluster whose nodes offer %d different CPUs: "
                                                  "libvirt refuses a migration to a different CPU" % self.cpu_kinds))
        found += self._model_risks(cpu)
        found += self._reach_risks(s, reach, reachable)
        found += self._state_risks(vm, s, profile)
        return tuple(found)

    def _model_risks(self, cpu: CpuChoice) -> List[Risk]:
        if cpu.mode != NAMED:
            return []
        found = []
        lacking = self._lacking(cpu.model)  # type: ignore[arg-type]
        if lacking:
            shown = ", ".join(lacking[:LACKING_NAMED]) + (" (+%d more)" % (len(lacking) - LACKING_NAMED)
                                                          if len(lacking) > LACKING_NAMED else "")
            found.append(Risk("model-not-everywhere", "%s is not usable on %s" % (cpu.model, shown)))
        if cpu.model in self.obsolete:
            found.append(Risk("obsolete-model", "%s is on KubeVirt's obsolete list: no node advertises it" % cpu.model))
        return found

    def _lacking(self, model: str) -> List[str]:
        found = self._lacking_by_model.get(model)
        if found is None:
            found = self._lacking_by_model[model] = sorted(n for n, models in self.usable.items() if model not in models)
        return found

    def _reach_risks(self, s: Situation, reach: int, reachable: Sequence[str]) -> List[Risk]:
        if not s.running:
            return []
        if not reach:
            return [Risk("no-target", "no node accepts its migration target pod: a drain of %s hangs" % s.source_node)]
        if reach == 1:
            return [Risk("single-target", "only %s accepts its migration target pod" % reachable[0])]
        return []

    def _state_risks(self, vm: VirtualMachine, s: Situation, profile: Optional[CpuProfile]) -> List[Risk]:
        found = []
        cond = s.vmi.condition("LiveMigratable") if s.vmi is not None and s.running else None
        if cond is not None and cond.status == "False":
            found.append(Risk("not-migratable", "not live-migratable (%s: %s)" % (cond.reason or "LiveMigratable=False",
                                                                                 cond.message or "no message")))
        if s.running and s.vmi is not None:
            wanted = start_vmi(vm, self.engine.kubevirt, profile).cpu_model
            if wanted != s.vmi.cpu_model:
                found.append(Risk("restart-pending", "runs with %s; its next start gets %s" % (s.vmi.cpu_model, wanted)))
        if hostname_pinned(vm):
            found.append(Risk("hostname-pin", "its spec pins it to a node by kubernetes.io/hostname (a leftover of an "
                                              "old Harvester Migrate action?): it can never move"))
        return found


def fixes(vms: Sequence[VmAudit], recommended: Optional[str]) -> Tuple[AuditFix, ...]:
    """The commands that fix the most VMs: the cluster default for VMs without a model, per-VM for the rest."""
    if not recommended:
        return ()
    adopt = [v for v in vms if v.suggestion and v.cpu.origin in ("cluster-default", "kubevirt-default")]
    own: Dict[str, List[VmAudit]] = {}
    for v in vms:  # an instancetype's model is changed in the instancetype: KubeVirt rejects a VM's own then
        if v.suggestion and v.cpu.origin == "vm":
            own.setdefault(v.namespace, []).append(v)
    found = []
    if adopt:
        found.append(AuditFix("kubectl cpumodel set --cluster %s" % recommended,
                              tuple("%s/%s" % (v.namespace, v.vm) for v in adopt)))
    for ns, group in sorted(own.items()):
        found.append(AuditFix("kubectl cpumodel set %s %s -n %s" % (" ".join("vm/" + v.vm for v in group), recommended,
                                                                      ns),
                              tuple("%s/%s" % (v.namespace, v.vm) for v in group)))
    return tuple(sorted(found, key=lambda f: -len(f.vms)))


def audit_cluster(catalog: Catalog, engine: MigrationEngine, node_set: NodeSet, common: CommonResult,
                  vms: Sequence[VirtualMachine], vmis: Dict[Tuple[str, str], VirtualMachineInstance],
                  pods: Dict[str, List[Pod]],
                  profiles: Optional[Dict[Tuple[str, str], CpuProfile]] = None,
                  nearby_pods: Sequence[Pod] = (), room: Optional[Room] = None) -> AuditResult:
    """`nearby_pods`: the pods the VMs' pod (anti-)affinity terms look at; `room`: the nodes' free room."""
    auditor = Auditor(catalog, engine, node_set, common, room)
    results = audit_each(auditor, NearbyPods(nearby_pods, engine.by_name), vms, vmis, pods, profiles or {})
    return AuditResult(tuple(results), len(auditor.capable), common.recommended, fixes(results, common.recommended))


def audit_each(auditor: Auditor, nearby_pods: NearbyPods, vms: Sequence[VirtualMachine],
               vmis: Mapping[Tuple[str, str], VirtualMachineInstance], pods: Mapping[str, List[Pod]],
               profiles: Mapping[Tuple[str, str], CpuProfile]) -> List[VmAudit]:
    """Every VM audited, by namespace and name."""
    results = []
    for vm in sorted(vms, key=lambda v: (v.namespace, v.name)):
        vmi = vmis.get((vm.namespace, vm.name))
        terms = terms_of(vm, vmi)
        nearby = placements(terms, vm.namespace, nearby_pods) if terms else ()
        results.append(auditor.audit(vm, vmi, pods.get(vmi.uid, []) if vmi else [],
                                     profiles.get((vm.namespace, vm.name)), nearby))
    return results
