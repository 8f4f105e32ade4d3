"""What every command shares: the injected environment, the checks of global flags, the data source.

Each command follows kubectl's Complete/Validate/Run: `options(args)` turns the parsed
command line into a frozen Options value and reports every usage problem at once, before
any file or cluster is opened; `run` then gathers, computes (pure core) and renders.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple, TypeVar

from cpumodel.errors import UsageError
from cpumodel.objects import VM_KIND_NAMES, VMI_KIND_NAMES
from cpumodel.output.terminal import escape_controls
from cpumodel.sources.base import Source

T = TypeVar("T")


@dataclass
class Environment:
    stdout: TextIO
    stderr: TextIO
    env: Dict[str, str] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        self.stderr.write("Warning: %s\n" % escape_controls(message))

    def write(self, text: str) -> None:
        """A JSON or YAML document, exactly (their encoders escape what needs escaping)."""
        self.stdout.write(text)

    def say(self, text: str) -> None:
        """Text for a person: anything a server or file put in it is made harmless for a terminal."""
        self.stdout.write(escape_controls(text))

    def tell(self, text: str) -> None:
        """Progress and side notes, on stderr."""
        self.stderr.write(escape_controls(text))


class Problems:
    """Collects usage errors so that one run reports all of them, as one `error:` line."""

    def __init__(self) -> None:
        self.messages: List[str] = []

    def check(self, validate: Callable[[], T]) -> Optional[T]:
        try:
            return validate()
        except UsageError as exc:
            self.messages.append(str(exc))
            return None

    def add(self, message: str) -> None:
        self.messages.append(message)

    def raise_any(self) -> None:
        if self.messages:
            raise UsageError("; ".join(self.messages))


@dataclass(frozen=True)
class Common:
    """The global flags every command validates the same way."""

    fmt: str
    timeout: Optional[float]
    no_headers: bool = False
    max_input: str = "1Gi"

    @property
    def style(self):
        from cpumodel.output.render import TableStyle

        return TableStyle(wide=self.fmt == "wide", headers=not self.no_headers)


def note_uncollected(env: "Environment", source: Source) -> List[str]:
    """Say which namespaces a support bundle left out: the VMs there are not in the answer."""
    missing = source.uncollected_namespaces()
    if missing:
        env.warn("the support bundle holds nothing from namespaces %s: VMs there are not checked"
                 % ", ".join(missing))
    return missing


def note_config(env: "Environment", config) -> None:
    """Say when the owner of the cluster's CPU settings could not be read: the KubeVirt CR stands in for it."""
    if config.hco_problem:
        env.warn("OpenShift Virtualization: could not read the HyperConverged CR that owns the KubeVirt CR (%s); "
                 "using the KubeVirt CR's settings" % config.hco_problem)


def note_skipped(env: "Environment", reader) -> None:
    """Say which optional reads RBAC refused (events, past migrations, pods of other namespaces)."""
    for note in reader.skipped:
        env.warn(note)


NO_CAPACITY = {"checked": False, "podsRead": None, "nodesWithoutAllocatable": [], "uncollectedNamespaces": []}


def capacity_room(env: "Environment", reader, engine, nodes, uncollected: Sequence[str]):
    """Free room on `nodes` (the nodes asked about; None: every node) from the pods the scheduler counts there,
    and what the answer's `capacity` block says of it; no room (None) when the pods could not be read."""
    from cpumodel.core.capacity import Room

    usage, info = node_usage(env, reader, engine.by_name, nodes, uncollected)
    return (Room(engine.index, usage), info) if usage is not None else (None, info)


def node_usage(env: "Environment", reader, by_name, nodes, uncollected: Sequence[str]):
    """What the pods counted on `nodes` (None: every node) take, saying what limits the answer."""
    from cpumodel.output.render import brief_list

    usage, how = reader.node_usage(nodes)
    asked = sorted(nodes) if nodes is not None else sorted(by_name)
    blind = [n for n in asked if not by_name[n].allocatable]
    info = {"checked": usage is not None, "podsRead": how if usage is not None else None,
            "nodesWithoutAllocatable": blind, "uncollectedNamespaces": list(uncollected)}
    if usage is None:
        return None, info
    if blind:
        env.warn("room not counted on %d node%s that report no status.allocatable (%s)"
                 % (len(blind), "" if len(blind) == 1 else "s", brief_list(blind, 3)))
    if uncollected:
        env.warn("room on the nodes counts the pods the support bundle holds: pods of namespaces %s are not in it, "
                 "so nodes may have less room than shown" % ", ".join(uncollected))
    return usage, info


def kubevirt_as_observed(env: "Environment", kubevirt, pods, nodes):
    """The KubeVirt configuration with the vendor rule its migration target pods show (kubevirt-rules §5),
    saying so when that disagrees with the version."""
    from cpumodel.core.launcher_pod import observe_vendor_rule

    kubevirt, note = observe_vendor_rule(kubevirt, pods, nodes)
    if note:
        env.warn(note)
    return kubevirt


def emit(env: "Environment", common: Common, document: Callable[[], dict], text: Callable[..., str],
         names: Callable[[], str]) -> None:
    """A command's result on stdout, in the format -o asked for (JSON written as it is encoded)."""
    if common.fmt in ("json", "yaml"):
        from cpumodel.output.render import write_structured

        write_structured(document(), common.fmt, env.write)
    elif common.fmt == "name":
        env.say(names())
    else:
        env.say(text(common.style))


def request_timeout(args: argparse.Namespace) -> Optional[float]:
    from cpumodel.sources.kubeclient import parse_duration

    try:
        return parse_duration(str(args.request_timeout))
    except ValueError:
        raise UsageError("invalid --request-timeout %r: use a duration such as 0, 30s or 1m" % args.request_timeout)


def common_options(args: argparse.Namespace, problems: Problems) -> Common:
    timeout = problems.check(lambda: request_timeout(args))
    problems.check(lambda: input_size(args.max_input_size))
    if args.namespace is not None:
        problems.check(lambda: checked_name(args.namespace, "namespace", label=True))
    return Common(args.output, timeout, args.no_headers, args.max_input_size)  # -o is limited by the parser


def input_size(text: str) -> int:
    from cpumodel.sources.quantity import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise UsageError("invalid --max-input-size %r: use bytes or a quantity such as 500Mi or 4Gi" % text)


def checked_selector(selector: Optional[str]) -> Optional[str]:
    """A -l value that parses, so a typo is a usage error before anything is read."""
    if selector:
        from cpumodel.core.api_selectors import parse_selector

        parse_selector(selector)
    return selector


_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def checked_name(name: str, what: str, label: bool = False) -> str:
    """A Kubernetes object name (RFC 1123), checked before it goes into a URL path."""
    limit, pattern = (63, _LABEL) if label else (253, _SUBDOMAIN)
    if not name or len(name) > limit or not pattern.match(name):
        raise UsageError('invalid %s name "%s": a Kubernetes name is at most %d lowercase letters, digits and '
                         "'-'%s, starting and ending with a letter or digit"
                         % (what, escape_controls(name), limit, "" if label else " or '.'"))
    return name


def checked_names(names, what: str, problems: "Problems") -> None:
    for name in names:
        problems.check(lambda name=name: checked_name(name, what))


def parse_vm_reference(ref: str, allow_vmi: bool = True) -> Tuple[str, str]:
    """`vm/NAME`, `vmi/NAME` (any name kubectl accepts for the type) or a bare NAME -> (kind, name)."""
    kind, sep, name = ref.partition("/")
    if not sep:
        return "any", checked_name(ref, "VM")
    kinds = {k: "vm" for k in VM_KIND_NAMES}
    if allow_vmi:
        kinds.update({k: "vmi" for k in VMI_KIND_NAMES})
    if kind.lower() not in kinds or not name:
        raise UsageError("unsupported VM reference %r: use %s" % (ref, "vm/NAME, vmi/NAME or NAME" if allow_vmi
                                                                   else "vm/NAME or NAME"))
    return kinds[kind.lower()], checked_name(name, "VM")


def open_source(args: argparse.Namespace, environment: Environment, timeout: Optional[float]) -> Source:
    """-f files/bundles when given, else the live cluster chosen by kubeconfig flags."""
    if args.filename:
        from cpumodel.sources.snapshot import SnapshotSource

        return SnapshotSource(list(args.filename), args.namespace, args.max_input_size)
    from cpumodel.sources.kubeconfig import connect
    from cpumodel.sources.live import LiveSource

    access = connect(connection_flags(args), environment.env)
    return LiveSource(access, args.namespace, timeout, args.v, environment.stderr)


def connection_flags(args: argparse.Namespace):
    from cpumodel.sources.kubeconfig import ConnectionFlags

    return ConnectionFlags(args.kubeconfig, args.context, args.kube_cluster, args.user, args.server, args.token,
                           args.certificate_authority, args.client_certificate, args.client_key,
                           args.insecure_skip_tls_verify, args.tls_server_name, args.as_user,
                           tuple(args.as_group or ()), args.as_uid)
