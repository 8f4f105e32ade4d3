"""Synthetic KubeVirt clusters for benchmarks: realistic node label sets, full node status, VMs.

Nodes come in hardware classes built from libvirt's models (like tests/builders.py and the demo):
several Intel generations, KubeVirt versions with and without the "all known models" migration
labels, so nodes carry 150-550 labels. Each node has a full status (conditions, addresses,
capacity, 50 images, nodeInfo) and managedFields that repeat every label key, as real nodes do.
Objects of one class share their large sub-structures to keep the fake server's memory small.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from builders import CATALOG, host_features, usable_models  # noqa: E402
from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS  # noqa: E402

# host model, models the CPU implements, all-known migration labels (KubeVirt >= 1.7), extra features
CLASSES = (
    ("Broadwell-IBRS", ["Broadwell-IBRS"], False, ()),
    ("Skylake-Server-IBRS", ["Skylake-Server-IBRS", "Skylake-Server-v5"], False, ("pdpe1gb",)),
    ("Cascadelake-Server", ["Cascadelake-Server", "Cascadelake-Server-v5"], True, ()),
    ("Icelake-Server", ["Icelake-Server-v7"], True, ("sha-ni",)),
    ("SapphireRapids", ["SapphireRapids-v3"], True, ()),
    ("GraniteRapids", ["GraniteRapids-v2"], True, ()),
)
IMAGES = [{"names": ["registry.suse.com/harvester/component-%02d@sha256:%064x" % (i, i * 7919),
                     "registry.suse.com/harvester/component-%02d:v1.9.%d" % (i, i)], "sizeBytes": 100000000 + i}
          for i in range(50)]


def class_labels(host_model: str, models: List[str], all_known: bool, extra) -> Dict[str, str]:
    features = host_features(models, extra)
    usable = usable_models(features)
    labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
              "beta.kubernetes.io/os": "linux", "kubevirt.io/schedulable": "true", "cpumanager": "false",
              "kubevirt.io/cpumanager": "false", "kubevirt.io/ksm-enabled": "false",
              "cpu-vendor.node.kubevirt.io/Intel": "true", "host-model-cpu.node.kubevirt.io/" + host_model: "true",
              "cpu-timer.node.kubevirt.io/tsc-frequency": "2394454000", "cpu-timer.node.kubevirt.io/tsc-scalable": "false",
              "scheduling.node.kubevirt.io/tsc-frequency-2394454000": "true", "harvesterhci.io/managed": "true",
              "topology.kubernetes.io/zone": "zone-a", "node.kubernetes.io/instance-type": "rke2"}
    labels.update({"cpu-model.node.kubevirt.io/" + m: "true" for m in usable})
    migration = [m for m in CATALOG.names() if m not in DEFAULT_OBSOLETE_CPU_MODELS] if all_known else usable + [host_model]
    labels.update({"cpu-model-migration.node.kubevirt.io/" + m: "true" for m in migration})
    labels.update({"cpu-feature.node.kubevirt.io/" + f: "true" for f in features})
    labels.update({"host-model-required-features.node.kubevirt.io/" + f: "true"
                   for f in features - CATALOG.features(host_model)})
    labels.update({"machine-type.node.kubevirt.io/" + t: "true" for t in ("q35", "pc", "pc-q35-8.2", "pc-q35-9.2")})
    labels.update({"hyperv.node.kubevirt.io/" + h: "true" for h in ("base", "frequencies", "ipi", "reenlightenment",
                                                                  "reset", "runtime", "synic", "synic2", "synictimer",
                                                                  "time", "tlbflush", "vpindex")})
    return labels


def managed_fields(labels: Dict[str, str]) -> List[dict]:
    return [{"manager": "virt-handler", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T08:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:" + k: {} for k in labels}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T08:00:00Z",
             "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {"f:conditions": {}, "f:images": {}, "f:nodeInfo": {}}}}]


def nodes(count: int) -> List[dict]:
    shared = []
    for host_model, models, all_known, extra in CLASSES:
        labels = class_labels(host_model, models, all_known, extra)
        status = {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}],
                  "allocatable": {"cpu": "64", "memory": "527894104Ki", "pods": "200", "devices.kubevirt.io/kvm": "1k"},
                  "capacity": {"cpu": "64", "memory": "528000000Ki", "pods": "200", "devices.kubevirt.io/kvm": "1k"},
                  "conditions": [{"type": t, "status": "False", "reason": "Kubelet" + t, "message": "ok",
                                  "lastHeartbeatTime": "2026-11-25T08:59:00Z", "lastTransitionTime": "2026-11-01T00:00:00Z"}
                                 for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
                  + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                      "lastHeartbeatTime": "2026-11-25T08:59:00Z", "lastTransitionTime": "2026-11-01T00:00:00Z"}],
                  "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}, "images": IMAGES,
                  "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.0.5",
                               "kernelVersion": "6.4.0", "kubeProxyVersion": "v1.33.5+rke2r1",
                               "kubeletVersion": "v1.33.5+rke2r1", "machineID": "m", "operatingSystem": "linux",
                               "osImage": "Harvester v1.9.0", "systemUUID": "s"}}
        shared.append((labels, managed_fields(labels), status))
    out = []
    for i in range(count):
        labels, fields, status = shared[i % len(shared)]
        name = "node-%05d" % i
        own = dict(labels)
        own["kubernetes.io/hostname"] = name
        out.append({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "uid": "uid-" + name, "resourceVersion": "1",
                                 "creationTimestamp": "2026-01-01T00:00:00Z", "labels": own,
                                 "annotations": {"kubevirt.io/heartbeat": "2026-11-25T08:59:00Z",
                                                 "rke2.io/node-args": "[\"server\"]", "flannel.alpha.coreos.com/public-ip": "10.0.0.1"},
                                 "managedFields": fields},
                    "spec": {"podCIDR": "10.52.%d.0/24" % (i % 256), "providerID": "rke2://" + name},
                    "status": status})
    return out


def vms(count: int, node_count: int) -> List[dict]:
    out = []
    for i in range(count):
        ns, name = "bench-%02d" % (i % 20), "vm-%05d" % i
        node = "node-%05d" % (i % node_count)
        template = {"domain": {"cpu": {"cores": 2}, "devices": {}, "machine": {"type": "q35"},
                               "resources": {"requests": {"memory": "4Gi"}}}}
        out.append({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                    "metadata": {"name": name, "namespace": ns, "uid": "uid-vm-" + name},
                    "spec": {"runStrategy": "Always", "template": {"spec": template}},
                    "status": {"printableStatus": "Running"}})
        out.append({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"name": name, "namespace": ns, "uid": "uid-vmi-" + name},
                    "spec": {"domain": {"cpu": {"model": "host-model", "cores": 2}, "machine": {"type": "q35"}},
                             "architecture": "amd64"},
                    "status": {"phase": "Running", "nodeName": node, "machine": {"type": "pc-q35-9.2"},
                               "conditions": [{"type": "LiveMigratable", "status": "True"}]}})
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "virt-launcher-%s-abcde" % name, "namespace": ns, "uid": "uid-pod-" + name,
                                 "creationTimestamp": "2026-11-01T00:00:00Z",
                                 "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "uid-vmi-" + name},
                                 "ownerReferences": [{"kind": "VirtualMachineInstance", "name": name, "uid": "uid-vmi-" + name}]},
                    "spec": {"nodeName": node, "nodeSelector": {"kubevirt.io/schedulable": "true",
                                                                "kubernetes.io/arch": "amd64",
                                                                "machine-type.node.kubevirt.io/pc-q35-9.2": "true"}},
                    "status": {"phase": "Running"}})
    return out


def cluster(node_count: int, vm_count: int) -> List[dict]:
    kubevirt = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                "metadata": {"name": "kubevirt", "namespace": "harvester-system"},
                "spec": {"configuration": {}}, "status": {"observedKubeVirtVersion": "v1.8.4"}}
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                  for n in ["default", "harvester-system"] + ["bench-%02d" % i for i in range(20)]]
    return nodes(node_count) + vms(vm_count, node_count) + [kubevirt] + namespaces
