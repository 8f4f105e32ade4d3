"""`why-not`: exactly why a VM cannot live-migrate to a node, where each constraint came from, and the fix."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import List, Optional, Tuple

from cpumodel import objects
from cpumodel.commands.context import (NO_CAPACITY, Common, Environment, Problems, checked_names, common_options, emit,
                                       kubevirt_as_observed, node_usage, note_skipped, open_source, parse_vm_reference)
from cpumodel.core.catalog import Catalog
from cpumodel.core.migration import VmState, current_launcher
from cpumodel.core.pod_affinity import NearbyPods, placements, terms_of
from cpumodel.core.why_not import MigrationAttempt, explain, with_room
from cpumodel.errors import ExitCode, NotFound
from cpumodel.output.render import names
from cpumodel.output.why_not_report import accepting_nodes, render_table, to_document
from cpumodel.sources.reader import ClusterReader

EVENT_REASONS = {"FailedScheduling", "migrationTargetPodUnschedulable", "NoSuitableNodesForHostModelMigration",
                 "FailedMigration", "MigrationBackoff"}
MIGRATIONS_SHOWN = 3


@dataclass(frozen=True)
class Options:
    common: Common
    kind: str  # vm, vmi or any
    name: str
    node: Optional[str]
    exit_code: bool
    all_namespaces: bool = False
    capacity: bool = True


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    ref = problems.check(lambda: parse_vm_reference(args.vm))
    checked_names([args.node] if args.node else [], "node", problems)
    if args.all_namespaces and args.namespace:
        problems.add("use -n NAMESPACE or -A, not both")
    problems.raise_any()
    kind, name = ref  # type: ignore[misc]
    return Options(common, kind, name, args.node, args.exit_code, args.all_namespaces, not args.no_capacity)


def _resolve(reader: ClusterReader, kind: str, name: str, all_namespaces: bool):
    namespace = reader.find_vm_namespace("vmi" if kind == "vmi" else "vm", name, all_namespaces)
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


def _attempt(reader: ClusterReader, mig: objects.Migration) -> MigrationAttempt:
    pods = []
    for pod in reader.migration_pods(mig.namespace, mig.uid):
        sched = pod.condition("PodScheduled")
        pods.append((pod, sched.message if sched and sched.status == "False" else None))
    return MigrationAttempt(mig.name, mig.phase, mig.target_node, tuple(pods))


def _history(reader: ClusterReader, namespace: str, vmi: Optional[objects.VirtualMachineInstance]
             ) -> Tuple[Tuple[MigrationAttempt, ...], Tuple[objects.Event, ...]]:
    """Migrations that did not succeed, their target pods, and the events that explain them."""
    if vmi is None:
        return (), ()
    recent = [m for m in reader.migrations(namespace, vmi.name) if m.phase != "Succeeded"][-MIGRATIONS_SHOWN:]
    attempts = tuple(_attempt(reader, m) for m in recent)
    names = (vmi.name,) + tuple(a.name for a in attempts) + tuple(p.name for a in attempts for p, _ in a.target_pods)
    events = tuple(e for e in reader.events_for(namespace, names) if e.reason in EVENT_REASONS)
    return attempts, events


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    vm, vmi, namespace = _resolve(reader, o.kind, o.name, o.all_namespaces)
    nodes: List[objects.Node] = reader.nodes()
    if o.node and o.node not in {n.name for n in nodes}:
        reader.node(o.node)  # raises a clean not-found error
    launchers = reader.launcher_pods(vmi) if vmi is not None else []
    pod = current_launcher(vmi, launchers) if vmi is not None and vmi.running else None
    attempts, events = _history(reader, namespace, vmi)
    evidence = launchers + [p for a in attempts for p, _ in a.target_pods] + reader.migration_target_pods()
    kubevirt = kubevirt_as_observed(env, reader.kubevirt(), evidence, nodes)
    profile = reader.cpu_profiles([vm]).get((vm.namespace, vm.name)) if vm is not None else None
    terms = terms_of(vm, vmi)
    nearby = placements(terms, namespace, NearbyPods(reader.pods_for([(t, namespace) for t in terms]),
                                                     {n.name: n for n in nodes})) if terms else ()
    state = VmState(o.name, namespace, vm, vmi, pod, profile, nearby)
    result = explain(Catalog.load(), state, nodes, kubevirt, o.node, attempts, events)
    capacity = NO_CAPACITY
    fits = [v.node for v in result.verdicts if v.migratable]
    if o.capacity and pod is not None and fits:  # room on the nodes the labels accept (kubevirt-rules §10)
        used, capacity = node_usage(env, reader, {n.name: n for n in nodes}, fits,
                                    reader.source.uncollected_namespaces())
        if used is not None:
            result = with_room(result, nodes, used, pod.requests)
    note_skipped(env, reader)
    emit(env, o.common, lambda: to_document(result, capacity), lambda style: render_table(result, style),
         lambda: names("node", accepting_nodes(result)))
    return ExitCode.BLOCKED if o.exit_code and not result.migratable else ExitCode.OK
