"""OpenShift Virtualization: HCO owns the KubeVirt CR's CPU settings (docs/kubevirt-rules.md §7).

A fake API server serves the HyperConverged CRD at one version (v1 or v1beta1, whose fields differ);
snapshots hold the same objects offline.
"""
import json

import pytest
import yaml

from conftest import run_cli
from testkit import kubevirt as kv
from testkit.fakekube import FakeKube, serve
from testkit.harness import write_kubeconfig
from conftest import base_env

CASCADE = ["Cascadelake-Server", "Skylake-Server-IBRS", "Broadwell-IBRS"]
SKYLAKE = ["Skylake-Server-IBRS", "Broadwell-IBRS"]
V1_MODEL = ["spec", "virtualization", "virtualMachineOptions", "defaultCPUModel"]
V1BETA1_MODEL = ["spec", "defaultCPUModel"]


def openshift_objects(hco_version="v1beta1", hco_model="Skylake-Server-IBRS", kubevirt_model="Skylake-Server-IBRS",
                      hco_obsolete=(), with_hco=True):
    objects = [kv.cpu_node("worker-0", "Cascadelake-Server", CASCADE),
               kv.cpu_node("worker-1", "Skylake-Server-IBRS", SKYLAKE),
               kv.hco_kubevirt(kubevirt_model, obsolete={m: True for m in ("486", "qemu64")}, hco_version=hco_version),
               kv.vm("web", running=False, ns="default")]
    if with_hco:
        objects.append(kv.hyperconverged(hco_model, hco_obsolete, version=hco_version))
    return objects


@pytest.fixture
def cluster(tmp_path):
    """Start a fake OpenShift cluster: cluster(version=..., **objects options) -> (fake, env)."""
    servers = []

    def start(hco_version="v1beta1", **kw):
        fake = FakeKube(openshift_objects(hco_version, **kw), versions={"hco.kubevirt.io": hco_version})
        server, url = serve(fake)
        servers.append(server)
        return fake, base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / ("kc-" + hco_version)), url))

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get_path(obj, path):
    for key in path:
        obj = (obj or {}).get(key)
    return obj


@pytest.mark.parametrize("version,path", [("v1", V1_MODEL), ("v1beta1", V1BETA1_MODEL)])
def test_set_cluster_on_openshift_patches_the_served_hyperconverged_field(cluster, version, path):
    fake, env = cluster(version)
    before = fake.get_object("hco.kubevirt.io", "hyperconvergeds", "openshift-cnv", "kubevirt-hyperconverged")
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "-o", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OpenShift Virtualization detected" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["platform"] == "openshift"
    assert doc["writeTarget"] == {"apiVersion": "hco.kubevirt.io/" + version, "kind": "HyperConverged",
                                  "namespace": "openshift-cnv", "name": "kubevirt-hyperconverged",
                                  "fieldPath": ".".join(path)}
    patches = [r for r in fake.requests if r["method"] == "PATCH"]
    assert [p["path"] for p in patches] == [
        "/apis/hco.kubevirt.io/%s/namespaces/openshift-cnv/hyperconvergeds/kubevirt-hyperconverged" % version] * 2
    assert [p["query"].get("dryRun") for p in patches] == ["All", None]
    body = json.loads(patches[-1]["body"])
    assert body["metadata"] == {"resourceVersion": before["metadata"]["resourceVersion"]}  # the guard
    assert get_path(body, path) == "Broadwell-IBRS" and len(body) == 2  # one field and the guard, nothing else
    after = fake.get_object("hco.kubevirt.io", "hyperconvergeds", "openshift-cnv", "kubevirt-hyperconverged")
    assert get_path(after, path) == "Broadwell-IBRS"
    kubevirt = fake.get_object("kubevirt.io", "kubevirts", "openshift-cnv", "kubevirt-kubevirt-hyperconverged")
    assert kubevirt["spec"]["configuration"]["cpuModel"] == "Skylake-Server-IBRS"  # HCO's job, not ours


def test_set_cluster_on_openshift_dry_run_writes_nothing(cluster):
    fake, env = cluster("v1")
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "--dry-run=client"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "hyperconverged.hco.kubevirt.io/kubevirt-hyperconverged default cpu model set to Broadwell-IBRS (dry run)" \
        in proc.stdout
    assert "spec.virtualization.virtualMachineOptions.defaultCPUModel: Skylake-Server-IBRS -> Broadwell-IBRS" \
        in proc.stdout
    assert not [r for r in fake.requests if r["method"] == "PATCH"]


def test_set_cluster_retries_a_concurrent_edit_of_the_hyperconverged_cr(cluster):
    fake, env = cluster("v1beta1")
    edits = []

    def other_writer(obj):
        if not edits:  # HCO's own status update lands between our read and our write, once
            edits.append(1)
            fake.add(dict(obj, metadata=dict(obj["metadata"], labels={"touched": "yes"})))

    fake.on_patch = other_writer
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS"], env=env)
    assert proc.returncode == 0, proc.stderr
    after = fake.get_object("hco.kubevirt.io", "hyperconvergeds", "openshift-cnv", "kubevirt-hyperconverged")
    assert after["spec"]["defaultCPUModel"] == "Broadwell-IBRS" and after["metadata"]["labels"] == {"touched": "yes"}


def test_direct_kubevirt_write_is_refused_when_hco_cannot_be_read(cluster):
    fake, env = cluster("v1beta1", with_hco=False)
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS"], env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the KubeVirt CR openshift-cnv/kubevirt-kubevirt-hyperconverged is managed "
                                  "by HCO, which sets direct edits back")
    assert "--target kubevirt" in proc.stderr and "Traceback" not in proc.stderr
    assert not [r for r in fake.requests if r["method"] == "PATCH"]


def test_target_kubevirt_writes_the_kubevirt_cr_with_a_warning(cluster):
    fake, env = cluster("v1")
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "--target", "kubevirt", "-o", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "HCO sets it back" in proc.stderr
    assert json.loads(proc.stdout)["writeTarget"]["kind"] == "KubeVirt"
    kubevirt = fake.get_object("kubevirt.io", "kubevirts", "openshift-cnv", "kubevirt-kubevirt-hyperconverged")
    assert kubevirt["spec"]["configuration"]["cpuModel"] == "Broadwell-IBRS"


def test_target_hco_outside_openshift_is_a_clear_error(live_env):
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "--target", "hco"], env=live_env)
    assert proc.returncode == 1
    assert proc.stderr == ("error: --target hco: no HyperConverged CR manages KubeVirt here "
                           "(not OpenShift Virtualization)\n")


def test_common_reads_the_default_and_obsolete_models_from_the_hyperconverged_cr(cluster):
    # HCO has not reconciled yet: the KubeVirt CR still says Skylake, its owner already says Broadwell and
    # adds Skylake-Server-IBRS to the obsolete models.
    fake, env = cluster("v1", hco_model="Broadwell-IBRS", hco_obsolete=["Skylake-Server-IBRS"])
    proc = run_cli(["common", "-o", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["platform"] == "openshift"
    assert doc["clusterDefault"]["model"] == "Broadwell-IBRS"
    assert doc["clusterDefault"]["owner"] == {"apiVersion": "hco.kubevirt.io/v1", "kind": "HyperConverged",
                                              "namespace": "openshift-cnv", "name": "kubevirt-hyperconverged",
                                              "fieldPath": ".".join(V1_MODEL)}
    assert "HCO sets the KubeVirt CR back" in doc["clusterDefault"]["drift"]
    assert "Skylake-Server-IBRS" not in doc["commonModels"] and "Broadwell-IBRS" in doc["commonModels"]
    table = run_cli(["common"], env=env).stdout
    assert "Platform:" in table and "OpenShift Virtualization" in table
    assert "Broadwell-IBRS (HyperConverged kubevirt-hyperconverged)" in table
    assert "Note: the KubeVirt CR" in table and max(len(line) for line in table.splitlines()) <= 100


def test_common_falls_back_to_the_kubevirt_cr_with_a_warning_when_hco_is_unreadable(cluster):
    fake, env = cluster("v1beta1")
    fake.fault(method="GET", path=".*/hyperconvergeds/.*", status=403, reason="Forbidden")
    proc = run_cli(["common", "-o", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "could not read the HyperConverged CR" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["platform"] == "openshift" and doc["clusterDefault"]["model"] == "Skylake-Server-IBRS"
    assert doc["clusterDefault"]["owner"]["kind"] == "KubeVirt"


@pytest.mark.parametrize("version,path", [("v1", V1_MODEL), ("v1beta1", V1BETA1_MODEL)])
def test_offline_snapshot_of_openshift(tmp_path, version, path):
    snap = tmp_path / "snap.yaml"
    snap.write_text(yaml.safe_dump_all(openshift_objects(version, hco_model="Broadwell-IBRS")))
    doc = json.loads(run_cli(["common", "-f", str(snap), "-o", "json"], offline=True).stdout)
    assert doc["platform"] == "openshift" and doc["clusterDefault"]["owner"]["fieldPath"] == ".".join(path)
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "-f", str(snap), "--dry-run=client", "-o", "json"],
                   offline=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["writeTarget"]["fieldPath"] == ".".join(path) and get_path(doc, path) == "Broadwell-IBRS"


def test_platform_is_reported_for_harvester_and_plain_kubevirt(tmp_path, live_env):
    assert json.loads(run_cli(["common", "-o", "json"], env=live_env).stdout)["platform"] == "harvester"
    snap = tmp_path / "snap.yaml"
    snap.write_text(yaml.safe_dump_all([kv.cpu_node("n", "Broadwell-IBRS", ["Broadwell-IBRS"]), kv.kubevirt()]))
    assert json.loads(run_cli(["common", "-f", str(snap), "-o", "json"], offline=True).stdout)["platform"] == "kubevirt"


def test_write_target_decides_where_the_default_is_owned():
    """The pure decision behind set --cluster, for every platform and --target."""
    from cpumodel import objects
    from cpumodel.core.platform import ClusterConfig, owned_config, write_target
    from cpumodel.errors import SourceError, UsageError

    plain = objects.parse_kubevirt(kv.kubevirt())
    harvester = objects.parse_kubevirt(kv.kubevirt(namespace="harvester-system"))
    owned = objects.parse_kubevirt(kv.hco_kubevirt())
    openshift = owned_config(owned, objects.parse_hyperconverged(kv.hyperconverged(version="v1")))
    unreadable = owned_config(owned, None, "forbidden")
    asked = []

    def chart(present):
        def probe():
            asked.append(present)
            return present
        return probe

    def where(config, target, present=False):
        try:
            return write_target(config, target, chart(present)).kind
        except (UsageError, SourceError) as exc:
            return type(exc).__name__

    assert where(openshift, None) == "HyperConverged" and not asked  # no ManagedChart read on OpenShift
    assert where(openshift, "kubevirt") == "KubeVirt"
    assert where(unreadable, None) == "SourceError" and where(unreadable, "kubevirt") == "KubeVirt"
    assert where(ClusterConfig("harvester", harvester), None, present=True) == "ManagedChart"
    assert where(ClusterConfig("harvester", harvester), "kubevirt", present=True) == "KubeVirt"
    assert where(ClusterConfig("kubevirt", plain), None) == "KubeVirt"
    assert where(ClusterConfig("kubevirt", plain), "managedchart") == "UsageError"
    assert where(ClusterConfig("kubevirt", plain), "hco") == "UsageError"
    assert where(ClusterConfig(None, None), None) == "UsageError"


def test_a_hyperconverged_version_we_do_not_know_falls_back_to_the_kubevirt_cr(tmp_path):
    objects = openshift_objects("v1beta1", hco_model="Broadwell-IBRS")
    objects[-1]["apiVersion"] = "hco.kubevirt.io/v2"
    snap = tmp_path / "snap.yaml"
    snap.write_text(yaml.safe_dump_all(objects))
    proc = run_cli(["common", "-f", str(snap), "-o", "json"], offline=True)
    assert proc.returncode == 0, proc.stderr
    assert "could not read the HyperConverged CR" in proc.stderr and "hco.kubevirt.io/v2" in proc.stderr
    assert json.loads(proc.stdout)["clusterDefault"]["model"] == "Skylake-Server-IBRS"  # the KubeVirt CR's
    proc = run_cli(["set", "--cluster", "Broadwell-IBRS", "-f", str(snap), "--dry-run=client"], offline=True)
    assert proc.returncode == 1 and proc.stderr.startswith("error: the KubeVirt CR") and proc.stderr.count("\n") == 1
