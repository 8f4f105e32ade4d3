"""Typed, frozen views of the API objects we read; the only place raw dicts are parsed.

Everything past this module (core analyses, renderers) works on these values. Offline
files and live responses go through the same constructors, so both behave alike. Workload
objects (VMs, VMIs, pods, ...) are defined in workloads.py and re-exported here on first use.
The API's own vocabulary -- CPU modes, the names kubectl accepts for a VM -- is here too.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from cpumodel.errors import SourceError

# spec.domain.cpu.model values that are modes, not named models (KubeVirt schema.go).
HOST_MODEL = "host-model"
HOST_PASSTHROUGH = "host-passthrough"
CPU_MODES = (HOST_MODEL, HOST_PASSTHROUGH)

# What kubectl accepts as the type in TYPE/NAME for KubeVirt's VMs and VMIs (CRD names and short names).
VM_KIND_NAMES = ("vm", "vms", "virtualmachine", "virtualmachines", "virtualmachine.kubevirt.io",
                 "virtualmachines.kubevirt.io")
VMI_KIND_NAMES = ("vmi", "vmis", "virtualmachineinstance", "virtualmachineinstances",
                  "virtualmachineinstance.kubevirt.io", "virtualmachineinstances.kubevirt.io")


def is_named_model(model: Optional[str]) -> bool:
    return bool(model) and model not in CPU_MODES


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
        if obj is None:
            return default
    return obj


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> Tuple[Dict[str, Any], ...]:
    """The mappings in a list; anything else a hostile or broken object put there is ignored."""
    return tuple(v for v in value if isinstance(v, dict)) if isinstance(value, list) else ()


def parser(kind: str):
    """Any object we cannot make sense of becomes one clear error naming it, never a crash."""
    def wrap(parse):
        @functools.wraps(parse)
        def checked(raw: Any):
            if not isinstance(raw, dict):
                raise SourceError("malformed %s: expected an object, got %s" % (kind, type(raw).__name__))
            for part in ("metadata", "spec", "status"):
                if raw.get(part) is not None and not isinstance(raw[part], dict):
                    raise SourceError("malformed %s %s: its %s is a %s, not an object" % (
                        kind, json.dumps(_get(raw, "metadata", "name") or "(no name)"), part,
                        type(raw[part]).__name__))
            try:
                return parse(raw)
            except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
                name = _get(raw, "metadata", "name")
                raise SourceError("malformed %s %s: %s" % (kind, json.dumps(name) if name else "(no name)",
                                                          type(exc).__name__))
        return checked
    return wrap


def _str_map(value: Any) -> Dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]
    unschedulable: bool = False
    ready: Optional[bool] = None  # None: not known (metadata-only read)
    taints: Tuple[Taint, ...] = ()
    # status.allocatable as the scheduler counts it (cpu in millicores, the rest in units); empty: not known
    allocatable: Mapping[str, int] = field(default_factory=dict)
    machine: Optional[str] = None  # annotation cluster.x-k8s.io/machine: the Cluster API Machine behind it (Rancher)
    created: str = ""  # metadata.creationTimestamp (RFC 3339, so it sorts as text)


MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"


@dataclass(frozen=True)
class FieldRef:
    """One field of one object: where a setting lives, or where a write goes."""

    api_version: str
    kind: str
    namespace: Optional[str]
    name: str
    path: Tuple[str, ...]

    @property
    def field_path(self) -> str:
        return ".".join(self.path)

    def described(self) -> str:
        return "%s %s/%s %s" % (self.kind, self.namespace, self.name, self.field_path)


KUBEVIRT_MODEL_PATH = ("spec", "configuration", "cpuModel")


@dataclass(frozen=True)
class KubeVirtConfig:
    namespace: str
    name: str
    cpu_model: Optional[str]
    obsolete_cpu_models: Optional[frozenset]  # None: not configured, KubeVirt's default applies
    node_selectors: Mapping[str, str]
    version: Optional[str]
    eviction_strategy: Optional[str] = None
    feature_gates: frozenset = frozenset()
    hco_owner: Optional[str] = None  # the HyperConverged CR that owns this one (OpenShift Virtualization)
    model_owner: Optional[FieldRef] = None  # where the cluster default is owned, when not in this CR
    vendor_rule: Optional[bool] = None  # seen on a migration target pod; None: decided by the version
    machine_type_rule: Optional[bool] = None  # None: decided by the version (upgrade-check sets it)

    @property
    def model_field(self) -> FieldRef:
        return self.model_owner or FieldRef("kubevirt.io/v1", "KubeVirt", self.namespace, self.name,
                                            KUBEVIRT_MODEL_PATH)

    @property
    def release(self) -> Optional[Tuple[int, int, int]]:
        """observedKubeVirtVersion as (major, minor, patch), or None when unknown."""
        return parse_version(self.version)


def parse_version(text: Optional[str]) -> Optional[Tuple[int, int, int]]:
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)) if found else None


@parser("Node")
def parse_node(raw: dict) -> Node:
    meta = _dict(raw.get("metadata"))
    ready_cond = next((c for c in _dicts(_get(raw, "status", "conditions")) if c.get("type") == "Ready"), None)
    has_status = isinstance(raw.get("status"), dict)
    return Node(
        name=str(meta.get("name", "")),
        # Live JSON labels are str -> str already (offline sources normalise theirs), and json.loads
        # shares repeated keys: reuse the decoded dict instead of copying thousands of entries.
        labels=meta["labels"] if isinstance(meta.get("labels"), dict) else {},
        unschedulable=bool(_get(raw, "spec", "unschedulable", default=False)),
        ready=(ready_cond.get("status") == "True") if ready_cond else (False if has_status else None),
        taints=tuple(Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
                     for t in _dicts(_get(raw, "spec", "taints"))),
        allocatable=resource_list(_get(raw, "status", "allocatable")),
        machine=_dict(meta.get("annotations")).get(MACHINE_ANNOTATION) or None,
        created=str(meta.get("creationTimestamp") or ""),
    )


def resource_list(value: Any) -> Dict[str, int]:
    """A ResourceList (requests, allocatable, overhead) as the scheduler's integers (sources/quantity.py)."""
    from cpumodel.sources.quantity import amount

    return {str(k): amount(str(k), v) for k, v in value.items()} if isinstance(value, dict) else {}


@parser("KubeVirt")
def parse_kubevirt(raw: dict) -> KubeVirtConfig:
    meta = _dict(raw.get("metadata"))
    conf = _dict(_get(raw, "spec", "configuration"))
    obsolete = conf.get("obsoleteCPUModels")
    return KubeVirtConfig(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        cpu_model=conf.get("cpuModel") or None,
        obsolete_cpu_models=frozenset(k for k, v in obsolete.items() if v) if isinstance(obsolete, dict) else None,
        node_selectors=_str_map(_get(conf, "developerConfiguration", "nodeSelectors")),
        version=_get(raw, "status", "observedKubeVirtVersion") or None,
        eviction_strategy=str(conf["evictionStrategy"]) if conf.get("evictionStrategy") else None,
        feature_gates=frozenset(str(g) for g in _get(conf, "developerConfiguration", "featureGates") or ()
                                if isinstance(g, str)),
        hco_owner=_hco_owner(meta),
    )


HCO_NAME = "kubevirt-hyperconverged"  # the one HyperConverged CR HCO reconciles (HyperConvergedName)


def _hco_owner(meta: Dict[str, Any]) -> Optional[str]:
    """HCO creates the KubeVirt CR with a controller reference to its HyperConverged CR, and labels it."""
    for ref in _dicts(meta.get("ownerReferences")):
        if ref.get("kind") == "HyperConverged" and str(ref.get("apiVersion", "")).startswith("hco.kubevirt.io/"):
            return str(ref.get("name") or HCO_NAME)
    if _dict(meta.get("labels")).get("app.kubernetes.io/managed-by") == "hco-operator":
        return HCO_NAME
    return None


@dataclass(frozen=True)
class HyperConverged:
    """The HyperConverged CR of OpenShift Virtualization: it owns the KubeVirt CR's CPU settings."""

    namespace: str
    name: str
    api_version: str
    cpu_model: Optional[str]
    obsolete_cpu_models: frozenset  # added by the user to HCO's own built-in list
    model_path: Tuple[str, ...]
    version: Optional[str] = None  # status.versions "operator": the OpenShift Virtualization release

    @property
    def model_field(self) -> FieldRef:
        return FieldRef(self.api_version, "HyperConverged", self.namespace, self.name, self.model_path)


# Where each served version of hco.kubevirt.io keeps the default model and the extra obsolete models
# (api/v1 and api/v1beta1 hyperconverged_types.go).
HCO_FIELDS = {
    "v1": (("spec", "virtualization", "virtualMachineOptions", "defaultCPUModel"),
           ("spec", "virtualization", "obsoleteCPUModels")),
    "v1beta1": (("spec", "defaultCPUModel"), ("spec", "obsoleteCPUs", "cpuModels")),
}


@parser("HyperConverged")
def parse_hyperconverged(raw: dict) -> HyperConverged:
    meta = _dict(raw.get("metadata"))
    api_version = str(raw.get("apiVersion") or "hco.kubevirt.io/v1beta1")
    version = api_version.rpartition("/")[2]
    if version not in HCO_FIELDS:
        raise SourceError("HyperConverged %s/%s is %s: known versions are %s" % (
            meta.get("namespace"), meta.get("name"), api_version, ", ".join("hco.kubevirt.io/" + v for v in HCO_FIELDS)))
    model_path, obsolete_path = HCO_FIELDS[version]
    model = _get(raw, *model_path)
    obsolete = _get(raw, *obsolete_path)
    return HyperConverged(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        api_version=api_version,
        cpu_model=model if isinstance(model, str) and model else None,
        obsolete_cpu_models=frozenset(str(m) for m in obsolete if isinstance(m, str)) if isinstance(obsolete, list)
        else frozenset(),
        model_path=model_path,
        version=next((str(v.get("version")) for v in _dicts(_get(raw, "status", "versions"))
                      if v.get("name") == "operator" and v.get("version")), None),
    )


def __getattr__(name: str) -> Any:
    """VMs, VMIs, pods and the rest live in workloads.py, imported on first use: commands that read only
    nodes (common, diff) start without building their dozen dataclasses."""
    if name.startswith("__"):  # the import system asks modules for __path__ and the like
        raise AttributeError(name)
    from cpumodel import workloads

    try:
        return getattr(workloads, name)
    except AttributeError:
        raise AttributeError("module %r has no attribute %r" % (__name__, name)) from None

