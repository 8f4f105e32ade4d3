"""`watch-drain NODE`: during a drain, what every VM of the node is waiting for, live — and when one is stuck, why.

options → gather (the nodes once, for explanations and fixes; then a list-and-watch of the node, its VMIs,
the migrations, the migration target pods and the warning events) → compute (core/watch_drain.py, per VM at
every change) → render a line per change (output/watch_drain_report.py).
"""
from __future__ import annotations

import argparse
import gc
import queue
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Set, Tuple

from cpumodel import objects
from cpumodel.commands.context import Common, Environment, Problems, checked_names, common_options, open_source
from cpumodel.core.catalog import Catalog, cluster_obsolete_models
from cpumodel.core.drain import Action, BlockingKey, DrainPlanner, RunningVm
from cpumodel.core.launcher_pod import Demand
from cpumodel.core.migration import MigrationEngine, current_launcher
from cpumodel.core.watch_drain import DONE, Seen, Status, Tracker, observe
from cpumodel.errors import ExitCode, Forbidden, SourceError, UsageError
from cpumodel.output.watch_drain_report import Table, change_document, json_line, summary_document, summary_text
from cpumodel.sources import resources as r
from cpumodel.sources.reader import ClusterReader
from cpumodel.sources.watch import Change, Reflector

STALL_SHARE = 0.5  # a running migration whose status has not changed for half of --stuck-after is stalled
EVENTS_KEPT = 5  # warnings kept per object
TICK = 1.0  # the longest the loop sleeps without a change (timers: stalled, stuck, --timeout)
OPTIONAL_WATCHES = ("events", "pods", "migrations")  # without them the states are coarser, not wrong
LAUNCHER = "kubevirt.io=virt-launcher"


@dataclass(frozen=True)
class Options:
    common: Common
    node: str
    timeout: Optional[float]
    stuck_after: float


def _duration(flag: str, text: str) -> float:
    from cpumodel.sources.kubeclient import parse_duration

    try:
        value = parse_duration(text)
    except ValueError:
        value = None
    if not value:
        raise UsageError("invalid %s %r: use a duration such as 90s, 2m or 1h" % (flag, text))
    return value


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    checked_names([args.node], "node", problems)
    timeout = problems.check(lambda: _duration("--timeout", args.timeout)) if args.timeout else None
    stuck = problems.check(lambda: _duration("--stuck-after", args.stuck_after))
    if args.filename:
        problems.add("watch-drain follows a live cluster as it changes: drop -f (drain-check answers offline)")
    if common.fmt not in ("table", "wide", "json"):
        problems.add("watch-drain prints a table or -o json (one JSON object per line), not -o %s" % common.fmt)
    problems.raise_any()
    return Options(common, args.node, timeout, stuck or 120.0)


class Cluster:
    """What the watches have shown, kept only for the drained node's VMs."""

    def __init__(self, node: str, reader: ClusterReader):
        self.node, self.reader = node, reader
        self.cordoned: Optional[bool] = None
        self.vmis: Dict[Tuple[str, str], objects.VirtualMachineInstance] = {}
        self.gone: Dict[Tuple[str, str], str] = {}
        self.unresolved: Set[Tuple[str, str]] = set()
        self.order: List[Tuple[str, str]] = []
        self.uids: Dict[str, Tuple[str, str]] = {}
        self.migrations: Dict[str, objects.Migration] = {}
        self.pods: Dict[str, objects.Pod] = {}
        self.events: Dict[Tuple[str, str], Deque[objects.Event]] = {}
        self.names: Set[Tuple[str, str]] = set()  # (namespace, name) of the migrations and target pods kept

    # ---- what is worth keeping (asked by the watches' threads while they list: membership tests only) ---------
    def wants_migration(self, raw) -> bool:
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        spec = raw.get("spec") if isinstance(raw, dict) else None
        return isinstance(meta, dict) and isinstance(spec, dict) and self._mine(str(meta.get("namespace") or ""),
                                                                              str(spec.get("vmiName") or ""))

    def wants_pod(self, raw) -> bool:
        labels = (raw.get("metadata") or {}).get("labels") if isinstance(raw, dict) else None
        return isinstance(labels, dict) and labels.get("kubevirt.io/created-by") in self.uids

    def wants_event(self, raw) -> bool:
        about = (raw.get("involvedObject") or {}) if isinstance(raw, dict) else {}
        return isinstance(about, dict) and (str(about.get("namespace") or ""), str(about.get("name") or "")) \
            in self.names

    # ---- changes ---------------------------------------------------------------------------------------------
    def apply(self, source: str, kind: str, obj) -> None:
        if kind == "sync" and source in ("migrations", "pods", "events"):  # a fresh list replaces what was kept
            setattr(self, source, {})
            for raw in obj:
                getattr(self, "_" + source)("ADDED", raw)
            return
        getattr(self, "_" + source)(kind, obj)

    def _node(self, kind: str, obj) -> None:
        if kind == "sync":
            obj = obj[0] if obj else None
            kind = "MODIFIED" if obj else "DELETED"
        if kind == "DELETED":
            raise SourceError("node %s was deleted while its drain was watched" % self.node)
        self.cordoned = objects.parse_node(obj).unschedulable

    def _track(self, vmi: objects.VirtualMachineInstance) -> None:
        key = (vmi.namespace, vmi.name)
        if key not in self.vmis and key not in self.gone:
            self.order.append(key)
        self.gone.pop(key, None)
        self.vmis[key] = vmi
        self.uids[vmi.uid] = key

    def _vmis(self, kind: str, obj) -> None:
        if kind == "sync":
            fresh = [objects.parse_vmi(o) for o in obj]
            keys = {(v.namespace, v.name) for v in fresh}
            for key in list(self.vmis):
                if key not in keys:
                    self.unresolved.add(key)
            for vmi in fresh:
                self._track(vmi)
            return
        vmi = objects.parse_vmi(obj)
        if kind == "DELETED":  # deleted, or no longer labelled with this node: which, a GET tells
            self.unresolved.add((vmi.namespace, vmi.name))
        else:
            self._track(vmi)

    def resolve(self) -> None:
        """VMIs that left the node's list: gone for good, stopped, or on another node."""
        for key in sorted(self.unresolved):
            try:
                now = self.reader.vmi(*key)
            except SourceError:
                continue  # try again at the next change
            self.unresolved.discard(key)
            if now is not None and now.node_name == self.node and now.phase not in ("Succeeded", "Failed"):
                self._track(now)
                continue
            self.vmis.pop(key, None)
            self.gone[key] = "deleted" if now is None else (
                "stopped" if now.phase in ("Succeeded", "Failed") or not now.node_name else now.node_name)

    def _mine(self, namespace: str, vmi_name: str) -> bool:
        return (namespace, vmi_name) in self.vmis or (namespace, vmi_name) in self.gone

    def _migrations(self, kind: str, obj) -> None:
        m = objects.parse_migration(obj)
        if kind == "DELETED" or not self._mine(m.namespace, m.vmi_name):
            self.migrations.pop(m.uid, None)
        else:
            self.migrations[m.uid] = m
            self.names.add((m.namespace, m.name))

    def _pods(self, kind: str, obj) -> None:
        pod = objects.parse_pod(obj)
        if kind == "DELETED" or pod.labels.get("kubevirt.io/created-by") not in self.uids:
            self.pods.pop(pod.uid, None)
        else:
            self.pods[pod.uid] = pod
            self.names.add((pod.namespace, pod.name))

    def _events(self, kind: str, obj) -> None:
        if kind == "DELETED":
            return
        event = objects.parse_event(obj)
        if (event.namespace, event.name) in self.names:
            kept = self.events.setdefault((event.namespace, event.name), deque(maxlen=EVENTS_KEPT))
            kept.append(event)

    # ---- what one VM looks like ------------------------------------------------------------------------------
    def seen(self, key: Tuple[str, str]) -> Seen:
        namespace, name = key
        migs = tuple(sorted((m for m in self.migrations.values() if (m.namespace, m.vmi_name) == key),
                            key=lambda m: (m.created, m.name)))
        by_job: Dict[str, Tuple[objects.Pod, ...]] = {}
        for pod in self.pods.values():
            job = pod.labels.get("kubevirt.io/migrationJobUID")
            if pod.namespace == namespace and job:
                by_job[job] = by_job.get(job, ()) + (pod,)
        related = [(namespace, m.name) for m in migs] + [(namespace, p.name) for ps in by_job.values() for p in ps]
        events = tuple(sorted((e for k in related for e in self.events.get(k, ())),
                              key=lambda e: (e.timestamp, e.name)))
        return Seen(namespace, name, self.vmis.get(key), self.gone.get(key), migs, by_job, events)


class Advisor:
    """Explanations (the engine, label by label, for a target pod's actual constraints) and fixes (what drain-check
    gives for the VM), from the nodes read once at the start."""

    def __init__(self, node: str, nodes: List[objects.Node], reader: ClusterReader):
        self.node, self.reader = node, reader
        kubevirt = reader.kubevirt()
        self.engine = MigrationEngine(nodes, kubevirt)
        self.others = frozenset(n.name for n in self.engine.nodes if n.name != node)
        self.planner = DrainPlanner(Catalog.load(), self.engine, cluster_obsolete_models(kubevirt))

    def explain(self, pod: objects.Pod) -> Tuple[BlockingKey, ...]:
        demand = Demand(tuple(sorted(pod.node_selector.items())), pod.required_terms, pod.tolerations)
        total = len(self.others)
        found = [BlockingKey(category, key, "the target pod requires it; %d of %d other nodes fail it" % (count, total),
                             count) for (category, key), (count, _) in
                 self.engine.failure_counts(demand, self.others).items() if count]
        return tuple(sorted(found, key=lambda k: (-k.nodes, k.category.rank, k.key or "")))

    def fix(self, vmi: Optional[objects.VirtualMachineInstance]) -> str:
        """The fix drain-check gives this VM (room counted when the pods can be read), or ""."""
        if vmi is None:
            return ""
        try:
            launcher = current_launcher(vmi, self.reader.launcher_pods(vmi))
            vm = RunningVm(vmi, launcher, None)
            used, _ = self.reader.node_usage(self.planner.needed((self.node,), [vm]))
            room = None
            if used is not None:
                from cpumodel.core.capacity import Room

                room = Room(self.engine.index, used)
            result = self.planner.check((self.node,), [vm], room)
        except SourceError:
            return ""
        checked = result.vms[0] if result.vms else None
        if result.fix is not None:
            return " ; ".join(result.fix.commands)
        if checked is not None and checked.room_fix:
            return checked.room_fix
        if checked is not None and checked.action is Action.BLOCKED and checked.reasons:
            return "nothing a CPU model fixes: %s" % checked.reasons[0].message
        return ""


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    gc.enable()  # it runs for as long as the drain does (cli.main turns the collector off for one-shot commands)
    source = open_source(args, env, o.common.timeout)
    reader = ClusterReader(source)
    reader.node(o.node)  # a clean "not found" before anything starts
    advisor = Advisor(o.node, reader.nodes(), reader)
    return Watcher(o, env, reader, advisor).run()


class Watcher:
    def __init__(self, o: Options, env: Environment, reader: ClusterReader, advisor: Advisor):
        self.o, self.env, self.reader, self.advisor = o, env, reader, advisor
        self.cluster = Cluster(o.node, reader)
        self.tracker = Tracker(o.stuck_after, o.stuck_after * STALL_SHARE)
        self.shown: Dict[Tuple[str, str], Status] = {}
        self.fixes: Dict[Tuple[Tuple[str, str], tuple], str] = {}
        self.table: Optional[Table] = None
        self.json = o.common.fmt == "json"
        self.warned: Set[str] = set()

    def reflectors(self, out: "queue.Queue"):
        client = self.reader.source.client  # type: ignore[attr-defined]
        node = self.o.node
        cluster = self.cluster
        return [Reflector(client, "node", r.NODES, out, field_selector="metadata.name=%s" % node),
                Reflector(client, "vmis", r.VMIS, out, label_selector="kubevirt.io/nodeName=%s" % node),
                Reflector(client, "migrations", r.VMIMS, out, wanted=cluster.wants_migration),
                Reflector(client, "pods", r.PODS, out, label_selector="%s,kubevirt.io/migrationJobUID" % LAUNCHER,
                          wanted=cluster.wants_pod),
                Reflector(client, "events", r.EVENTS, out, field_selector="type=Warning", wanted=cluster.wants_event)]

    def run(self) -> int:
        out: "queue.Queue" = queue.Queue()
        watches = self.reflectors(out)
        started = time.monotonic()
        deadline = started + self.o.timeout if self.o.timeout else None
        synced: Set[str] = set()
        ending = "done"
        waiting = list(watches)  # started in turn: what a watch keeps depends on what those before it listed
        try:
            while True:
                if waiting and all(w.name in synced for w in watches if w not in waiting):
                    waiting.pop(0).start()
                    if waiting and waiting[0].name == "vmis":  # the node and its VMIs together
                        waiting.pop(0).start()
                now = time.monotonic()
                wake = [now + TICK] + ([deadline] if deadline else [])
                following = self.tracker.next_deadline(self.shown, now)
                if following is not None:
                    wake.append(following)
                changes = self._changes(out, max(0.01, min(wake) - now))
                for change in changes:
                    if change.kind in ("lost", "back", "error"):
                        if not self._trouble(change):  # True: an optional watch refused, go on without it
                            continue
                        change = Change(change.source, "sync", [])
                    if change.kind == "sync":
                        synced.add(change.source)
                    self.cluster.apply(change.source, change.kind, change.obj)
                if waiting or len(synced) < len(watches):
                    if deadline and time.monotonic() >= deadline:
                        ending = "timeout"
                        break
                    continue
                self.cluster.resolve()
                self._evaluate()
                if all(s.state in DONE for s in self.shown.values()) and not self.cluster.unresolved:
                    break
                if deadline and time.monotonic() >= deadline:
                    ending = "timeout"
                    break
        except KeyboardInterrupt:
            ending = "interrupted"
        finally:
            for w in watches:
                w.stop()
        self._summary(ending, time.monotonic() - started)
        if ending == "interrupted":
            return ExitCode.INTERRUPTED
        remaining = any(s.state not in DONE for s in self.shown.values()) or len(synced) < len(watches)
        return ExitCode.BLOCKED if ending == "timeout" and remaining else ExitCode.OK

    @staticmethod
    def _changes(out: "queue.Queue", wait: float) -> list:
        try:
            first = out.get(timeout=wait)
        except queue.Empty:
            return []
        changes = [first]
        while True:
            try:
                changes.append(out.get_nowait())
            except queue.Empty:
                return changes

    def _trouble(self, change) -> bool:
        """Say what went wrong with a watch; True when it is an optional one RBAC refused (go on without it)."""
        if change.kind == "error":
            exc = change.obj
            if change.source in OPTIONAL_WATCHES and isinstance(exc, Forbidden):
                self._warn("%s not watched (%s); the states are given without them" % (change.source, exc))
                return True
            raise exc
        if change.kind == "lost":
            self._warn("the watch of %s broke (%s); reconnecting" % (change.source, change.obj), once=False)
        elif change.kind == "back":
            self._warn("watching %s again" % change.source, once=False)
        return False

    def _warn(self, message: str, once: bool = True) -> None:
        if once and message in self.warned:
            return
        self.warned.add(message)
        self.env.warn(message)
        self.env.stderr.flush()

    def _fix(self, key: Tuple[str, str], status: Status) -> str:
        marker = (key, (status.state, status.migration, status.progress))
        if marker not in self.fixes:
            self.fixes[marker] = self.advisor.fix(self.cluster.vmis.get(key))
        return self.fixes[marker]

    def _evaluate(self) -> None:
        now, wall = time.monotonic(), time.time()
        if self.table is None and not self.json:
            self.table = Table(["%s/%s" % k for k in self.cluster.order], self.o.node)
            self.env.say(self.table.header())
        for key in self.cluster.order:
            if key in self.shown and self.shown[key].state in DONE:
                continue  # moved or stopped: done, whatever changes after
            observed = observe(self.cluster.seen(key), self.o.node, self.advisor.explain, self.cluster.cordoned)
            status = self.tracker.update(key, observed, now, lambda: self._fix(key, observed))
            if key in self.shown and self.shown[key].shown == status.shown:
                continue
            self.shown[key] = status
            if self.json:
                self.env.write(json_line(change_document(wall, key, self.o.node, status)))
            else:
                self.env.say(self.table.change(wall, key, status))  # type: ignore[union-attr]
        self.env.stdout.flush()

    def _summary(self, ending: str, elapsed: float) -> None:
        statuses = dict(self.shown)
        for key in self.cluster.order:  # interrupted before their first line: as the cluster shows them
            if key not in statuses:
                statuses[key] = observe(self.cluster.seen(key), self.o.node, self.advisor.explain,
                                        self.cluster.cordoned)
        document = summary_document(self.o.node, statuses, ending, elapsed)
        if self.json:
            self.env.write(json_line(document))
        else:
            self.env.say(summary_text(document))
        self.env.stdout.flush()
