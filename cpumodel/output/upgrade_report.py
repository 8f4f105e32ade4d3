"""`upgrade-check` output: the document (docs/json-contract.md) and upgrade-helpers' `<title>: Pass|Warn|Fail` table."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from cpumodel.core.drain import Action, DrainResult
from cpumodel.core.platform import NAMES
from cpumodel.core.upgrade import Check, Release, Upgrade, summary
from cpumodel.output.drain_report import step_doc
from cpumodel.output.render import LazyList, TableStyle, brief_list, report, table

ACTIONS = ("migrate", "shutdown", "blocked", "stopped", "external")
VMS_SHOWN = 10  # per Warn/Fail in the table, unless -o wide


def _release(r: Optional[Release]) -> Optional[Dict[str, Any]]:
    return None if r is None else {"version": r.version, "kubevirtVersion": r.kubevirt}


def step_summary(step: DrainResult) -> Dict[str, int]:
    """drain-check's counts, with `stopped` always there."""
    return dict(dict.fromkeys(ACTIONS, 0), **step.summary)


def _step_doc(s: DrainResult) -> Dict[str, Any]:
    return dict(step_doc(s), summary=step_summary(s))


def check_doc(c: Check) -> Dict[str, Any]:
    return {"id": c.id, "status": c.status, "title": c.title, "message": c.message, "vms": list(c.vms),
            "nodes": list(c.nodes), "reference": c.reference, "fixes": list(c.fixes)}


def to_document(upgrade: Upgrade, order: Sequence[str], order_note: str, steps: Sequence[DrainResult],
                checks: Sequence[Check], uncollected: Sequence[str], capacity: Optional[Mapping[str, Any]],
                during) -> Dict[str, Any]:
    total = dict.fromkeys(ACTIONS, 0)
    for s in steps:
        for k, n in step_summary(s).items():
            total[k] += n
    return report("UpgradeCheckReport", {
        "platform": upgrade.platform, "from": _release(upgrade.current), "to": _release(upgrade.target),
        "rulesDuringUpgrade": {"kubevirtVersion": during.version if during is not None else None},
        "order": list(order), "orderNote": order_note,
        "steps": LazyList(steps, _step_doc), "vmSummary": total,
        "checks": [check_doc(c) for c in checks], "summary": summary(checks),
        "uncollectedNamespaces": list(uncollected),
        "capacity": dict(capacity or {"checked": any(s.capacity for s in steps)})})


def _heading(upgrade: Upgrade) -> str:
    def text(r: Release) -> str:
        return "%s (KubeVirt %s)" % (r.version or "release unknown", r.kubevirt or "unknown")
    name = NAMES.get(upgrade.platform or "", "KubeVirt")
    if upgrade.target is None:
        return "%s %s: the drains of an upgrade under the running rules (--to VERSION checks a target)\n" % (
            name, text(upgrade.current))
    return "%s %s -> %s\n" % (name, text(upgrade.current), text(upgrade.target))


def render_table(upgrade: Upgrade, order: Sequence[str], steps: Sequence[DrainResult], checks: Sequence[Check],
                 style: TableStyle) -> str:
    out = [_heading(upgrade), "\n"]
    rows = []
    for i, s in enumerate(steps, 1):
        counts = step_summary(s)
        stuck = [v for v in s.vms if v.action in (Action.BLOCKED, Action.STOPPED)]
        rows.append([i, s.drained[0], len(s.vms), counts["migrate"], counts["shutdown"], counts["stopped"],
                     counts["blocked"], brief_list(["%s/%s" % (v.namespace, v.vm) for v in stuck],
                                                   0 if style.wide else 3) or "-"])
    out.append(table(["STEP", "NODE", "VMS", "MIGRATE", "SHUTDOWN", "STOPPED", "BLOCKED", "VMS AT RISK"], rows, style))
    out.append("\n")
    for c in checks:
        out.append("%s: %s\n" % (c.title, c.status.capitalize()))
    for c in checks:
        if c.status == "pass":
            continue
        out.append("\n%s (%s): %s\n" % (c.title, c.status.capitalize(), c.message))
        limit = len(c.vms) if style.wide else VMS_SHOWN
        for vm in c.vms[:limit]:
            out.append("  vm %s\n" % vm)
        if len(c.vms) > limit:
            out.append("  ... and %d more VMs (-o wide lists them)\n" % (len(c.vms) - limit))
        if c.nodes:
            out.append("  nodes: %s\n" % brief_list(list(c.nodes), 0 if style.wide else 8))
        for fix in c.fixes:
            out.append("  fix: %s\n" % fix)
        if c.reference:
            out.append("  see: %s\n" % c.reference)
    s = summary(checks)
    out.append("\n%d passed, %d warnings, %d failed\n" % (s["pass"], s["warn"], s["fail"]))
    return "".join(out)
