"""Pure planning for `set`: validate a model against the nodes, build patches, predict impact."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from cpumodel.core.nodes import NodeSet
from cpumodel.objects import CPU_MODES, HOST_PASSTHROUGH, CpuProfile, VirtualMachine

VM_MODEL_PATH = ("spec", "template", "spec", "domain", "cpu", "model")


@dataclass(frozen=True)
class ModelCheck:
    """How a model fits the VM-capable nodes; `error` set means refuse without --force."""

    supported_on: Tuple[str, ...]
    missing_on: Tuple[str, ...]
    error: Optional[str]
    warnings: Tuple[str, ...]


def check_model(model: str, node_set: NodeSet, require_all: bool) -> ModelCheck:
    """Validate a model before any write (README, `set`).

    A named model must be usable (`cpu-model.node.kubevirt.io/<M>`) on at least one
    VM-capable node -- on all of them for a cluster-wide default.
    """
    nodes = node_set.capable
    if model in CPU_MODES:
        kinds = {(n.cpu.host_model, n.cpu.features) for n in nodes}
        warn = () if len(kinds) <= 1 else (
            "nodes have different CPUs (host models: %s): %s VMs cannot live-migrate between them"
            % (", ".join(sorted({str(k[0]) for k in kinds})), model),)
        return ModelCheck(tuple(n.name for n in nodes), (), None, warn)
    supported = tuple(n.name for n in nodes if model in n.cpu.models)
    missing = tuple(n.name for n in nodes if model not in n.cpu.models)
    if not nodes:
        return ModelCheck((), (), "no VM-capable node found to validate %s against" % model, ())
    if not supported:
        return ModelCheck(supported, missing, "no VM-capable node offers CPU model %s "
                          "(no cpu-model.node.kubevirt.io/%s label)%s" % (model, model, did_you_mean(model, node_set)), ())
    if missing and require_all:
        return ModelCheck(supported, missing, "CPU model %s is not usable on %d VM-capable node(s): %s; "
                          "VMs could not start there" % (model, len(missing), ", ".join(missing)), ())
    warn = ("%s is not usable on %s: VMs with it can never run or migrate there" % (model, ", ".join(missing)),) \
        if missing else ()
    return ModelCheck(supported, missing, None, warn)


def kubevirt_rejection(vm: VirtualMachine, model: str, profile: Optional[CpuProfile]) -> Optional[str]:
    """Why KubeVirt's admission would refuse this VM with this model of its own, or None (kubevirt-rules §2.2)."""
    if (vm.template.architecture or "").lower() == "arm64" and model != HOST_PASSTHROUGH:
        # pkg/virt-api/webhooks/arm64.go validateCPUModel
        return "vm/%s is arm64, where KubeVirt accepts only host-passthrough" % vm.name
    if profile is not None and profile.model:
        # pkg/instancetype/apply validateCPU: the VM and its instancetype may not both set a model
        return ("vm/%s takes its model from %s (%s), and KubeVirt rejects a VM that also sets one: change the "
                "instancetype's spec.cpu.model instead" % (vm.name, profile.instancetype, profile.model))
    return None


def did_you_mean(model: str, node_set: NodeSet) -> str:
    """Model names are case-sensitive labels: a different case is the likeliest typo, then near spellings."""
    offered = sorted(frozenset().union(*(n.cpu.models for n in node_set.capable))) if node_set.capable else []
    by_lower = {m.lower(): m for m in offered}
    close = [by_lower[model.lower()]] if model.lower() in by_lower else \
        [by_lower[m] for m in difflib.get_close_matches(model.lower(), list(by_lower), n=3, cutoff=0.5)]
    return "; did you mean %s?" % " or ".join(close) if close else ""


def get_path(obj: Dict[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def field_patch(path: Sequence[str], value: Optional[str], resource_version: str) -> Dict[str, Any]:
    """A JSON merge patch of one field (null deletes it) with a resourceVersion precondition."""
    body: Any = value
    for key in reversed(path):
        body = {key: body}
    body["metadata"] = {"resourceVersion": resource_version}
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, for previews of what the server would store."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def cluster_impact(vms: Sequence[VirtualMachine], profiles: Optional[Dict[Tuple[str, str], CpuProfile]] = None
                   ) -> Dict[str, List[str]]:
    """Which VMs take a cluster default at their next start, and which keep their own model (their spec's,
    or their instancetype's: KubeVirt applies the cluster default only where neither sets one)."""
    profiles = profiles or {}

    def own(v: VirtualMachine) -> Optional[str]:
        if v.cpu_model:
            return v.cpu_model
        p = profiles.get((v.namespace, v.name))
        return "%s from %s" % (p.model, p.instancetype) if p is not None and p.model else None

    adopt = sorted("%s/%s" % (v.namespace, v.name) for v in vms if not own(v))
    keep = sorted("%s/%s (%s)" % (v.namespace, v.name, own(v)) for v in vms if own(v))
    restart = sorted("%s/%s" % (v.namespace, v.name) for v in vms if not own(v) and v.running)
    return {"adopt": adopt, "keepOwn": keep, "runningNeedRestart": restart}
