"""`why-not` output: the JSON document of docs/json-contract.md and the two tables, from a WhyNotResult."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from cpumodel.core.launcher_pod import PodConstraints
from cpumodel.core.migration import NodeVerdict
from cpumodel.core.reasons import Reason
from cpumodel.core.why_not import Suggestion, WhyNotResult
from cpumodel.output.render import TableStyle, brief_list, report, section, table

ACCEPTED, REFUSED = "✓", "✗"


def reasons_doc(reasons: Sequence[Reason]) -> List[Dict[str, Any]]:
    return [{"category": r.category.value, "key": r.key, "message": r.message} for r in reasons]


def suggestion_doc(fix: Any) -> Any:
    return {"model": fix.model, "command": fix.command, "note": fix.note} if fix else None


def constraints_doc(constraints: PodConstraints) -> List[Dict[str, str]]:
    doc = [{"key": c.key, "value": c.value, "origin": c.origin} for c in constraints.node_selector]
    origins = dict(constraints.affinity_origins)
    for term in constraints.terms:
        for req in term.requirements:
            doc.append({"key": req.key, "value": ("%s %s" % (req.operator, ",".join(req.values))).strip(),
                        "origin": origins.get(req.key, "required node affinity")})
    return doc


def _context_doc(result: WhyNotResult) -> Dict[str, Any]:
    """What explains the verdicts: the VM's model, the predicted constraints, migrations, events."""
    s = result.situation
    return {"running": s.running, "cpuModel": result.cpu_model, "constraints": constraints_doc(s.constraints),
            "notes": list(s.constraints.notes),
            "migrations": [{"name": m.name, "phase": m.phase, "targetNode": m.target_node,
                            "targetPods": [{"name": p.name, "phase": p.phase, "unschedulable": why}
                                           for p, why in m.target_pods]} for m in result.migrations],
            "events": [{"object": e.name, "reason": e.reason, "message": e.message, "time": e.timestamp}
                       for e in result.events]}


def to_document(result: WhyNotResult, capacity: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    kind = "WhyNotReport" if result.target is not None else "WhyNotNodesReport"
    doc: Dict[str, Any] = report(kind, {"vm": result.vm, "namespace": result.namespace,
                                        "sourceNode": result.situation.source_node})
    if result.target is not None:
        v = result.verdicts[0]
        doc.update({"targetNode": v.node, "migratable": v.migratable, "reasons": reasons_doc(v.reasons),
                    "warnings": list(v.warnings), "suggestion": suggestion_doc(result.suggestion)})
    else:
        doc.update({"nodes": [{"name": v.node, "migratable": v.migratable, "reasons": reasons_doc(v.reasons),
                               "warnings": list(v.warnings)} for v in result.verdicts],
                    "suggestion": suggestion_doc(result.suggestion)})
    doc.update(_context_doc(result))
    doc["capacity"] = dict(capacity or {"checked": False})
    return doc


def brief(reasons: Sequence[Reason]) -> str:
    """One table cell: the blocking keys' last path segment, grouped by category."""
    by_cat: Dict[str, List[str]] = {}
    for r in reasons:
        by_cat.setdefault(r.category.value, []).append((r.key or "").rsplit("/", 1)[-1])
    parts = []
    for cat, keys in by_cat.items():
        keys = [k for k in keys if k]
        parts.append("%s: %s" % (cat, brief_list(keys, 4, 40)) if keys and keys != [cat] else cat)
    return "; ".join(parts)


def _context_text(result: WhyNotResult) -> str:
    out = ["Note: %s\n" % note for note in result.situation.constraints.notes]
    for m in result.migrations:
        line = "Migration %s: %s" % (m.name, m.phase)
        for pod, why in m.target_pods:
            line += "; target pod %s %s%s" % (pod.name, pod.phase, " (unschedulable: %s)" % why if why else "")
        out.append(line + "\n")
    for e in result.events:
        out.append("Event %s on %s: %s\n" % (e.reason, e.name, e.message))
    return "".join(out)


def _vm_line(result: WhyNotResult) -> str:
    source = result.situation.source_node
    where = "running on %s" % source if source else "not running"
    return "VM %s/%s: %s, cpu model %s\n" % (result.namespace, result.vm, where,
                                            result.cpu_model or "<cluster default>")


def _why(message: str) -> str:
    """The table's short form: the key is in its own column, so keep only where it came from."""
    head, sep, origin = message.partition("; required because ")
    return "required because " + origin if sep else head


def _fix_text(fix: Suggestion) -> str:
    if not fix:
        return ""
    return "\nFix: give the VM a named CPU model the nodes support: %s\n     %s\n" % (fix.command, fix.note)


def _with_context(parts: List[str], result: WhyNotResult) -> str:
    ctx = _context_text(result)
    return "".join(parts) + ("\n" + ctx if ctx else "")


def render_single(result: WhyNotResult, style: TableStyle) -> str:
    wide = style.wide
    v: NodeVerdict = result.verdicts[0]
    out = [_vm_line(result)]
    verdict = "%s can migrate" % ACCEPTED if v.migratable else "%s cannot migrate" % REFUSED
    if not result.situation.running:
        verdict = "%s nothing to migrate (not running)" % REFUSED
    out.append("Target %s: %s\n" % (v.node, verdict))
    out += ["Warning: %s\n" % w for w in v.warnings]
    if v.reasons:
        rows = [[r.category.value, r.key or "-", r.message if wide else _why(r.message)] for r in v.reasons]
        out.append(section("\nReasons:", table(["CATEGORY", "KEY", "MESSAGE" if wide else "WHY"], rows, style)))
    out.append(_fix_text(result.suggestion))  # type: ignore[arg-type]
    return _with_context(out, result)


def render_all(result: WhyNotResult, style: TableStyle) -> str:
    out = [_vm_line(result)]
    rows = [[v.node, ACCEPTED if v.migratable else REFUSED,
             brief(v.reasons) or ("warning: libvirt may refuse (see -o json)" if v.warnings else "-")]
            for v in result.verdicts]
    out.append(table(["NODE", "MIGRATABLE", "REASONS"], rows, style) if rows else "no other nodes\n")
    out.append(_fix_text(result.suggestion))  # type: ignore[arg-type]
    return _with_context(out, result)


def render_table(result: WhyNotResult, style: TableStyle) -> str:
    return render_single(result, style) if result.target is not None else render_all(result, style)


def accepting_nodes(result: WhyNotResult) -> List[str]:
    """-o name: the nodes the VM could migrate to."""
    return [v.node for v in result.verdicts if v.migratable]
