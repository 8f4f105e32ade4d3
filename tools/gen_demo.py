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
import io
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import yaml  # noqa: E402

from testkit import kubevirt as kv  # noqa: E402

FIXTURE = "node-labels__kubevirt-kubevirt__cpu_plugin_test__skylake-client-ibrs.yaml"
OUT_DIR = os.path.join(ROOT, "examples", "demo-cluster")
BUNDLE = os.path.join(ROOT, "examples", "supportbundle_demo.zip")
BUNDLE_TOP = "supportbundle_5a1c0de0-demo_2026-11-25T09-00-00Z"
CREATED = kv.CREATED
MACHINE_TYPES = ("q35", "pc", "pc-q35-8.2", "pc-q35-9.2", "pc-i440fx-8.2")
KUBEVIRT_VERSION = "v1.8.4"
# Hardware fixes that Cascade Lake and later report in IA32_ARCH_CAPABILITIES and Skylake-SP does not.
NOT_ON_SKYLAKE = frozenset({"mds-no", "rdctl-no", "ibrs-all", "taa-no"})
HARVESTER_NODE_LABELS = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                         "harvesterhci.io/managed": "true", "node-role.kubernetes.io/control-plane": "true",
                         "kubevirt.io/cpumanager": "false", "cpumanager": "false", "kubevirt.io/ksm-enabled": "false"}
CORDON_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2026-11-24T17:00:00Z"}

# name, host model, models whose features the host CPU has, TSC Hz, scalable, cordoned
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


def demo_nodes(extras):
    objects = []
    for name, host_model, models, tsc, scalable, cordoned in NODES:
        own_extras = extras - NOT_ON_SKYLAKE if host_model.startswith("Skylake") else extras
        cpu = kv.cpu_view(host_model, kv.host_features(models, own_extras), machine_types=MACHINE_TYPES,
                          hyperv=kv.HYPERV, tsc=tsc, scalable=scalable)
        objects.append(kv.node(name, kv.node_labels(name, cpu, HARVESTER_NODE_LABELS), unschedulable=cordoned,
                               taints=[CORDON_TAINT] if cordoned else None))
    witness = {"beta.kubernetes.io/arch": "amd64", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "hv-witness",
               "kubernetes.io/os": "linux", "node-role.harvesterhci.io/witness": "true",
               "node-role.kubernetes.io/etcd": "true"}
    objects.append(kv.node("hv-witness", witness))
    return objects


def harvester_objects():
    kubevirt = kv.kubevirt(KUBEVIRT_VERSION, namespace="harvester-system", configuration={
        "developerConfiguration": {"featureGates": ["CPUManager", "HostDevices"]}, "vmRolloutStrategy": "LiveUpdate"})
    kubevirt["metadata"]["annotations"] = {"meta.helm.sh/release-name": "harvester"}
    kubevirt["spec"]["workloadUpdateStrategy"] = {"workloadUpdateMethods": ["LiveMigrate"]}
    chart = {"apiVersion": "management.cattle.io/v3", "kind": "ManagedChart",
             "metadata": {"name": "harvester", "namespace": "fleet-local", "uid": "uid-mc-harvester",
                          "creationTimestamp": CREATED},
             "spec": {"chart": "harvester", "releaseName": "harvester", "defaultNamespace": "harvester-system",
                      "version": "1.9.0", "values": {"kubevirt": {"spec": {"monitorAccount": "rancher-monitoring-operator",
                                                                              "monitorNamespace": "cattle-monitoring-system"}}}}}
    # A support bundle has a folder per collected namespace; kube-system's holds at least this.
    coredns = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rke2-coredns-rke2-coredns",
                                                                    "namespace": "kube-system", "uid": "uid-cm-dns",
                                                                    "creationTimestamp": CREATED},
               "data": {"Corefile": ".:53 {\n    forward . /etc/resolv.conf\n}\n"}}
    return [kv.namespace(ns) for ns in ("default", "prod", "harvester-system", "fleet-local", "kube-system")] + \
        [kubevirt, chart, coredns]


def build(fixtures_dir):
    objects = demo_nodes(fixture_extras(fixtures_dir))
    hv02 = next(o for o in objects if o["metadata"]["name"] == "hv-02")["metadata"]["labels"]
    objects += harvester_objects()
    # web-1: host-model, booted on hv-03 (Sapphire Rapids), never migrated.
    web = kv.vm("web-1")
    web_vmi = kv.vmi_of(web, "hv-03")
    # db-1: host-model, booted on hv-02, migrated to hv-01: the selector stuck.
    db = kv.vm("db-1")
    db_vmi = kv.vmi_of(db, "hv-01")
    sticky = {"cpu-model-migration.node.kubevirt.io/Cascadelake-Server": "true"}
    sticky.update({k.replace("host-model-required-features.", "cpu-feature."): "true"
                   for k in hv02 if k.startswith("host-model-required-features.")})
    sticky["cpu-vendor.node.kubevirt.io/Intel"] = "true"
    db_vmi["status"]["migrationState"] = {"sourceNode": "hv-02", "targetNode": "hv-01", "completed": True,
                                          "migrationUid": "uid-vmim-db-1-move"}
    # app-1: named model, runs anywhere that model is usable.
    app = kv.vm("app-1", model="Skylake-Server-IBRS", ns="prod")
    app_vmi = kv.vmi_of(app, "hv-04")
    # legacy-1: a leftover hostname pin from an old Harvester Migrate action; shut down in maintenance mode.
    legacy = kv.vm("legacy-1", model="Skylake-Server-IBRS", node_selector={"kubernetes.io/hostname": "hv-02"},
                   labels={"harvesterhci.io/maintain-mode-strategy": "ShutdownAndRestartAfterDisable"})
    legacy_vmi = kv.vmi_of(legacy, "hv-02")
    # batch-1: stopped, named model Cascadelake-Server.
    batch = kv.vm("batch-1", model="Cascadelake-Server", running=False)
    objects += [web, web_vmi, kv.launcher(web_vmi), db, db_vmi, kv.launcher(db_vmi, sticky, suffix="fghij"),
                app, app_vmi, kv.launcher(app_vmi), legacy, legacy_vmi, kv.launcher(legacy_vmi), batch]
    return objects + failed_migration()


def failed_migration():
    vmim = kv.migration("db-1-drain-hv01", "db-1", "Failed", transitions=(
        ("Scheduling", "2026-11-25T08:30:01Z"), ("Failed", "2026-11-25T08:35:02Z")))
    events = [
        ("db-1", "VirtualMachineInstance", "NoSuitableNodesForHostModelMigration",
         "Migration cannot proceed since no node is suitable to run the required CPU model / required features: "
         "map[cpu-model-migration.node.kubevirt.io/Cascadelake-Server:true ...]", "2026-11-25T08:30:05Z"),
        ("db-1-drain-hv01", "VirtualMachineInstanceMigration", "migrationTargetPodUnschedulable",
         "Migration target pod for VMI [default/db-1] is currently unschedulable.", "2026-11-25T08:30:06Z"),
        ("db-1-drain-hv01", "VirtualMachineInstanceMigration", "FailedMigration",
         "Migration target pod was removed during active migration.", "2026-11-25T08:35:02Z"),
    ]
    return [vmim] + [kv.event("%s.%d" % (obj, i), obj, kind, reason, message, ts)
                     for i, (obj, kind, reason, message, ts) in enumerate(events)]


FILES = (("nodes.yaml", ("Node",)), ("namespaces.yaml", ("Namespace", "ConfigMap")), ("kubevirt.yaml", ("KubeVirt", "ManagedChart")),
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


PLURALS = {"Node": "nodes", "Namespace": "namespaces", "ConfigMap": "configmaps", "KubeVirt": "kubevirts", "ManagedChart": "managedcharts",
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
