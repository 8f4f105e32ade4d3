"""Typed, frozen views of the workload objects: VMs, VMIs, pods, migrations, events, instancetypes.

Part of objects.py (which re-exports every name here), kept apart so that commands reading
only nodes do not pay for these classes at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from cpumodel.objects import _dict, _dicts, _get, _str_map, parser

@dataclass(frozen=True)
class Requirement:
    """One node-selector requirement (matchExpressions / matchFields entry)."""

    key: str
    operator: str
    values: Tuple[str, ...] = ()
    is_field: bool = False


@dataclass(frozen=True)
class SelectorTerm:
    """A nodeSelectorTerm: its requirements are ANDed; terms are ORed."""

    requirements: Tuple[Requirement, ...]


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


def condition(conditions: Tuple[Condition, ...], ctype: str) -> Optional[Condition]:
    return next((c for c in conditions if c.type == ctype), None)


@dataclass(frozen=True)
class CpuFeature:
    name: str
    policy: str  # "" means require


@dataclass(frozen=True)
class PodAffinityTerm:
    """A required pod (anti-)affinity term of the VM (spec.affinity), as KubeVirt copies it to every launcher pod."""

    anti: bool
    selector: str  # the term's labelSelector in Kubernetes' selector syntax ("" matches every pod)
    topology_key: str
    namespaces: Tuple[str, ...] = ()  # none: the VM's own namespace
    any_namespace: bool = False  # an empty namespaceSelector: every namespace


@dataclass(frozen=True)
class VirtualMachineInstance:
    namespace: str
    name: str
    uid: str
    phase: str
    node_name: Optional[str]
    cpu_model: Optional[str]
    cpu_features: Tuple[CpuFeature, ...]
    node_selector: Mapping[str, str]
    required_terms: Tuple[SelectorTerm, ...]
    tolerations: Tuple[Toleration, ...]
    architecture: Optional[str]
    machine_type: Optional[str]
    tsc_frequency: Optional[int]
    tsc_required: bool  # invtsc (boot) or Hyper-V reenlightenment (migration) needs a TSC frequency
    dedicated_cpu: bool
    realtime: bool
    launch_security: Tuple[str, ...]
    conditions: Tuple[Condition, ...]
    eviction_strategy: Optional[str] = None
    threads: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    hyperv: Tuple[str, ...] = ()
    hyperv_disabled: Tuple[str, ...] = ()  # enlightenments the spec turns off explicitly (`enabled: false`)
    pod_terms: Tuple[PodAffinityTerm, ...] = ()
    evacuation_node: Optional[str] = None  # status.evacuationNodeName: evicted from this node, to be migrated
    migration_progress: str = ""  # status.migrationState as it stands (what watch-drain sees advance)
    host_devices: bool = False  # spec.domain.devices hostDevices or gpus: passed-through devices
    cdrom_or_container_disk: bool = False  # a CD-ROM disk or a containerDisk volume

    @property
    def running(self) -> bool:
        """Running on a node: the only state in which there is something to migrate."""
        return self.phase == "Running" and bool(self.node_name)

    def condition(self, ctype: str) -> Optional[Condition]:
        return condition(self.conditions, ctype)


@dataclass(frozen=True)
class VirtualMachine:
    namespace: str
    name: str
    uid: str
    resource_version: str
    cpu_model: Optional[str]
    running: bool  # a VMI exists (status.created), per the VM's own status
    template: VirtualMachineInstance  # spec.template as a VMI, before KubeVirt's defaulting
    labels: Mapping[str, str] = field(default_factory=dict)
    instancetype: Optional[Tuple[str, str]] = None  # (kind, name) of spec.instancetype
    preference: Optional[Tuple[str, str]] = None  # (kind, name) of spec.preference
    # The ControllerRevisions holding the snapshot of each that KubeVirt took at first start, and uses since.
    instancetype_revision: Optional[str] = None
    preference_revision: Optional[str] = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node_name: Optional[str]
    phase: str
    created: str
    labels: Mapping[str, str]
    node_selector: Mapping[str, str]
    required_terms: Tuple[SelectorTerm, ...]
    tolerations: Tuple[Toleration, ...]
    conditions: Tuple[Condition, ...]
    owner_uids: Tuple[str, ...]
    requests: Tuple[Tuple[str, int], ...] = ()  # what the scheduler counts for it (pod_requests)

    def condition(self, ctype: str) -> Optional[Condition]:
        return condition(self.conditions, ctype)


@dataclass(frozen=True)
class Migration:
    namespace: str
    name: str
    uid: str
    vmi_name: str
    phase: str
    created: str
    target_node: Optional[str]
    progress: str = ""  # status.migrationState and the phase transitions, as they stand
    failure: str = ""  # why it failed, when it says (its Failed condition or migrationState.failureReason)


@dataclass(frozen=True)
class Event:
    namespace: str
    kind: str
    name: str
    reason: str
    message: str
    type: str
    timestamp: str


# ---- parsing ---------------------------------------------------------------

# VM printableStatus values that mean a VMI exists (KubeVirt VirtualMachinePrintableStatus).
RUNNING_STATES = ("Running", "Migrating", "Paused", "Starting", "Stopping", "WaitingForVolumeBinding")

def _conditions(items: Any) -> Tuple[Condition, ...]:
    return tuple(
        Condition(str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason") or ""), str(c.get("message") or ""))
        for c in _dicts(items)
    )


def _requirement(raw: dict, is_field: bool) -> Requirement:
    return Requirement(str(raw.get("key", "")), str(raw.get("operator", "")),
                       tuple(str(v) for v in raw.get("values") or ()), is_field)


def parse_required_terms(affinity: Any) -> Tuple[SelectorTerm, ...]:
    terms = _get(affinity, "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
    return tuple(
        SelectorTerm(tuple(_requirement(r, False) for r in _dicts(t.get("matchExpressions")))
                     + tuple(_requirement(r, True) for r in _dicts(t.get("matchFields"))))
        for t in _dicts(terms)
    )


def _tolerations(items: Any) -> Tuple[Toleration, ...]:
    return tuple(
        Toleration(str(t.get("key") or ""), str(t.get("operator") or "Equal"), str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in _dicts(items)
    )


@parser("VirtualMachine")
def parse_vm(raw: dict) -> VirtualMachine:
    meta = _dict(raw.get("metadata"))
    template = parse_vmi({"metadata": meta, "spec": _get(raw, "spec", "template", "spec") or {}})
    return VirtualMachine(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        cpu_model=template.cpu_model,
        running=bool(_get(raw, "status", "created")) or _get(raw, "status", "printableStatus") in RUNNING_STATES,
        template=template,
        labels=_str_map(meta.get("labels")),
        instancetype=_reference(_get(raw, "spec", "instancetype"), CLUSTER_INSTANCETYPE),
        preference=_reference(_get(raw, "spec", "preference"), CLUSTER_PREFERENCE),
        instancetype_revision=_revision(raw, "instancetype"),
        preference_revision=_revision(raw, "preference"),
    )


# What KubeVirt assumes when a VM's instancetype or preference names no kind.
CLUSTER_INSTANCETYPE = "VirtualMachineClusterInstancetype"
CLUSTER_PREFERENCE = "VirtualMachineClusterPreference"


def _reference(ref: Any, default_kind: str) -> Optional[Tuple[str, str]]:
    if not isinstance(ref, dict) or not ref.get("name"):
        return None
    return str(ref.get("kind") or default_kind), str(ref["name"])


def _revision(raw: dict, which: str) -> Optional[str]:
    """spec.<which>.revisionName (older KubeVirt, and the user's pin), else status.<which>Ref's revision."""
    name = _get(raw, "spec", which, "revisionName") or _get(raw, "status", which + "Ref", "controllerRevisionRef",
                                                             "name")
    return str(name) if isinstance(name, str) and name else None


@dataclass(frozen=True)
class CpuProfile:
    """What a VM's instancetype and preference give its CPU (KubeVirt pkg/instancetype/apply): the
    instancetype's model, used when the VM sets none, and the preference's preferred CPU features,
    added where the VM does not name the feature itself."""

    instancetype: Optional[str] = None  # "Kind/name", when it sets a model
    revision: Optional[str] = None  # the ControllerRevision the model was read from (a snapshot), if any
    model: Optional[str] = None
    preference: Optional[str] = None  # "Kind/name", when it prefers features
    preferred_features: Tuple[CpuFeature, ...] = ()


def parse_profile_part(raw: dict) -> Tuple[Optional[str], Tuple[CpuFeature, ...]]:
    """An instancetype's spec.cpu.model, or a preference's spec.cpu.preferredCPUFeatures (also of the object a
    ControllerRevision stores in `data`)."""
    cpu = _dict(_get(raw, "spec", "cpu"))
    model = cpu.get("model")
    features = tuple(CpuFeature(str(f.get("name", "")), str(f.get("policy") or ""))
                     for f in _dicts(cpu.get("preferredCPUFeatures")) if f.get("name"))
    return (model if isinstance(model, str) and model else None), features


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _launch_security(spec: dict) -> Tuple[str, ...]:
    """The launch-security types; an SEV guest with encryptedState is also SEV-ES (KubeVirt's IsSEVESVMI), and
    any launchSecurity on s390x is Secure Execution, `s390-pv` (IsSecureExecutionVMI)."""
    raw = _get(spec, "domain", "launchSecurity")
    sec = _dict(raw)
    found = {k for k in sec if sec.get(k) is not None}
    if _get(sec, "sev", "policy", "encryptedState") is True:
        found.add("sev-es")
    if isinstance(raw, dict) and str(spec.get("architecture") or "") == "s390x":
        found.add("s390-pv")
    return tuple(sorted(found))


def _hyperv(spec: dict, enabled: bool = True) -> Tuple[str, ...]:
    """Hyper-V enlightenments the guest enables: each feature present and not `enabled: false` (the API defaults
    a present feature to enabled); with enabled=False, those turned off explicitly."""
    features = _dict(_get(spec, "domain", "features", "hyperv"))
    return tuple(sorted(k for k, v in features.items()
                        if isinstance(v, dict) and (v.get("enabled") is not False) == enabled))


def _needs_tsc(spec: dict) -> bool:
    """KubeVirt's topology.IsManualTSCFrequencyRequired: invtsc required/forced, or reenlightenment on."""
    features = _dicts(_get(spec, "domain", "cpu", "features"))
    invtsc = any(f.get("name") == "invtsc" and (f.get("policy") or "require") in ("require", "force")
                 for f in features)
    reenlightenment = _get(spec, "domain", "features", "hyperv", "reenlightenment", "enabled")
    return invtsc or reenlightenment is True


@parser("VirtualMachineInstance")
def parse_vmi(raw: dict) -> VirtualMachineInstance:
    meta = _dict(raw.get("metadata"))
    spec = _dict(raw.get("spec"))
    status = _dict(raw.get("status"))
    cpu = _dict(_get(spec, "domain", "cpu"))
    tsc = _get(status, "topologyHints", "tscFrequency")
    return VirtualMachineInstance(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        phase=str(status.get("phase") or ""),
        node_name=status.get("nodeName") or None,
        cpu_model=cpu.get("model") or None,
        cpu_features=tuple(CpuFeature(str(f.get("name", "")), str(f.get("policy") or ""))
                           for f in _dicts(cpu.get("features"))),
        node_selector=_str_map(spec.get("nodeSelector")),
        required_terms=parse_required_terms(spec.get("affinity")),
        tolerations=_tolerations(spec.get("tolerations")),
        architecture=spec.get("architecture") or None,
        machine_type=_get(status, "machine", "type") or _get(spec, "domain", "machine", "type") or None,
        tsc_frequency=int(tsc) if isinstance(tsc, (int, float)) and tsc > 0 else None,
        tsc_required=_needs_tsc(spec),
        dedicated_cpu=bool(cpu.get("dedicatedCpuPlacement")),
        realtime=bool(cpu.get("realtime") is not None and cpu.get("realtime") is not False),
        launch_security=_launch_security(spec),
        conditions=_conditions(status.get("conditions")),
        eviction_strategy=str(spec["evictionStrategy"]) if spec.get("evictionStrategy") else None,
        threads=_int(cpu.get("threads"), 1),
        labels=_str_map(meta.get("labels")),
        hyperv=_hyperv(spec),
        hyperv_disabled=_hyperv(spec, enabled=False),
        pod_terms=_pod_terms(spec.get("affinity")),
        evacuation_node=status.get("evacuationNodeName") or None,
        migration_progress=_fingerprint(status.get("migrationState")),
        host_devices=bool(_get(spec, "domain", "devices", "hostDevices") or _get(spec, "domain", "devices", "gpus")),
        cdrom_or_container_disk=any("cdrom" in d for d in _dicts(_get(spec, "domain", "devices", "disks")))
        or any("containerDisk" in v for v in _dicts(spec.get("volumes"))),
    )


def _fingerprint(value: Any) -> str:
    """A status part as a stable string: equal when nothing in it changed."""
    import json

    return json.dumps(value, sort_keys=True, default=str) if value else ""


_SELECTOR_OPS = {"In": "%s in (%s)", "NotIn": "%s notin (%s)", "Exists": "%s", "DoesNotExist": "!%s"}


def _selector_text(selector: Any) -> Optional[str]:
    """A metav1.LabelSelector as selector text; None for a missing or unusable one (it selects nothing)."""
    if not isinstance(selector, dict):
        return None
    parts = ["%s=%s" % (k, v) for k, v in sorted(_str_map(selector.get("matchLabels")).items())]
    for expr in _dicts(selector.get("matchExpressions")):
        form = _SELECTOR_OPS.get(str(expr.get("operator")))
        if form is None or not expr.get("key"):
            return None
        values = ",".join(str(v) for v in expr.get("values") or ())
        parts.append(form % ((expr["key"], values) if "(" in form else (expr["key"],)))
    return ",".join(parts)


def _pod_terms(affinity: Any) -> Tuple[PodAffinityTerm, ...]:
    terms = []
    for anti, kind in ((False, "podAffinity"), (True, "podAntiAffinity")):
        for raw in _dicts(_get(affinity, kind, "requiredDuringSchedulingIgnoredDuringExecution")):
            selector = _selector_text(raw.get("labelSelector"))
            if selector is None or not raw.get("topologyKey"):
                continue
            terms.append(PodAffinityTerm(anti, selector, str(raw["topologyKey"]),
                                         tuple(str(n) for n in raw.get("namespaces") or () if isinstance(n, str)),
                                         raw.get("namespaceSelector") == {}))
    return tuple(terms)


@parser("Pod")
def parse_pod(raw: dict) -> Pod:
    meta = _dict(raw.get("metadata"))
    spec = _dict(raw.get("spec"))
    return Pod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        node_name=spec.get("nodeName") or None,
        phase=str(_get(raw, "status", "phase") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        labels=_str_map(meta.get("labels")),
        node_selector=_str_map(spec.get("nodeSelector")),
        required_terms=parse_required_terms(spec.get("affinity")),
        tolerations=_tolerations(spec.get("tolerations")),
        conditions=_conditions(_get(raw, "status", "conditions")),
        owner_uids=tuple(str(o.get("uid", "")) for o in _dicts(meta.get("ownerReferences"))),
        requests=pod_requests(spec),
    )


TERMINATED_PHASES = ("Succeeded", "Failed")
POD_LEVEL_RESOURCES = ("cpu", "memory")  # and hugepages-*: component-helpers IsSupportedPodLevelResource


def _add(total: Dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def _at_least(total: Dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        if value > total.get(key, 0):
            total[key] = value


def pod_requests(spec: Mapping[str, Any]) -> Tuple[Tuple[str, int], ...]:
    """What kube-scheduler counts a pod as requesting (k8s.io/component-helpers resource.PodRequests, v0.37):
    the sum of its containers and sidecars (init containers with restartPolicy Always), at least the largest
    need of any init container while it runs (itself plus the sidecars started before it), pod-level
    requests (spec.resources) in place of the containers' for cpu, memory and hugepages, plus spec.overhead."""
    from cpumodel.objects import resource_list

    def requests(container: Dict[str, Any]) -> Dict[str, int]:
        return resource_list(_get(container, "resources", "requests"))

    total: Dict[str, int] = {}
    for container in _dicts(spec.get("containers")):
        _add(total, requests(container))
    sidecars: Dict[str, int] = {}
    init: Dict[str, int] = {}
    for container in _dicts(spec.get("initContainers")):
        need = requests(container)
        if container.get("restartPolicy") == "Always":
            _add(total, need)
            _add(sidecars, need)
            need = dict(sidecars)
        else:
            _add(need, sidecars)
        _at_least(init, need)
    _at_least(total, init)
    for key, value in resource_list(_get(spec, "resources", "requests")).items():
        if key in POD_LEVEL_RESOURCES or key.startswith("hugepages-"):
            total[key] = value
    _add(total, resource_list(spec.get("overhead")))
    return tuple(sorted((k, v) for k, v in total.items() if v))


def pod_usage(raw: Any) -> Optional[Tuple[str, Tuple[Tuple[str, int], ...]]]:
    """(node, requests) of a pod the scheduler counts on its node: bound (spec.nodeName) and not terminated
    (its informer lists pods with status.phase!=Succeeded,status.phase!=Failed); None for any other pod."""
    spec = _dict(raw.get("spec")) if isinstance(raw, dict) else {}
    node = spec.get("nodeName")
    if not node or _get(raw, "status", "phase") in TERMINATED_PHASES:
        return None
    return str(node), pod_requests(spec)


@parser("VirtualMachineInstanceMigration")
def parse_migration(raw: dict) -> Migration:
    meta = _dict(raw.get("metadata"))
    return Migration(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        vmi_name=str(_get(raw, "spec", "vmiName") or ""),
        phase=str(_get(raw, "status", "phase") or "Pending"),
        created=str(meta.get("creationTimestamp") or ""),
        target_node=_get(raw, "status", "migrationState", "targetNode") or None,
        progress=_fingerprint([_get(raw, "status", "migrationState"), _get(raw, "status", "phaseTransitionTimestamps")]
                              if _get(raw, "status") else None),
        failure=str(_get(raw, "status", "migrationState", "failureReason") or next(
            (c.get("message") or c.get("reason") for c in _dicts(_get(raw, "status", "conditions"))
             if c.get("type") == "Failed" and c.get("status") == "True"), "") or ""),
    )


@parser("Event")
def parse_event(raw: dict) -> Event:
    meta = _dict(raw.get("metadata"))
    involved = _dict(raw.get("involvedObject") or raw.get("regarding"))
    return Event(
        namespace=str(meta.get("namespace", "")),
        kind=str(involved.get("kind", "")),
        name=str(involved.get("name", "")),
        reason=str(raw.get("reason") or ""),
        message=str(raw.get("message") or raw.get("note") or ""),
        type=str(raw.get("type") or ""),
        timestamp=str(raw.get("lastTimestamp") or raw.get("eventTime") or meta.get("creationTimestamp") or ""),
    )
