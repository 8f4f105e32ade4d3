"""`why-not`: exactly why a VM cannot live-migrate to a node, where each constraint came from, and the fix."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from cpumodel import model
from cpumodel.commands.context import Environment, open_source, output_format
from cpumodel.core.catalog import Catalog, obsolete_models
from cpumodel.core.common import analyse_common
from cpumodel.core.nodes import split_nodes
from cpumodel.core.target import HOST_MODEL, TargetSpec, fresh_start, migration_target
from cpumodel.core.whynot import (Reason, Situation, evaluate, is_migratable, libvirt_warnings, needs_cpu_fix,
                                   suggest_model)
from cpumodel.errors import ExitCode, NotFound, UsageError
from cpumodel.output.render import brief_list, section, structured, table
from cpumodel.sources.reader import ClusterReader

VM_KINDS = {"vm": "vm", "vms": "vm", "virtualmachine": "vm", "virtualmachines": "vm",
            "virtualmachine.kubevirt.io": "vm", "virtualmachines.kubevirt.io": "vm",
            "vmi": "vmi", "vmis": "vmi", "virtualmachineinstance": "vmi", "virtualmachineinstances": "vmi",
            "virtualmachineinstance.kubevirt.io": "vmi", "virtualmachineinstances.kubevirt.io": "vmi"}
EVENT_REASONS = {"FailedScheduling", "migrationTargetPodUnschedulable", "NoSuitableNodesForHostModelMigration",
                 "FailedMigration", "MigrationBackoff"}
MIGRATIONS_SHOWN = 3


def parse_vm_ref(ref: str) -> Tuple[str, str]:
    kind, sep, name = ref.partition("/")
    if not sep:
        return "any", ref
    if kind.lower() not in VM_KINDS or not name:
        raise UsageError("unsupported VM reference %r: use vm/NAME, vmi/NAME or NAME" % ref)
    return VM_KINDS[kind.lower()], name


@dataclass
class Gathered:
    vm: Optional[model.VirtualMachine]
    vmi: Optional[model.VirtualMachineInstance]
    name: str
    namespace: str
    pod: Optional[model.Pod]
    nodes: List[model.Node]
    kubevirt: Optional[model.KubeVirtConfig]
    migrations: List[Dict[str, Any]]
    events: List[model.Event]


def _resolve(reader: ClusterReader, kind: str, name: str):
    namespace = reader.find_vm_namespace("vmi" if kind == "vmi" else "vm", name)
    vm = None
    if kind in ("vm", "any"):
        try:
            vm = reader.vm(namespace, name)
        except NotFound:
            if kind == "vm":
                reader.check_namespace(namespace)
                raise
    vmi = reader.vmi(namespace, name)
    if vm is None and vmi is None:
        reader.check_namespace(namespace)
        what = "virtualmachineinstances.kubevirt.io" if kind == "vmi" else "virtualmachines.kubevirt.io"
        raise NotFound('%s "%s" not found in namespace "%s"' % (what, name, namespace))
    return vm, vmi, namespace


def current_pod(reader: ClusterReader, vmi: model.VirtualMachineInstance) -> Optional[model.Pod]:
    """KubeVirt's CurrentVMIPod: the VMI's launcher pod on status.nodeName, newest first."""
    pods = [p for p in reader.launcher_pods(vmi) if p.node_name == vmi.node_name
            and (not p.owner_uids or vmi.uid in p.owner_uids)]
    return pods[0] if pods else None


def _migration_view(reader: ClusterReader, mig: model.Migration) -> Dict[str, Any]:
    view: Dict[str, Any] = {"name": mig.name, "phase": mig.phase, "targetNode": mig.target_node, "targetPods": []}
    for pod in reader.migration_pods(mig.namespace, mig.uid):
        sched = next((c for c in pod.conditions if c.type == "PodScheduled"), None)
        view["targetPods"].append({"name": pod.name, "phase": pod.phase,
                                   "unschedulable": sched.message if sched and sched.status == "False" else None})
    return view


def gather(reader: ClusterReader, ref: str, node_name: Optional[str]) -> Gathered:
    kind, name = parse_vm_ref(ref)
    vm, vmi, namespace = _resolve(reader, kind, name)
    nodes = reader.nodes()
    if node_name and node_name not in {n.name for n in nodes}:
        reader.node(node_name)  # raises a clean not-found error
    pod = current_pod(reader, vmi) if vmi is not None and vmi.running else None
    migrations, events = [], []
    if vmi is not None:
        recent = [m for m in reader.migrations(namespace, vmi.name) if m.phase != "Succeeded"][-MIGRATIONS_SHOWN:]
        migrations = [_migration_view(reader, m) for m in recent]
        names = (vmi.name,) + tuple(m["name"] for m in migrations) + tuple(
            p["name"] for m in migrations for p in m["targetPods"])
        events = [e for e in reader.events_for(namespace, names) if e.reason in EVENT_REASONS]
    return Gathered(vm, vmi, name, namespace, pod, nodes, reader.kubevirt(), migrations, events)


def template_vmi(vm: model.VirtualMachine, kubevirt: Optional[model.KubeVirtConfig]) -> model.VirtualMachineInstance:
    """The VMI a start would create: the template, with KubeVirt's defaulting of model and machine type."""
    raw = dict(vm.raw)
    spec = dict((raw.get("spec") or {}).get("template", {}).get("spec") or {})
    domain = dict(spec.get("domain") or {})
    cpu = dict(domain.get("cpu") or {})
    cpu.setdefault("model", (kubevirt.cpu_model if kubevirt else None) or HOST_MODEL)
    domain["cpu"] = cpu
    if not (domain.get("machine") or {}).get("type"):
        domain["machine"] = {"type": "q35"}
    spec["domain"] = domain
    return model.parse_vmi({"metadata": raw.get("metadata") or {}, "spec": spec})


def situation(g: Gathered) -> Situation:
    nodes = {n.name: n for n in g.nodes}
    if g.vmi is not None and g.vmi.running:
        source = nodes.get(g.vmi.node_name)  # type: ignore[union-attr]
        spec = migration_target(g.vmi, g.vm, g.kubevirt, g.pod, source)  # type: ignore[arg-type]
        return Situation(g.name, True, g.vmi.node_name, g.vmi, spec)  # type: ignore[union-attr]
    base = template_vmi(g.vm, g.kubevirt) if g.vm is not None else g.vmi
    spec = fresh_start(base, g.vm, g.kubevirt)  # type: ignore[arg-type]
    spec.notes.append("%s is not running: showing whether a fresh start could land on each node" % g.name)
    return Situation(g.name, False, None, g.vmi, spec)


def reasons_doc(reasons: List[Reason]) -> List[Dict[str, Any]]:
    return [{"category": r.category, "key": r.key, "message": r.message} for r in reasons]


def suggestion(catalog: Catalog, g: Gathered, s: Situation, target: Optional[model.Node], common: List[str],
               obsolete: frozenset) -> Optional[Dict[str, str]]:
    """A named model for the VM that the source, the target (or every node) and ideally all VM-capable nodes offer."""
    source = next((n for n in g.nodes if n.name == s.source_node), None)
    best = suggest_model(catalog, [source, target], common, obsolete)
    if best is None or (s.vmi is not None and s.running and best == s.vmi.cpu_model):
        return None  # nothing usable, or the model the VM already has
    command = "kubectl cpumodel set vm/%s %s -n %s" % (g.name, best, g.namespace)
    everywhere = " and on every VM-capable node" if best in common else ""
    where = " and ".join(n for n in (s.source_node, target.name if target else None) if n) or "the nodes"
    when = ("it takes effect at the VM's next restart (add --restart to restart now)" if s.running
            else "the VM uses it when it next starts")
    return {"model": best, "command": command, "note": "%s is usable on %s%s; %s" % (best, where, everywhere, when)}


def constraints_doc(spec: TargetSpec) -> List[Dict[str, str]]:
    doc = [{"key": k, "value": c.value, "origin": c.origin} for k, c in sorted(spec.node_selector.items())]
    for term in spec.terms:
        for req in term.requirements:
            doc.append({"key": req.key, "value": ("%s %s" % (req.operator, ",".join(req.values))).strip(),
                        "origin": spec.affinity_origins.get(req.key, "required node affinity")})
    return doc


def brief(reasons: List[Reason]) -> str:
    by_cat: Dict[str, List[str]] = {}
    for r in reasons:
        by_cat.setdefault(r.category, []).append((r.key or "").rsplit("/", 1)[-1])
    parts = []
    for cat, keys in by_cat.items():
        keys = [k for k in keys if k]
        parts.append("%s: %s" % (cat, brief_list(keys, 4, 40)) if keys and keys != [cat] else cat)
    return "; ".join(parts)


def single_document(s: Situation, target: model.Node, fix, warn) -> Tuple[Dict[str, Any], bool]:
    reasons = evaluate(s, target)
    ok = is_migratable(s, reasons)
    warnings = warn(target) if ok else []
    return {"targetNode": target.name, "migratable": ok, "reasons": reasons_doc(reasons), "warnings": warnings,
            "suggestion": fix(target) if needs_cpu_fix(reasons) or warnings else None}, ok


def all_nodes_document(s: Situation, nodes: List[model.Node], capable: set, fix, warn
                       ) -> Tuple[Dict[str, Any], List[str], bool]:
    """Every node but the source; a fix is offered when CPU constraints block a VM-capable node."""
    rows, briefs = [], []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == s.source_node:
            continue
        reasons = evaluate(s, node)
        ok = is_migratable(s, reasons)
        warnings = warn(node) if ok else []
        rows.append({"name": node.name, "migratable": ok, "reasons": reasons_doc(reasons), "warnings": warnings})
        briefs.append(brief(reasons) or ("warning: libvirt may refuse (see -o json)" if warnings else ""))
    blocked_by_cpu = any(needs_cpu_fix([Reason(**r) for r in row["reasons"]]) for row in rows
                         if row["name"] in capable)
    return {"nodes": rows, "suggestion": fix(None) if blocked_by_cpu else None}, briefs, \
        any(r["migratable"] for r in rows)


def run(args: argparse.Namespace, env: Environment) -> int:
    fmt = output_format(args)
    g = gather(ClusterReader(open_source(args, env)), args.vm, args.node)
    s = situation(g)
    catalog = Catalog.load()
    analysis = analyse_common(catalog, split_nodes(g.nodes), g.kubevirt)
    common = list(analysis.common_models)
    obsolete = obsolete_models(g.kubevirt.obsolete_cpu_models if g.kubevirt else None)
    fix = lambda target: suggestion(catalog, g, s, target, common, obsolete)  # noqa: E731
    source = next((n for n in g.nodes if n.name == s.source_node), None)
    warn = lambda target: libvirt_warnings(catalog, s, source, target)  # noqa: E731
    doc: Dict[str, Any] = {"vm": g.name, "namespace": g.namespace, "sourceNode": s.source_node}
    if args.node:
        part, ok = single_document(s, next(n for n in g.nodes if n.name == args.node), fix, warn)
    else:
        part, briefs, ok = all_nodes_document(s, g.nodes, set(analysis.nodes), fix, warn)
    doc.update(part)
    doc.update(context_document(g, s))
    if fmt in ("json", "yaml"):
        env.write(structured(doc, fmt))
    else:
        env.write(render_single(doc, fmt == "wide") if args.node else render_all(doc, briefs))
    return ExitCode.BLOCKED if args.exit_code and not ok else ExitCode.OK


def context_document(g: Gathered, s: Situation) -> Dict[str, Any]:
    """What explains the verdicts: the VM's model, the predicted constraints, migrations, events."""
    model_now = s.vmi.cpu_model if s.vmi and s.running else (g.vm.cpu_model if g.vm else None)
    return {"running": s.running, "cpuModel": model_now, "constraints": constraints_doc(s.spec),
            "notes": s.spec.notes, "migrations": g.migrations,
            "events": [{"object": e.name, "reason": e.reason, "message": e.message, "time": e.timestamp}
                       for e in g.events]}


def _context_text(doc: Dict[str, Any]) -> str:
    out = []
    for note in doc["notes"]:
        out.append("Note: %s\n" % note)
    for m in doc["migrations"]:
        line = "Migration %s: %s" % (m["name"], m["phase"])
        for p in m["targetPods"]:
            line += "; target pod %s %s%s" % (p["name"], p["phase"],
                                              " (unschedulable: %s)" % p["unschedulable"] if p["unschedulable"] else "")
        out.append(line + "\n")
    for e in doc["events"]:
        out.append("Event %s on %s: %s\n" % (e["reason"], e["object"], e["message"]))
    return "".join(out)


def _vm_line(doc: Dict[str, Any]) -> str:
    where = "running on %s" % doc["sourceNode"] if doc["sourceNode"] else "not running"
    return "VM %s/%s: %s, cpu model %s\n" % (doc["namespace"], doc["vm"], where, doc["cpuModel"] or "<cluster default>")


def _why(message: str) -> str:
    """The table's short form: the key is in its own column, so keep only where it came from."""
    head, sep, origin = message.partition("; required because ")
    return "required because " + origin if sep else head


def render_single(doc: Dict[str, Any], wide: bool = False) -> str:
    out = [_vm_line(doc)]
    verdict = "✓ can migrate" if doc["migratable"] else "✗ cannot migrate"
    if not doc["running"]:
        verdict = "✗ nothing to migrate (not running)"
    out.append("Target %s: %s\n" % (doc["targetNode"], verdict))
    for warning in doc["warnings"]:
        out.append("Warning: %s\n" % warning)
    if doc["reasons"]:
        rows = [[r["category"], r["key"] or "-", r["message"] if wide else _why(r["message"])] for r in doc["reasons"]]
        out.append(section("\nReasons:", table(["CATEGORY", "KEY", "MESSAGE" if wide else "WHY"], rows)))
    out.append(_fix_text(doc))
    ctx = _context_text(doc)
    return "".join(out) + ("\n" + ctx if ctx else "")


def _fix_text(doc: Dict[str, Any]) -> str:
    sug = doc.get("suggestion")
    if not sug:
        return ""
    return "\nFix: give the VM a named CPU model the nodes support: %s\n     %s\n" % (sug["command"], sug["note"])


def render_all(doc: Dict[str, Any], briefs: List[str]) -> str:
    out = [_vm_line(doc)]
    rows = [[n["name"], "✓" if n["migratable"] else "✗", b or "-"] for n, b in zip(doc["nodes"], briefs)]
    out.append(table(["NODE", "MIGRATABLE", "REASONS"], rows) if rows else "no other nodes\n")
    out.append(_fix_text(doc))
    ctx = _context_text(doc)
    return "".join(out) + ("\n" + ctx if ctx else "")
