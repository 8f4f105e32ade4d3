"""watch-drain: the real command against a real kube-apiserver while a test driver plays KubeVirt and the scheduler
(migrations, target pods, FailedScheduling events, VMIs moving or going away), one test per state and per exit
path, a dropped watch connection and a real 410 Gone through an interposing proxy; then fast tests against the
fake API server, which must agree with the real one."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, base_env
from test_drain_audit import CASCADE, NO_SKYLAKE, SKYLAKE
from testkit import kubevirt as kv
from testkit.harness import write_kubeconfig
from testkit.interposer import Interposer

STUCK = "4s"  # --stuck-after in these tests: stalled after 2 s, stuck after 4 s
WAIT = 30.0  # the longest any expected line may take


# ---- the cluster and the driver that plays KubeVirt and the scheduler ---------------------------------------
def drain_cluster():
    """n-1 is being drained (cordoned); n-2 takes Cascadelake VMs; n-3 (Skylake) does not. On n-1: `a` (model
    Cascadelake-Server), `b`, and `c`, a host-model VM carrying n-1's own features (it can go nowhere)."""
    objs = [kv.cpu_node("n-1", "Cascadelake-Server", CASCADE, features=("amx-tile",), unschedulable=True),
            kv.cpu_node("n-2", "Cascadelake-Server", CASCADE),
            kv.cpu_node("n-3", "Skylake-Server-IBRS", SKYLAKE, drop=NO_SKYLAKE),
            kv.kubevirt(), kv.namespace("default")]
    for name in ("a", "b"):
        vm = kv.vm(name, model="Cascadelake-Server")
        vmi = kv.vmi_of(vm, "n-1")
        objs += [vm, vmi, kv.launcher(vmi)]
    vm = kv.vm("c")
    vmi = kv.vmi_of(vm, "n-1")
    objs += [vm, vmi, kv.launcher(vmi, {"cpu-feature.node.kubevirt.io/amx-tile": "true",
                                        "cpu-model-migration.node.kubevirt.io/Cascadelake-Server": "true"},
                                  created="2026-11-21T10:00:00Z", suffix="xyz12")]
    return objs


def merge(body):
    return body, "application/merge-patch+json"


class Driver:
    """What KubeVirt and the scheduler write during a drain, through `request(method, path, body, content_type)`."""

    def __init__(self, request):
        self.request = request

    def _path(self, kind, name=None, sub=None):
        from testkit.controlplane import resource_path

        return resource_path(kind, "default", name, sub)

    def uid(self, kind, name):
        return self.request("GET", self._path(kind, name), None, None)["metadata"]["uid"]

    def evict(self, vmi):
        self.request("PATCH", self._path("VirtualMachineInstance", vmi), *merge({"status": {"evacuationNodeName": "n-1"}}))

    def migration(self, name, vmi, phase="Scheduling", **state):
        self.request("POST", self._path("VirtualMachineInstanceMigration"), {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": "default", "labels": {"kubevirt.io/vmi-name": vmi}},
            "spec": {"vmiName": vmi}}, "application/json")
        self.phase(name, phase, **state)

    def phase(self, name, phase, **state):
        status = {"phase": phase}
        if state:
            status["migrationState"] = state
        self.request("PATCH", self._path("VirtualMachineInstanceMigration", name, "status"), *merge({"status": status}))

    def target_pod(self, name, migration, vmi, node=None, unschedulable=None, selector=None):
        pod = kv.launcher({"metadata": {"name": vmi, "namespace": "default",
                                        "uid": self.uid("VirtualMachineInstance", vmi)},
                           "spec": {"domain": {"cpu": {"model": "Cascadelake-Server"}}},
                           "status": {"nodeName": node or "", "machine": {"type": "pc-q35-9.2"}}}, selector,
                          suffix=name)
        pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"] = self.uid("VirtualMachineInstanceMigration",
                                                                            migration)
        if not node:
            del pod["spec"]["nodeName"]
        pod.pop("status")
        self.request("POST", self._path("Pod"), pod, "application/json")
        if unschedulable:
            status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                          "reason": "Unschedulable", "message": unschedulable}]}
        else:
            status = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        self.request("PATCH", self._path("Pod", pod["metadata"]["name"], "status"), *merge({"status": status}))
        return pod["metadata"]["name"]

    def failed_scheduling(self, pod, message):
        self.request("POST", self._path("Event"), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "%s.fs%d" % (pod, int(time.time() * 1000) % 100000), "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "default", "apiVersion": "v1"},
            "reason": "FailedScheduling", "message": message, "type": "Warning", "count": 1,
            "source": {"component": "default-scheduler"}, "firstTimestamp": "2026-12-06T10:00:00Z",
            "lastTimestamp": "2026-12-06T10:00:00Z"}, "application/json")

    def move(self, vmi, node):
        self.request("PATCH", self._path("VirtualMachineInstance", vmi), *merge({
            "metadata": {"labels": {"kubevirt.io/nodeName": node}},
            "status": {"nodeName": node, "evacuationNodeName": None}}))

    def delete(self, vmi):
        self.request("DELETE", self._path("VirtualMachineInstance", vmi),
                     {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}, "application/json")


class Running:
    """The command in a child process, its NDJSON lines collected as they come."""

    def __init__(self, env, *args):
        cmd = [sys.executable, os.path.join(ROOT, "kubectl-cpumodel"), "watch-drain", "n-1", "-o", "json",
               "--stuck-after", STUCK] + list(args)
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue" = queue.Queue()
        self.seen = []
        self.unclaimed = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def expect(self, vm, state, timeout=WAIT):
        """The next line about `vm` in `state` (lines about it in other states on the way are kept in seen)."""
        for line in self.unclaimed:
            if line.get("vm") == vm and line.get("state") == state:
                self.unclaimed.remove(line)
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("no %s line for %s; saw %s; stderr %s" % (
                    state, vm, self.seen, self.proc.stderr.read()[-2000:]))
            self.seen.append(line)
            if line.get("vm") == vm and line.get("state") == state:
                return line
            self.unclaimed.append(line)

    def finish(self, timeout=WAIT):
        code = self.proc.wait(timeout)
        rest = []
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            rest.append(line)
        self.seen += rest
        return code, rest[-1] if rest else None, self.proc.stderr.read()


def eventually(condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# ---- the servers: the real kube-apiserver, and the fake that must agree with it ---------------------------
class FakeCluster:
    """The fake API server holding the drain cluster, with the same handles as the real one (`env`, `url`)."""

    def __init__(self, tmp_path):
        from testkit.fakekube import FakeKube, serve

        self.api = FakeKube(drain_cluster())
        self.api.bookmark_interval = 0.5
        self.server, self.url = serve(self.api)
        self.kubeconfig = write_kubeconfig(str(tmp_path / "kc-fake"), self.url)
        self.expected_statuses: set = set()
        self.ca = None
        self.token = "s3cr3t-token"
        self.driver = Driver(self.request)

    def env(self):
        return base_env(KUBECONFIG=self.kubeconfig)

    def request(self, method, path, body, ctype):
        import http.client
        from urllib.parse import urlsplit

        url = urlsplit(self.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": ctype or "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"null")
        conn.close()
        assert resp.status < 300, data
        return data

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SERVERS = ["fake", pytest.param("real", marks=pytest.mark.controlplane)]


@pytest.fixture(params=SERVERS)
def drain(request, tmp_path):
    if request.param == "fake":
        cluster = FakeCluster(tmp_path)
        yield cluster
        cluster.close()
        return
    real = request.getfixturevalue("real")
    real.load(drain_cluster())
    real.driver = Driver(lambda method, path, body, ctype: real.plane.admin.request(
        method, path, body, content_type=ctype or "application/json"))
    real.url, real.ca = real.plane.url, real.plane.ca.cert
    from testkit.controlplane import ADMIN_TOKEN

    real.token = ADMIN_TOKEN
    yield real


def test_every_state_of_a_drain(drain):
    d = drain.driver
    run = Running(drain.env())
    assert run.expect("a", "waiting")["message"] == "not evicted yet"
    d.evict("a")
    assert run.expect("a", "waiting")["message"].startswith("evicted: waiting for KubeVirt to create its migration")
    d.migration("mig-a1", "a")
    line = run.expect("a", "migrating")
    assert line["migration"]["name"] == "mig-a1" and line["node"] == "n-1" and line["target"] is None
    pod = d.target_pod("t1", "mig-a1", "a", selector={"cpu-feature.node.kubevirt.io/amx-tile": "true"},
                       unschedulable="0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't "
                                     "match Pod's node affinity/selector.")
    d.failed_scheduling(pod, "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's "
                             "node affinity/selector.")
    pending = run.expect("a", "target-pending")
    keys = {(r["category"], r["key"]): r["nodes"] for r in pending["reasons"]}
    # the engine, label by label, for the pod's actual constraints: n-2 and n-3 lack amx-tile, n-1 is cordoned
    assert keys[("cpu-feature", "cpu-feature.node.kubevirt.io/amx-tile")] == 2 and keys[("cordoned", None)] == 1
    assert "didn't match Pod's node affinity/selector" in pending["message"]
    d.phase("mig-a1", "Failed")
    assert "migration mig-a1 failed" in run.expect("a", "waiting")["message"]
    d.migration("mig-a2", "a")
    retry = run.expect("a", "retrying")
    assert retry["migration"]["name"] == "mig-a2" and "not a blocker" in retry["message"]
    d.target_pod("t2", "mig-a2", "a", node="n-2")
    d.phase("mig-a2", "Running", startTimestamp="2026-12-06T10:00:00Z", targetNode="n-2")
    line = run.expect("a", "retrying")
    while line["migration"]["phase"] != "Running" or line["target"] != "n-2":
        line = run.expect("a", "retrying")
    assert run.expect("a", "stalled")["target"] == "n-2"  # no change of its status for half of --stuck-after
    d.move("a", "n-2")
    d.phase("mig-a2", "Succeeded")
    moved = run.expect("a", "moved")
    assert moved["node"] == "n-2" and moved["target"] == "n-2"
    stuck = run.expect("c", "stuck")  # never evicted, nothing happens: with the fix drain-check gives
    assert "no progress for 4s" in stuck["message"] and "kubectl cpumodel set vm/c" in stuck["message"]
    d.delete("b")
    d.delete("c")
    assert run.expect("b", "stopped")["message"] == "the VMI was deleted"
    code, summary, err = run.finish()
    assert code == 0, err
    assert summary["summary"]["moved"] == 1 and summary["summary"]["stopped"] == 2
    assert summary["summary"]["remaining"] == [] and summary["summary"]["ending"] == "done"


def test_a_target_pod_on_the_node_being_drained(drain):
    d = drain.driver
    run = Running(drain.env(), "--timeout", "5s")
    run.expect("b", "waiting")
    d.evict("b")
    d.migration("mig-b1", "b", "Scheduled")
    d.target_pod("t1", "mig-b1", "b", node="n-1")
    line = run.expect("b", "target-on-source")
    assert line["target"] == "n-1" and "kubevirt#18946" in line["message"]
    code, summary, _ = run.finish()
    assert code == 3 and summary["summary"]["ending"] == "timeout"  # VMs remain at the deadline
    assert {r["vm"]: r["state"] for r in summary["summary"]["remaining"]}["b"] in ("target-on-source", "stuck")


def test_a_dropped_watch_and_a_410_gone(drain, tmp_path):
    """Through a proxy: the watches' connections are broken mid-way (the command reconnects from where it was);
    then the VMIs' next list reports resourceVersion 1, so the real server answers the watch with 410 Gone and the
    command lists again. Changes made meanwhile are not lost."""
    proxy = Interposer(drain.url, drain.ca).start()
    drain.expected_statuses.add(410)
    try:
        env = base_env(KUBECONFIG=write_kubeconfig(str(tmp_path / "kc"), proxy.url, token=drain.token))
        d = drain.driver
        run = Running(env)
        run.expect("a", "waiting")
        eventually(lambda: len(proxy.watches) == 5)
        assert proxy.drop_watches() == 5
        d.move("a", "n-2")  # while no watch runs: the reconnected watch brings it
        assert run.expect("a", "moved")["node"] == "n-2"
        proxy.age_next_watch("/apis/kubevirt.io/v1/virtualmachineinstances")
        eventually(lambda: len(proxy.watches) == 5)
        assert proxy.drop_watches() == 5
        d.delete("b")  # the reconnect meets 410 Gone; the fresh list no longer holds b
        assert run.expect("b", "stopped")["message"] == "the VMI was deleted"
        assert proxy.answered("virtualmachineinstances", 410), proxy.log
        d.delete("c")
        run.expect("c", "stopped")
        code, summary, err = run.finish()
        assert code == 0, err
        assert summary["summary"]["remaining"] == []
        assert proxy.watching("virtualmachineinstances") >= 4  # watched, reconnected, aged (410), watched again
    finally:
        proxy.stop()


def test_ctrl_c_prints_the_summary_so_far_and_exits_130(drain):
    run = Running(drain.env())
    run.expect("a", "waiting")
    run.proc.send_signal(signal.SIGINT)
    code, summary, _ = run.finish()
    assert code == 130 and summary["summary"]["ending"] == "interrupted"
    assert len(summary["summary"]["remaining"]) == 3


def test_the_table_form_prints_a_line_per_change(drain):
    env = drain.env()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "kubectl-cpumodel"), "watch-drain", "n-1",
                             "--timeout", "3s", "--stuck-after", "1m"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    drain.driver.delete("b")
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 3, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "VM", "STATE", "TARGET", "MIGRATION", "MESSAGE"]
    assert [line.split()[1:3] for line in lines[1:5]] == [["default/a", "waiting"], ["default/b", "waiting"],
                                                          ["default/c", "waiting"], ["default/b", "stopped"]]
    assert "timed out after" in out and "2 remain on n-1" in out


def test_a_quiet_watch_outlives_the_request_timeout(drain):
    """--request-timeout bounds requests, not a healthy watch that is quiet for longer."""
    run = Running(drain.env(), "--request-timeout", "1s")
    run.expect("a", "waiting")
    time.sleep(2.5)
    drain.driver.move("a", "n-2")
    assert run.expect("a", "moved")["node"] == "n-2"
    run.proc.send_signal(signal.SIGINT)
    assert run.finish()[0] == 130


# ---- the transport, on the fake: line by line, flat memory, connections reused ---------------------------------
def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def test_a_long_watch_keeps_memory_flat_and_reuses_its_connections(tmp_path):
    """Thousands of changes the drain does not care about (warnings about other pods, other VMs' target pods) pass
    through without the command growing; a watch the server ends cleanly gives its connection back, and the next
    watch reuses it; bookmarks move the resourceVersion on while nothing relevant happens."""
    cluster = FakeCluster(tmp_path)
    cluster.api.max_watch_seconds = 1.0
    try:
        run = Running(cluster.env())
        run.expect("c", "waiting")
        time.sleep(1.5)
        before = peak_rss_kib(run.proc.pid)
        for i in range(4000):
            cluster.api.add({"apiVersion": "v1", "kind": "Event",
                             "metadata": {"name": "noise.%05d" % i, "namespace": "default"},
                             "involvedObject": {"kind": "Pod", "name": "other-%05d" % i, "namespace": "default"},
                             "reason": "BackOff", "message": "x" * 2000, "type": "Warning"})
            if i % 500 == 0:
                time.sleep(0.2)
        time.sleep(3)
        grown = peak_rss_kib(run.proc.pid) - before
        cluster.driver.move("a", "n-2")
        run.expect("a", "moved")
        run.proc.send_signal(signal.SIGINT)
        assert run.finish()[0] == 130
        assert grown < 12 * 1024, "peak RSS grew by %d KiB over 8 MB of watched events" % grown
        watches = [r for r in cluster.api.requests if r["query"].get("watch") == "1"]
        node_watches = [r for r in watches if r["path"] == "/api/v1/nodes"]
        assert len(node_watches) >= 3  # each ended by the server after a second, and resumed
        versions = [int(r["query"]["resourceVersion"]) for r in node_watches]
        assert versions[-1] > versions[0]  # resumed from bookmarks: the node itself never changed
        peers = [r["peer"] for r in node_watches]
        assert len(set(peers)) < len(peers)  # a cleanly ended watch's connection carried a later request
    finally:
        cluster.close()


def test_an_unreachable_server_is_waited_for_and_the_watch_goes_on(tmp_path):
    """The API server goes away mid-drain (a control-plane node upgraded): the command says so once per watch,
    retries with a backoff, and when the server is back goes on from where it was."""
    from urllib.parse import urlsplit

    from testkit.fakekube import serve

    cluster = FakeCluster(tmp_path)
    try:
        run = Running(cluster.env(), "--timeout", "40s")
        run.expect("a", "waiting")
        port = urlsplit(cluster.url).port
        cluster.api.drop_watches()
        cluster.server.shutdown()
        cluster.server.server_close()
        time.sleep(2)
        cluster.api.delete("kubevirt.io", "virtualmachineinstances", "default", "b")
        cluster.server, _ = serve(cluster.api, port)
        assert run.expect("b", "stopped")["message"] == "the VMI was deleted"
        run.proc.send_signal(signal.SIGINT)
        code, _, err = run.finish()
        assert code == 130
        assert "Warning: the watch of vmis broke (cannot connect to" in err and "reconnecting" in err
        assert "Warning: watching vmis again" in err and "Traceback" not in err
    finally:
        cluster.close()


def test_usage_errors_are_one_line(tmp_path):
    from conftest import DEMO, run_cli

    for args, said in ((["-f", DEMO], "watch-drain follows a live cluster as it changes: drop -f"),
                       (["-o", "yaml"], "watch-drain prints a table or -o json"),
                       (["--stuck-after", "soon"], "invalid --stuck-after 'soon'"),
                       (["--timeout", "0"], "invalid --timeout '0'")):
        proc = run_cli(["watch-drain", "hv-03"] + args, offline=True)
        assert proc.returncode == 1 and proc.stderr.startswith("error: ") and said in proc.stderr, proc.stderr
    cluster = FakeCluster(tmp_path)
    try:
        proc = run_cli(["watch-drain", "n-9"], env=cluster.env())
        assert proc.returncode == 1 and proc.stderr == 'error: nodes "n-9" not found\n'
        proc = run_cli(["watch-drain", "n-2", "-o", "json"], env=cluster.env())  # nothing on it: done at once
        assert proc.returncode == 0 and json.loads(proc.stdout)["summary"]["vms"] == 0
    finally:
        cluster.close()


@pytest.mark.controlplane
def test_rbac_without_events_goes_on_and_without_vmis_is_one_error(real):
    """Real RBAC: a user who may not watch events gets the states without them and a warning; one who may not
    watch VMIs gets one error line."""
    from test_controlplane import role
    from testkit.controlplane import DEV_TOKEN

    drain = real
    drain.load(drain_cluster())
    watch = ["get", "list", "watch"]
    granted = role("cpumodel-watch", [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": watch},
                                      {"apiGroups": ["kubevirt.io"], "resources": ["kubevirts", "virtualmachines",
                                                                                   "virtualmachineinstancemigrations"],
                                       "verbs": watch}])
    drain.plane.apply_rbac(granted)
    drain.expected_statuses.add(403)
    env = drain.env(DEV_TOKEN, user="dev")
    try:
        from conftest import run_cli

        proc = run_cli(["watch-drain", "n-1", "--timeout", "2s"], env=env)
        assert proc.returncode == 1 and proc.stderr.count("error: ") == 1, proc.stderr
        assert "forbidden: RBAC does not allow you to list virtualmachineinstances.kubevirt.io" in proc.stderr
        vmis = role("cpumodel-watch-vmis", [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachineinstances"],
                                             "verbs": watch}])
        drain.plane.apply_rbac(vmis)
        granted += vmis
        run = Running(env, "--timeout", "3s")
        run.expect("a", "waiting")
        code, summary, err = run.finish()
        assert code == 3 and len(summary["summary"]["remaining"]) == 3
        assert "Warning: events not watched (forbidden: RBAC does not allow you to list events" in err
    finally:
        drain.plane.delete_rbac(granted)
