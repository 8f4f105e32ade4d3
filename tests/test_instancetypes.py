"""Instancetypes and preferences give a VM its CPU the way KubeVirt applies them (pkg/instancetype/apply;
docs/kubevirt-rules.md §2.2): the instancetype's model when the VM sets none, the preference's preferred
CPU features where the VM does not name them, and a conflict when both VM and instancetype set a model."""
import json

import pytest

from conftest import run_cli, run_json
from testkit import kubevirt as kv

GROUP = "instancetype.kubevirt.io/v1beta1"


def cluster_instancetype(name, model=None):
    cpu = {"guest": 2}
    if model:
        cpu["model"] = model
    return {"apiVersion": GROUP, "kind": "VirtualMachineClusterInstancetype", "metadata": {"name": name},
            "spec": {"cpu": cpu, "memory": {"guest": "4Gi"}}}


def preference(name, features, ns="default"):
    return {"apiVersion": GROUP, "kind": "VirtualMachinePreference", "metadata": {"name": name, "namespace": ns},
            "spec": {"cpu": {"preferredCPUFeatures": features}}}


@pytest.fixture
def sized_vm(fake):
    """A stopped VM whose cluster instancetype sets Cascadelake-Server (usable on hv-01..hv-03, not hv-04)."""
    fake.add(cluster_instancetype("u1.large", "Cascadelake-Server"))
    vm = kv.vm("sized", running=False)
    vm["spec"]["instancetype"] = {"name": "u1.large"}
    fake.add(vm)
    return vm


def test_why_not_starts_a_stopped_vm_with_its_instancetypes_model(live_env, sized_vm):
    doc = run_json(["why-not", "vm/sized", "hv-04"], env=live_env)
    keys = [r["key"] for r in doc["reasons"]]
    assert "cpu-model.node.kubevirt.io/Cascadelake-Server" in keys
    # The fix goes to the instancetype: a model of the VM's own would be rejected by KubeVirt.
    assert doc["suggestion"]["command"].startswith(
        "kubectl patch virtualmachineclusterinstancetype/u1.large --type merge -p ")
    assert json.loads(doc["suggestion"]["command"].split(" -p ")[1].strip("'")) == {
        "spec": {"cpu": {"model": doc["suggestion"]["model"]}}}
    assert run_json(["why-not", "vm/sized", "hv-01"], env=live_env)["migratable"] is False  # not running
    text = run_cli(["why-not", "vm/sized", "hv-04"], env=live_env).stdout
    assert "comes from VirtualMachineClusterInstancetype/u1.large" in text


def test_preferred_cpu_features_become_selectors_unless_the_vm_names_them(live_env, fake):
    fake.add(preference("needs-avx512", [{"name": "avx512f", "policy": "require"}, {"name": "pdpe1gb"}]))
    vm = kv.vm("pref", running=False, model="Skylake-Server-IBRS",
               domain={"cpu": {"model": "Skylake-Server-IBRS", "features": [{"name": "pdpe1gb", "policy": "optional"}]}})
    vm["spec"]["preference"] = {"kind": "VirtualMachinePreference", "name": "needs-avx512"}
    fake.add(vm)
    doc = run_json(["why-not", "vm/pref"], env=live_env)
    keys = {r["key"] for n in doc["nodes"] for r in n["reasons"]}
    assert "cpu-feature.node.kubevirt.io/avx512f" in keys  # from the preference
    assert "cpu-feature.node.kubevirt.io/pdpe1gb" not in keys  # the VM's own policy (optional) wins


def test_set_refuses_a_model_beside_an_instancetype_that_sets_one(live_env, fake, sized_vm):
    proc = run_cli(["set", "vm/sized", "vm/web-1", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 1
    assert proc.stderr == ("error: vm/sized takes its model from VirtualMachineClusterInstancetype/u1.large "
                           "(Cascadelake-Server), and KubeVirt rejects a VM that also sets one: change the "
                           "instancetype's spec.cpu.model instead; leave it out or use --clear\n")
    assert not [r for r in fake.requests if r["method"] == "PATCH"]  # nothing written, not even web-1
    cleared = run_cli(["set", "vm/sized", "--clear", "--dry-run=client"], env=live_env)
    assert cleared.returncode == 0, cleared.stderr  # --clear is what an instancetype wants


def test_an_instancetype_without_a_model_leaves_the_vm_free(live_env, fake):
    fake.add(cluster_instancetype("u1.small"))
    vm = kv.vm("free", running=False)
    vm["spec"]["instancetype"] = {"name": "u1.small"}
    fake.add(vm)
    proc = run_cli(["set", "vm/free", "Skylake-Server-IBRS", "--dry-run=client"], env=live_env)
    assert proc.returncode == 0, proc.stderr


def test_set_cluster_counts_instancetype_vms_as_keeping_their_model(live_env, sized_vm):
    proc = run_cli(["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client", "-o", "wide"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    keep = next(line for line in proc.stderr.splitlines() if "keep their own model" in line)
    assert "default/sized (Cascadelake-Server from VirtualMachineClusterInstancetype/u1.large)" in keep
    adopt = next(line for line in proc.stderr.splitlines() if "adopt it" in line)
    assert "default/sized" not in adopt


def test_set_refuses_a_named_model_for_an_arm64_vm(live_env, fake):
    fake.add(kv.vm("pi", running=False, architecture="arm64", domain={"machine": {"type": "virt"}}))
    proc = run_cli(["set", "vm/pi", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 1
    assert proc.stderr == ("error: vm/pi is arm64, where KubeVirt accepts only host-passthrough; leave it out or "
                           "use --clear\n")
    assert run_cli(["set", "vm/pi", "host-passthrough", "--dry-run=client"], env=live_env).returncode == 0
    assert not [r for r in fake.requests if r["method"] == "PATCH"]


def test_the_controller_revision_snapshot_outranks_todays_instancetype(live_env, fake, sized_vm):
    """KubeVirt applies the instancetype as it was at first start (a ControllerRevision), not as it is now."""
    fake.add({"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": "sized-u1.large-1", "namespace": "default"}, "revision": 1,
              "data": cluster_instancetype("u1.large", "Skylake-Server-IBRS")})
    vm = fake.get_object("kubevirt.io", "virtualmachines", "default", "sized")
    vm["status"]["instancetypeRef"] = {"kind": "VirtualMachineClusterInstancetype", "name": "u1.large",
                                       "controllerRevisionRef": {"name": "sized-u1.large-1"}}
    fake.add(vm)
    doc = run_json(["why-not", "vm/sized", "hv-04"], env=live_env)
    keys = [r["key"] for r in doc["reasons"]]
    assert "cpu-model.node.kubevirt.io/Cascadelake-Server" not in keys  # today's object says Cascadelake
    audit = {v["vm"]: v for v in run_json(["audit"], env=live_env)["vms"]}
    assert audit["sized"]["cpu"] == {"mode": "named", "model": "Skylake-Server-IBRS", "origin": "instancetype"}
    proc = run_cli(["set", "vm/sized", "Broadwell-IBRS"], env=live_env)
    assert proc.returncode == 1 and "from VirtualMachineClusterInstancetype/u1.large (Skylake-Server-IBRS)" in proc.stderr


def test_the_fix_for_a_pinned_instancetype_says_how_to_take_a_new_snapshot(live_env, fake, sized_vm):
    fake.add({"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": "sized-u1.large-1", "namespace": "default"}, "revision": 1,
              "data": cluster_instancetype("u1.large", "Cascadelake-Server")})
    vm = fake.get_object("kubevirt.io", "virtualmachines", "default", "sized")
    vm["spec"]["instancetype"]["revisionName"] = "sized-u1.large-1"
    fake.add(vm)
    text = run_json(["why-not", "vm/sized", "hv-04"], env=live_env)["suggestion"]
    assert "ControllerRevision sized-u1.large-1" in text["note"] and "remove spec.instancetype.revisionName" in text["note"]
