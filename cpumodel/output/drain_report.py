"""`drain-check` output: documents (docs/json-contract.md) and tables from DrainResult values."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from cpumodel.core.capacity import Request
from cpumodel.core.drain import Action, DrainResult, Fix, VmDrain
from cpumodel.output.render import LazyList, TableStyle, brief_list, plural, report, section, table

DRAIN_ACTIONS = ("migrate", "shutdown", "blocked", "external")  # a drain's (stopped is the upgrade's)
TARGETS_SHOWN = 3  # in a table row
TARGETS_LISTED_PER_STEP = 10  # in --all documents, where thousands of VMs could each name thousands of nodes


def _fix_doc(fix: Optional[Fix]) -> Optional[Dict[str, Any]]:
    if fix is None:
        return None
    return {"model": fix.model, "vms": ["%s/%s" % vm for vm in fix.vms], "commands": list(fix.commands)}


def vm_doc(v: VmDrain, limit: int = 0) -> Dict[str, Any]:
    return {"vm": v.vm, "namespace": v.namespace, "node": v.node, "evictionStrategy": v.eviction_strategy,
            "maintainModeStrategy": v.maintain_mode_strategy, "action": v.action.value,
            "targets": list(v.targets.names(limit)), "targetCount": len(v.targets),
            "reasons": [{"category": k.category.value, "key": k.key, "message": k.message, "nodes": k.nodes}
                        for k in v.reasons],
            "warnings": [{"code": w.code, "message": w.message} for w in v.warnings],
            "suggestion": {"model": v.suggestion, "command": "kubectl cpumodel set vm/%s %s -n %s --restart"
                                                             % (v.vm, v.suggestion, v.namespace)}
            if v.suggestion else None,
            "requests": requests_doc(v.requests), "placedOn": v.placed_on, "roomFix": v.room_fix}


def requests_doc(requests: Optional[Request]) -> Optional[Dict[str, str]]:
    """A target pod's requests as Kubernetes quantities (cpu in millicores), or None when not known."""
    if requests is None:
        return None
    return {resource: "%dm" % value if resource == "cpu" else str(value) for resource, value in requests}


def to_document(result: DrainResult, uncollected: Sequence[str] = (),
                capacity: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    return report("DrainCheckReport", {"drainedNodes": list(result.drained), "candidateNodes": list(result.candidates),
                                       "vms": [vm_doc(v) for v in result.vms], "summary": result.summary,
                                       "fix": _fix_doc(result.fix), "uncollectedNamespaces": list(uncollected),
                                       "capacity": dict(capacity or {"checked": result.capacity})})


def step_doc(s: DrainResult) -> Dict[str, Any]:
    return {"node": s.drained[0], "vms": [vm_doc(v, TARGETS_LISTED_PER_STEP) for v in s.vms], "summary": s.summary,
            "fix": _fix_doc(s.fix)}


def steps_document(steps: Sequence[DrainResult], uncollected: Sequence[str] = (),
                   capacity: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    total = {k: sum(s.summary[k] for s in steps) for k in DRAIN_ACTIONS}
    return report("DrainCheckAllReport", {
        "steps": LazyList(steps, step_doc),
        "summary": total,
        "undrainableNodes": [{"node": s.drained[0], "blockedVms": ["%s/%s" % (v.namespace, v.vm) for v in s.blocked]}
                             for s in steps if s.blocked],
        "uncollectedNamespaces": list(uncollected),
        "capacity": dict(capacity or {"checked": any(s.capacity for s in steps)})})


def accepting(result: DrainResult) -> List[str]:
    """-o name: every node some VM would migrate to."""
    return sorted({t for v in result.vms for t in v.targets.names()})


def _blocker(v: VmDrain) -> str:
    if v.action is not Action.BLOCKED:
        return "-"
    everywhere = [k for k in v.reasons if k.nodes == v.reasons[0].nodes]
    keys = [(k.key or k.category.value).rsplit("/", 1)[-1] for k in everywhere]
    return "%s: %s" % (everywhere[0].category.value, brief_list(keys, 3, 48)) if everywhere else "-"


def _targets(v: VmDrain, limit: int) -> str:
    shown = list(v.targets.names(limit))
    more = len(v.targets) - len(shown)
    return (", ".join(shown) + (" (+%d more)" % more if more else "")) if shown else "-"


def _strategy(v: VmDrain) -> str:
    if v.maintain_mode_strategy and v.maintain_mode_strategy != "Migrate":
        return "%s (maintain: %s)" % (v.eviction_strategy, v.maintain_mode_strategy)
    return v.eviction_strategy


def _summary_line(result: DrainResult) -> str:
    s = result.summary
    blocked = "%d %s" % (s["blocked"], "BLOCK THE DRAIN" if s["blocked"] else "block the drain")
    return "%s on %s: %d migrate, %d shut down, %d external, %s\n" % (
        plural(len(result.vms), "VM"), ", ".join(result.drained), s["migrate"], s["shutdown"], s["external"], blocked)


def _fix_text(fix: Optional[Fix]) -> str:
    if fix is None:
        return ""
    return ("\nFix: give the blocked VMs a CPU model their source and a target share (%s unblocks %d); the restart "
            "also drops constraints inherited from earlier migrations:\n%s" % (
                fix.model, len(fix.vms), "".join("  %s\n" % c for c in fix.commands)))


def render_table(result: DrainResult, style: TableStyle) -> str:
    if not result.vms:
        return "no running VMs on %s: the drain moves nothing\n" % ", ".join(result.drained)
    limit = 0 if style.wide else TARGETS_SHOWN
    rows = [["%s/%s" % (v.namespace, v.vm), _strategy(v), v.action.value.upper() if v.action is Action.BLOCKED
             else v.action.value, _targets(v, limit), _blocker(v)] for v in result.vms]
    out = [table(["VM", "STRATEGY", "ACTION", "TARGETS", "BLOCKER"], rows, style), "\n", _summary_line(result)]
    warnings = ["  %s/%s: %s\n" % (v.namespace, v.vm, w.message) for v in result.vms for w in v.warnings]
    if warnings:
        out.append(section("\nWarnings (the labels allow it; libvirt or QEMU may not):", "".join(warnings)))
    room = ["  %s/%s: %s\n" % (v.namespace, v.vm, v.room_fix) for v in result.blocked if v.room_fix]
    if room:
        out.append(section("\nRoom (the CPU allows a target, its free room does not):", "".join(room)))
    out.append(_fix_text(result.fix))
    return "".join(out)


def render_all(steps: Sequence[DrainResult], style: TableStyle) -> str:
    rows = [[s.drained[0], len(s.vms), s.summary["migrate"], s.summary["shutdown"], s.summary["blocked"],
             brief_list(["%s/%s" % (v.namespace, v.vm) for v in s.blocked], 0 if style.wide else 3) or "-"]
            for s in steps]
    out = [table(["NODE", "VMS", "MIGRATE", "SHUTDOWN", "BLOCKED", "BLOCKED VMS"], rows, style)]
    stuck = [s for s in steps if s.blocked]
    if not stuck:
        out.append("\nEvery node can be drained on its own.\n")
        return "".join(out)
    out.append("\n%d of %d nodes cannot be drained:\n" % (len(stuck), len(steps)))
    for step in stuck:
        for v in step.blocked:
            out.append("  %s: %s/%s — %s\n" % (step.drained[0], v.namespace, v.vm, _blocker(v)))
            if v.room_fix:
                out.append("    fix: %s\n" % v.room_fix)
        for command in step.fix.commands if step.fix else ():
            out.append("    fix: %s\n" % command)
    return "".join(out)
