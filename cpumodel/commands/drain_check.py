"""`drain-check`: before a drain or an upgrade, which VMs migrate, shut down, or hang the drain -- and the fix."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from cpumodel.commands.context import (NO_CAPACITY, Common, Environment, Problems, capacity_room, checked_names,
                                       checked_selector, common_options, emit, kubevirt_as_observed, note_skipped,
                                       note_uncollected, open_source)
from cpumodel.core.api_selectors import matches, parse_selector
from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.drain import MAINTAIN_MODE_LABEL, DrainPlanner, RunningVm, running_vms
from cpumodel.core.migration import MigrationEngine, launchers_by_vmi
from cpumodel.core.nodes import split_nodes
from cpumodel.errors import ExitCode, UsageError
from cpumodel.output.drain_report import accepting, render_all, render_table, steps_document, to_document
from cpumodel.output.render import names
from cpumodel.sources.reader import ClusterReader

@dataclass(frozen=True)
class Options:
    common: Common
    nodes: Tuple[str, ...]
    every_node: bool
    selector: Optional[str]
    exit_code: bool
    capacity: bool


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    selector = problems.check(lambda: checked_selector(args.selector))
    if args.all and args.nodes:
        problems.add("name the nodes to drain, or use --all, not both")
    if not args.all and not args.nodes:
        problems.add("name the nodes to drain (drain-check NODE...), or use --all")
    if selector and not args.all:
        problems.add("-l selects the nodes for --all; name the nodes otherwise")
    checked_names(args.nodes, "node", problems)
    problems.raise_any()
    return Options(common, tuple(dict.fromkeys(args.nodes)), args.all, selector, args.exit_code,
                   not args.no_capacity)


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    nodes = reader.nodes()
    known = {n.name for n in nodes}
    missing = [n for n in o.nodes if n not in known]
    if missing:
        raise UsageError("node(s) not found: %s" % ", ".join(missing))
    kubevirt = reader.kubevirt()
    harvester = reader.harvester_chart() is not None
    vmis = reader.vmis_on(list(o.nodes)) if o.nodes else reader.vmis()
    launchers = reader.launchers(None, vmis if o.nodes else None)
    vms = running_vms(vmis, launchers_by_vmi(launchers), reader.vm_labels(MAINTAIN_MODE_LABEL), harvester)
    # The vendor evidence is cluster-wide: --all listed every launcher (target pods included), NODE did not.
    kubevirt = kubevirt_as_observed(env, kubevirt, launchers + (reader.migration_target_pods() if o.nodes else []),
                                    nodes)
    uncollected = note_uncollected(env, reader.source)
    engine = MigrationEngine(nodes, kubevirt)
    wanted = [(t, vm.vmi.namespace) for vm in vms for t in vm.vmi.pod_terms]
    planner = DrainPlanner(Catalog.load(), engine, cluster_obsolete_models(kubevirt),
                           reader.pods_for(wanted))
    room, capacity = None, NO_CAPACITY
    if o.nodes:
        if o.capacity:
            room, capacity = capacity_room(env, reader, engine, planner.needed(o.nodes, vms), uncollected)
        result = planner.check(o.nodes, vms, room)
        note_skipped(env, reader)
        emit(env, o.common, lambda: to_document(result, uncollected, capacity),
             lambda style: render_table(result, style),
             lambda: names("node", accepting(result)))
        blocked = bool(result.blocked)
    else:
        on_node: Dict[str, List[RunningVm]] = {}
        for vm in vms:
            on_node.setdefault(vm.vmi.node_name or "", []).append(vm)
        order = drain_order(engine, o.selector)
        if o.capacity:
            room, capacity = capacity_room(env, reader, engine, None, uncollected)
        steps = [planner.check((node,), on_node.get(node, []), room) for node in order]
        note_skipped(env, reader)
        emit(env, o.common, lambda: steps_document(steps, uncollected, capacity),
             lambda style: render_all(steps, style),
             lambda: names("node", [s.drained[0] for s in steps if not s.blocked]))
        blocked = any(s.blocked for s in steps)
    return ExitCode.BLOCKED if o.exit_code and blocked else ExitCode.OK


def drain_order(engine: MigrationEngine, selector: Optional[str]) -> List[str]:
    """The VM-capable nodes (matching -l, evaluated here on the nodes already read), by name."""
    capable = {n.name for n in split_nodes(engine.nodes, engine.cpu).capable}
    wanted = parse_selector(selector) if selector else []
    return [n.name for n in engine.nodes if n.name in capable and matches(wanted, n.labels)]
