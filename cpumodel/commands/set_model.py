"""`set`: give VMs, or the whole cluster, an explicit CPU model -- validated, previewed, race-safe."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cpumodel.commands.context import Environment, open_source, output_format
from cpumodel.core.nodes import Summarizer, split_nodes
from cpumodel.core.plan import (CHART_MODEL_PATH, KUBEVIRT_MODEL_PATH, VM_MODEL_PATH, check_model, cluster_impact,
                                field_patch, get_path, merge_patch)
from cpumodel.errors import Conflict, NotFound, UsageError
from cpumodel.output.render import brief_list, structured
from cpumodel.sources import resources as r
from cpumodel.sources.base import Source
from cpumodel.sources.reader import HARVESTER_CHART, ClusterReader

MERGE_PATCH = "application/merge-patch+json"
CONFLICT_RETRIES = 3
DRY_RUN_MODES = ("none", "client", "server")
IMPACT_SHOWN = 10  # VMs named per impact line; -o wide names them all


@dataclass
class Options:
    model: Optional[str]
    vm_names: List[str]
    selector: Optional[str]
    all_vms: bool
    cluster: bool
    dry_run: str
    force: bool
    restart: bool
    target: Optional[str]
    fmt: str


def complete(args: argparse.Namespace) -> Options:
    positional = list(args.args)
    if args.clear:
        model = None
    elif not positional:
        raise UsageError("a CPU model is required (or --clear)")
    else:
        model = positional.pop()
    if args.dry_run not in DRY_RUN_MODES:
        raise UsageError('invalid --dry-run "%s": must be none, client or server' % args.dry_run)
    names = []
    for ref in positional:
        kind, sep, name = ref.partition("/")
        if sep and kind.lower() not in ("vm", "vms", "virtualmachine", "virtualmachines",
                                        "virtualmachine.kubevirt.io", "virtualmachines.kubevirt.io"):
            raise UsageError("set works on VirtualMachines: %r is not vm/NAME" % ref)
        names.append(name if sep else ref)
    return Options(model, names, args.selector, args.all, args.cluster, args.dry_run, args.force, args.restart,
                   args.target, output_format(args))


def validate(o: Options, source: Source) -> None:
    if o.cluster and (o.vm_names or o.selector or o.all_vms):
        raise UsageError("--cluster sets the cluster default: it takes only MODEL (or --clear), no VMs")
    if not o.cluster:
        chosen = sum(bool(x) for x in (o.vm_names, o.selector, o.all_vms))
        if chosen == 0:
            raise UsageError("name the VMs to change (VM... MODEL), or use -l SELECTOR, --all or --cluster")
        if chosen > 1:
            raise UsageError("use one of: VM names, -l SELECTOR, --all")
        if o.target:
            raise UsageError("--target applies only with --cluster")
    if source.offline and o.dry_run != "client":
        raise UsageError("with -f (offline files) nothing can be written: use --dry-run=client")
    if o.restart and o.cluster:
        raise UsageError("--restart applies to VMs; after --cluster, restart the VMs that should adopt the default")


@dataclass
class Change:
    """One object to patch: how to read it fresh, its type and name, and the field path."""

    resource: r.Resource
    namespace: Optional[str]
    name: str
    path: Tuple[str, ...]
    label: str  # what the output line calls the field


def _suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


def _show(value: Optional[str]) -> str:
    return value if value else "<unset>"


def write(source: Source, change: Change, value: Optional[str], dry_run: str, env: Environment,
          quiet: bool) -> Dict[str, Any]:
    """Patch one field with a resourceVersion precondition; on 409 re-read and retry (bounded)."""
    for attempt in range(CONFLICT_RETRIES + 1):
        current = source.get(change.resource, change.namespace, change.name)
        before = get_path(current, change.path)
        patch = field_patch(change.path, value, str((current.get("metadata") or {}).get("resourceVersion", "")))
        if before == value:
            if not quiet:
                env.write("%s/%s unchanged (%s already %s)\n" % (change.resource.singular_full_name, change.name,
                                                                change.label, _show(value)))
            return current
        if dry_run == "client":
            result = merge_patch(current, patch)
        else:
            try:
                result = source.patch(change.resource, change.namespace, change.name, patch, MERGE_PATCH,
                                      dry_run == "server")
            except Conflict:
                if attempt == CONFLICT_RETRIES:
                    raise Conflict("%s/%s kept changing while we wrote it (%d conflicts); try again" % (
                        change.resource.singular_full_name, change.name, CONFLICT_RETRIES + 1))
                continue
        if not quiet:
            verb = "set to %s" % value if value else "cleared"
            env.write("%s/%s %s %s%s\n  %s: %s -> %s\n" % (change.resource.singular_full_name, change.name,
                                                           change.label, verb, _suffix(dry_run),
                                                           ".".join(change.path), _show(before), _show(value)))
        return result
    raise AssertionError("unreachable")


def apply_all(source: Source, changes: Sequence[Change], value: Optional[str], o: Options, env: Environment) -> List[Dict[str, Any]]:
    quiet = o.fmt in ("json", "yaml")
    if o.dry_run == "none":
        # A server-side dry run of every patch first: RBAC, admission and validation errors
        # surface before anything is written, so one bad VM never leaves the rest half-done.
        silent = Environment(stdout=_Null(), stderr=env.stderr, env=env.env)
        for change in changes:
            write(source, change, value, "server", silent, True)
    return [write(source, c, value, o.dry_run, env, quiet) for c in changes]


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def emit_objects(objects: List[Dict[str, Any]], o: Options, env: Environment) -> None:
    if o.fmt not in ("json", "yaml"):
        return
    doc = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": objects}
    env.write(structured(doc, o.fmt))


def check_against_nodes(reader: ClusterReader, o: Options, env: Environment, require_all: bool) -> None:
    if o.model is None:
        return
    check = check_model(o.model, split_nodes(reader.nodes(view="status", then=Summarizer())), require_all)
    for warning in check.warnings:
        env.warn(warning)
    if check.error:
        if not o.force:
            raise UsageError(check.error + " (use --force to write anyway)")
        env.warn(check.error + " (written anyway: --force)")


def select_vms(reader: ClusterReader, o: Options):
    ns = reader.source.namespace
    if o.vm_names:
        try:
            return [reader.vm(ns, name) for name in o.vm_names]  # every VM must exist before any write
        except NotFound:
            reader.check_namespace(ns)
            raise
    vms = reader.vms(ns, o.selector)
    if not vms:
        raise UsageError('no VirtualMachines %s in namespace "%s"' % (
            "match %s" % o.selector if o.selector else "found", ns))
    return vms


def run_vms(reader: ClusterReader, o: Options, env: Environment) -> int:
    vms = select_vms(reader, o)
    check_against_nodes(reader, o, env, require_all=False)
    changes = [Change(r.VMS, vm.namespace, vm.name, VM_MODEL_PATH, "cpu model") for vm in vms]
    objects = apply_all(reader.source, changes, o.model, o, env)
    running = [vm for vm in vms if vm.running]
    if running and o.restart and o.dry_run == "none":
        for vm in running:
            reader.source.put_subresource(r.VMS, vm.namespace, vm.name, r.VM_RESTART, r.SUBRESOURCES_GROUP_VERSION)
            env.stderr.write("virtualmachine.kubevirt.io/%s restarted\n" % vm.name)
    elif running:
        env.warn("the change applies at the next restart of these running VMs: %s%s" % (
            ", ".join(v.name for v in running), "" if o.restart else " (use --restart to restart them now)"))
    emit_objects(objects, o, env)
    return 0


def cluster_change(reader: ClusterReader, o: Options, env: Environment) -> Change:
    kubevirt = reader.kubevirt_raw()
    if kubevirt is None:
        raise UsageError("no KubeVirt CR found in any namespace: is KubeVirt installed?")
    chart = reader.harvester_chart() if o.target != "kubevirt" else None
    if o.target == "managedchart" and chart is None:
        raise UsageError("--target managedchart: ManagedChart %s/%s not found (not a Harvester cluster?)" % HARVESTER_CHART)
    if chart is not None:
        env.stderr.write("Harvester detected: writing the ManagedChart %s/%s values so upgrades keep the model; "
                         "Fleet then updates the KubeVirt CR\n" % HARVESTER_CHART)
        return Change(r.MANAGEDCHARTS, HARVESTER_CHART[0], HARVESTER_CHART[1], CHART_MODEL_PATH,
                      "values kubevirt.spec.configuration.cpuModel")
    meta = kubevirt.get("metadata") or {}
    return Change(r.KUBEVIRTS, meta.get("namespace"), meta.get("name", "kubevirt"), KUBEVIRT_MODEL_PATH,
                  "cluster cpu model")


def run_cluster(reader: ClusterReader, o: Options, env: Environment) -> int:
    check_against_nodes(reader, o, env, require_all=True)
    change = cluster_change(reader, o, env)
    impact = cluster_impact(reader.vms(None))
    objects = apply_all(reader.source, [change], o.model, o, env)
    limit = 0 if o.fmt == "wide" else IMPACT_SHOWN
    if impact["adopt"]:
        env.stderr.write("%d VMs without a model of their own adopt it at their next start: %s\n"
                         % (len(impact["adopt"]), brief_list(impact["adopt"], limit)))
    if impact["keepOwn"]:
        env.stderr.write("%d VMs keep their own model: %s\n" % (len(impact["keepOwn"]), brief_list(impact["keepOwn"], limit)))
    if impact["runningNeedRestart"]:
        env.warn("%d running VMs adopt it only after a restart: %s" % (
            len(impact["runningNeedRestart"]), brief_list(impact["runningNeedRestart"], limit)))
    emit_objects(objects, o, env)
    return 0


def run(args: argparse.Namespace, env: Environment) -> int:
    o = complete(args)
    source = open_source(args, env)
    validate(o, source)
    reader = ClusterReader(source)
    runner: Callable[[ClusterReader, Options, Environment], int] = run_cluster if o.cluster else run_vms
    return runner(reader, o, env)
