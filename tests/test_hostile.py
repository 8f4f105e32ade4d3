"""Hostile input and partial failure: bounded reads, all-or-reported writes, checked names, escaped text,
and one clean `error:` line for every malformed file, object, kubeconfig and API reply.

Every hostile file or bundle is made here, by the test; none is shipped.
"""
import json
import os
import shutil
import zipfile

import pytest
import yaml

from conftest import BUNDLE, base_env, run_cli, run_json, run_subprocess
from testkit import kubevirt as kv
from testkit.harness import write_kubeconfig

ALIAS_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"] +
                       ["%s: &%s [%s]" % (chr(ord("a") + i), chr(ord("a") + i), ", ".join(["*%s" % chr(ord("a") + i - 1)] * 10))
                        for i in range(1, 9)]) + "\n"


def one_error(proc):
    assert proc.returncode == 1, (proc.stdout[-500:], proc.stderr)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return proc.stderr


def bundle_folder(tmp_path):
    """The demo bundle, extracted: a folder to plant hostile files in."""
    root = tmp_path / "bundle"
    with zipfile.ZipFile(BUNDLE) as archive:
        archive.extractall(root)
    top = next(root.iterdir())
    return root, top / "yamls" / "cluster" / "v1"


# ---- bounded reading ---------------------------------------------------------------------------------
def test_an_alias_bomb_in_a_bundle_costs_what_its_text_costs(tmp_path):
    root, cluster = bundle_folder(tmp_path)
    bomb = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb", "namespace": "default"}}
    (cluster / "configmaps.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [bomb]})
                                             + "\n# and the payload:\n" )
    with open(cluster / "configmaps.yaml", "a") as fh:
        fh.write("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: payload, namespace: default}\ndata:\n")
        fh.write("".join("  " + line + "\n" for line in ALIAS_BOMB.splitlines()))
    zipped = tmp_path / "bomb.zip"
    shutil.make_archive(str(zipped)[:-4], "zip", root)
    for source in (str(root), str(zipped)):  # a hang here fails the test by its timeout
        proc = run_subprocess(["common", "-f", source, "-o", "json"], offline=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["recommended"] == "Skylake-Server-IBRS"


def test_inputs_are_bounded_and_refusals_name_the_file_and_the_limit(tmp_path):
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        with zipfile.ZipFile(BUNDLE) as demo:
            for name in demo.namelist():
                archive.writestr(name, demo.read(name))
        archive.writestr("bundle/yamls/cluster/v1/padding.yaml", "# " + "0" * (3 << 20) + "\n")
    err = one_error(run_cli(["common", "-f", str(big), "--max-input-size", "2Mi"], offline=True))
    assert "padding.yaml" in err and "--max-input-size 2Mi" in err
    assert run_cli(["common", "-f", str(big), "--max-input-size", "8Mi"], offline=True).returncode == 0
    plain = tmp_path / "plain.yaml"
    plain.write_text("# " + "0" * 4096 + "\n" + yaml.safe_dump(kv.cpu_node("n1", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"])))
    assert "--max-input-size 1Ki" in one_error(run_cli(["common", "-f", str(plain), "--max-input-size", "1Ki"],
                                                       offline=True))
    assert "invalid --max-input-size" in one_error(run_cli(["common", "-f", str(plain), "--max-input-size", "lots"]))


def test_only_regular_files_inside_the_bundle_are_read(tmp_path):
    root, cluster = bundle_folder(tmp_path)
    os.symlink("/dev/zero", cluster / "zero.yaml")
    assert "leads out of" in one_error(run_cli(["common", "-f", str(root)], offline=True))
    os.unlink(cluster / "zero.yaml")
    outside = tmp_path / "secret.yaml"
    outside.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: elsewhere}\n")
    os.symlink(outside, cluster / "escape.yaml")
    assert "leads out of" in one_error(run_cli(["common", "-f", str(root)], offline=True))
    os.unlink(cluster / "escape.yaml")
    os.mkfifo(cluster / "pipe.yaml")  # opening it would wait for a writer for ever
    assert "not a regular file" in one_error(run_subprocess(["common", "-f", str(root)], offline=True, timeout=60))


# ---- all-or-reported writes ------------------------------------------------------------------------------
def vms_env(fake, tmp_path, count=5):
    for i in range(count):
        fake.add(kv.vm("batch-%d" % i, labels={"team": "batch"}))
    return base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), fake.url))


def test_a_failure_mid_way_is_reported_per_vm_with_the_command_to_finish(fake, tmp_path):
    env = vms_env(fake, tmp_path)
    # Every server dry run passes; then the real write of the 3rd VM is forbidden.
    fake.fault("PATCH", "batch-2$", status=403, reason="Forbidden", message="admission denied", query="!dryRun",
               times=5)
    proc = run_cli(["set", "-l", "team=batch", "Skylake-Server-IBRS", "-o", "json"], env=env)
    assert proc.returncode == 1
    err = proc.stderr.splitlines()[-1]  # after the warning that the changed running VMs need a restart
    assert err.startswith("error: ") and proc.stderr.count("error: ") == 1
    assert "batch-2 failed" in err and "Finish with: kubectl cpumodel set vm/batch-2 vm/batch-3 vm/batch-4 " \
                                      "Skylake-Server-IBRS -n default" in err
    doc = json.loads(proc.stdout)
    assert [(r["vm"], r["status"]) for r in doc["results"]] == [
        ("batch-0", "changed"), ("batch-1", "changed"), ("batch-2", "failed"), ("batch-3", "not-tried"),
        ("batch-4", "not-tried")]
    assert doc["results"][0]["from"] is None and doc["results"][0]["to"] == "Skylake-Server-IBRS"
    assert "admission denied" in doc["results"][2]["error"]
    table = run_cli(["set", "-l", "team=batch", "Skylake-Server-IBRS"], env=env)
    assert "batch-0 unchanged" in table.stdout and "batch-2 FAILED" in table.stdout and "batch-3 not tried" in table.stdout


def test_transient_errors_on_a_guarded_patch_are_retried(live_env, fake):
    fake.fault("PATCH", "web-1$", status=429, reason="TooManyRequests", query="!dryRun", headers={"Retry-After": "0"})
    fake.fault("PATCH", "web-1$", status=503, reason="ServiceUnavailable", query="!dryRun")
    assert run_cli(["set", "vm/web-1", "Skylake-Server-IBRS"], env=live_env).returncode == 0
    real = [r for r in fake.requests if r["method"] == "PATCH" and "dryRun" not in r["query"]]
    assert len(real) == 3
    assert fake.get_object("kubevirt.io", "virtualmachines", "default", "web-1")["spec"]["template"]["spec"][
        "domain"]["cpu"]["model"] == "Skylake-Server-IBRS"


def test_client_dry_run_over_a_selection_lists_the_vms_once(fake, tmp_path):
    env = vms_env(fake, tmp_path, count=20)
    assert run_cli(["set", "--all", "Skylake-Server-IBRS", "--dry-run=client"], env=env).returncode == 0
    vm_reads = [r for r in fake.requests if "virtualmachines" in r["path"]]
    assert [(r["method"], r["path"]) for r in vm_reads] == [
        ("GET", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines")]  # one list, no GET per VM


# ---- names and text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, what", [
    (["set", "vm/web-1/../legacy-1", "Skylake-Server-IBRS"], 'invalid VM name "web-1/../legacy-1"'),
    (["why-not", "vm/a/b"], 'invalid VM name "a/b"'),
    (["why-not", "vm/web-1", "-n", "Bad_NS"], 'invalid namespace name "Bad_NS"'),
    (["drain-check", "hv-01/x"], 'invalid node name "hv-01/x"'),
    (["diff", "hv-01", "HV 02"], 'invalid node name "HV 02"'),
])
def test_names_are_checked_before_any_request(live_env, fake, args, what):
    assert what in one_error(run_cli(args, env=live_env))
    assert fake.requests == []


def test_server_text_is_escaped_for_the_terminal_and_exact_in_json(live_env, fake):
    fake.add({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "evil", "namespace": "default"},
              "involvedObject": {"kind": "VirtualMachineInstance", "name": "db-1", "namespace": "default"},
              "reason": "FailedMigration", "message": "pwned\x1b]0;title\x07\x1b[2J", "type": "Warning",
              "lastTimestamp": "2026-11-25T09:00:00Z"})
    table = run_cli(["why-not", "vm/db-1"], env=live_env).stdout
    assert "\x1b" not in table and "\x07" not in table and "pwned\\x1b]0;title\\x07\\x1b[2J" in table
    doc = run_json(["why-not", "vm/db-1"], env=live_env)
    assert any(e["message"] == "pwned\x1b]0;title\x07\x1b[2J" for e in doc["events"])


# ---- no internal errors ---------------------------------------------------------------------------------
def test_malformed_files_name_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    assert "deep.json" in one_error(run_cli(["common", "-f", str(deep)], offline=True))
    oops = tmp_path / "oops.yaml"
    oops.write_text("apiVersion: v1\nkind: Node\nmetadata: oops\n")
    assert "malformed Node" in one_error(run_cli(["common", "-f", str(oops)], offline=True))
    numbered = tmp_path / "numbered.yaml"
    nodes = [kv.cpu_node("n1", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"]),
             kv.cpu_node("n2", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"])]
    nodes[1]["metadata"]["name"] = 12345
    numbered.write_text(yaml.safe_dump_all(nodes))
    assert run_cli(["common", "-f", str(numbered), "-o", "json"], offline=True).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no YAML or JSON files" in one_error(run_cli(["common", "-f", str(empty)], offline=True))


@pytest.mark.parametrize("config, what", [
    ({"contexts": 5}, "contexts must be a list"),
    ({"contexts": [{"name": "c", "context": "oops"}], "current-context": "c"}, "contexts must be a list"),
    ({"clusters": [{"name": "k", "cluster": {"server": 12345}}], "contexts": [{"name": "c", "context": {
        "cluster": "k"}}], "current-context": "c"}, "server must be a string"),
])
def test_malformed_kubeconfigs(tmp_path, config, what):
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(dict({"apiVersion": "v1", "kind": "Config"}, **config)))
    assert what in one_error(run_cli(["common"], env=base_env(KUBECONFIG=str(path))))


@pytest.mark.parametrize("body, what", [(b"[]", "not a list object"),
                                        (b'{"kind": "NodeList", "items": [null, 5]}', "malformed Node"),
                                        (b'{"kind": "NodeList", "items": 7}', "items are not a list")])
def test_malformed_api_replies(live_env, fake, body, what):
    fake.fault("GET", "^/api/v1/nodes$", body=body, times=4)
    assert what in one_error(run_cli(["why-not", "vm/web-1"], env=live_env))


def test_set_refuses_an_empty_model_and_a_model_with_clear(live_env, fake):
    assert "the CPU model is empty" in one_error(run_cli(["set", "vm/web-1", "", "--force"], env=live_env))
    assert "--clear removes the model" in one_error(run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "--clear"],
                                                            env=live_env))
    assert [r for r in fake.requests if r["method"] == "PATCH"] == []


def test_a_cluster_without_kubevirt_says_so(demo_objects, tmp_path):
    from testkit.fakekube import FakeKube, serve

    api = FakeKube(demo_objects, without_groups=("kubevirt.io",))
    server, url = serve(api)
    try:
        env = base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), url))
        for args in (["why-not", "vm/web-1"], ["audit", "-A"], ["drain-check", "hv-01"], ["set", "--all", "M"]):
            assert "KubeVirt is not installed" in one_error(run_cli(args, env=env)), args
    finally:
        server.shutdown()
        server.server_close()


MEASURE = """
import json, os, subprocess, sys, tempfile
with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    err.seek(0)
    print(json.dumps([os.waitstatus_to_exitcode(status), err.read().decode(), usage.ru_maxrss / 1024.0]))
"""


def _peak_rss_mib(args, timeout=120):
    """Run the real launcher on `args` offline; (exit code, stderr, its peak RSS in MiB). A small Python in
    between starts it: a child's peak RSS counts its parent's pages until exec, and this test process is large."""
    import subprocess
    import sys

    from conftest import LAUNCHER, TESTS

    env = base_env(CPUMODEL_NO_NETWORK="1", PYTHONPATH=os.path.join(TESTS, "guard"))
    out = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, LAUNCHER] + args, capture_output=True,
                         text=True, env=env, timeout=timeout)
    return tuple(json.loads(out.stdout))


def test_a_gigabyte_of_nul_bytes_is_refused_from_its_first_bytes(tmp_path):
    huge = tmp_path / "zeros.yaml"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: costs no disk
    code, err, peak = _peak_rss_mib(["common", "-f", str(huge)])
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "zeros.yaml: not YAML or JSON text (it holds NUL bytes)" in err
    assert peak < 300, "peak RSS %.0f MiB on a refused 1 GiB file" % peak


def test_nul_bytes_after_good_text_and_inside_a_bundle_are_refused(tmp_path):
    node = yaml.safe_dump(kv.cpu_node("n1", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"]))
    late = tmp_path / "late.yaml"
    late.write_bytes(node.encode() + b"# " + b"x" * (2 << 20) + b"\0\n")
    assert "late.yaml: not YAML or JSON text (it holds NUL bytes)" in one_error(
        run_cli(["common", "-f", str(late)], offline=True))
    root, cluster = bundle_folder(tmp_path)
    (cluster / "binary.yaml").write_bytes(b"\0" * 4096)
    zipped = tmp_path / "binary.zip"
    shutil.make_archive(str(zipped)[:-4], "zip", root)
    for source in (str(root), str(zipped)):
        assert "binary.yaml: not YAML or JSON text" in one_error(run_cli(["common", "-f", source], offline=True))


def test_memory_follows_the_objects_kept_not_the_file(tmp_path):
    """YAML streams into the parser: 256 MiB of comments around one node cost what the node costs."""
    padded = tmp_path / "padded.yaml"
    block = ("# " + "x" * 1022 + "\n") * 1024
    with open(padded, "w") as fh:
        fh.write(yaml.safe_dump(kv.cpu_node("n1", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"])))
        for _ in range(256):
            fh.write(block)
    code, err, peak = _peak_rss_mib(["common", "-f", str(padded)])
    assert code == 0, err
    assert peak < 100, "peak RSS %.0f MiB for one node in a 256 MiB file" % peak
