"""Synthetic KubeVirt clusters for benchmarks: realistic node label sets, full node status, VMs.

Nodes come in hardware classes built from libvirt's models by testkit.kubevirt (the builder of
the tests and the demo), and, as on real clusters, every node's labels differ from its class's
(measured TSC frequency, hostname, zone, rack, NFD labels; node_own_labels):
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

from testkit import kubevirt as kv  # noqa: E402

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
    cpu = kv.cpu_view(host_model, kv.host_features(models, extra), all_known=all_known,
                      machine_types=("q35", "pc", "pc-q35-8.2", "pc-q35-9.2"), hyperv=kv.HYPERV,
                      tsc=2394454000, scalable=False)
    return kv.node_labels("node", cpu, {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                                         "cpumanager": "false", "kubevirt.io/cpumanager": "false",
                                         "kubevirt.io/ksm-enabled": "false", "harvesterhci.io/managed": "true",
                                         "topology.kubernetes.io/zone": "zone-a",
                                         "node.kubernetes.io/instance-type": "rke2"})


def managed_fields(labels: Dict[str, str]) -> List[dict]:
    return [{"manager": "virt-handler", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T08:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:" + k: {} for k in labels}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T08:00:00Z",
             "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {"f:conditions": {}, "f:images": {}, "f:nodeInfo": {}}}}]


TSC_BASE = 2394454000
NFD = {"feature.node.kubernetes.io/cpu-cpuid.%s" % f: "true" for f in
       ("ADX", "AESNI", "AVX", "AVX2", "AVX512F", "FMA3", "SHA", "VMX", "X87", "XSAVE")}


def node_own_labels(i: int, name: str) -> Dict[str, str]:
    """What makes every real node's labels different from its hardware class's: the measured TSC
    frequency (a few kHz apart from node to node, with its scheduling label), hostname, zone, rack
    and node-feature-discovery labels with the kernel of each node."""
    tsc = TSC_BASE + (i * 7919) % 40000 - 20000
    labels = {"kubernetes.io/hostname": name, "cpu-timer.node.kubevirt.io/tsc-frequency": str(tsc),
              "scheduling.node.kubevirt.io/tsc-frequency-%d" % tsc: "true",
              "topology.kubernetes.io/zone": "zone-%s" % "abc"[i % 3], "topology.kubernetes.io/rack": "rack-%03d" % (i // 40),
              "feature.node.kubernetes.io/kernel-version.full": "6.4.0-150600.23.%d-default" % (40 + i % 14)}
    labels.update(NFD)
    return labels


# KubeVirt's device plugins advertise these on every node that runs virt-handler (1,000 each).
DEVICES = {"devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k"}


def _status(i: int) -> dict:
    return {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}],
            "allocatable": dict(DEVICES, cpu="64", memory="527894104Ki", pods="200"),
            "capacity": dict(DEVICES, cpu="64", memory="528000000Ki", pods="200"),
            "conditions": [{"type": t, "status": "False", "reason": "Kubelet" + t, "message": "ok",
                            "lastHeartbeatTime": "2026-11-25T08:59:00Z", "lastTransitionTime": "2026-11-01T00:00:00Z"}
                           for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
            + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-11-25T08:59:00Z", "lastTransitionTime": "2026-11-01T00:00:00Z"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": IMAGES[i % 7:] + IMAGES[:i % 7],  # each node pulled its images in its order
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.0.5",
                         "kernelVersion": "6.4.0", "kubeProxyVersion": "v1.33.5+rke2r1",
                         "kubeletVersion": "v1.33.5+rke2r1", "machineID": "m", "operatingSystem": "linux",
                         "osImage": "Harvester v1.9.0", "systemUUID": "s"}}


def _node(i: int, labels: Dict[str, str], fields: List[dict]) -> dict:
    name = "node-%05d" % i
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": "uid-" + name, "resourceVersion": "1",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": dict(labels, **node_own_labels(i, name)),
                         "annotations": {"kubevirt.io/heartbeat": "2026-11-25T08:59:00Z",
                                         "rke2.io/node-args": "[\"server\"]", "flannel.alpha.coreos.com/public-ip": "10.0.0.1"},
                         "managedFields": fields},
            "spec": {"podCIDR": "10.52.%d.0/24" % (i % 256), "providerID": "rke2://" + name},
            "status": _status(i)}


def nodes(count: int) -> List[dict]:
    """Nodes of six hardware classes: identical CPU labels within a class (the common, tidy case)."""
    shared = []
    for host_model, models, all_known, extra in CLASSES:
        labels = class_labels(host_model, models, all_known, extra)
        shared.append((labels, managed_fields(labels)))
    return [_node(i, *shared[i % len(shared)]) for i in range(count)]


# The worst case (issue "cost grows with labels"): clusters bought over years, with different BIOS settings and
# microcode, where every node draws its own CPU features and so its own host-model required features.
WORST_CLASSES = (  # host model, vendor, weight
    ("Skylake-Server-IBRS", "Intel", 25), ("Cascadelake-Server", "Intel", 25), ("Icelake-Server", "Intel", 20),
    ("SapphireRapids", "Intel", 10), ("EPYC-Milan", "AMD", 12), ("EPYC-Genoa", "AMD", 8))


ALL_FEATURES = frozenset().union(*(kv.CATALOG.features(m) for m in kv.CATALOG.names()))


def worst_cpu(i: int, rng):
    host, vendor, _ = rng.choices(WORST_CLASSES, [w for _, _, w in WORST_CLASSES])[0]
    base = kv.CATALOG.features(host)
    extras = sorted(ALL_FEATURES - base - {"vmx" if vendor == "AMD" else "svm"})
    features = (set(base) - set(rng.sample(sorted(base), rng.randint(0, 3)))) | set(rng.sample(extras, rng.randint(4, 16)))
    tsc = TSC_BASE + (i * 7919) % 40000 - 20000
    return kv.cpu_view(host, frozenset(features), vendor, all_known=True, tsc=tsc, scalable=False,
                       machine_types=("q35", "pc", "pc-q35-8.2", "pc-q35-9.2"), hyperv=kv.HYPERV)


def worst_nodes(count: int, seed: int = 42) -> List[dict]:
    """Every node its own CPU feature set (its class's model, a few features off, some extras on)."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(count):
        labels = kv.node_labels("node", worst_cpu(i, rng), {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubevirt.io/ksm-enabled": "false",
            "harvesterhci.io/managed": "true", "node.kubernetes.io/instance-type": "rke2"})
        out.append(_node(i, labels, managed_fields(labels)))
    return out


ON_FIRST_NODE = 100  # drain-check node-00000 moves this many VMs


def vm_node(i: int, node_count: int) -> int:
    """The first ON_FIRST_NODE VMs run on node-00000, the rest spread over the other nodes."""
    if i < ON_FIRST_NODE or node_count == 1:
        return 0
    return 1 + (i - ON_FIRST_NODE) % (node_count - 1)


def vms(count: int, node_count: int) -> List[dict]:
    out = []
    for i in range(count):
        ns, name = "bench-%02d" % (i % 20), "vm-%05d" % i
        vm = kv.vm(name, ns=ns)
        the_vmi = kv.vmi_of(vm, "node-%05d" % vm_node(i, node_count))
        out += [vm, the_vmi, kv.launcher(the_vmi)]
    return out


def worst_vms(count: int, node_list: List[dict], seed: int = 7) -> List[dict]:
    """Mostly host-model VMs; two in three migrated before, so their launcher pods carry the host-model keys of
    the node they first booted on (sticky, kubevirt-rules §3.2); one in seven has a named model."""
    import random

    rng = random.Random(seed)
    labels = [n["metadata"]["labels"] for n in node_list]
    vendors = [next(k for k in l if k.startswith("cpu-vendor.")) for l in labels]
    out = []
    for i in range(count):
        ns, name = "bench-%02d" % (i % 20), "vm-%05d" % i
        where = vm_node(i, len(node_list))
        intel = vendors[where].endswith("/Intel")
        model = ("Broadwell-IBRS" if intel else "EPYC") if i % 7 == 3 else None
        vm = kv.vm(name, model=model, ns=ns)
        the_vmi = kv.vmi_of(vm, "node-%05d" % where)
        sticky = None
        if model is None and i % 3:
            boot = labels[rng.choice([j for j in range(max(0, where - 40), min(len(labels), where + 40))
                                      if vendors[j] == vendors[where]])]
            sticky = {"cpu-model-migration.node.kubevirt.io/" + k.split("/", 1)[1]: "true"
                      for k in boot if k.startswith("host-model-cpu.node.kubevirt.io/")}
            sticky.update({"cpu-feature.node.kubevirt.io/" + k.split("/", 1)[1]: "true"
                           for k in boot if k.startswith("host-model-required-features.node.kubevirt.io/")})
        out += [vm, the_vmi, kv.launcher(the_vmi, sticky)]
    return out


# The other pods of a Harvester cluster (issue "drains that also fit"): storage, networking, monitoring and
# platform pods on every node, each with requests the scheduler counts, as `kubectl get pods -o json` shows them.
SYSTEM_NAMESPACES = ("longhorn-system", "kube-system", "cattle-system", "cattle-monitoring-system",
                     "harvester-system", "cattle-fleet-system")
POD_KINDS = (  # name, containers' (cpu, memory) requests
    ("longhorn-manager", (("250m", "256Mi"), ("10m", "32Mi"))), ("instance-manager", (("1200m", "1Gi"),)),
    ("rke2-canal", (("250m", "128Mi"), ("50m", "64Mi"))), ("node-exporter", (("100m", "30Mi"),)),
    ("harvester-node-manager", (("100m", "128Mi"),)), ("virt-handler", (("10m", "357Mi"),)),
    ("kube-proxy", (("250m", "128Mi"),)), ("engine-image", (("50m", "64Mi"),)))


def _container(name: str, image: str, cpu: str, memory: str) -> dict:
    return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                         "fieldPath": "metadata.namespace"}}}],
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
            "volumeMounts": [{"name": "host-dev", "mountPath": "/host/dev"}, {"name": "kube-api-access",
                                                                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                                                              "readOnly": True}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "securityContext": {"privileged": True}}


def _pod_kind(name: str, containers) -> dict:
    """The parts every pod of one kind shares (kept once in memory by the fake server)."""
    image = "registry.suse.com/rancher/mirrored-%s:v1.9.0" % name
    spec = {"containers": [_container("c%d" % i, image, cpu, memory) for i, (cpu, memory) in enumerate(containers)],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "priority": 2000001000,
            "priorityClassName": "system-node-critical", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": name, "terminationGracePeriodSeconds": 30,
            "tolerations": [{"operator": "Exists", "effect": e} for e in ("NoSchedule", "NoExecute")],
            "volumes": [{"name": "host-dev", "hostPath": {"path": "/dev", "type": ""}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]}
    fields = [{"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager",
               "operation": "Update", "time": "2026-11-01T00:00:00Z",
               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:controller-revision-hash": {}}},
                            "f:spec": {"f:containers": {'k:{"name":"c%d"}' % i: {".": {}, "f:image": {}, "f:env": {},
                                                                                   "f:resources": {}}
                                                        for i in range(len(containers))}}}},
              {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet", "operation": "Update",
               "subresource": "status", "time": "2026-11-01T00:00:00Z",
               "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}, "f:podIP": {}}}}]
    status = {"phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.1", "podIP": "10.52.0.9",
              "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-11-01T00:00:00Z"}
                             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                       "PodScheduled")],
              "containerStatuses": [{"name": "c%d" % i, "image": image, "imageID": image + "@sha256:%064x" % i,
                                     "containerID": "containerd://%064x" % i, "ready": True, "restartCount": 0,
                                     "started": True, "state": {"running": {"startedAt": "2026-11-01T00:00:00Z"}}}
                                    for i in range(len(containers))]}
    return {"spec": spec, "fields": fields, "status": status}


def other_pods(count: int, node_count: int) -> List[dict]:
    """`count` platform pods spread over the nodes (a few of them finished: Succeeded jobs hold no room)."""
    kinds = [(name, _pod_kind(name, containers)) for name, containers in POD_KINDS]
    out = []
    for i in range(count):
        name, kind = kinds[i % len(kinds)]
        node = "node-%05d" % ((i * 7) % node_count)
        ns = SYSTEM_NAMESPACES[i % len(SYSTEM_NAMESPACES)]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "%s-%06d" % (name, i), "namespace": ns, "uid": "uid-other-%06d" % i,
                            "resourceVersion": "1", "creationTimestamp": "2026-11-01T00:00:00Z",
                            "generateName": name + "-", "labels": {"app": name, "controller-revision-hash": "5d8f7"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                                                 "uid": "uid-ds-" + name, "controller": True,
                                                 "blockOwnerDeletion": True}],
                            "managedFields": kind["fields"]},
               "spec": dict(kind["spec"], nodeName=node),
               "status": kind["status"] if i % 50 else dict(kind["status"], phase="Succeeded")}
        out.append(pod)
    return out


def cluster(node_count: int, vm_count: int, worst: bool = False, pod_count: int = 0) -> List[dict]:
    """`worst`: every node its own CPU (worst_nodes) and VMs with inherited selectors (worst_vms); `pod_count` other
    pods beside the VMs' launchers."""
    namespaces = [kv.namespace(n) for n in ["default", "harvester-system"] + ["bench-%02d" % i for i in range(20)]
                  + [n for n in SYSTEM_NAMESPACES if n != "harvester-system"]]
    common = [kv.kubevirt(namespace="harvester-system")] + namespaces + other_pods(pod_count, node_count)
    if worst:
        node_list = worst_nodes(node_count)
        return node_list + worst_vms(vm_count, node_list) + common
    return nodes(node_count) + vms(vm_count, node_count) + common
