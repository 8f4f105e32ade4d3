"""`watch-drain`: what every VM of a node being drained is waiting for, from what the cluster shows at each moment.

`observe` turns what the cluster shows of one VM (its VMI, its migrations, their target pods and the warnings
about them) into one of the contract's states; `Tracker` adds time: a running migration whose status does not
change is `stalled`, and a VM that makes no progress at all for `--stuck-after` is `stuck`, with the reason and
the fix. KubeVirt's side (docs/kubevirt-rules.md §11): an eviction marks the VMI (`status.evacuationNodeName`),
the evacuation controller creates a VirtualMachineInstanceMigration, virt-controller creates the target pod
(labelled `kubevirt.io/migrationJobUID`), and when a migration fails a new one follows after a backoff.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from cpumodel.core.drain import BlockingKey
from cpumodel.core.reasons import Category
from cpumodel.objects import Event, Migration, Pod, VirtualMachineInstance

WAITING, MIGRATING, TARGET_PENDING, TARGET_ON_SOURCE = "waiting", "migrating", "target-pending", "target-on-source"
RETRYING, STALLED, MOVED, STOPPED, STUCK = "retrying", "stalled", "moved", "stopped", "stuck"
DONE = (MOVED, STOPPED)
FINISHED_PHASES = ("Succeeded", "Failed")
RUNNING_PHASE = "Running"

# The scheduler's FailedScheduling message ("0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't
# match Pod's node affinity/selector.") item by item (kubernetes pkg/scheduler/framework/plugins/*: their
# ErrReason strings), for what the labels alone do not explain.
SCHEDULER_REASONS = (
    (re.compile(r"Insufficient (\S+)"), Category.CAPACITY, None),
    (re.compile(r"Too many pods"), Category.CAPACITY, "pods"),
    (re.compile(r"didn't match Pod's node affinity/selector"), Category.NODE_AFFINITY, None),
    (re.compile(r"didn't match pod (anti-)?affinity"), Category.POD_AFFINITY, None),
    (re.compile(r"untolerated taint"), Category.TAINT, None),
    (re.compile(r"were unschedulable"), Category.CORDONED, None),
)


@dataclass(frozen=True)
class Seen:
    """What the cluster shows of one VM of the drained node."""

    namespace: str
    name: str
    vmi: Optional[VirtualMachineInstance]  # None once it left the node's VMIs
    gone: Optional[str] = None  # then: "deleted", "stopped", or the node it runs on now
    migrations: Tuple[Migration, ...] = ()  # of this VMI, oldest first
    target_pods: Mapping[str, Tuple[Pod, ...]] = None  # type: ignore[assignment]  # migration uid -> its pods
    events: Tuple[Event, ...] = ()  # warnings about its migrations and their target pods, oldest first


@dataclass(frozen=True)
class Status:
    state: str
    target: Optional[str] = None
    migration: Optional[Tuple[str, str]] = None  # (name, phase)
    reasons: Tuple[BlockingKey, ...] = ()
    message: str = ""
    progress: str = ""  # what changes while the VM moves on (for stalled and stuck)

    @property
    def shown(self) -> tuple:
        """What a change of is printed."""
        return self.state, self.target, self.migration, self.reasons, self.message


Explain = Callable[[Pod], Tuple[BlockingKey, ...]]


def scheduler_reasons(message: str) -> Tuple[BlockingKey, ...]:
    """The items of a FailedScheduling message the scheduler counted, each with its number of nodes."""
    found = []
    _, _, items = message.partition("available: ")
    for item in re.split(r",\s*", items.split(" preemption:")[0].rstrip(". ")):
        count, _, text = item.strip().partition(" ")
        if not count.isdigit():
            continue
        for pattern, category, key in SCHEDULER_REASONS:
            m = pattern.search(text)
            if m:
                found.append(BlockingKey(category, key or (m.group(1) if m.groups() and category is Category.CAPACITY
                                                           else None), text.strip(), int(count)))
                break
    return tuple(found)


def _pending_reasons(pod: Pod, events: Sequence[Event], explain: Explain) -> Tuple[Tuple[BlockingKey, ...], str]:
    sched = pod.condition("PodScheduled")
    said = [e.message for e in events if e.name == pod.name and e.reason == "FailedScheduling"]
    message = said[-1] if said else (sched.message if sched else "") or "the target pod is not scheduled"
    reasons = list(explain(pod))  # the engine, label by label, for the pod's actual constraints
    covered = {r.category for r in reasons}
    reasons += [r for r in scheduler_reasons(message) if r.category not in covered
                and not (r.category is Category.NODE_AFFINITY and covered)]
    return tuple(reasons), message


def observe(seen: Seen, node: str, explain: Explain, cordoned: Optional[bool] = True) -> Status:
    """The VM's state from what the cluster shows now (time plays no part here: see Tracker). `cordoned`: whether
    the node is (a drain cordons it first)."""
    migs = seen.migrations
    last = (migs[-1].name, migs[-1].phase) if migs else None
    if seen.vmi is None:
        if seen.gone in ("deleted", "stopped", None):
            return Status(STOPPED, None, last, (), "the VMI was deleted" if seen.gone != "stopped"
                          else "the VM stopped")
        return Status(MOVED, seen.gone, last, (), "runs on %s" % seen.gone)
    vmi = seen.vmi
    if vmi.phase in FINISHED_PHASES:
        return Status(STOPPED, None, last, (), "the VMI is %s (shut down)" % vmi.phase)
    if vmi.node_name and vmi.node_name != node:
        return Status(MOVED, vmi.node_name, last, (), "runs on %s" % vmi.node_name)
    active = [m for m in migs if m.phase not in FINISHED_PHASES]
    failed = [m for m in migs if m.phase == "Failed"]
    if not active:
        if migs and migs[-1].phase == "Failed":
            m = migs[-1]
            return Status(WAITING, None, last, (), "migration %s failed%s; KubeVirt tries again after a backoff"
                          % (m.name, ": " + m.failure if m.failure else ""), vmi.migration_progress)
        if vmi.evacuation_node == node:
            return Status(WAITING, None, last, (), "evicted: waiting for KubeVirt to create its migration (it "
                          "migrates at most 2 VMs out of a node at a time, 5 in the cluster, by default)",
                          vmi.migration_progress)
        return Status(WAITING, None, last, (), "not evicted yet" if cordoned or cordoned is None else
                      "not evicted yet, and %s is not cordoned: has the drain started?" % node, vmi.migration_progress)
    current = active[-1]
    ref = (current.name, current.phase)
    pods = sorted((seen.target_pods or {}).get(current.uid, ()), key=lambda p: (p.created, p.name))
    pod = pods[-1] if pods else None
    progress = "%s|%s|%s|%s" % (current.phase, current.progress, vmi.migration_progress,
                                (pod.node_name, pod.phase) if pod else None)
    if pod is not None and pod.node_name == node:
        return Status(TARGET_ON_SOURCE, node, ref, (BlockingKey(Category.SOURCE_NODE, None, "the target pod %s is "
                                                                "bound to %s, the node being drained" % (pod.name, node), 1),),
                      "the target pod %s landed on %s, the node being drained: the migration cannot finish until "
                      "it fails and KubeVirt creates another (kubevirt#18946)" % (pod.name, node), progress)
    sched = pod.condition("PodScheduled") if pod is not None else None
    if pod is not None and not pod.node_name and sched is not None and sched.status == "False":
        reasons, message = _pending_reasons(pod, seen.events, explain)
        return Status(TARGET_PENDING, None, ref, reasons, "the target pod %s cannot be scheduled: %s"
                      % (pod.name, message), progress)
    target = (pod.node_name if pod is not None else None) or current.target_node
    if failed:
        return Status(RETRYING, target, ref, (), "migration %s failed%s; %s is attempt %d (transient, not a blocker)"
                      % (failed[-1].name, ": " + failed[-1].failure if failed[-1].failure else "", current.name,
                         len(failed) + 1), progress)
    return Status(MIGRATING, target, ref, (), "migration %s is %s%s" % (current.name, current.phase,
                                                                          " to %s" % target if target else ""), progress)


class Tracker:
    """Time on top of `observe`: how long each VM has gone without progress."""

    def __init__(self, stuck_after: float, stall_after: float):
        self.stuck_after, self.stall_after = stuck_after, stall_after
        self.since: Dict[Tuple[str, str], float] = {}
        self.moved_on: Dict[Tuple[str, str], tuple] = {}

    def update(self, key: Tuple[str, str], status: Status, now: float, fix: Callable[[], str]) -> Status:
        """The status to show: `stalled` when a running migration's status has not changed for stall_after,
        `stuck` when nothing about the VM has changed for stuck_after (with the fix drain-check gives)."""
        marker = (status.state, status.target, status.migration, status.progress)
        if self.moved_on.get(key) != marker:
            self.moved_on[key] = marker
            self.since[key] = now
        if status.state in DONE:
            return status
        quiet = now - self.since[key]
        if quiet >= self.stuck_after:
            cure = fix()
            return replace(status, state=STUCK, message="no progress for %s: %s%s" % (
                duration(self.stuck_after), status.message, "; fix: " + cure if cure else ""))
        if status.state in (MIGRATING, RETRYING) and status.migration and status.migration[1] == RUNNING_PHASE \
                and quiet >= self.stall_after:
            return replace(status, state=STALLED, message="%s, and its status has not changed for %s" % (
                status.message, duration(self.stall_after)))
        return status

    def next_deadline(self, statuses: Mapping[Tuple[str, str], Status], now: float) -> Optional[float]:
        """The next moment a VM may turn stalled or stuck without any change in the cluster."""
        found = [moment for key, status in statuses.items() if status.state not in DONE and key in self.since
                 for moment in (self.since[key] + self.stall_after, self.since[key] + self.stuck_after)
                 if moment > now]
        return min(found) if found else None


def duration(seconds: float) -> str:
    """kubectl's way of writing a duration: 2m0s, 45s, 1h0m0s."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh%dm%ds" % (hours, minutes, secs)
    if minutes:
        return "%dm%ds" % (minutes, secs)
    return "%ds" % secs
