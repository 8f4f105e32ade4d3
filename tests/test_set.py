"""set: merge patches of one field, validated first, safe under concurrent edits (fake API server + kubectl)."""
import copy
import json
import re

import yaml

from conftest import DEMO, run_cli

MODEL_PATH = ("spec", "template", "spec", "domain", "cpu", "model")


def patches(fake):
    return [r for r in fake.requests if r["method"] == "PATCH"]


def without(obj, path):
    """The object minus one field (and the maps left empty by its removal) and its resourceVersion."""
    obj = copy.deepcopy(obj)
    parents = [obj]
    for key in path[:-1]:
        parents.append(parents[-1].get(key, {}))
    parents[-1].pop(path[-1], None)
    for parent, key in reversed(list(zip(parents[:-1], path[:-1]))):
        if parent.get(key) == {}:
            del parent[key]
    obj["metadata"].pop("resourceVersion")
    return obj


def test_set_vm_patches_only_the_model(live_env, fake):
    before = fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1")
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    assert "virtualmachine.kubevirt.io/web-1 cpu model set to Skylake-Server-IBRS" in proc.stdout
    after = fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1")
    assert after["spec"]["template"]["spec"]["domain"]["cpu"]["model"] == "Skylake-Server-IBRS"
    assert without(after, MODEL_PATH) == without(before, MODEL_PATH)  # nothing else changed
    sent = patches(fake)
    assert [p["query"].get("dryRun") for p in sent] == ["All", None]  # validated by the server first
    assert all(p["headers"]["content-type"] == "application/merge-patch+json" for p in sent)
    assert json.loads(sent[-1]["body"]) == {
        "spec": {"template": {"spec": {"domain": {"cpu": {"model": "Skylake-Server-IBRS"}}}}},
        "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]}}
    assert "web-1" in proc.stderr and "next restart" in proc.stderr  # running: applies at restart


def test_clear_removes_the_field(live_env, fake):
    proc = run_cli(["set", "vm/app-1", "--clear", "-n", "prod"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    cpu = fake.get_object("kubevirt.io", "virtualmachines", "prod", "app-1")["spec"]["template"]["spec"]["domain"]["cpu"]
    assert "model" not in cpu and cpu["cores"] == 2
    assert json.loads(patches(fake)[-1]["body"])["spec"]["template"]["spec"]["domain"]["cpu"] == {"model": None}


def test_server_dry_run_sends_dryrun_all_and_changes_nothing(live_env, fake):
    before = fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1")
    proc = run_cli(["set", "web-1", "Skylake-Server-IBRS", "--dry-run=server"], env=live_env)
    assert proc.returncode == 0 and "(server dry run)" in proc.stdout
    assert [p["query"].get("dryRun") for p in patches(fake)] == ["All"]
    assert fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1") == before


def test_client_dry_run_sends_no_write_and_prints_the_object(live_env, fake):
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "--dry-run=client"], env=live_env)
    assert proc.returncode == 0 and "(dry run)" in proc.stdout
    assert "spec.template.spec.domain.cpu.model: <unset> -> Skylake-Server-IBRS" in proc.stdout
    yml = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "--dry-run", "-o", "yaml"], env=live_env)
    obj = yaml.safe_load(yml.stdout)
    assert obj["kind"] == "VirtualMachine" and obj["spec"]["template"]["spec"]["domain"]["cpu"]["model"] == "Skylake-Server-IBRS"
    assert patches(fake) == []


def test_conflict_is_retried_and_keeps_the_other_writer(live_env, fake):
    fake.on_patch = lambda obj: obj["metadata"].setdefault("labels", {}).update({"touched": "yes"})
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    after = fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1")
    assert after["metadata"]["labels"]["touched"] == "yes"
    assert after["spec"]["template"]["spec"]["domain"]["cpu"]["model"] == "Skylake-Server-IBRS"
    assert len(patches(fake)) == 3  # dry run conflicted, dry run again, real write


def test_endless_conflicts_end_in_a_clear_error(live_env, fake):
    fake.fault("PATCH", "virtualmachines/web-1", status=409, reason="Conflict", message="the object has been modified",
               times=100)
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 1 and "kept changing while we wrote it" in proc.stderr
    assert len(patches(fake)) == 4


def test_403_names_the_denied_verb_and_nothing_is_half_written(live_env, fake):
    fake.fault("PATCH", "virtualmachines/web-1$", status=403, reason="Forbidden", times=10,
               message='virtualmachines.kubevirt.io "web-1" is forbidden: User "ops" cannot patch resource')
    proc = run_cli(["set", "db-1", "web-1", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 1
    assert 'forbidden: RBAC does not allow you to patch virtualmachines.kubevirt.io in namespace "default"' in proc.stderr
    assert all(p["query"].get("dryRun") == "All" for p in patches(fake))  # db-1 was not written either
    db = fake.get_object("kubevirt.io", "virtualmachines", "default", "db-1")
    assert "model" not in db["spec"]["template"]["spec"]["domain"]["cpu"]


def test_validation_before_any_write(live_env, fake):
    unknown = run_cli(["set", "vm/web-1", "Cascadelake"], env=live_env)
    assert unknown.returncode == 1 and "did you mean Cascadelake-Server" in unknown.stderr
    assert patches(fake) == []
    partial = run_cli(["set", "vm/web-1", "Cascadelake-Server"], env=live_env)
    assert partial.returncode == 0 and "not usable on hv-04" in partial.stderr
    forced = run_cli(["set", "vm/db-1", "Nonexistent-Model", "--force"], env=live_env)
    assert forced.returncode == 0 and "--force" in forced.stderr
    hm = run_cli(["set", "vm/db-1", "host-model", "--dry-run=client"], env=live_env)
    assert hm.returncode == 0 and "different CPUs" in hm.stderr


def test_selecting_vms(live_env, fake):
    proc = run_cli(["set", "--all", "Skylake-Server-IBRS", "--dry-run=client"], env=live_env)
    assert proc.returncode == 0
    assert {l.split()[0] for l in proc.stdout.splitlines() if l.startswith("virtualmachine")} == {
        "virtualmachine.kubevirt.io/%s" % n for n in ("batch-1", "db-1", "legacy-1", "web-1")}
    assert "virtualmachine.kubevirt.io/legacy-1 unchanged" in proc.stdout  # it already has that model
    proc = run_cli(["set", "-l", "app=web", "Skylake-Server-IBRS", "--dry-run=client"], env=live_env)
    assert "web-1" in proc.stdout and "db-1" not in proc.stdout
    for args, text in ((["set", "Skylake-Server-IBRS"], "name the VMs"),
                       (["set", "vm/web-1"], "requires|name the VMs"),
                       (["set", "vm/ghost", "Skylake-Server-IBRS"], '"ghost" not found'),
                       (["set", "vm/web-1", "M", "--dry-run=maybe"], "invalid --dry-run"),
                       (["set", "vmi/web-1", "M"], "set works on VirtualMachines")):
        p = run_cli(args, env=live_env)
        assert p.returncode == 1 and p.stderr.startswith("error: "), (args, p.stderr)
        assert re.search(text, p.stderr), (args, p.stderr)


def test_restart_uses_the_kubevirt_subresource(live_env, fake):
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "--restart"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    puts = [r for r in fake.requests if r["method"] == "PUT"]
    assert [p["path"] for p in puts] == ["/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/web-1/restart"]


def test_cluster_default_goes_to_the_harvester_managedchart(live_env, fake):
    kv_before = fake.get_object("kubevirt.io", "kubevirts", "harvester-system", "kubevirt")
    mc_before = fake.get_object("management.cattle.io", "managedcharts", "fleet-local", "harvester")
    proc = run_cli(["set", "--cluster", "Skylake-Server-IBRS"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    assert "ManagedChart fleet-local/harvester" in proc.stderr
    mc = fake.get_object("management.cattle.io", "managedcharts", "fleet-local", "harvester")
    path = ("spec", "values", "kubevirt", "spec", "configuration", "cpuModel")
    assert mc["spec"]["values"]["kubevirt"]["spec"]["configuration"]["cpuModel"] == "Skylake-Server-IBRS"
    assert mc["spec"]["values"]["kubevirt"]["spec"]["monitorAccount"] == "rancher-monitoring-operator"
    assert without(mc, path) == without(mc_before, path)
    assert fake.get_object("kubevirt.io", "kubevirts", "harvester-system", "kubevirt") == kv_before
    assert "default/web-1" in proc.stderr and "adopt" in proc.stderr and "prod/app-1 (Skylake-Server-IBRS)" in proc.stderr


def test_cluster_default_on_the_kubevirt_cr(live_env, fake):
    proc = run_cli(["set", "--cluster", "Skylake-Server-IBRS", "--target", "kubevirt"], env=live_env)
    assert proc.returncode == 0, proc.stderr
    assert "kubevirt.kubevirt.io/kubevirt cluster cpu model set to Skylake-Server-IBRS" in proc.stdout
    kv = fake.get_object("kubevirt.io", "kubevirts", "harvester-system", "kubevirt")
    assert kv["spec"]["configuration"]["cpuModel"] == "Skylake-Server-IBRS"
    assert kv["spec"]["configuration"]["vmRolloutStrategy"] == "LiveUpdate"
    refused = run_cli(["set", "--cluster", "Cascadelake-Server"], env=live_env)
    assert refused.returncode == 1 and "hv-04" in refused.stderr and "--force" in refused.stderr
    cleared = run_cli(["set", "--cluster", "--clear", "--target", "kubevirt"], env=live_env)
    assert cleared.returncode == 0
    assert "cpuModel" not in fake.get_object("kubevirt.io", "kubevirts", "harvester-system", "kubevirt")["spec"]["configuration"]


def test_offline_allows_only_client_dry_run():
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "-f", DEMO], offline=True)
    assert proc.returncode == 1 and "--dry-run=client" in proc.stderr
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "-f", DEMO, "--dry-run=client"], offline=True)
    assert proc.returncode == 0 and "(dry run)" in proc.stdout
    proc = run_cli(["set", "--cluster", "Skylake-Server-IBRS", "-f", DEMO, "--dry-run=server"], offline=True)
    assert proc.returncode == 1


def test_through_real_kubectl(kubectl, fake):
    proc = kubectl(["cpumodel", "set", "vm/web-1", "Skylake-Server-IBRS"])
    assert proc.returncode == 0, proc.stderr
    got = kubectl(["get", "vm", "web-1", "-o", "jsonpath={.spec.template.spec.domain.cpu.model}"])
    assert got.returncode == 0, got.stderr
    assert got.stdout == "Skylake-Server-IBRS"
