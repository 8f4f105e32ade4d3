"""Realistic KubeVirt objects, the one builder for tests, benchmarks and the demo snapshot.

Node labels are what KubeVirt's node-labeller would write for a CPU made of libvirt models
from the shipped catalog: `cpu-model.*` = every catalog model whose features the host has
(QEMU's usability check reduced to feature inclusion) minus the obsolete list,
`cpu-model-migration.*` = every known model (KubeVirt >= 1.7) or the usable ones plus the
host model (older), `cpu-feature.*` = the host's features, `host-model-required-features.*`
= what the host has beyond its host model. They are rendered by cpumodel.core.labels, the
same vocabulary the plugin reads. Other objects follow what KubeVirt and Harvester write.
"""
from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Optional

from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS, Catalog
from cpumodel.core.labels import NodeCpu, cpu_labels
from cpumodel.objects import HOST_MODEL, is_named_model

CATALOG = Catalog.load()
CREATED = "2026-09-01T08:00:00Z"
# Host-only features real Intel hosts report beyond any named model (seen in KubeVirt's test node).
HOST_EXTRAS = frozenset({"hypervisor", "ss", "tsc_adjust", "umip", "md-clear", "stibp", "ssbd", "pdcm"})
MACHINE_TYPES = ("q35", "pc-q35-9.2")
HYPERV = ("base", "frequencies", "ipi", "reenlightenment", "reset", "runtime", "synic", "synic2",
          "synictimer", "time", "tlbflush", "vpindex")
LAUNCHER_IMAGE = "registry.suse.com/suse/sles/15.7/virt-launcher:1.8.4"


# ---- nodes ---------------------------------------------------------------------------------
def host_features(models: Iterable[str], extra: Iterable[str] = (), drop: Iterable[str] = ()) -> frozenset:
    """A host CPU: the union of the models' features, plus and minus single features."""
    return (frozenset().union(*(CATALOG.features(m) for m in models)) | frozenset(extra)) - frozenset(drop)


def usable_models(features: frozenset) -> List[str]:
    return [m for m in CATALOG.names() if CATALOG.features(m) <= features and m not in DEFAULT_OBSOLETE_CPU_MODELS]


def known_models() -> List[str]:
    return [m for m in CATALOG.names() if m not in DEFAULT_OBSOLETE_CPU_MODELS]


def cpu_view(host_model: str, features: frozenset, vendor: str = "Intel", models: Optional[Iterable[str]] = None,
             all_known: bool = True, machine_types: Iterable[str] = MACHINE_TYPES, hyperv: Iterable[str] = (),
             tsc: Optional[int] = None, scalable: Optional[bool] = None) -> NodeCpu:
    """What the node-labeller reports for this host (see the module docstring)."""
    usable = usable_models(features) if models is None else list(models)
    return NodeCpu(
        models=frozenset(usable),
        migration_models=frozenset(known_models() if all_known else usable + [host_model]),
        features=frozenset(features), host_model=host_model,
        host_model_required=frozenset(features - CATALOG.features(host_model)), vendor=vendor,
        tsc_frequency=tsc, tsc_scalable=scalable, tsc_scheduling=frozenset({str(tsc)} if tsc else ()),
        machine_types=frozenset(machine_types), hyperv=frozenset(hyperv), schedulable=True,
        obsolete_host_model=False, witness=False)


def node_labels(name: str, cpu: NodeCpu, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Kubernetes' own node labels, KubeVirt's CPU labels, then `extra`; sorted like kubectl shows them."""
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}
    labels.update(cpu_labels(cpu))
    labels.update(extra or {})
    return dict(sorted(labels.items()))


NODE_ALLOCATABLE = {"cpu": "32", "memory": "130000Mi", "pods": "110", "ephemeral-storage": "400Gi",
                    "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k"}
# What virt-controller renders for a 2-vCPU, 2 GiB VM: 100m per vCPU at the default cpuAllocationRatio (10), the
# guest memory plus its overhead (services/renderresources.go), and the KVM, tun and vhost-net devices.
LAUNCHER_REQUESTS = {"cpu": "200m", "memory": "2386Mi", "devices.kubevirt.io/kvm": "1",
                     "devices.kubevirt.io/tun": "1", "devices.kubevirt.io/vhost-net": "1"}


def node(name: str, labels: Dict[str, str], ready: bool = True, unschedulable: bool = False,
         taints: Optional[List[dict]] = None, status: Optional[dict] = None,
         allocatable: Optional[Dict[str, str]] = None) -> dict:
    """A Node as kubectl get -o yaml shows it (the Python client rejects nodes without full nodeInfo)."""
    obj = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": "uid-node-" + name, "creationTimestamp": CREATED, "labels": labels,
                     "annotations": {"kubevirt.io/heartbeat": "2026-11-25T08:59:00Z"}},
        "spec": {"podCIDR": "10.52.0.0/24"},
        "status": status or {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady",
                            "message": "kubelet is posting ready status" if ready else "PLEG is not healthy"}],
            "allocatable": dict(allocatable or NODE_ALLOCATABLE), "capacity": dict(allocatable or NODE_ALLOCATABLE),
            "nodeInfo": node_info(name)},
    }
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    if taints:
        obj["spec"]["taints"] = taints
    return obj


def node_info(name: str) -> dict:
    return {"architecture": "amd64", "bootID": "boot-" + name, "containerRuntimeVersion": "containerd://2.0.5",
            "kernelVersion": "6.4.0-150600.23.53-default", "kubeProxyVersion": "v1.33.5+rke2r1",
            "kubeletVersion": "v1.33.5+rke2r1", "machineID": "machine-" + name, "operatingSystem": "linux",
            "osImage": "Harvester v1.9.0", "systemUUID": "sys-" + name}


def cpu_node(name: str, host_model: str, models: Iterable[str], features: Iterable[str] = (),
             drop: Iterable[str] = (), vendor: str = "Intel", labels: Optional[Dict[str, str]] = None, **kw) -> dict:
    """A node whose CPU offers the features of `models` (plus the usual host extras), host model `host_model`."""
    cpu = cpu_view(host_model, host_features(models, HOST_EXTRAS | frozenset(features), drop), vendor)
    return node(name, node_labels(name, cpu, labels), **kw)


# ---- KubeVirt ---------------------------------------------------------------------------------
def kubevirt(version: str = "v1.8.4", cpu_model: Optional[str] = None, namespace: str = "kubevirt",
             obsolete: Optional[Dict[str, bool]] = None, configuration: Optional[dict] = None) -> dict:
    conf: dict = dict(configuration or {})
    if cpu_model:
        conf["cpuModel"] = cpu_model
    if obsolete is not None:
        conf["obsoleteCPUModels"] = obsolete
    return {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": namespace, "uid": "uid-kubevirt", "creationTimestamp": CREATED},
            "spec": {"configuration": conf}, "status": {"phase": "Deployed", "observedKubeVirtVersion": version}}


def hco_kubevirt(cpu_model: Optional[str] = None, version: str = "v1.6.3", obsolete: Optional[Dict[str, bool]] = None,
                 hco_version: str = "v1beta1") -> dict:
    """The KubeVirt CR as HCO creates it: in openshift-cnv, labelled and owned by the HyperConverged CR."""
    obj = kubevirt(version, cpu_model, namespace="openshift-cnv", obsolete=obsolete)
    obj["metadata"].update(name="kubevirt-kubevirt-hyperconverged",
                           labels={"app": "kubevirt-hyperconverged", "app.kubernetes.io/managed-by": "hco-operator"},
                           ownerReferences=[{"apiVersion": "hco.kubevirt.io/" + hco_version, "kind": "HyperConverged",
                                             "name": "kubevirt-hyperconverged", "uid": "uid-hco", "controller": True,
                                             "blockOwnerDeletion": True}])
    return obj


def hyperconverged(cpu_model: Optional[str] = None, obsolete: Iterable[str] = (), version: str = "v1beta1") -> dict:
    """OpenShift Virtualization's HyperConverged CR; v1 and v1beta1 keep the CPU settings at different paths."""
    spec: dict = {}
    if version == "v1":
        options = {"disableFreePageReporting": False}
        if cpu_model:
            options["defaultCPUModel"] = cpu_model
        spec["virtualization"] = {"virtualMachineOptions": options}
        if obsolete:
            spec["virtualization"]["obsoleteCPUModels"] = list(obsolete)
    else:
        if cpu_model:
            spec["defaultCPUModel"] = cpu_model
        if obsolete:
            spec["obsoleteCPUs"] = {"cpuModels": list(obsolete)}
    return {"apiVersion": "hco.kubevirt.io/" + version, "kind": "HyperConverged",
            "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv", "uid": "uid-hco",
                         "creationTimestamp": CREATED},
            "spec": spec, "status": {"conditions": [{"type": "Available", "status": "True"}]}}


def vm(name: str, model: Optional[str] = None, running: bool = True, ns: str = "default",
       node_selector: Optional[Dict[str, str]] = None, domain: Optional[dict] = None,
       labels: Optional[Dict[str, str]] = None, **template) -> dict:
    """A VirtualMachine as Harvester creates it (eviction strategy LiveMigrate); `domain` and `template`
    add to its template spec, `labels` to its own labels."""
    dom = {"cpu": {"cores": 2, "sockets": 1, "threads": 1}, "devices": {}, "machine": {"type": "q35"},
           "resources": {"requests": {"memory": "4Gi"}}}
    if model:
        dom["cpu"]["model"] = model
    dom.update(domain or {})
    spec: dict = {"domain": dom, "evictionStrategy": "LiveMigrate"}
    if node_selector:
        spec["nodeSelector"] = node_selector
    spec.update(template)
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vm-" + name, "creationTimestamp": CREATED,
                         "generation": 3, "annotations": {"harvesterhci.io/vmRunStrategy": "RerunOnFailure"},
                         "labels": dict({"app": name.split("-")[0], "harvesterhci.io/creator": "harvester"},
                                        **(labels or {}))},
            "spec": {"runStrategy": "RerunOnFailure" if running else "Halted", "template": {
                "metadata": {"labels": {"harvesterhci.io/vmName": name}}, "spec": spec}},
            "status": {"printableStatus": "Running" if running else "Stopped", "ready": running, "created": running}}


def vmi(name: str, node_name: str, model: str = HOST_MODEL, ns: str = "default", features=None,
        node_selector=None, migratable: bool = True, machine: str = "pc-q35-9.2", affinity=None,
        tolerations=None, phase: str = "Running", template: Optional[dict] = None) -> dict:
    """A VMI as KubeVirt writes it; `template` is the VM's template spec it was created from."""
    spec = copy.deepcopy(template) if template else {"domain": {"cpu": {}}}
    spec["domain"]["cpu"]["model"] = model
    if features:
        spec["domain"]["cpu"]["features"] = features
    spec["architecture"] = "amd64"
    spec["domain"]["machine"] = {"type": "q35"}
    spec["affinity"] = affinity or {}
    for key, value in (("nodeSelector", node_selector), ("tolerations", tolerations)):
        if value:
            spec[key] = value
    live = {"type": "LiveMigratable", "status": "True"} if migratable else {
        "type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
        "message": "cannot migrate VMI: PVC rootdisk is not shared, live migration requires that all PVCs must be shared"}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vmi-" + name, "creationTimestamp": CREATED,
                         "labels": {"kubevirt.io/nodeName": node_name, "harvesterhci.io/vmName": name},
                         "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
                                              "uid": "uid-vm-" + name, "controller": True}]},
            "spec": spec,
            "status": {"phase": phase, "nodeName": node_name, "machine": {"type": machine},
                       "conditions": [{"type": "Ready", "status": "True"}, live]}}


def vmi_of(vm_obj: dict, node_name: str, kubevirt_default: Optional[str] = None, **kw) -> dict:
    """The VMI KubeVirt creates from a VM: its template, with the CPU model defaulted (kubevirt-rules §2.2)."""
    template = vm_obj["spec"]["template"]["spec"]
    model = template["domain"]["cpu"].get("model") or kubevirt_default or HOST_MODEL
    return vmi(vm_obj["metadata"]["name"], node_name, model, vm_obj["metadata"]["namespace"], template=template, **kw)


def launcher(vmi_obj: dict, node_selector: Optional[Dict[str, str]] = None, created: str = "2026-11-20T10:00:00Z",
             suffix: str = "abcde", requests: Optional[Dict[str, str]] = None) -> dict:
    """The VMI's virt-launcher pod: the selector KubeVirt renders at start (kubevirt-rules §2.1), plus `node_selector`
    (e.g. keys inherited from earlier migrations)."""
    name = vmi_obj["metadata"]["name"]
    model = vmi_obj["spec"]["domain"]["cpu"]["model"]
    selector = {"kubevirt.io/schedulable": "true", "kubernetes.io/arch": "amd64",
                "machine-type.node.kubevirt.io/" + vmi_obj["status"]["machine"]["type"]: "true"}
    selector.update(vmi_obj["spec"].get("nodeSelector") or {})
    if is_named_model(model):
        selector["cpu-model.node.kubevirt.io/" + model] = "true"
    selector.update(node_selector or {})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "virt-launcher-%s-%s" % (name, suffix), "namespace": vmi_obj["metadata"]["namespace"],
                        "uid": "uid-pod-%s-%s" % (name, suffix), "creationTimestamp": created,
                        "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_obj["metadata"]["uid"],
                                   "vm.kubevirt.io/name": name, "vmi.kubevirt.io/id": name},
                        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                             "name": name, "uid": vmi_obj["metadata"]["uid"], "controller": True}]},
           "spec": {"nodeName": vmi_obj["status"]["nodeName"], "nodeSelector": dict(sorted(selector.items())),
                    "containers": [{"name": "compute", "image": LAUNCHER_IMAGE,
                                    "resources": {"requests": dict(requests or LAUNCHER_REQUESTS),
                                                  "limits": {k: v for k, v in (requests or LAUNCHER_REQUESTS).items()
                                                             if k.startswith("devices.")}}}],
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 300}]},
           "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
    if model == HOST_MODEL:
        pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "node-labeller.kubevirt.io/obsolete-host-model", "operator": "DoesNotExist"}]}]}}}
    return pod


def migration(name: str, vmi_name: str, phase: str, ns: str = "default", created: str = "2026-11-25T08:30:00Z",
              transitions: Iterable[tuple] = ()) -> dict:
    """A VirtualMachineInstanceMigration, labelled with its VMI as KubeVirt's webhook does."""
    status: dict = {"phase": phase}
    if transitions:
        status["phaseTransitionTimestamps"] = [{"phase": p, "phaseTransitionTimestamp": t} for p, t in transitions]
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vmim-" + name, "creationTimestamp": created,
                         "labels": {"kubevirt.io/vmi-name": vmi_name}},
            "spec": {"vmiName": vmi_name}, "status": status}


def event(name: str, involved_name: str, involved_kind: str, reason: str, message: str, timestamp: str,
          ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-ev-" + name, "creationTimestamp": timestamp},
            "involvedObject": {"kind": involved_kind, "name": involved_name, "namespace": ns,
                               "apiVersion": "kubevirt.io/v1"},
            "reason": reason, "message": message, "type": "Warning", "count": 1, "lastTimestamp": timestamp,
            "firstTimestamp": timestamp, "source": {"component": "virtualmachine-controller"}}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "uid-ns-" + name, "creationTimestamp": CREATED}}


def workload_pod(name: str, node_name: Optional[str], requests: Dict[str, str], ns: str = "default",
                 phase: str = "Running", init_containers: Iterable[dict] = (), overhead: Optional[Dict[str, str]] = None,
                 created: str = "2026-11-20T10:00:00Z") -> dict:
    """Any other pod bound to a node (a database, a daemon), with one container requesting `requests`."""
    spec: dict = {"containers": [{"name": "main", "image": "registry.example.com/app:1",
                                  "resources": {"requests": dict(requests)}}]}
    if node_name:
        spec["nodeName"] = node_name
    if init_containers:
        spec["initContainers"] = [dict(c, image=c.get("image", "registry.example.com/init:1"))
                                  for c in init_containers]
    if overhead:
        spec["overhead"] = dict(overhead)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-pod-%s-%s" % (ns, name), "creationTimestamp": created,
                         "labels": {"app": name}},
            "spec": spec, "status": {"phase": phase}}
