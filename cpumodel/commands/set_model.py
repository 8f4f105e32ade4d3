"""`set`: give VMs, or the whole cluster, an explicit CPU model -- validated, previewed, race-safe."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cpumodel.commands.context import (Common, Environment, Problems, checked_selector, common_options, open_source,
                                       parse_vm_reference)
from cpumodel.core.nodes import Summarizer, split_nodes
from cpumodel.core.platform import write_target
from cpumodel.core.plan import (VM_MODEL_PATH, check_model, cluster_impact,
                                field_patch, get_path, kubevirt_rejection, merge_patch)
from cpumodel.errors import Conflict, NotFound, SourceError, UsageError
from cpumodel.output.set_report import (changed_lines, failed_line, impact_lines, objects_document, restart_pending,
                                        result_entry, unchanged_line)
from cpumodel.objects import CPU_MODES
from cpumodel.sources import resources as r
from cpumodel.sources.base import Source
from cpumodel.sources.reader import ClusterReader

MERGE_PATCH = "application/merge-patch+json"
CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Options:
    common: Common
    model: Optional[str]
    vm_names: Tuple[str, ...]
    selector: Optional[str]
    all_vms: bool
    cluster: bool
    dry_run: str
    force: bool
    restart: bool
    target: Optional[str]

    @property
    def fmt(self) -> str:
        return self.common.fmt


def options(args: argparse.Namespace) -> Options:
    """The command line as Options, with every usage problem reported at once, before anything is read."""
    problems = Problems()
    common = common_options(args, problems)
    positional = list(args.args)
    model = None
    if not args.clear:
        if positional:
            model = positional.pop()
            if not model.strip():
                problems.add("the CPU model is empty: name a model, or use --clear to remove it")
        else:
            problems.add("a CPU model is required (or --clear)")
    elif positional and looks_like_model(positional[-1]):
        problems.add("--clear removes the model, so it takes VMs only, not the model %r" % positional.pop())
    names = tuple(n for n in (problems.check(lambda ref=ref: vm_name(ref)) for ref in positional) if n is not None)
    selector = problems.check(lambda: checked_selector(args.selector))
    o = Options(common, model, names, selector, args.all, args.cluster, args.dry_run, args.force, args.restart,
                args.target)
    for message in conflicts(o, offline=bool(args.filename)):
        problems.add(message)
    problems.raise_any()
    return o


def looks_like_model(word: str) -> bool:
    """CPU model names carry capitals (Skylake-Server-IBRS), or are a mode; VM names are lowercase."""
    return "/" not in word and (word in CPU_MODES or word != word.lower())


def vm_name(ref: str) -> str:
    try:
        return parse_vm_reference(ref, allow_vmi=False)[1]
    except UsageError as exc:
        if str(exc).startswith("unsupported VM reference"):
            raise UsageError("set works on VirtualMachines: %r is not vm/NAME" % ref)
        raise


def conflicts(o: Options, offline: bool) -> List[str]:
    found = []
    if o.cluster and (o.vm_names or o.selector or o.all_vms):
        found.append("--cluster sets the cluster default: it takes only MODEL (or --clear), no VMs")
    if not o.cluster:
        chosen = sum(bool(x) for x in (o.vm_names, o.selector, o.all_vms))
        if chosen == 0:
            found.append("name the VMs to change (VM... MODEL), or use -l SELECTOR, --all or --cluster")
        if chosen > 1:
            found.append("use one of: VM names, -l SELECTOR, --all")
        if o.target:
            found.append("--target applies only with --cluster")
    if offline and o.dry_run != "client":
        found.append("with -f (offline files) nothing can be written: use --dry-run=client")
    if o.restart and o.cluster:
        found.append("--restart applies to VMs; after --cluster, restart the VMs that should adopt the default")
    return found


@dataclass
class Change:
    """One object to patch: how to read it fresh, its type and name, and the field path."""

    resource: r.Resource
    namespace: Optional[str]
    name: str
    path: Tuple[str, ...]
    label: str  # what the output line calls the field
    listed: Optional[Dict[str, Any]] = None  # the object as a list already returned it: no GET needed first

    @property
    def what(self) -> str:
        """kubectl's TYPE/name, e.g. virtualmachine.kubevirt.io/web-1."""
        return "%s/%s" % (self.resource.singular_full_name, self.name)


@dataclass
class Outcome:
    """What happened to one object: changed, unchanged, failed (with the reason) or not-tried."""

    change: Change
    status: str
    before: Optional[str] = None
    result: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


def write(source: Source, change: Change, value: Optional[str], dry_run: str) -> Outcome:
    """Patch one field with a resourceVersion precondition; on 409 re-read and retry (bounded)."""
    current = change.listed
    for attempt in range(CONFLICT_RETRIES + 1):
        if current is None:
            current = source.get(change.resource, change.namespace, change.name)
        before = get_path(current, change.path)
        patch = field_patch(change.path, value, str((current.get("metadata") or {}).get("resourceVersion", "")))
        if before == value:
            return Outcome(change, "unchanged", before, current)
        if dry_run == "client":
            return Outcome(change, "changed", before, merge_patch(current, patch))
        try:
            result = source.patch(change.resource, change.namespace, change.name, patch, MERGE_PATCH,
                                  dry_run == "server")
        except Conflict:
            if attempt == CONFLICT_RETRIES:
                raise Conflict("%s kept changing while we wrote it (%d conflicts); try again"
                               % (change.what, CONFLICT_RETRIES + 1))
            current = None  # read it again
            continue
        return Outcome(change, "changed", before, result)
    raise AssertionError("unreachable")


def apply_all(source: Source, changes: Sequence[Change], value: Optional[str], o: Options) -> List[Outcome]:
    """Every change, or a report of how far it got: the first failure stops the rest (not-tried)."""
    if o.dry_run == "none":
        # A server-side dry run of every patch first: RBAC, admission and validation errors
        # surface before anything is written, so one bad VM never leaves the rest half-done.
        for change in changes:
            write(source, change, value, "server")
    outcomes: List[Outcome] = []
    for change in changes:
        if any(out.status == "failed" for out in outcomes[-1:]) or (outcomes and outcomes[-1].status == "not-tried"):
            outcomes.append(Outcome(change, "not-tried"))
            continue
        try:
            outcomes.append(write(source, change, value, o.dry_run))
        except SourceError as exc:
            if len(changes) == 1:
                raise
            outcomes.append(Outcome(change, "failed", error=str(exc)))
    return outcomes


def report_outcomes(outcomes: Sequence[Outcome], value: Optional[str], o: Options, env: Environment,
                    about: Optional[Dict[str, Any]] = None) -> None:
    """Per object, what happened; then the documents or names -o asked for; a failure ends in one error line."""
    if o.fmt not in ("json", "yaml", "name"):
        for out in outcomes:
            c = out.change
            if out.status == "unchanged":
                env.say(unchanged_line(c.what, c.label, value))
            elif out.status == "changed":
                env.say(changed_lines(c.what, c.label, c.path, out.before, value, o.dry_run))
            else:
                env.say(failed_line(c.what, out.status, out.error))
    objects = [out.result for out in outcomes if out.result is not None]
    if o.fmt in ("json", "yaml"):
        results = [result_entry(out.change.name, out.change.namespace, out.status, out.before, value, out.error)
                   for out in outcomes]
        env.write(objects_document(objects, o.fmt, results if len(outcomes) > 1 else None, about))
    elif o.fmt == "name":
        env.say("".join(out.change.what + "\n" for out in outcomes if out.result is not None))


def raise_if_unfinished(outcomes: Sequence[Outcome], value: Optional[str]) -> None:
    """Exit 1 when any object failed, naming the first failure and the command that finishes the job."""
    left = [out.change for out in outcomes if out.status in ("failed", "not-tried")]
    if left:
        failed = next(out for out in outcomes if out.status == "failed")
        raise SourceError("%s failed (%s); %d of %d not changed. Finish with: %s" % (
            failed.change.what, failed.error, len(left), len(outcomes), finish_command(left, value)))


def finish_command(left: Sequence[Change], value: Optional[str]) -> str:
    namespace = left[0].namespace or "default"
    target = value if value else "--clear"
    return "kubectl cpumodel set %s %s -n %s" % (" ".join("vm/" + c.name for c in left), target, namespace)


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
            return [reader.vm_object(ns, name) for name in o.vm_names]  # every VM must exist before any write
        except NotFound:
            reader.check_namespace(ns)
            raise
    vms = reader.vm_objects(ns, o.selector)
    if not vms:
        raise UsageError('no VirtualMachines %s in namespace "%s"' % (
            "match %s" % o.selector if o.selector else "found", ns))
    return vms


def refuse_rejected_models(reader: ClusterReader, vms, o: Options) -> None:
    """Refuse, before anything is written, a model KubeVirt's admission would reject for some VM (an arm64 VM,
    or one whose instancetype sets a model); --clear is always allowed."""
    if o.model is None:
        return
    profiles = reader.cpu_profiles([vm for vm, _ in vms])
    rejected = [why for vm, _ in vms for why in [kubevirt_rejection(vm, o.model, profiles.get((vm.namespace, vm.name)))]
                if why]
    if rejected:
        raise UsageError("%s; leave %s out or use --clear" % ("; ".join(rejected),
                                                            "it" if len(rejected) == 1 else "these VMs"))


def run_vms(reader: ClusterReader, o: Options, env: Environment) -> int:
    vms = select_vms(reader, o)
    refuse_rejected_models(reader, vms, o)
    check_against_nodes(reader, o, env, require_all=False)
    listed = o.dry_run == "client" and not o.vm_names  # -l/--all: the list already has every object
    changes = [Change(r.VMS, vm.namespace, vm.name, VM_MODEL_PATH, "cpu model", raw if listed else None)
               for vm, raw in vms]
    outcomes = apply_all(reader.source, changes, o.model, o)
    report_outcomes(outcomes, o.model, o, env)
    done = {out.change.name for out in outcomes if out.status in ("changed", "unchanged")}
    running = [vm for vm, _ in vms if vm.running and vm.name in done]
    if running and o.restart and o.dry_run == "none":
        for vm in running:
            reader.source.put_subresource(r.VMS, vm.namespace, vm.name, r.VM_RESTART, r.SUBRESOURCES_GROUP_VERSION)
            env.tell("virtualmachine.kubevirt.io/%s restarted\n" % vm.name)
    elif running:
        env.warn(restart_pending([v.name for v in running], o.restart))
    raise_if_unfinished(outcomes, o.model)
    return 0


# How the result lines name the field written, per kind of object.
FIELD_LABELS = {"HyperConverged": "default cpu model", "KubeVirt": "cluster cpu model",
                "ManagedChart": "values kubevirt.spec.configuration.cpuModel"}
RESOURCES = {"KubeVirt": r.KUBEVIRTS, "ManagedChart": r.MANAGEDCHARTS}


def cluster_change(reader: ClusterReader, o: Options, env: Environment) -> Change:
    """The write `set --cluster` makes (core/platform.py decides where), said on stderr."""
    config = reader.cluster_config()
    field = write_target(config, o.target, lambda: reader.harvester_chart() is not None)
    if field.kind == "KubeVirt" and config.kubevirt is not None and config.kubevirt.hco_owner:
        env.warn("writing the KubeVirt CR directly (--target kubevirt): HCO sets it back to the HyperConverged "
                 "CR's value at its next reconcile")
    elif field.kind == "ManagedChart":
        env.tell("Harvester detected: writing the ManagedChart %s/%s values so upgrades keep the model; "
                 "Fleet then updates the KubeVirt CR\n" % (field.namespace, field.name))
    elif field.kind == "HyperConverged":
        env.tell("OpenShift Virtualization detected: writing %s; HCO then updates the KubeVirt CR\n"
                 % field.described())
    resource = RESOURCES.get(field.kind) or r.hyperconvergeds(field.api_version.rpartition("/")[2])
    return Change(resource, field.namespace, field.name, field.path, FIELD_LABELS[field.kind])


def run_cluster(reader: ClusterReader, o: Options, env: Environment) -> int:
    check_against_nodes(reader, o, env, require_all=True)
    change = cluster_change(reader, o, env)
    vms = reader.vms(None)
    impact = cluster_impact(vms, reader.cpu_profiles(vms))
    outcomes = apply_all(reader.source, [change], o.model, o)
    lines = impact_lines(impact, o.fmt == "wide")
    for key in ("adopt", "keep"):
        if lines[key]:
            env.tell(lines[key])  # type: ignore[arg-type]
    if lines["warning"]:
        env.warn(lines["warning"])  # type: ignore[arg-type]
    write_target = {"apiVersion": change.resource.group_version, "kind": change.resource.kind,
                    "namespace": change.namespace, "name": change.name, "fieldPath": ".".join(change.path)}
    report_outcomes(outcomes, o.model, o, env, {"platform": reader.cluster_config().platform,
                                                "writeTarget": write_target})
    raise_if_unfinished(outcomes, o.model)
    return 0


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    runner: Callable[[ClusterReader, Options, Environment], int] = run_cluster if o.cluster else run_vms
    return runner(reader, o, env)
