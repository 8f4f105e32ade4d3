"""`upgrade-check`: every node drained in the order the platform upgrades nodes, what the platform does to each
VM, and the traps of the target release, as Pass/Warn/Fail checks (docs/kubevirt-rules.md §13).

The drains are judged under the rules of the KubeVirt that runs while they happen: Harvester upgrades its
system services (KubeVirt among them) before it drains the first node (upgrade controller: SystemServicesUpgraded
before NodesUpgraded), so with `--to` every step is judged under the target's KubeVirt; without it, under the
running one. A VM the target's rules block but the running ones let migrate is the target's trap, named by the
check of the rule that blocks it (vendor-rule, machine-type).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core import labels as L
from cpumodel.core.audit import cpu_choice
from cpumodel.core.capacity import Room
from cpumodel.core.catalog import obsolete_models
from cpumodel.core.drain import (Action, DrainPlanner, DrainResult, DrainWarning, RunningVm, Targets, VmDrain,
                                 eviction_strategy)
from cpumodel.core.launcher_pod import NEWEST_RULES, has_machine_type_rule
from cpumodel.core.platform import HARVESTER, OPENSHIFT
from cpumodel.core.releases import (FEATURE_RULES, HARVESTER_DETECTOR_MEDIA, HARVESTER_DETECTOR_SINCE,
                                    HARVESTER_MIN_UPGRADABLE, HARVESTER_STOPS_FAILED_EVACUATION,
                                    HARVESTER_WITNESS_LABEL, Version, canonical, version_of)
from cpumodel.core.selectors import term_matches
from cpumodel.objects import HOST_MODEL, CpuProfile, KubeVirtConfig, Node, VirtualMachine, VirtualMachineInstance

PASS, WARN, FAIL = "pass", "warn", "fail"

ETCD_ROLE = "node-role.kubernetes.io/etcd"
CONTROL_PLANE_ROLES = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class Release:
    version: Optional[str]  # the platform's release as the cluster shows it (KubeVirt: its own version)
    kubevirt: Optional[str]  # the KubeVirt it runs or ships; None: not known

    @property
    def platform_version(self) -> Optional[Version]:
        return version_of(self.version)

    @property
    def kubevirt_version(self) -> Optional[Version]:
        return version_of(self.kubevirt)


@dataclass(frozen=True)
class Upgrade:
    platform: Optional[str]  # harvester, openshift, kubevirt; None: no KubeVirt CR
    current: Release
    target: Optional[Release]  # None: no --to

    @property
    def scripts(self) -> Optional[Version]:
        """The platform release whose upgrade scripts run the drains: the target's, else the running one's."""
        release = self.target if self.target is not None and self.target.version else self.current
        return release.platform_version

    @property
    def harvester_stops(self) -> bool:
        scripts = self.scripts
        return self.platform == HARVESTER and scripts is not None and scripts >= HARVESTER_STOPS_FAILED_EVACUATION


# ---- the order ----------------------------------------------------------------------------------------------
def upgrade_order(platform: Optional[str], nodes: Sequence[Node]) -> Tuple[List[str], str]:
    """The nodes in the order the platform upgrades them, and how that order is found."""
    if platform == HARVESTER:
        def tier(n: Node) -> int:
            if n.labels.get(ETCD_ROLE) == "true":
                return 0
            return 1 if any(n.labels.get(k) == "true" for k in CONTROL_PLANE_ROLES) else 2
        ordered = sorted(nodes, key=lambda n: (tier(n), n.machine is None, n.machine or "", n.name))
        note = ("Rancher's RKE2 planner upgrades one node at a time: its init node first, then the other etcd nodes, "
                "then the control-plane nodes, then the workers, each tier in the order of its Machines' names "
                "(annotation cluster.x-k8s.io/machine); the init node is one of the etcd nodes, listed here in Machine "
                "order")
        return [n.name for n in ordered], note
    if platform == OPENSHIFT:
        def pool(n: Node) -> int:
            return 0 if any(k in n.labels for k in CONTROL_PLANE_ROLES) else 1
        ordered = sorted(nodes, key=lambda n: (pool(n), ZONE_LABEL not in n.labels, n.labels.get(ZONE_LABEL, ""),
                                               n.created, n.name))
        note = ("the Machine Config Operator updates each pool (master, worker) one node at a time, the pools side by "
                "side: by zone (topology.kubernetes.io/zone), oldest node first, nodes without a zone last")
        return [n.name for n in ordered], note
    note = ("KubeVirt's own update drains no node (virt-handler is replaced in place and outdated VMs move by the "
            "workloadUpdateStrategy): the steps are a rolling node maintenance, in name order")
    return sorted(n.name for n in nodes), note


# ---- what the platform does to a VM -------------------------------------------------------------------------
def harvester_shutdown_reason(vmi: VirtualMachineInstance, scripts: Optional[Version], others: Sequence[Node]
                              ) -> Optional[str]:
    """Why Harvester's pre-drain shuts this VM down before the drain (vm-live-migrate-detector), or None.
    `others`: the nodes that are not witness nodes."""
    if scripts is None or scripts < HARVESTER_DETECTOR_SINCE:
        return None
    if len(others) == 1:
        return "the cluster has one node besides witness nodes"
    if vmi.node_selector:
        return "its VMI has a spec.nodeSelector (%s)" % ", ".join(sorted(vmi.node_selector))
    if vmi.host_devices:
        return "it has passed-through host devices (PCI, USB or vGPU)"
    if vmi.required_terms and not any(
            not n.unschedulable and any(term_matches(t, n) for t in vmi.required_terms)
            for n in others if n.name != vmi.node_name):
        return "no other node matches its required node affinity"
    low, high = HARVESTER_DETECTOR_MEDIA
    if low <= scripts < high and vmi.cdrom_or_container_disk:
        return "it has a CD-ROM or a containerDisk (Harvester before v1.8.0 does not migrate those in an upgrade)"
    return None


def upgrade_steps(planner: DrainPlanner, order: Sequence[str], running: Sequence[RunningVm], room: Optional[Room],
                  upgrade: Upgrade, nodes: Sequence[Node]) -> List[DrainResult]:
    """drain-check of each VM-capable node alone, in the platform's order, with the platform's actions."""
    capable = planner.capable
    on_node: Dict[str, List[RunningVm]] = {}
    for vm in running:
        on_node.setdefault(vm.vmi.node_name or "", []).append(vm)
    harvester = upgrade.platform == HARVESTER
    others = [n for n in nodes if HARVESTER_WITNESS_LABEL not in n.labels]
    steps = []
    for node in (n for n in order if n in capable):
        here, shut = [], []
        for vm in on_node.get(node, []):
            reason = harvester_shutdown_reason(vm.vmi, upgrade.scripts, others) if harvester else None
            (shut if reason else here).append((vm, reason))
        step = planner.check((node,), [vm for vm, _ in here], room)
        vms = list(step.vms)
        if upgrade.harvester_stops:
            vms = [replace(v, action=Action.STOPPED) if v.action is Action.BLOCKED else v for v in vms]
        for vm, reason in shut:
            vms.append(VmDrain(vm.vmi.name, vm.vmi.namespace, node, eviction_strategy(vm.vmi, planner.engine.kubevirt),
                               None, Action.SHUTDOWN, Targets(), (),
                               (DrainWarning("upgrade-shutdown", "Harvester's upgrade shuts it down before the drain: "
                                             + reason),), None))
        vms.sort(key=lambda v: (v.namespace, v.vm))
        steps.append(replace(step, vms=tuple(vms)))
    return steps


# ---- the rules during the upgrade ---------------------------------------------------------------------------
UNLABELLED = ("no node advertises its machine types yet (machine-type.node.kubevirt.io/*, added by the target's "
              "node-labeller)")


def rules_during(kubevirt: Optional[KubeVirtConfig], upgrade: Upgrade, nodes: Sequence[Node]
                 ) -> Tuple[Optional[KubeVirtConfig], Optional[str]]:
    """The KubeVirt configuration the drains run under: the target's release when it is known. Machine-type
    labels come with the target's node-labeller: when no node has one yet, the selector is left out (and said)."""
    target = upgrade.target
    if kubevirt is None or target is None or target.kubevirt is None:
        return kubevirt, None
    during = replace(kubevirt, version=target.kubevirt, vendor_rule=None, machine_type_rule=None)
    note = None
    if has_machine_type_rule(target.kubevirt_version or NEWEST_RULES) and not any(
            k.startswith(L.MACHINE_TYPE) for n in nodes for k in n.labels):
        during = replace(during, machine_type_rule=False)
        note = "%s: the machine-type selector of KubeVirt %s is left out of the drains" % (UNLABELLED, target.kubevirt)
    return during, note


# ---- checks -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    id: str
    status: str
    title: str
    message: str
    vms: Tuple[str, ...] = ()  # namespace/name
    nodes: Tuple[str, ...] = ()
    reference: str = ""
    fixes: Tuple[str, ...] = ()  # commands or steps that clear it


TITLES = {
    "drain-blocked": "VMs that would hang a node's drain",
    "drain-stopped": "VMs the upgrade would stop",
    "drain-shutdown": "VMs shut down by their strategy",
    "vendor-rule": "Same-CPU-vendor migration rule",
    "obsolete-models": "Obsolete CPU models",
    "machine-type": "Machine-type node selection",
    "feature-changes": "Known CPU feature changes",
    "upgrade-path": "Upgrade path",
}
REFERENCES = {
    "drain-blocked": "kubevirt pkg/virt-controller/watch/drain/evacuation; docs/kubevirt-rules.md §8",
    "drain-stopped": "harvester/harvester#9326 (package/upgrade/upgrade_node.sh check_migrations_phase, v1.7.0)",
    "drain-shutdown": "kubevirt evictionStrategy; harvester pkg/upgradehelper/vmlivemigratedetector",
    "vendor-rule": "kubevirt/kubevirt commit a16c2290cf (v1.8.0; backported to v1.7.1 and v1.6.4)",
    "obsolete-models": "kubevirt pkg/virt-handler/node-labeller/util/util.go DefaultObsoleteCPUModels",
    "machine-type": "kubevirt/kubevirt#13690 (v1.5.1), commit 2a66788879 (v1.6.0)",
    "feature-changes": "",
    "upgrade-path": "harvester package/upgrade-matrix.yaml, pkg/upgradehelper/versionguard; kubevirt docs/updates.md",
}


def check(id: str, status: str, message: str, **kw) -> Check:
    kw.setdefault("reference", REFERENCES[id])
    return Check(id, status, TITLES[id], message, **kw)


def _named(vms) -> Tuple[str, ...]:
    return tuple(dict.fromkeys("%s/%s" % (v.namespace, v.vm) for v in vms))


def drain_checks(steps: Sequence[DrainResult], upgrade: Upgrade) -> List[Check]:
    blocked = [(s.drained[0], v) for s in steps for v in s.vms if v.action is Action.BLOCKED]
    stopped = [(s.drained[0], v) for s in steps for v in s.vms if v.action is Action.STOPPED]
    shut = [(s.drained[0], v) for s in steps for v in s.vms if v.action is Action.SHUTDOWN]
    fixes = tuple(dict.fromkeys(c for s in steps if s.fix for c in s.fix.commands))
    found = []
    if blocked:
        found.append(check("drain-blocked", FAIL, "%d VM(s) have no node to migrate to: the drain of %s waits for "
                           "ever" % (len(blocked), _nodes_text([n for n, _ in blocked])),
                           vms=_named(v for _, v in blocked), nodes=tuple(dict.fromkeys(n for n, _ in blocked)),
                           fixes=fixes))
    else:
        found.append(check("drain-blocked", PASS, "no VM hangs a drain" + (
            " (the platform stops those it cannot move: see drain-stopped)" if upgrade.harvester_stops else "")))
    if stopped:
        found.append(check("drain-stopped", FAIL, "%d VM(s) have no node to migrate to, and Harvester %s stops a VM "
                           "whose evacuation fails: downtime on %s" % (
                               len(stopped), _release_text(upgrade), _nodes_text([n for n, _ in stopped])),
                           vms=_named(v for _, v in stopped), nodes=tuple(dict.fromkeys(n for n, _ in stopped)),
                           fixes=fixes))
    elif upgrade.harvester_stops:
        found.append(check("drain-stopped", PASS, "every VM the evacuation moves has a node to move to"))
    else:
        found.append(check("drain-stopped", PASS, "does not apply: %s" % (
            "Harvester stops VMs whose evacuation failed from v1.7.0 on" if upgrade.platform == HARVESTER
            else "only Harvester (from v1.7.0) stops a VM whose evacuation fails")))
    if shut:
        found.append(check("drain-shutdown", WARN, "%d VM(s) are shut down rather than migrated (eviction strategy, "
                           "or Harvester's pre-drain): they restart only when someone starts them" % len(shut),
                           vms=_named(v for _, v in shut), nodes=tuple(dict.fromkeys(n for n, _ in shut))))
    else:
        found.append(check("drain-shutdown", PASS, "no VM is shut down by its strategy"))
    return found


def _nodes_text(nodes: Sequence[str]) -> str:
    unique = list(dict.fromkeys(nodes))
    return ", ".join(unique[:5]) + (" and %d more" % (len(unique) - 5) if len(unique) > 5 else "")


def _release_text(upgrade: Upgrade) -> str:
    release = upgrade.target if upgrade.target is not None and upgrade.target.version else upgrade.current
    return release.version or "?"


def blamed(steps: Sequence[DrainResult], now: DrainPlanner, running: Mapping[Tuple[str, str], RunningVm],
           prefix: str) -> List[Tuple[str, VmDrain]]:
    """The VMs the drains under the target's rules leave with no target, with a blocking key of this family,
    that the running release lets migrate."""
    found = []
    for s in steps:
        for v in s.vms:
            if v.action not in (Action.BLOCKED, Action.STOPPED):
                continue
            if not any((k.key or "").startswith(prefix) for k in v.reasons):
                continue
            vm = running.get((v.namespace, v.vm))
            if vm is not None and now.check(s.drained, [vm], None, explain=False).vms[0].action is Action.MIGRATE:
                found.append((s.drained[0], v))
    return found


RULE_FIXES = {
    "vendor-rule": "each of these VMs needs another node of its source node's CPU vendor to move to; otherwise shut "
                   "it down for the upgrade",
    "machine-type": "restart these VMs before the upgrade: a VM whose spec names an alias (q35) then resolves it to a "
                    "machine type the current QEMU offers",
}


def rule_check(id: str, adds: bool, before: bool, upgrade: Upgrade, losers: Sequence[Tuple[str, VmDrain]],
               what: str) -> Check:
    target = upgrade.target
    if target is None:
        return check(id, PASS, "not checked: no --to VERSION")
    if target.kubevirt is None:
        return check(id, PASS, "not checked: the KubeVirt of %s is not known" % target.version)
    if not adds:
        return check(id, PASS, "does not apply: KubeVirt %s does not add %s" % (target.kubevirt, what))
    if before:
        return check(id, PASS, "does not apply: the running KubeVirt %s already adds %s" % (
            upgrade.current.kubevirt or "?", what))
    if losers:
        return check(id, FAIL, "KubeVirt %s adds %s: %d VM(s) that migrate today have no target then" % (
            target.kubevirt, what, len(losers)), vms=_named(v for _, v in losers),
            nodes=tuple(dict.fromkeys(n for n, _ in losers)),
            fixes=tuple(dict.fromkeys("kubectl cpumodel set vm/%s %s -n %s --restart" % (v.vm, v.suggestion, v.namespace)
                                      for _, v in losers if v.suggestion)) or (RULE_FIXES[id],))
    return check(id, PASS, "KubeVirt %s adds %s; every VM that migrates today still has a target" % (
        target.kubevirt, what))


def machine_type_check(upgrade: Upgrade, kubevirt: Optional[KubeVirtConfig], during: Optional[KubeVirtConfig],
                       losers, vmis: Sequence[VirtualMachineInstance]) -> Check:
    target = upgrade.target
    now = (kubevirt.release if kubevirt else None) or NEWEST_RULES
    adds = target is not None and has_machine_type_rule(target.kubevirt_version or NEWEST_RULES)
    if during is not None and during.machine_type_rule is False and adds and not has_machine_type_rule(now):
        types: Dict[str, List[str]] = {}
        for v in vmis:
            if v.running and v.machine_type:
                types.setdefault(v.machine_type, []).append("%s/%s" % (v.namespace, v.name))
        listed = "; ".join("%s: %d VM(s)" % (t, len(n)) for t, n in sorted(types.items()))
        return check("machine-type", WARN, "KubeVirt %s selects nodes by the VM's machine type, and %s; once it runs, "
                     "each VM needs a node offering its machine type (%s)" % (
                         target.kubevirt, UNLABELLED, listed or "no running VM"),  # type: ignore[union-attr]
                     vms=tuple(x for n in types.values() for x in n))
    return rule_check("machine-type", adds, has_machine_type_rule(now), upgrade, losers,
                      "the machine-type selector (machine-type.node.kubevirt.io/<status.machine.type>)")


def obsolete_check(upgrade: Upgrade, kubevirt: Optional[KubeVirtConfig], vms: Sequence[VirtualMachine],
                   vmis: Mapping[Tuple[str, str], VirtualMachineInstance],
                   profiles: Mapping[Tuple[str, str], CpuProfile], nodes: Sequence[Node]) -> Check:
    target = upgrade.target
    if target is None:
        return check("obsolete-models", PASS, "not checked: no --to VERSION")
    if target.kubevirt is None:
        return check("obsolete-models", PASS, "not checked: the KubeVirt of %s is not known" % target.version)
    if kubevirt is not None and kubevirt.obsolete_cpu_models is not None:
        return check("obsolete-models", PASS, "does not apply: the cluster sets its own obsoleteCPUModels, which "
                     "replaces the default list in every release")
    before = obsolete_models(None, (kubevirt.release if kubevirt else None) or NEWEST_RULES)
    after = obsolete_models(None, target.kubevirt_version or NEWEST_RULES)
    new = after - before
    if not new:
        return check("obsolete-models", PASS, "the default obsolete list is the same in KubeVirt %s" % target.kubevirt)
    default = kubevirt.cpu_model if kubevirt else None
    users = []
    for vm in vms:
        key = (vm.namespace, vm.name)
        vmi = vmis.get(key)
        model = vmi.cpu_model if vmi is not None and vmi.running else cpu_choice(vm, default, profiles.get(key)).model
        if model in new:
            users.append("%s/%s" % key)
    hosts = tuple(n.name for n in nodes if any(k[len(L.HOST_MODEL_CPU):] in new for k in n.labels
                                               if k.startswith(L.HOST_MODEL_CPU)))
    what = ", ".join(sorted(new))
    if users or default in new:
        return check("obsolete-models", FAIL, "KubeVirt %s makes %s obsolete: no node will offer %s to %s" % (
            target.kubevirt, what, "them", "the cluster default and " * (default in new) + "%d VM(s)" % len(users)),
            vms=tuple(users), nodes=hosts,
            fixes=("kubectl cpumodel common  # then set the recommended model on these VMs",))
    if hosts:
        return check("obsolete-models", WARN, "KubeVirt %s makes %s obsolete, the host model of %d node(s): "
                     "host-model VMs will not start there" % (target.kubevirt, what, len(hosts)), nodes=hosts)
    return check("obsolete-models", PASS, "KubeVirt %s makes %s obsolete; nothing uses them" % (target.kubevirt, what))


def feature_check(upgrade: Upgrade, running: Sequence[RunningVm], nodes: Sequence[Node]) -> Check:
    target = upgrade.target
    if target is None:
        return check("feature-changes", PASS, "not checked: no --to VERSION", reference="")
    start, end = upgrade.current.platform_version, target.platform_version
    if start is None or end is None:
        return check("feature-changes", PASS, "not checked: the %s release is not known" % (
            "running" if start is None else "target"), reference="")
    hits: List[Check] = []
    for rule in FEATURE_RULES:
        if rule.platform != upgrade.platform or not (start < rule.since <= end) or (
                rule.until is not None and end >= rule.until):
            continue
        if rule.subject == "threads":
            vms = [v for v in running if v.vmi.threads > 1]
        else:
            hit_nodes = {n.name for n in nodes if any(k.startswith(L.HOST_MODEL_CPU) and
                                                      k[len(L.HOST_MODEL_CPU):].startswith(rule.host_models)
                                                      for k in n.labels)}
            # The source node's required features become the VM's selectors at its first migration (§3).
            vms = [v for v in running if v.vmi.cpu_model == HOST_MODEL and v.vmi.node_name in hit_nodes]
        if vms:
            hits.append(Check("feature-changes", rule.status, TITLES["feature-changes"],
                              "%s (%s): %d VM(s)" % (rule.message, rule.id, len(vms)),
                              tuple("%s/%s" % (v.vmi.namespace, v.vmi.name) for v in vms),
                              tuple(dict.fromkeys(v.vmi.node_name or "" for v in vms)), rule.reference, (rule.fix,)))
    if not hits:
        return check("feature-changes", PASS, "no known node-labeller or QEMU change between %s and %s hits a running "
                     "VM" % (upgrade.current.version, target.version), reference="")
    worst = FAIL if any(h.status == FAIL for h in hits) else WARN
    return Check("feature-changes", worst, TITLES["feature-changes"], "; ".join(h.message for h in hits),
                 tuple(dict.fromkeys(x for h in hits for x in h.vms)), tuple(dict.fromkeys(x for h in hits
                                                                                            for x in h.nodes)),
                 "; ".join(h.reference for h in hits), tuple(x for h in hits for x in h.fixes))


def path_check(upgrade: Upgrade) -> Check:
    target = upgrade.target
    if target is None:
        return check("upgrade-path", PASS, "not checked: no --to VERSION")
    if upgrade.platform == OPENSHIFT:
        return check("upgrade-path", PASS, "does not apply: OLM's update graph decides OpenShift Virtualization's "
                     "path")
    start, end = upgrade.current.platform_version, target.platform_version
    if start is None or end is None:
        return check("upgrade-path", WARN, "not checked: the %s release is not known" % (
            "running" if start is None else "target"))
    if end < start:
        return check("upgrade-path", FAIL, "%s is older than the running %s: a downgrade is not supported" % (
            target.version, upgrade.current.version))
    if upgrade.platform == HARVESTER:
        minimum = HARVESTER_MIN_UPGRADABLE.get(canonical(target.version or ""))
        if minimum is None:
            return check("upgrade-path", WARN, "Harvester %s is not in the upgrade matrix known here: its minimum "
                         "upgradable version was not checked" % target.version)
        if start < (version_of(minimum) or start):
            return check("upgrade-path", FAIL, "Harvester %s upgrades from %s or newer; the cluster runs %s: upgrade to "
                         "%s first" % (target.version, minimum, upgrade.current.version, minimum))
        return check("upgrade-path", PASS, "Harvester %s upgrades from %s or newer; the cluster runs %s" % (
            target.version, minimum, upgrade.current.version))
    if end[:2] > (start[0], start[1] + 1) and end[0] == start[0]:
        return check("upgrade-path", WARN, "KubeVirt %s skips minor releases from %s: its operator is released and "
                     "tested one minor release after the other; update through each" % (
                         target.version, upgrade.current.version))
    return check("upgrade-path", PASS, "KubeVirt %s follows %s" % (target.version, upgrade.current.version))


def summary(checks: Sequence[Check]) -> Dict[str, int]:
    counts = {PASS: 0, WARN: 0, FAIL: 0}
    for c in checks:
        counts[c.status] += 1
    return counts
