"""`audit`: every VirtualMachine's CPU mode and origin, how far it can move, its risks, and the fixes."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, Optional

from cpumodel import objects
from cpumodel.commands.context import (NO_CAPACITY, Common, Environment, Problems, capacity_room, checked_selector,
                                       common_options, emit, kubevirt_as_observed, note_skipped, note_uncollected,
                                       open_source)
from cpumodel.core.audit import audit_cluster
from cpumodel.core.catalog import Catalog
from cpumodel.core.highest_common import analyse_common
from cpumodel.core.migration import MigrationEngine, launchers_by_vmi
from cpumodel.core.nodes import split_nodes
from cpumodel.core.pod_affinity import terms_of
from cpumodel.errors import ExitCode
from cpumodel.output.audit_report import render_table, to_document
from cpumodel.output.render import names
from cpumodel.sources.reader import ClusterReader


@dataclass(frozen=True)
class Options:
    common: Common
    all_namespaces: bool
    selector: Optional[str]
    exit_code: bool
    capacity: bool


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    selector = problems.check(lambda: checked_selector(args.selector))
    if args.all_namespaces and args.namespace:
        problems.add("use -n NAMESPACE or -A, not both")
    problems.raise_any()
    return Options(common, args.all_namespaces, selector, args.exit_code, not args.no_capacity)


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    namespace = None if o.all_namespaces else reader.source.namespace
    vms = reader.vms(namespace, o.selector)
    nodes = reader.nodes()
    kubevirt = reader.kubevirt()
    vmis: Dict[tuple, objects.VirtualMachineInstance] = {(v.namespace, v.name): v for v in reader.vmis(namespace)}
    launchers = reader.launchers(namespace)
    # The vendor evidence is cluster-wide: -A listed every launcher (target pods included), -n one namespace's.
    kubevirt = kubevirt_as_observed(env, kubevirt, launchers + (reader.migration_target_pods() if namespace else []),
                                    nodes)
    uncollected = note_uncollected(env, reader.source)
    catalog = Catalog.load()
    engine = MigrationEngine(nodes, kubevirt)
    node_set = split_nodes(nodes, engine.cpu)  # one CPU view per node, shared with the engine
    wanted = [(t, vm.namespace) for vm in vms
              for t in terms_of(vm, vmis.get((vm.namespace, vm.name)))]
    room, capacity = None, NO_CAPACITY
    if o.capacity and any(v.running for v in vmis.values()):  # room matters to running VMs only
        room, capacity = capacity_room(env, reader, engine, None, uncollected)
    result = audit_cluster(catalog, engine, node_set, analyse_common(catalog, node_set, kubevirt), vms, vmis,
                           launchers_by_vmi(launchers),
                           reader.cpu_profiles(vms), reader.pods_for(wanted), room)
    if not vms and o.common.fmt not in ("json", "yaml"):
        env.warn("no VirtualMachines found%s" % (" in namespace %s" % namespace if namespace else ""))
    note_skipped(env, reader)
    emit(env, o.common, lambda: to_document(result, uncollected, reader.cluster_config().platform, capacity),
         lambda style: render_table(result, style),
         lambda: names("virtualmachine.kubevirt.io", ["%s" % v.vm for v in result.vms if v.risks]))
    return ExitCode.BLOCKED if o.exit_code and result.blocking else ExitCode.OK
