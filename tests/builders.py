"""Realistic KubeVirt objects for tests, built from libvirt's model data like the node-labeller would."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS, Catalog

CATALOG = Catalog.load()
HOST_EXTRAS = frozenset({"hypervisor", "ss", "tsc_adjust", "umip", "md-clear", "stibp", "ssbd", "pdcm"})


def host_features(models: Iterable[str], extra: Iterable[str] = (), drop: Iterable[str] = ()) -> frozenset:
    feats = frozenset().union(*(CATALOG.features(m) for m in models)) | HOST_EXTRAS | frozenset(extra)
    return feats - frozenset(drop)


def usable_models(features: frozenset) -> List[str]:
    return [m for m in CATALOG.names() if CATALOG.features(m) <= features and m not in DEFAULT_OBSOLETE_CPU_MODELS]


def node_labels(name: str, host_model: str, features: frozenset, vendor: str = "Intel",
                models: Optional[Iterable[str]] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "kubevirt.io/schedulable": "true",
              "cpu-vendor.node.kubevirt.io/%s" % vendor: "true",
              "host-model-cpu.node.kubevirt.io/%s" % host_model: "true",
              "machine-type.node.kubevirt.io/q35": "true", "machine-type.node.kubevirt.io/pc-q35-9.2": "true"}
    for m in (usable_models(features) if models is None else models):
        labels["cpu-model.node.kubevirt.io/" + m] = "true"
    for m in CATALOG.names():
        if m not in DEFAULT_OBSOLETE_CPU_MODELS:
            labels["cpu-model-migration.node.kubevirt.io/" + m] = "true"
    for f in features:
        labels["cpu-feature.node.kubevirt.io/" + f] = "true"
    for f in features - CATALOG.features(host_model):
        labels["host-model-required-features.node.kubevirt.io/" + f] = "true"
    labels.update(extra or {})
    return labels


def node(name: str, labels: Dict[str, str], ready: bool = True, unschedulable: bool = False,
         taints: Optional[List[dict]] = None) -> dict:
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
           "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    if taints:
        obj["spec"]["taints"] = taints
    return obj


def cpu_node(name: str, host_model: str, models: Iterable[str], **kw) -> dict:
    """A node whose CPU offers the features of `models`, host model `host_model`."""
    extra_features = kw.pop("features", ())
    drop = kw.pop("drop", ())
    labels = node_labels(name, host_model, host_features(models, extra_features, drop),
                         vendor=kw.pop("vendor", "Intel"), extra=kw.pop("labels", None))
    return node(name, labels, **kw)


def kubevirt(version: str = "v1.8.4", cpu_model: Optional[str] = None, namespace: str = "kubevirt",
             obsolete: Optional[Dict[str, bool]] = None) -> dict:
    conf: dict = {}
    if cpu_model:
        conf["cpuModel"] = cpu_model
    if obsolete is not None:
        conf["obsoleteCPUModels"] = obsolete
    return {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt", "namespace": namespace},
            "spec": {"configuration": conf}, "status": {"observedKubeVirtVersion": version}}


def vm(name: str, model: Optional[str] = None, running: bool = True, ns: str = "default", **template) -> dict:
    domain = {"cpu": {"cores": 1}, "devices": {}}
    if model:
        domain["cpu"]["model"] = model
    domain.update(template.pop("domain", {}))
    spec = {"domain": domain}
    spec.update(template)
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vm-" + name},
            "spec": {"runStrategy": "Always" if running else "Halted", "template": {"spec": spec}}}


def vmi(name: str, node_name: str, model: str = "host-model", ns: str = "default", features=None,
        node_selector=None, migratable: bool = True, machine: str = "pc-q35-9.2", affinity=None,
        tolerations=None, phase: str = "Running") -> dict:
    cpu: dict = {"model": model}
    if features:
        cpu["features"] = features
    spec: dict = {"domain": {"cpu": cpu, "machine": {"type": "q35"}}, "architecture": "amd64"}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = tolerations
    cond = {"type": "LiveMigratable", "status": "True"} if migratable else {
        "type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
        "message": "cannot migrate VMI: PVC rootdisk is not shared, live migration requires that all PVCs must be shared"}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vmi-" + name},
            "spec": spec, "status": {"phase": phase, "nodeName": node_name, "machine": {"type": machine},
                                     "conditions": [cond]}}


def launcher(vmi_obj: dict, node_selector: Dict[str, str], created: str = "2026-11-01T00:00:00Z",
             suffix: str = "x1") -> dict:
    name = vmi_obj["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "virt-launcher-%s-%s" % (name, suffix), "namespace": vmi_obj["metadata"]["namespace"],
                         "uid": "uid-pod-%s-%s" % (name, suffix), "creationTimestamp": created,
                         "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_obj["metadata"]["uid"]},
                         "ownerReferences": [{"kind": "VirtualMachineInstance", "name": name,
                                              "uid": vmi_obj["metadata"]["uid"]}]},
            "spec": {"nodeName": vmi_obj["status"]["nodeName"], "nodeSelector": node_selector},
            "status": {"phase": "Running"}}
