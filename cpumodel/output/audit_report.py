"""`audit` output: the document of docs/json-contract.md and the table, from an AuditResult."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from cpumodel.core.audit import REACH_NAMED, AuditResult, VmAudit
from cpumodel.output.render import TableStyle, brief_list, plural, report, section, table


def vm_doc(v: VmAudit) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "vm": v.vm, "namespace": v.namespace, "running": v.running, "node": v.node,
        "cpu": {"mode": v.cpu.mode, "model": v.cpu.model, "origin": v.cpu.origin},
        "reachableNodes": v.reach,
        "risks": [{"code": r.code, "message": r.message} for r in v.risks],
        "suggestion": {"model": v.suggestion, "command": "kubectl cpumodel set vm/%s %s -n %s"
                                                         % (v.vm, v.suggestion, v.namespace)} if v.suggestion else None,
    }
    if v.reach <= REACH_NAMED:
        doc["reachableNodeNames"] = list(v.reachable)
    return doc


def to_document(result: AuditResult, uncollected: Sequence[str] = (), platform: Optional[str] = None,
                capacity: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    vms = [vm_doc(v) for v in result.vms]
    for doc in vms:
        doc["vmCapableNodes"] = result.capable
    return report("AuditReport", {
        "platform": platform,
        "vms": vms,
        "summary": {"vms": len(result.vms), "atRisk": result.at_risk, "byRisk": result.by_risk},
        "recommended": result.recommended,
        "fixes": [{"command": f.command, "vms": list(f.vms)} for f in result.fixes],
        "uncollectedNamespaces": list(uncollected),
        "capacity": dict(capacity or {"checked": False})})


def _cpu(v: VmAudit) -> str:
    return v.cpu.model if v.cpu.model else v.cpu.mode


def render_table(result: AuditResult, style: TableStyle) -> str:
    if not result.vms:
        return ""
    rows = [["%s/%s" % (v.namespace, v.vm), v.node or "(stopped)", _cpu(v), v.cpu.origin,
             "%d/%d" % (v.reach, result.capable), ", ".join(v.codes) or "-"] for v in result.vms]
    out = [table(["VM", "NODE", "CPU", "FROM", "REACH", "RISKS"], rows, style)]
    out.append("\n%s, %d at risk" % (plural(len(result.vms), "VM"), result.at_risk))
    out.append(": " + ", ".join("%s %d" % kv for kv in result.by_risk.items()) + "\n" if result.by_risk else "\n")
    if style.wide:
        details = ["  %s/%s %s: %s\n" % (v.namespace, v.vm, r.code, r.message) for v in result.vms for r in v.risks]
        if details:
            out.append(section("\nRisks:", "".join(details)))
    if result.fixes:
        lines = "".join("  %s   # %s: %s\n" % (f.command, plural(len(f.vms), "VM"),
                                                 brief_list(list(f.vms), 0 if style.wide else 4)) for f in result.fixes)
        out.append(section("\nFixes (most VMs first; running VMs take the model at their next restart):", lines))
    return "".join(out)
