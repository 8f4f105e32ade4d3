#!/usr/bin/env python3
"""Generate the demo cluster snapshot in examples/ (YAML folder + Harvester support-bundle zip).

How the node labels are built (so they look like what KubeVirt's node-labeller writes):
- Each host CPU is a union of libvirt models from the shipped catalog (which is generated
  from libvirt's cpu_map) plus the host-only features the real Skylake node of
  KubeVirt's own node-labeller test requires beyond its host model (`host-model-required-features.*`).
- `cpu-model.*` = every catalog model whose ISA features the host has, minus KubeVirt's
  default obsolete list (QEMU's usability check reduced to feature inclusion).
- `cpu-model-migration.*` = every known model minus obsolete ones (KubeVirt >= 1.8 rule).
- `cpu-feature.*` = the host's features; `host-model-required-features.*` = host features
  beyond the host model; vendor, TSC, machine types and Hyper-V labels as in the fixture.
Usage: python tools/gen_demo.py [FIXTURES_DIR]
  FIXTURES_DIR holds the real KubeVirt node-label capture named in FIXTURE below;
  else the CPUMODEL_FIXTURES environment variable; else ../shared/fixtures beside
  the repository. The tool stops with one line when the capture is missing.
"""
import copy
import io
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import yaml  # noqa: E402

from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS, Catalog  # noqa: E402

FIXTURE = "node-labels__kubevirt-kubevirt__cpu_plugin_test__skylake-client-ibrs.yaml"
OUT_DIR = os.path.join(ROOT, "examples", "demo-cluster")
BUNDLE = os.path.join(ROOT, "examples", "supportbundle_demo.zip")
BUNDLE_TOP = "supportbundle_5a1c0de0-demo_2026-11-25T09-00-00Z"
CREATED = "2026-09-01T08:00:00Z"
MACHINE_TYPES = ("q35", "pc", "pc-q35-8.2", "pc-q35-9.2", "pc-i440fx-8.2")
HYPERV = ("base", "frequencies", "ipi", "reenlightenment", "reset", "runtime", "synic", "synic2",
          "synictimer", "time", "tlbflush", "vpindex")
KUBEVIRT_VERSION = "v1.8.4"
# Hardware fixes that Cascade Lake and later report in IA32_ARCH_CAPABILITIES and Skylake-SP does not.
NOT_ON_SKYLAKE = frozenset({"mds-no", "rdctl-no", "ibrs-all", "taa-no"})

# name, host model, models whose features the host CPU has, TSC Hz, scalable, cordoned, role
NODES = (
    ("hv-01", "Cascadelake-Server", ("Cascadelake-Server", "Cascadelake-Server-v5"), 2394454000, False, False),
    ("hv-02", "Cascadelake-Server", ("Cascadelake-Server", "Cascadelake-Server-v5"), 2394453000, False, False),
    ("hv-03", "SapphireRapids", ("SapphireRapids-v3",), 2100000000, True, False),
    ("hv-04", "Skylake-Server-IBRS", ("Skylake-Server-IBRS", "Skylake-Server-v5"), 2199997000, False, False),
    ("hv-05", "SapphireRapids", ("SapphireRapids-v3",), 2100000000, True, True),
)


def fixture_extras(fixtures_dir):
    with open(os.path.join(fixtures_dir, FIXTURE), encoding="utf-8") as fh:
        labels = yaml.safe_load(fh)["metadata"]["labels"]
    prefix = "host-model-required-features.node.kubevirt.io/"
    return {k[len(prefix):] for k in labels if k.startswith(prefix)}


def host_features(catalog, models, extras):
    return frozenset().union(*(catalog.features(m) for m in models)) | extras


def node_labels(catalog, name, host_model, features, tsc, scalable):
    usable = [m for m in catalog.names() if catalog.features(m) <= features and m not in DEFAULT_OBSOLETE_CPU_MODELS]
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "harvesterhci.io/managed": "true",
        "node-role.kubernetes.io/control-plane": "true", "kubevirt.io/schedulable": "true",
        "kubevirt.io/cpumanager": "false", "cpumanager": "false", "kubevirt.io/ksm-enabled": "false",
        "cpu-vendor.node.kubevirt.io/Intel": "true",
        "host-model-cpu.node.kubevirt.io/" + host_model: "true",
        "cpu-timer.node.kubevirt.io/tsc-frequency": str(tsc),
        "cpu-timer.node.kubevirt.io/tsc-scalable": "true" if scalable else "false",
        "scheduling.node.kubevirt.io/tsc-frequency-%d" % tsc: "true",
    }
    labels.update({"cpu-model.node.kubevirt.io/" + m: "true" for m in usable})
    labels.update({"cpu-model-migration.node.kubevirt.io/" + m: "true" for m in catalog.names()
                   if m not in DEFAULT_OBSOLETE_CPU_MODELS})
    labels.update({"cpu-feature.node.kubevirt.io/" + f: "true" for f in features})
    required = features - catalog.features(host_model)
    labels.update({"host-model-required-features.node.kubevirt.io/" + f: "true" for f in required})
    labels.update({"machine-type.node.kubevirt.io/" + t: "true" for t in MACHINE_TYPES})
    labels.update({"hyperv.node.kubevirt.io/" + h: "true" for h in HYPERV})
    return dict(sorted(labels.items()))


def node_object(name, labels, cordoned=False, ready=True):
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": "uid-node-" + name, "creationTimestamp": CREATED, "labels": labels,
                     "annotations": {"kubevirt.io/heartbeat": "2026-11-25T08:59:00Z"}},
        "spec": {"podCIDR": "10.52.0.0/24"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "nodeInfo": {"architecture": "amd64", "bootID": "boot-" + name, "containerRuntimeVersion": "containerd://2.0.5",
                         "kernelVersion": "6.4.0-150600.23.53-default", "kubeProxyVersion": "v1.33.5+rke2r1",
                         "kubeletVersion": "v1.33.5+rke2r1", "machineID": "machine-" + name,
                         "operatingSystem": "linux", "osImage": "Harvester v1.9.0", "systemUUID": "sys-" + name},
        },
    }
    if cordoned:
        node["spec"]["unschedulable"] = True
        node["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                                   "timeAdded": "2026-11-24T17:00:00Z"}]
    return node


def vm_object(ns, name, model=None, running=True, node_selector=None):
    domain = {"cpu": {"cores": 2, "sockets": 1, "threads": 1}, "devices": {}, "machine": {"type": "q35"},
              "resources": {"requests": {"memory": "4Gi"}}}
    if model:
        domain["cpu"]["model"] = model
    spec = {"domain": domain}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vm-" + name, "creationTimestamp": CREATED,
                         "generation": 3, "annotations": {"harvesterhci.io/vmRunStrategy": "RerunOnFailure"},
                         "labels": {"app": name.split("-")[0], "harvesterhci.io/creator": "harvester"}},
            "spec": {"runStrategy": "RerunOnFailure" if running else "Halted", "template": {
                "metadata": {"labels": {"harvesterhci.io/vmName": name}}, "spec": spec}},
            "status": {"printableStatus": "Running" if running else "Stopped", "ready": running,
                       "created": running}}


def vmi_object(vm, node, model, kubevirt_default=None):
    ns, name = vm["metadata"]["namespace"], vm["metadata"]["name"]
    spec = copy.deepcopy(vm["spec"]["template"]["spec"])
    spec["domain"]["cpu"]["model"] = model or kubevirt_default or "host-model"
    spec["architecture"] = "amd64"
    spec["domain"]["machine"] = {"type": "q35"}
    spec["affinity"] = {}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-vmi-" + name, "creationTimestamp": CREATED,
                         "labels": {"kubevirt.io/nodeName": node, "harvesterhci.io/vmName": name},
                         "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
                                              "uid": "uid-vm-" + name, "controller": True}]},
            "spec": spec,
            "status": {"phase": "Running", "nodeName": node, "machine": {"type": "pc-q35-9.2"},
                       "conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "LiveMigratable", "status": "True"}],
                       "activePods": {"uid-pod-" + name: node}}}


def launcher_pod(vmi, extra_selector=None, suffix="abcde"):
    name = vmi["metadata"]["name"]
    model = vmi["spec"]["domain"]["cpu"]["model"]
    selector = {"kubevirt.io/schedulable": "true", "kubernetes.io/arch": "amd64",
                "machine-type.node.kubevirt.io/pc-q35-9.2": "true"}
    selector.update(vmi["spec"].get("nodeSelector") or {})
    if model not in ("host-model", "host-passthrough"):
        selector["cpu-model.node.kubevirt.io/" + model] = "true"
    selector.update(extra_selector or {})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "virt-launcher-%s-%s" % (name, suffix), "namespace": vmi["metadata"]["namespace"],
                        "uid": "uid-pod-" + name, "creationTimestamp": "2026-11-20T10:00:00Z",
                        "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi["metadata"]["uid"],
                                   "vm.kubevirt.io/name": name, "vmi.kubevirt.io/id": name},
                        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                             "name": name, "uid": vmi["metadata"]["uid"], "controller": True}]},
           "spec": {"nodeName": vmi["status"]["nodeName"], "nodeSelector": dict(sorted(selector.items())),
                    "containers": [{"name": "compute", "image": "registry.suse.com/suse/sles/15.7/virt-launcher:1.8.4"}],
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 300}]},
           "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
    if model == "host-model":
        pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "node-labeller.kubevirt.io/obsolete-host-model", "operator": "DoesNotExist"}]}]}}}
    return pod


def build(fixtures_dir):
    catalog = Catalog.load()
    extras = fixture_extras(fixtures_dir)
    objects, labels_by_node = [], {}
    for name, host_model, models, tsc, scalable, cordoned in NODES:
        own_extras = extras - NOT_ON_SKYLAKE if host_model.startswith("Skylake") else extras
        labels = node_labels(catalog, name, host_model, host_features(catalog, models, own_extras), tsc, scalable)
        labels_by_node[name] = labels
        objects.append(node_object(name, labels, cordoned))
    witness = {"beta.kubernetes.io/arch": "amd64", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "hv-witness",
               "kubernetes.io/os": "linux", "node-role.harvesterhci.io/witness": "true",
               "node-role.kubernetes.io/etcd": "true"}
    objects.append(node_object("hv-witness", witness))
    for ns in ("default", "prod", "harvester-system", "fleet-local", "kube-system"):
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": "uid-ns-" + ns,
                                                                              "creationTimestamp": CREATED}})
    objects.append({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                    "metadata": {"name": "kubevirt", "namespace": "harvester-system", "uid": "uid-kubevirt",
                                 "creationTimestamp": CREATED,
                                 "annotations": {"meta.helm.sh/release-name": "harvester"}},
                    "spec": {"configuration": {"developerConfiguration": {"featureGates": ["CPUManager", "HostDevices"]},
                                               "vmRolloutStrategy": "LiveUpdate"},
                             "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]}},
                    "status": {"phase": "Deployed", "observedKubeVirtVersion": KUBEVIRT_VERSION}})
    objects.append({"apiVersion": "management.cattle.io/v3", "kind": "ManagedChart",
                    "metadata": {"name": "harvester", "namespace": "fleet-local", "uid": "uid-mc-harvester",
                                 "creationTimestamp": CREATED},
                    "spec": {"chart": "harvester", "releaseName": "harvester", "defaultNamespace": "harvester-system",
                             "version": "1.9.0", "values": {"kubevirt": {"spec": {"monitorAccount": "rancher-monitoring-operator",
                                                                                     "monitorNamespace": "cattle-monitoring-system"}}}}})
    # web-1: host-model, booted on hv-03 (Sapphire Rapids), never migrated.
    web = vm_object("default", "web-1")
    web_vmi = vmi_object(web, "hv-03", None)
    # db-1: host-model, booted on hv-02, migrated to hv-01: the selector stuck.
    db = vm_object("default", "db-1")
    db_vmi = vmi_object(db, "hv-01", None)
    sticky = {"cpu-model-migration.node.kubevirt.io/Cascadelake-Server": "true"}
    sticky.update({k.replace("host-model-required-features.", "cpu-feature."): "true"
                   for k in labels_by_node["hv-02"] if k.startswith("host-model-required-features.")})
    sticky["cpu-vendor.node.kubevirt.io/Intel"] = "true"
    db_vmi["status"]["migrationState"] = {"sourceNode": "hv-02", "targetNode": "hv-01", "completed": True,
                                          "migrationUid": "uid-vmim-db-1-move"}
    # app-1: named model, runs anywhere that model is usable.
    app = vm_object("prod", "app-1", model="Skylake-Server-IBRS")
    app_vmi = vmi_object(app, "hv-04", "Skylake-Server-IBRS")
    # legacy-1: a leftover hostname pin from an old Harvester Migrate action.
    legacy = vm_object("default", "legacy-1", model="Skylake-Server-IBRS", node_selector={"kubernetes.io/hostname": "hv-02"})
    legacy_vmi = vmi_object(legacy, "hv-02", "Skylake-Server-IBRS")
    # batch-1: stopped, named model Cascadelake-Server.
    batch = vm_object("default", "batch-1", model="Cascadelake-Server", running=False)
    objects += [web, web_vmi, launcher_pod(web_vmi), db, db_vmi, launcher_pod(db_vmi, sticky, "fghij"),
                app, app_vmi, launcher_pod(app_vmi), legacy, legacy_vmi, launcher_pod(legacy_vmi), batch]
    objects += failed_migration()
    return objects


def failed_migration():
    vmim = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "db-1-drain-hv01", "namespace": "default", "uid": "uid-vmim-db-1-drain",
                         "creationTimestamp": "2026-11-25T08:30:00Z", "labels": {"kubevirt.io/vmi-name": "db-1"}},
            "spec": {"vmiName": "db-1"},
            "status": {"phase": "Failed", "phaseTransitionTimestamps": [
                {"phase": "Scheduling", "phaseTransitionTimestamp": "2026-11-25T08:30:01Z"},
                {"phase": "Failed", "phaseTransitionTimestamp": "2026-11-25T08:35:02Z"}]}}
    events = [
        ("db-1", "VirtualMachineInstance", "NoSuitableNodesForHostModelMigration",
         "Migration cannot proceed since no node is suitable to run the required CPU model / required features: "
         "map[cpu-model-migration.node.kubevirt.io/Cascadelake-Server:true ...]", "2026-11-25T08:30:05Z"),
        ("db-1-drain-hv01", "VirtualMachineInstanceMigration", "migrationTargetPodUnschedulable",
         "Migration target pod for VMI [default/db-1] is currently unschedulable.", "2026-11-25T08:30:06Z"),
        ("db-1-drain-hv01", "VirtualMachineInstanceMigration", "FailedMigration",
         "Migration target pod was removed during active migration.", "2026-11-25T08:35:02Z"),
    ]
    out = [vmim]
    for i, (obj, kind, reason, message, ts) in enumerate(events):
        out.append({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "%s.%d" % (obj, i), "namespace": "default", "uid": "uid-ev-%d" % i,
                                 "creationTimestamp": ts},
                    "involvedObject": {"kind": kind, "name": obj, "namespace": "default", "apiVersion": "kubevirt.io/v1"},
                    "reason": reason, "message": message, "type": "Warning", "count": 1, "lastTimestamp": ts,
                    "firstTimestamp": ts, "source": {"component": "virtualmachine-controller"}})
    return out


FILES = (("nodes.yaml", ("Node",)), ("namespaces.yaml", ("Namespace",)), ("kubevirt.yaml", ("KubeVirt", "ManagedChart")),
         ("vms.yaml", ("VirtualMachine",)), ("vmis.yaml", ("VirtualMachineInstance",)), ("pods.yaml", ("Pod",)),
         ("migrations.yaml", ("VirtualMachineInstanceMigration", "Event")))


def dump(docs):
    return yaml.safe_dump_all(docs, default_flow_style=False, sort_keys=False, width=120)


def write_folder(objects):
    os.makedirs(OUT_DIR, exist_ok=True)
    for filename, kinds in FILES:
        with open(os.path.join(OUT_DIR, filename), "w", encoding="utf-8") as fh:
            fh.write(dump([o for o in objects if o["kind"] in kinds]))


def _munge(value):
    """support-bundle-kit writes every empty string as the string "null"."""
    if value == "":
        return "null"
    if isinstance(value, dict):
        return {k: _munge(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_munge(v) for v in value]
    return value


PLURALS = {"Node": "nodes", "Namespace": "namespaces", "KubeVirt": "kubevirts", "ManagedChart": "managedcharts",
           "VirtualMachine": "virtualmachines", "VirtualMachineInstance": "virtualmachineinstances", "Pod": "pods",
           "VirtualMachineInstanceMigration": "virtualmachineinstancemigrations", "Event": "events"}


def write_bundle(objects):
    groups = {}
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        scope = "namespaced/%s" % ns if ns else "cluster"
        path = "%s/yamls/%s/%s/%s.yaml" % (BUNDLE_TOP, scope, obj["apiVersion"], PLURALS[obj["kind"]])
        groups.setdefault(path, []).append(_munge(obj))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        meta = {"bundlename": BUNDLE_TOP, "bundleversion": "0.1.0", "kubernetesversion": "v1.33.5+rke2r1",
                "bundlecreatedat": "2026-11-25T09:00:00Z"}
        entries = [(BUNDLE_TOP + "/metadata.yaml", yaml.safe_dump(meta))]
        entries += [(p, yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=True))
                    for p, items in sorted(groups.items())]
        for path, text in entries:
            info = zipfile.ZipInfo(path, date_time=(2026, 11, 25, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    with open(BUNDLE, "wb") as fh:
        fh.write(buf.getvalue())


ENV_FIXTURES = "CPUMODEL_FIXTURES"


def fixtures_location(argv, env):
    chosen = argv[1] if len(argv) > 1 else env.get(ENV_FIXTURES) or os.path.join(ROOT, "..", "shared", "fixtures")
    if not os.path.isfile(os.path.join(chosen, FIXTURE)):
        raise SystemExit("error: node-label capture %s not found in %s: pass FIXTURES_DIR or set %s"
                         % (FIXTURE, os.path.normpath(chosen), ENV_FIXTURES))
    return chosen


def main(argv, env=os.environ):
    fixtures = fixtures_location(argv, env)
    objects = build(fixtures)
    write_folder(objects)
    write_bundle(objects)
    print("wrote %s and %s (%d objects)" % (OUT_DIR, BUNDLE, len(objects)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
