"""`upgrade-check`: before an upgrade, which VMs move, stop or hang it, and the traps of the target release. Reads
what `drain-check --all` reads, plus the platform's release; writes nothing."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import List, Optional

from cpumodel.commands.context import (NO_CAPACITY, Common, Environment, Problems, capacity_room, common_options,
                                       emit, kubevirt_as_observed, note_skipped, note_uncollected, open_source)
from cpumodel.core import labels as L
from cpumodel.core import upgrade as U
from cpumodel.core.catalog import Catalog, cluster_obsolete_models, obsolete_models
from cpumodel.core.drain import DrainPlanner, running_vms
from cpumodel.core.launcher_pod import (NEWEST_RULES, has_machine_type_rule, has_vendor_rule,
                                        machine_type_rule_in_effect, vendor_rule_in_effect)
from cpumodel.core.migration import MigrationEngine, launchers_by_vmi
from cpumodel.core.nodes import CpuViews
from cpumodel.core.platform import HARVESTER, OPENSHIFT
from cpumodel.core.releases import canonical, harvester_kubevirt, harvester_releases_with, version_of
from cpumodel.errors import ExitCode, SourceError
from cpumodel.output.render import names
from cpumodel.output.upgrade_report import render_table, to_document
from cpumodel.sources.reader import ClusterReader

_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?([-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Options:
    common: Common
    to: Optional[str]
    exit_code: bool
    capacity: bool


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    to = args.to
    if to is not None and not _VERSION.match(to):
        problems.add("invalid --to %r: give a release such as v1.9.0 (Harvester's on Harvester, KubeVirt's "
                     "elsewhere)" % to)
    problems.raise_any()
    return Options(common, to, args.exit_code, not args.no_capacity)


def current_release(env: Environment, reader: ClusterReader, platform: Optional[str], kubevirt, config
                    ) -> U.Release:
    """The platform's release as the cluster shows it, and its KubeVirt (status.observedKubeVirtVersion)."""
    running = kubevirt.version if kubevirt else None
    if platform == HARVESTER:
        version = reader.harvester_version()
        if version is None:
            guesses = harvester_releases_with(running)
            if len(guesses) == 1:
                version = guesses[0]
                env.warn("Harvester's release is not recorded here (no server-version Setting): %s, the one release "
                         "that ships KubeVirt %s" % (version, running))
            else:
                env.warn("Harvester's release is not recorded here (no server-version Setting) and KubeVirt %s "
                         "does not tell it%s: the checks that compare releases are not run" % (
                             running or "(version unknown)",
                             " (%s ship it)" % ", ".join(guesses) if guesses else ""))
        return U.Release(version, running)
    if platform == OPENSHIFT:
        return U.Release(config.hco.version if config.hco is not None else None, running)
    return U.Release(running, running)


def target_release(env: Environment, platform: Optional[str], to: Optional[str]) -> Optional[U.Release]:
    if to is None:
        return None
    if platform == HARVESTER:
        version = canonical(to)
        kubevirt = harvester_kubevirt(version)
        if kubevirt is None:
            env.warn("Harvester %s is not in the release table (v1.1.0 to v1.9.0): its KubeVirt is not known, so the "
                     "drains are judged under the running KubeVirt's rules and vendor-rule, obsolete-models and "
                     "machine-type are not checked" % version)
        return U.Release(version, kubevirt)
    if platform == OPENSHIFT and (version_of(to) or (0,))[0] >= 4:
        env.warn("OpenShift Virtualization %s: no published table maps it to a KubeVirt release; give the KubeVirt "
                 "version of its CSV to check the target's rules" % to)
        return U.Release(to, None)
    return U.Release(canonical(to), canonical(to))


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    nodes = reader.nodes()
    config = reader.cluster_config()
    if config.kubevirt is None:
        raise SourceError("no KubeVirt CR found in any namespace: is KubeVirt installed?")
    platform = config.platform
    upgrade = U.Upgrade(platform, current_release(env, reader, platform, config.kubevirt, config),
                        target_release(env, platform, o.to))
    vmis = reader.vmis()
    launchers = reader.launchers(None)
    # The upgrade taints the node for KubeVirt's evacuation: Harvester's maintain-mode label plays no part.
    running = running_vms(vmis, launchers_by_vmi(launchers), {}, False)
    kubevirt = kubevirt_as_observed(env, config.kubevirt, launchers, nodes)
    during, note = U.rules_during(kubevirt, upgrade, nodes)
    if note:
        env.warn(note)
    uncollected = note_uncollected(env, reader.source)
    views = CpuViews()
    catalog = Catalog.load()
    engine = MigrationEngine(nodes, during, views)
    nearby = reader.pods_for([(t, vm.vmi.namespace) for vm in running for t in vm.vmi.pod_terms])
    planner = DrainPlanner(catalog, engine, cluster_obsolete_models(during), nearby)
    room, capacity = (capacity_room(env, reader, engine, None, uncollected) if o.capacity
                      else (None, NO_CAPACITY))
    order, order_note = U.upgrade_order(platform, nodes)
    steps = U.upgrade_steps(planner, order, running, room, upgrade, nodes)
    checks = U.drain_checks(steps, upgrade)
    checks += rule_checks(upgrade, kubevirt, during, nodes, views, catalog, nearby, steps, running, vmis)
    specs = vm_specs(reader, vmis) if needs_vms(upgrade, kubevirt) else ([], {}, {})
    checks.append(U.obsolete_check(upgrade, kubevirt, *specs, nodes))
    checks.append(U.feature_check(upgrade, running, nodes))
    checks.append(U.path_check(upgrade))
    checks.sort(key=lambda c: list(U.TITLES).index(c.id))
    note_skipped(env, reader)
    emit(env, o.common, lambda: to_document(upgrade, order, order_note, steps, checks, uncollected, capacity, during),
         lambda style: render_table(upgrade, order, steps, checks, style),
         lambda: names("node", order))
    failed = any(c.status == U.FAIL for c in checks)
    return ExitCode.BLOCKED if o.exit_code and failed else ExitCode.OK


def rule_checks(upgrade: U.Upgrade, kubevirt, during, nodes, views, catalog, nearby, steps, running, vmis
                ) -> List[U.Check]:
    """vendor-rule and machine-type: the VMs the target's rules leave without a target that migrate today. The
    drains under the running rules are asked only of those VMs, and only for a rule the target adds."""
    target = upgrade.target
    known = target is not None and target.kubevirt is not None
    adds_vendor = known and has_vendor_rule(target.kubevirt_version or NEWEST_RULES)
    vendor_now = vendor_rule_in_effect(kubevirt, kubevirt.release or NEWEST_RULES)
    machine_now = has_machine_type_rule(kubevirt.release or NEWEST_RULES)
    wanted = [prefix for prefix, needed in (
        (L.CPU_VENDOR, adds_vendor and not vendor_now),
        (L.MACHINE_TYPE, known and not machine_now
         and machine_type_rule_in_effect(during, target.kubevirt_version or NEWEST_RULES))) if needed]
    losers = {}
    if wanted:
        now = DrainPlanner(catalog, MigrationEngine(nodes, kubevirt, views), cluster_obsolete_models(kubevirt), nearby)
        by_key = {(vm.vmi.namespace, vm.vmi.name): vm for vm in running}
        losers = {prefix: U.blamed(steps, now, by_key, prefix) for prefix in wanted}
    return [U.rule_check("vendor-rule", adds_vendor, vendor_now, upgrade, losers.get(L.CPU_VENDOR, []),
                         "the source node's CPU vendor to migration target pods (cpu-vendor.node.kubevirt.io/<vendor>)"),
            U.machine_type_check(upgrade, kubevirt, during, losers.get(L.MACHINE_TYPE, []), vmis)]


def needs_vms(upgrade: U.Upgrade, kubevirt) -> bool:
    """The VM specs are read only when the target's default obsolete list grows (the check looks at them)."""
    target = upgrade.target
    if target is None or target.kubevirt is None or kubevirt.obsolete_cpu_models is not None:
        return False
    return bool(obsolete_models(None, target.kubevirt_version or NEWEST_RULES)
                - obsolete_models(None, kubevirt.release or NEWEST_RULES))


def vm_specs(reader: ClusterReader, vmis):
    vms = reader.vms(None)
    return vms, {(v.namespace, v.name): v for v in vmis}, reader.cpu_profiles(vms)
