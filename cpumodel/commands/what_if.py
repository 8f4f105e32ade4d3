"""`what-if`: what removing or adding nodes, or changing the cluster's or a VM's CPU model, would do -- before anyone
does it. Reads what `audit -A` and `drain-check --all` read, writes nothing."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from cpumodel.commands.context import (NO_CAPACITY, Common, Environment, Problems, checked_name, common_options, emit,
                                       kubevirt_as_observed, node_usage, note_skipped, note_uncollected, open_source,
                                       parse_vm_reference)
from cpumodel.core.catalog import Catalog
from cpumodel.core.drain import MAINTAIN_MODE_LABEL
from cpumodel.core.migration import launchers_by_vmi
from cpumodel.core.plan import check_model, kubevirt_rejection
from cpumodel.core.pod_affinity import terms_of
from cpumodel.core.what_if import ADD_NODE, CLUSTER_MODEL, REMOVE_NODE, VM_MODEL, Change, Cluster, what_if
from cpumodel.errors import ExitCode, UsageError
from cpumodel.objects import CPU_MODES, Node
from cpumodel.output.render import names
from cpumodel.output.what_if_report import render_table, to_document
from cpumodel.sources.reader import ClusterReader

# The name part of a cpu-model.node.kubevirt.io/<MODEL> label key: what a model name can be.
_MODEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Options:
    common: Common
    remove: Tuple[str, ...]
    add: Tuple[str, ...]  # files
    cluster_model: Optional[str]
    vm_models: Tuple[Tuple[str, str], ...]  # (VM name, model); the namespace is -n's
    exit_code: bool
    capacity: bool


def checked_model(model: str, flag: str) -> str:
    if model not in CPU_MODES and not _MODEL.match(model):
        raise UsageError("invalid CPU model %r in %s: a model is a name such as Cascadelake-Server, or host-model"
                         % (model, flag))
    return model


def vm_model(text: str) -> Tuple[str, str]:
    ref, sep, model = text.partition("=")
    if not sep or not ref or not model:
        raise UsageError("invalid --vm-model %r: use vm/NAME=MODEL" % text)
    return parse_vm_reference(ref, allow_vmi=False)[1], checked_model(model, "--vm-model")


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    remove = tuple(dict.fromkeys(args.remove_node or ()))
    for name in remove:
        problems.check(lambda name=name: checked_name(name, "node"))
    models = args.cluster_model or []
    if len(set(models)) > 1:
        problems.add("--cluster-model is given more than once: the cluster has one default model")
    cluster_model = problems.check(lambda: checked_model(models[0], "--cluster-model")) if models else None
    vm_models: List[Tuple[str, str]] = []
    for text in args.vm_model or ():
        found = problems.check(lambda text=text: vm_model(text))
        if found is not None:
            if any(name == found[0] and model != found[1] for name, model in vm_models):
                problems.add("--vm-model gives vm/%s two models" % found[0])
            elif found not in vm_models:
                vm_models.append(found)
    if not (remove or args.add_node or models or args.vm_model):
        problems.add("name at least one change: --remove-node NODE, --add-node FILE, --cluster-model MODEL or "
                     "--vm-model vm/NAME=MODEL")
    problems.raise_any()
    return Options(common, remove, tuple(args.add_node or ()), cluster_model, tuple(vm_models), args.exit_code,
                   not args.no_capacity)


def added_nodes(paths: Tuple[str, ...], max_input: str) -> List[Tuple[str, Node]]:
    """The Node objects of each --add-node file (YAML/JSON, a folder, or a support bundle's nodes)."""
    from cpumodel.sources.snapshot import SnapshotSource

    found: List[Tuple[str, Node]] = []
    for path in paths:
        nodes = ClusterReader(SnapshotSource([path], None, max_input)).nodes()
        if not nodes:
            raise UsageError("--add-node %s holds no Node object" % path)
        for node in nodes:
            try:
                checked_name(node.name, "node")
            except UsageError as exc:
                raise UsageError("--add-node %s: %s" % (path, exc))
            found.append((path, node))
    return found


def resolve(o: Options, reader: ClusterReader, nodes: List[Node], vms, profiles, kubevirt, env: Environment
            ) -> Tuple[List[Change], Dict[str, Node]]:
    """The changes checked against the cluster as read: every node and VM named exists, no node is added twice,
    and KubeVirt would accept each model."""
    known = {n.name for n in nodes}
    missing = [n for n in o.remove if n not in known]
    if missing:
        raise UsageError("node(s) not found: %s" % ", ".join(missing))
    changes = [Change(REMOVE_NODE, node=n) for n in o.remove]
    added: Dict[str, Node] = {}
    for path, node in added_nodes(o.add, o.common.max_input):
        if node.name in added:
            raise UsageError("--add-node adds node %s twice" % node.name)
        if node.name in known and node.name not in o.remove:
            raise UsageError("--add-node %s: node %s exists; add --remove-node %s to replace it"
                             % (path, node.name, node.name))
        added[node.name] = node
        changes.append(Change(ADD_NODE, node=node.name, source=path))
    if o.cluster_model is not None:
        changes.append(Change(CLUSTER_MODEL, model=o.cluster_model, previous=kubevirt.cpu_model if kubevirt else None))
        if kubevirt is None:
            env.warn("no KubeVirt CR found: the change is judged as if one set only cpuModel")
    namespace = reader.source.namespace
    by_key = {(vm.namespace, vm.name): vm for vm in vms}
    for name, model in o.vm_models:
        vm = by_key.get((namespace, name))
        if vm is None:
            raise UsageError('virtualmachines.kubevirt.io "%s" not found in namespace %s' % (name, namespace))
        rejected = kubevirt_rejection(vm, model, profiles.get((namespace, name)))
        if rejected:
            raise UsageError(rejected)
        changes.append(Change(VM_MODEL, vm=(namespace, name), model=model, previous=vm.cpu_model))
    return changes, added


def note_models(env: Environment, result) -> None:
    """A model no VM-capable node offers after the change is worth judging (every VM that takes it is lost), and
    worth saying too."""
    for model in dict.fromkeys(c.model for c in result.changes if c.model is not None):
        check = check_model(model, result.after.node_set, require_all=False)
        if check.error:
            env.warn(check.error)


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    nodes = reader.nodes()
    config = reader.cluster_config()
    kubevirt = config.kubevirt
    vms = reader.vms(None)
    profiles = reader.cpu_profiles(vms)
    changes, added = resolve(o, reader, nodes, vms, profiles, kubevirt, env)
    vmis = {(v.namespace, v.name): v for v in reader.vmis()}
    launchers = reader.launchers(None)
    kubevirt_as_observed(env, kubevirt, launchers, nodes)  # its note; each version is judged on its own nodes
    harvester = reader.harvester_chart() is not None
    wanted = [(t, vm.namespace) for vm in vms for t in terms_of(vm, vmis.get((vm.namespace, vm.name)))]
    wanted += [(t, v.namespace) for v in vmis.values() if v.running for t in v.pod_terms]
    uncollected = note_uncollected(env, reader.source)
    usage, capacity = None, NO_CAPACITY
    if o.capacity and any(v.running for v in vmis.values()):
        by_name = {n.name: n for n in nodes}
        by_name.update(added)
        usage, capacity = node_usage(env, reader, by_name, None, uncollected)
    cluster = Cluster(tuple(nodes), kubevirt, tuple(vms), vmis, launchers_by_vmi(launchers), profiles,
                      reader.pods_for(wanted),
                      {(vm.namespace, vm.name): vm.labels[MAINTAIN_MODE_LABEL] for vm in vms
                       if MAINTAIN_MODE_LABEL in vm.labels}, harvester, usage)
    result = what_if(Catalog.load(), cluster, changes, added, launchers)
    note_models(env, result)
    note_skipped(env, reader)
    emit(env, o.common, lambda: to_document(result, uncollected, config.platform, capacity),
         lambda style: render_table(result, style),
         lambda: names("virtualmachine.kubevirt.io", [v.vm for v in result.vms]))
    return ExitCode.BLOCKED if o.exit_code and result.alarming else ExitCode.OK
