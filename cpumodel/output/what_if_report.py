"""`what-if` output: the document of docs/json-contract.md and the table, from a WhatIfResult."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from cpumodel.core.what_if import (ADD_NODE, CLUSTER_MODEL, REMOVE_NODE, Change, DrainChange, DrainOutlook, Outlook,
                                   VmChange, VmOutlook, WhatIfResult)
from cpumodel.output.render import LazyList, TableStyle, brief_list, plural, report, section, table

REACH_ONLY_LISTED = 20  # VMs whose reach alone changes, listed one by one without -o wide
BLOCKED_SHOWN = 3  # blocked VMs named per drain in the table


def change_doc(c: Change) -> Dict[str, Any]:
    if c.kind in (REMOVE_NODE, ADD_NODE):
        doc: Dict[str, Any] = {"change": c.kind, "node": c.node}
        if c.kind == ADD_NODE:
            doc["file"] = c.source
        return doc
    doc = {"change": c.kind, "from": c.previous, "to": c.model}
    if c.kind != CLUSTER_MODEL:
        doc.update({"vm": c.vm[1], "namespace": c.vm[0]})  # type: ignore[index]
    return doc


def side_doc(o: Outlook) -> Dict[str, Any]:
    return {"recommended": o.common.recommended, "commonModels": list(o.common.common_models),
            "vmCapableNodes": o.capable, "blockingDrains": sum(1 for d in o.drains.values() if d.blocked)}


def outlook_doc(o: VmOutlook) -> Dict[str, Any]:
    return {"reachableNodes": o.reach, "action": o.action,
            "risks": [{"code": r.code, "message": r.message} for r in o.risks]}


def vm_doc(v: VmChange) -> Dict[str, Any]:
    return {"vm": v.vm, "namespace": v.namespace, "node": v.node, "appliesAt": v.applies_at,
            "before": outlook_doc(v.before), "after": outlook_doc(v.after),
            "afterRestart": {"reachableNodes": v.after_restart} if v.after_restart is not None else None}


def _drain_side(d: Optional[DrainOutlook]) -> Optional[Dict[str, Any]]:
    if d is None:
        return None
    return {"blocked": bool(d.blocked), "blockedVms": ["%s/%s" % vm for vm in d.blocked]}


def drain_doc(d: DrainChange) -> Dict[str, Any]:
    return {"node": d.node, "before": _drain_side(d.before), "after": _drain_side(d.after)}


def to_document(result: WhatIfResult, uncollected: Sequence[str] = (), platform: Optional[str] = None,
                capacity: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    return report("WhatIfReport", {
        "platform": platform,
        "changes": [change_doc(c) for c in result.changes],
        "before": side_doc(result.before),
        "after": side_doc(result.after),
        "vms": LazyList(result.vms, vm_doc),
        "lost": [{"vm": v.vm, "namespace": v.namespace, "node": v.node} for v in result.lost],
        "drains": LazyList(result.drains, drain_doc),
        "summary": {"vms": len(result.vms), "lost": len(result.lost),
                    "drainsNowBlocking": sum(1 for d in result.drains if d.now_blocks),
                    "drainsNoLongerBlocking": sum(1 for d in result.drains if d.before is not None and d.before.blocked
                                                  and d.after is not None and not d.after.blocked)},
        "uncollectedNamespaces": list(uncollected),
        "capacity": dict(capacity or {"checked": False})})


def change_text(c: Change) -> str:
    if c.kind == REMOVE_NODE:
        return "remove node %s" % c.node
    if c.kind == ADD_NODE:
        return "add node %s (from %s)" % (c.node, c.source)
    was = c.previous or "not set: host-model"
    if c.kind == CLUSTER_MODEL:
        return "cluster default CPU model: %s -> %s" % (was, c.model)
    return "vm/%s -n %s CPU model: %s -> %s" % (c.vm[1], c.vm[0], was, c.model)  # type: ignore[index]


def _arrow(before: Any, after: Any) -> str:
    before, after = ("-" if x is None else str(x) for x in (before, after))
    return before if before == after else "%s -> %s" % (before, after)


def _risks(v: VmChange) -> str:
    moved = ["+" + c for c in v.gained] + ["-" + c for c in v.dropped]
    return ", ".join(moved) or ", ".join(v.after.codes) or "-"


def _drain_text(d: Optional[DrainOutlook], absent: bool, missing: str) -> str:
    """One side of a node's drain; `absent`: the change removed (after) or added (before) the node, as `missing`
    says."""
    if d is None:
        return missing if absent else "(not VM-capable)"
    if not d.blocked:
        return "drains"
    return "blocks: %s" % brief_list(["%s/%s" % vm for vm in d.blocked], BLOCKED_SHOWN)


def render_table(result: WhatIfResult, style: TableStyle) -> str:
    removed = {c.node for c in result.changes if c.kind == REMOVE_NODE}
    added = {c.node for c in result.changes if c.kind == ADD_NODE}
    out = [section("Changes:", "".join("  %s\n" % change_text(c) for c in result.changes)), "\n"]
    b, a = result.before, result.after
    rows = [["", "BEFORE", "AFTER"],
            ["common model", b.common.recommended or "<none>", a.common.recommended or "<none>"],
            ["VM-capable nodes", str(b.capable), str(a.capable)],
            ["drains that block", str(sum(1 for d in b.drains.values() if d.blocked)),
             str(sum(1 for d in a.drains.values() if d.blocked))]]
    out.append(table(rows[0], rows[1:], style))
    lost = result.lost
    if lost:
        lines = "".join("  %s/%s  %s\n" % (v.namespace, v.vm, "running on %s: no node would accept its migration "
                                                                  "target pod" % v.node if v.node else
                                                 "stopped: no node would accept its virt-launcher pod at its start")
                        for v in lost)
        out.append(section("\nLost -- no node to move to after the change:", lines))
    listed, rest = list(result.vms), []
    if not style.wide and sum(1 for v in result.vms if _reach_only(v)) > REACH_ONLY_LISTED:
        listed, rest = [v for v in result.vms if not _reach_only(v)], [v for v in result.vms if _reach_only(v)]
    if listed:
        rows = [["%s/%s" % (v.namespace, v.vm), v.node + (" (removed)" if v.node in removed else "") if v.node
                 else "(stopped)", _arrow(v.before.reach, v.after.reach),
                 _arrow(v.before.action, v.after.action), _risks(v),
                 v.applies_at if v.after_restart is None else "%s (restarted: reach %d)" % (v.applies_at,
                                                                                           v.after_restart)]
                for v in listed]
        out.append("\n" + table(["VM", "NODE", "REACH", "DRAIN", "RISKS", "APPLIES AT"], rows, style))
    if rest:
        groups: Dict[str, int] = {}
        for v in rest:
            key = "%d -> %d" % (v.before.reach, v.after.reach)
            groups[key] = groups.get(key, 0) + 1
        out.append("%s more whose reach alone changes (%s); -o wide lists them\n" % (
            plural(len(rest), "VM"), brief_list(["%s: %d" % kv for kv in sorted(groups.items(), key=lambda kv: -kv[1])],
                                                4)))
    if not result.vms:
        out.append("\nNo VM's reach, drain action or risks change.\n")
    changed = [d for d in result.drains if d.changed]
    if changed:
        rows = [[d.node, _drain_text(d.before, d.node in added, "(added)"),
                 _drain_text(d.after, d.node in removed, "(removed)")] for d in changed]
        out.append("\n" + table(["NODE", "DRAIN BEFORE", "DRAIN AFTER"], rows, style))
    else:
        out.append("\nEvery node's drain blocks or not as before.\n")
    return "".join(out)


def _reach_only(v: VmChange) -> bool:
    """Only the number of nodes it may move to changes (never a lost VM)."""
    return v.before.action == v.after.action and v.before.codes == v.after.codes and v.after_restart is None \
        and not v.lost
