"""`common` output: the JSON document of docs/json-contract.md and the table, from a CommonResult."""
from __future__ import annotations

import textwrap
from typing import Any, Dict, List, Optional

from cpumodel.core.highest_common import CommonResult
from cpumodel.core.platform import NAMES, ClusterConfig
from cpumodel.objects import FieldRef
from cpumodel.output.render import TableStyle, brief_list, key_values, report, section, table, wrap_list

TABLE_LIMIT = 8  # held-back models and common models shown without -o wide


def set_command(model: str) -> str:
    return "kubectl cpumodel set --cluster %s" % model


def field_document(ref: Optional[FieldRef]) -> Optional[Dict[str, Any]]:
    if ref is None:
        return None
    return {"apiVersion": ref.api_version, "kind": ref.kind, "namespace": ref.namespace, "name": ref.name,
            "fieldPath": ref.field_path}


def to_document(result: CommonResult, config: ClusterConfig) -> Dict[str, Any]:
    d = result.cluster_default
    return report("CommonReport", {
        "platform": config.platform,
        "recommended": result.recommended,
        "commonModels": list(result.common_models),
        "maximalModels": list(result.maximal_models),
        "equivalentModels": list(result.equivalents),
        "unrankedModels": list(result.unranked),
        "nodes": list(result.nodes),
        "cordonedNodes": list(result.cordoned),
        "excludedNodes": [{"name": n, "reason": why} for n, why in result.excluded],
        "heldBackBy": [{"model": h.model, "equivalents": list(h.equivalents), "missingOn": list(h.missing_on),
                        "addedFeatures": list(h.extra_features)} for h in result.held_back],
        "mixedVendors": bool(result.vendor_groups),
        "vendorGroups": [{"vendor": g.vendor, "nodes": list(g.nodes), "recommended": g.recommended,
                          "nodeSelector": g.node_selector} for g in result.vendor_groups],
        "clusterDefault": {"model": d.model, "kubevirt": d.location, "supportedByAllNodes": d.supported_by_all,
                           "missingOn": list(d.missing_on), "owner": field_document(d.owner),
                           "drift": config.drift},
        "obsoleteModelsFrom": result.obsolete_source,
        "command": set_command(result.recommended) if result.recommended else None,
        "groups": [{"arch": g.arch, "vendor": g.vendor, "nodes": list(g.nodes), "recommended": g.recommended,
                    "commonModels": list(g.common_models), "nodeSelector": g.node_selector, "note": g.note}
                   for g in result.groups],
    })


def _summary_rows(result: CommonResult, config: ClusterConfig) -> List[List[str]]:
    rows = []
    rec = result.recommended or "<none>: the nodes share no usable, non-obsolete model"
    if result.equivalents:
        rec += "  (same features: %s)" % ", ".join(result.equivalents)
    rows.append(["Recommended:", rec])
    nodes = "%d VM-capable" % len(result.nodes)
    if result.cordoned:
        nodes += ", %d cordoned (kept: %s)" % (len(result.cordoned), ", ".join(result.cordoned))
    if result.excluded:
        nodes += ", %d excluded" % len(result.excluded)
    rows.append(["Nodes:", nodes])
    if config.platform:
        rows.append(["Platform:", NAMES[config.platform]])
    rows.append(["Cluster default:", _default_text(result)])
    if result.recommended:
        rows.append(["Apply with:", set_command(result.recommended)])
    return rows


def _default_text(result: CommonResult) -> str:
    d = result.cluster_default
    if d.location is None:
        return "unknown (no KubeVirt CR found)"
    where = "%s %s" % (d.owner.kind, d.owner.name) if d.owner and d.owner.kind != "KubeVirt" else d.location
    if d.model is None:
        return "none set in %s: VMs without a model use host-model" % where
    if d.supported_by_all is None:
        return "%s (%s)" % (d.model, where)
    if d.supported_by_all:
        return "%s (%s), supported by every node" % (d.model, where)
    return "%s (%s), NOT supported by: %s" % (d.model, where, ", ".join(d.missing_on))


def render_table(result: CommonResult, config: ClusterConfig, style: TableStyle) -> str:
    wide = style.wide
    out = [key_values(_summary_rows(result, config))]
    if config.drift:
        out.append(textwrap.fill("Note: " + config.drift, 96, break_on_hyphens=False) + "\n")
    if result.vendor_groups:
        rows = [[g.vendor, g.recommended or "<none>", ",".join("%s=%s" % kv for kv in g.node_selector.items()),
                 brief_list(list(g.nodes), 0 if wide else 6)] for g in result.vendor_groups]
        out.append(section("\nMixed CPU vendors: no model spans every node. Best model per vendor, and the "
                           "nodeSelector that pins VMs to a group:",
                           table(["VENDOR", "BEST MODEL", "NODE SELECTOR", "NODES"], rows, style)))
    if len({g.arch for g in result.groups}) > 1:
        rows = [[g.arch, g.vendor or "-", g.recommended or "host-passthrough" if g.note else g.recommended or "<none>",
                 ",".join("%s=%s" % kv for kv in g.node_selector.items()), brief_list(list(g.nodes), 0 if wide else 6)]
                for g in result.groups]
        notes = "".join("%s: %s\n" % (g.arch, g.note) for g in result.groups if g.note)
        out.append(section("\nArchitectures and vendors: the best model per group, and the nodeSelector that pins "
                           "VMs to it:", table(["ARCH", "VENDOR", "BEST MODEL", "NODE SELECTOR", "NODES"], rows, style)
                           + notes))
    if result.common_models:
        limit = 0 if wide else 3 * TABLE_LIMIT
        out.append(section("\nCommon models, best first:", wrap_list(list(result.common_models), 96, limit)))
    if result.held_back:
        entries = result.held_back if wide else result.held_back[:TABLE_LIMIT]
        rows = [[h.model, brief_list(list(h.missing_on), 0 if wide else 4),
                 brief_list(list(h.extra_features), 0 if wide else 2)] for h in entries]
        more = len(result.held_back) - len(entries)
        body = table(["BETTER MODEL", "MISSING ON", "ADDS"], rows, style)
        if more:
            body += "(+%d more better models; -o wide lists them all)\n" % more
        out.append(section("\nHeld back by (upgrade or retire these nodes to gain the model):", body))
    if result.excluded:
        out.append(section("\nLeft out:", table(["NODE", "REASON"], [list(e) for e in result.excluded], style)))
    return "".join(out)


