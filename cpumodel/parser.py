"""The command line's shape: every subcommand, flag and help text, and nothing else.

Kept apart from the commands' logic so that `--help`, the man page and shell
completion build the parser without importing the core, the client or yaml.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations are strings here, and importing typing costs every start (--help) 4 ms
    from typing import List, Optional

from cpumodel import __version__
from cpumodel.errors import UsageError

#: subcommand -> module implementing run(args, env), imported only when the command runs
COMMANDS = {"diff": "cpumodel.commands.diff", "common": "cpumodel.commands.common",
            "why-not": "cpumodel.commands.why_not", "set": "cpumodel.commands.set_model",
            "drain-check": "cpumodel.commands.drain_check", "audit": "cpumodel.commands.audit",
            "watch-drain": "cpumodel.commands.watch_drain", "what-if": "cpumodel.commands.what_if",
            "upgrade-check": "cpumodel.commands.upgrade_check"}
GLOBAL_DEFAULTS = {"kubeconfig": None, "context": None, "namespace": None, "request_timeout": "0",
                   "filename": None, "output": "table", "v": 0, "no_headers": False, "max_input_size": "1Gi",
                   "kube_cluster": None, "user": None, "server": None, "token": None, "certificate_authority": None,
                   "client_certificate": None, "client_key": None, "insecure_skip_tls_verify": None,
                   "tls_server_name": None, "as_user": None, "as_group": None, "as_uid": None}
OUTPUT_FORMATS = ("table", "wide", "json", "yaml", "name")
DRY_RUN_MODES = ("none", "client", "server")
FILE_METAVAR = "PATH"  # flags whose value is a file name (shell completion offers files)

DESCRIPTION = """Find, explain and fix CPU-model live-migration blockers on KubeVirt and Harvester.

KubeVirt labels nodes with the CPU models and features they offer and turns a VM's
CPU settings into scheduling constraints. In clusters that mix CPU generations,
host-model VMs then cannot migrate. This plugin shows which labels differ, the
highest CPU model every node supports, why a VM cannot move to a node, and sets
an explicit model safely."""

EPILOG = """examples:
  kubectl cpumodel drain-check node-a
  kubectl cpumodel audit -A
  kubectl cpumodel watch-drain node-a
  kubectl cpumodel what-if --remove-node node-c
  kubectl cpumodel upgrade-check --to v1.9.0
  kubectl cpumodel common
  kubectl cpumodel diff node-a node-b
  kubectl cpumodel why-not vm/web-1 node-b -n prod
  kubectl cpumodel set vm/web-1 Cascadelake-Server --dry-run=client
  kubectl cpumodel set --cluster Cascadelake-Server
  kubectl cpumodel common -f supportbundle_x.zip"""


_INVALID_CHOICE = re.compile(r"argument (?P<flag>[^:]+): invalid choice: '(?P<value>.*)' \(choose from (?P<choices>.*)\)$")


def explain_usage_error(message: str) -> str:
    """argparse's wording where kubectl users expect kubectl's, and a "did you mean" for typos."""
    bad = _INVALID_CHOICE.match(message)
    if not bad:
        return message
    flag, value = bad.group("flag"), bad.group("value")
    if "--output" in flag:
        return ('unable to match a printer suitable for the output format "%s", allowed formats are: %s'
                % (value, ",".join(OUTPUT_FORMATS)))
    if "--dry-run" in flag:
        return 'invalid --dry-run "%s": must be none, client or server' % value
    choices = [c.strip().strip("'") for c in bad.group("choices").split(",")]
    import difflib  # only for a mistyped command

    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if flag == "COMMAND":
        return 'unknown command "%s" for "kubectl cpumodel"%s' % (
            value, "; did you mean %s?" % close[0] if close else "; commands: " + ", ".join(choices))
    return "%s%s" % (message, "; did you mean %s?" % close[0] if close else "")


def terminal_columns() -> int:
    """What shutil.get_terminal_size answers (COLUMNS, else the terminal, else 80), without importing shutil:
    argparse imports it, and bz2 and lzma with it, only for this (3 ms of every --help)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


def sized(formatter: type):
    """A formatter_class that is told the width instead of asking shutil for it."""
    return lambda prog: formatter(prog, width=terminal_columns() - 2)


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; kubectl exits 1 with `error: …`. Help goes to `output`."""

    def __init__(self, *args, output=None, **kwargs):
        kwargs.setdefault("formatter_class", sized(argparse.HelpFormatter))
        super().__init__(*args, **kwargs)
        self.output = output

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(explain_usage_error(message))

    def _print_message(self, message, file=None):  # type: ignore[override]
        if message:
            (self.output or file or sys.stdout).write(message)


def global_flags(kube_cluster: bool = True) -> argparse.ArgumentParser:
    # SUPPRESS defaults: a flag given before the subcommand must not be reset by the subparser.
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("global flags (accepted anywhere on the line)")
    s = argparse.SUPPRESS
    g.add_argument("--kubeconfig", default=s, metavar="PATH", help="Path to the kubeconfig file to use")
    g.add_argument("--context", default=s, metavar="NAME", help="The kubeconfig context to use")
    g.add_argument("-n", "--namespace", default=s, metavar="NS",
                   help="Namespace of the VMs (default: the context's namespace, else default)")
    g.add_argument("--request-timeout", default=s, metavar="D",
                   help="Per-request timeout, kubectl syntax (0 = none, 30s, 1m)")
    g.add_argument("-f", "--filename", default=s, action="append", metavar="PATH",
                   help="Read objects from a YAML/JSON file, a directory or a Harvester support bundle "
                        "(.zip or extracted) instead of the cluster; repeatable")
    g.add_argument("-o", "--output", default=s, metavar="FORMAT", choices=OUTPUT_FORMATS,
                   help="Output format: table (default), wide, json, yaml, name")
    g.add_argument("--max-input-size", default=s, metavar="SIZE",
                   help="Most bytes -f files and support bundles may hold together (default 1Gi; e.g. 500Mi, 4Gi)")
    g.add_argument("--no-headers", default=s, action="store_true", help="Print tables without their header rows")
    g.add_argument("-v", "--v", default=s, type=int, metavar="N", dest="v",
                   help="Log each API request (method, path, status, time) to stderr")
    connection_flags(parent, kube_cluster)
    return parent


def connection_flags(parent: argparse.ArgumentParser, kube_cluster: bool) -> None:
    """kubectl's global connection flags, with kubectl's names, help and precedence over the kubeconfig."""
    g = parent.add_argument_group("connection flags (as in kubectl; they override the kubeconfig)")
    s = argparse.SUPPRESS
    if kube_cluster:  # `set --cluster` is the cluster-wide default there: before `set`, or use --context
        g.add_argument("--cluster", dest="kube_cluster", default=s, metavar="NAME",
                       help="The name of the kubeconfig cluster to use")
    g.add_argument("--user", default=s, metavar="NAME", help="The name of the kubeconfig user to use")
    g.add_argument("-s", "--server", default=s, metavar="URL",
                   help="The address and port of the Kubernetes API server")
    g.add_argument("--token", default=s, metavar="TOKEN", help="Bearer token for authentication to the API server")
    g.add_argument("--certificate-authority", default=s, metavar=FILE_METAVAR,
                   help="Path to a cert file for the certificate authority")
    g.add_argument("--client-certificate", default=s, metavar=FILE_METAVAR,
                   help="Path to a client certificate file for TLS")
    g.add_argument("--client-key", default=s, metavar=FILE_METAVAR, help="Path to a client key file for TLS")
    g.add_argument("--insecure-skip-tls-verify", default=s, metavar="BOOL", type=_boolean,
                   help="If true, the server's certificate will not be checked for validity "
                        "(a bare flag means true; a value needs =)")
    g.add_argument("--tls-server-name", default=s, metavar="NAME",
                   help="Server name to use for server certificate validation")
    g.add_argument("--as", dest="as_user", default=s, metavar="USER",
                   help="Username to impersonate for the operation")
    g.add_argument("--as-group", dest="as_group", default=s, action="append", metavar="GROUP",
                   help="Group to impersonate for the operation; repeat for several groups")
    g.add_argument("--as-uid", dest="as_uid", default=s, metavar="UID", help="UID to impersonate for the operation")


def _boolean(text: str) -> bool:
    """Go's strconv.ParseBool, as kubectl's boolean flags accept it."""
    value = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError('invalid boolean "%s"' % text)
    return value


def add_selector(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-l", "--selector", metavar="SELECTOR",
                        help="Label selector for %s (e.g. zone=a,!node-role.kubernetes.io/witness)" % what)


def add_diff(subparsers, parents) -> None:
    p = subparsers.add_parser("diff", parents=parents, help="KubeVirt CPU labels that differ between nodes",
                              description="With two nodes: the KubeVirt CPU/scheduling labels present on one only, "
                                          "grouped, and those whose values differ. With more (or none: all nodes), "
                                          "a matrix with one row per differing label and one column per node.")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="Node names")
    add_selector(p, "the nodes to compare")
    p.add_argument("--all", action="store_true", help="Also show labels that are the same everywhere")


def add_common(subparsers, parents) -> None:
    p = subparsers.add_parser("common", parents=parents, help="The highest CPU model every VM-capable node supports",
                              description="The highest CPU model that every VM-capable node supports, all common "
                                          "models best first, the nodes left out and why, and the nodes that hold "
                                          "back each better model.")
    add_selector(p, "the nodes to consider")


def add_why_not(subparsers, parents) -> None:
    p = subparsers.add_parser("why-not", parents=parents, help="Why a VM cannot live-migrate to a node, and the fix",
                              description="Why VM cannot live-migrate to NODE, label by label, with where each "
                                          "constraint came from and a fix. Without NODE: every node but the one "
                                          "the VM runs on. VM is vm/NAME, vmi/NAME or NAME.")
    p.add_argument("vm", metavar="VM", help="vm/NAME, vmi/NAME or NAME")
    p.add_argument("node", nargs="?", metavar="NODE", help="The target node (default: every node)")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="Find the VM in whichever namespace holds it (an error if several do)")
    p.add_argument("--exit-code", action="store_true",
                   help="Exit 0 if the VM can migrate (to NODE, or to some node), 3 if it cannot")
    add_no_capacity(p)


def add_set(subparsers, parents) -> None:
    parents = [global_flags(kube_cluster=False)]  # here --cluster is the cluster-wide default
    p = subparsers.add_parser("set", parents=parents, help="Set the CPU model of VMs or the cluster default",
                              description="Set spec.template.spec.domain.cpu.model on VirtualMachines (VM... MODEL), "
                                          "remove it (--clear), or set the cluster-wide default (--cluster MODEL). "
                                          "The model is checked against the nodes before anything is written.")
    p.add_argument("args", nargs="*", metavar="VM... MODEL", help="vm/NAME or NAME (several allowed), then the model")
    p.add_argument("--clear", action="store_true", help="Remove the model, so VMs fall back to the cluster default")
    p.add_argument("--cluster", action="store_true", help="Set the cluster-wide default (KubeVirt cpuModel)")
    add_selector(p, "the VMs to change")
    p.add_argument("--all", action="store_true", help="Every VM in the namespace")
    p.add_argument("--dry-run", default="none", metavar="MODE", choices=DRY_RUN_MODES,
                   help="--dry-run=none (default), client (send nothing, show the change) or server (dryRun=All); "
                        "a bare --dry-run means client")
    p.add_argument("--force", action="store_true", help="Write even if nodes do not support the model")
    p.add_argument("--restart", action="store_true", help="Restart running VMs so the change applies now")
    p.add_argument("--target", choices=("hco", "kubevirt", "managedchart"),
                   help="With --cluster: write OpenShift's HyperConverged CR, the KubeVirt CR or Harvester's "
                        "ManagedChart (default: where the setting is owned -- the HyperConverged CR on OpenShift, "
                        "the ManagedChart fleet-local/harvester on Harvester, else the KubeVirt CR)")


def add_drain_check(subparsers, parents) -> None:
    p = subparsers.add_parser("drain-check", parents=parents, help="What a node drain does to every VM on it",
                              description="For every VM running on the given nodes, drained together: the eviction "
                                          "strategy, whether it migrates (and where), shuts down or blocks the "
                                          "drain, why, and the one fix. With --all: every VM-capable node drained "
                                          "alone, in turn (a rolling upgrade).")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="The nodes to drain together")
    p.add_argument("--all", action="store_true", help="Check every VM-capable node, each drained alone")
    add_selector(p, "the nodes to check with --all")
    p.add_argument("--exit-code", action="store_true", help="Exit 3 if any VM would block the drain")
    add_no_capacity(p)


def add_no_capacity(p) -> None:
    p.add_argument("--no-capacity", action="store_true",
                   help="Do not count room on the target nodes (allocatable minus the requests of their pods), "
                        "which needs a list of the pods of every namespace")


def add_audit(subparsers, parents) -> None:
    p = subparsers.add_parser("audit", parents=parents, help="Every VM's CPU mode, reach and migration risks",
                              description="Every VirtualMachine (running or not): its CPU mode and where the model "
                                          "comes from, how many nodes its next migration (or start) could land on, "
                                          "its risks, and the commands that fix the most VMs.")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="VMs in every namespace")
    add_selector(p, "the VMs to audit")
    p.add_argument("--exit-code", action="store_true",
                   help="Exit 3 if a VM has no target, is not live-migratable or carries sticky host-model constraints")
    add_no_capacity(p)


def add_watch_drain(subparsers, parents) -> None:
    p = subparsers.add_parser("watch-drain", parents=parents, help="During a drain: what every VM waits for, live",
                              description="Follows the evacuation of NODE as it happens (list, then watch): for "
                                          "every VM on it, one line each time its state changes -- waiting, "
                                          "migrating, target-pending (with the scheduler's reason and the labels "
                                          "behind it), target-on-source, retrying, stalled, moved, stopped, or "
                                          "stuck (no progress for --stuck-after, with the fix). Ends when NODE has "
                                          "no VMs left (exit 0); with --timeout, exit 3 when VMs remain then.")
    p.add_argument("node", metavar="NODE", help="The node being drained")
    p.add_argument("--timeout", metavar="DURATION", help="Give up after this long (exit 3 if VMs remain), e.g. 30m")
    p.add_argument("--stuck-after", metavar="DURATION", default="2m",
                   help="Call a VM stuck after this long without progress (default 2m); a running migration whose "
                        "status does not change for half of it is stalled")


def add_what_if(subparsers, parents) -> None:
    p = subparsers.add_parser("what-if", parents=parents, help="What removing or adding nodes, or changing a model, "
                                                               "would do",
                              description="Applies the changes to the cluster as read (nothing is written) and runs "
                                          "common, audit -A and drain-check --all on both versions: the common model "
                                          "and VM-capable nodes before and after, every VM whose reach, drain action "
                                          "or risks change (lost VMs, left with no node to move to, first), and "
                                          "every node whose drain blocks or stops blocking. A model change reaches a "
                                          "running VM at its next start: its next migration keeps the CPU it runs "
                                          "with, and the table says what it reaches once restarted.")
    p.add_argument("--remove-node", action="append", metavar="NODE", help="Remove this node (repeatable)")
    p.add_argument("--add-node", action="append", metavar=FILE_METAVAR,
                   help="Add the Node objects of this YAML/JSON file, folder or support bundle, e.g. a new server's "
                        "node taken from a test installation (repeatable; with --remove-node of the same name, "
                        "replace it)")
    p.add_argument("--cluster-model", action="append", metavar="MODEL",
                   help="Set the cluster-wide default CPU model (a named model, or host-model)")
    p.add_argument("--vm-model", action="append", metavar="vm/NAME=MODEL",
                   help="Set a VM's own CPU model, in the namespace of -n (repeatable)")
    p.add_argument("--exit-code", action="store_true",
                   help="Exit 3 if a VM is left with no node to move to, or a drain that did not block would")
    add_no_capacity(p)


def add_upgrade_check(subparsers, parents) -> None:
    p = subparsers.add_parser("upgrade-check", parents=parents, help="Before an upgrade: which VMs move, stop or "
                                                                      "hang it, and the target release's traps",
                              description="Drains every VM-capable node alone, in the order the platform upgrades "
                                          "nodes (Harvester: Rancher's etcd, control-plane, worker tiers; OpenShift: "
                                          "the Machine Config Operator's), and says what the platform does to each VM: "
                                          "migrate, shut down, hang the drain, or stop it (Harvester from v1.7). With "
                                          "--to, the drains run under the target's KubeVirt rules and the target's "
                                          "traps are checked: the same-vendor rule, obsolete models, machine-type "
                                          "selection, known CPU feature changes and the upgrade path. One "
                                          "'<title>: Pass|Warn|Fail' line per check, then the VMs, nodes and fixes "
                                          "behind each Warn or Fail.")
    p.add_argument("--to", metavar="VERSION",
                   help="The target release: Harvester's on Harvester (e.g. v1.9.0), KubeVirt's elsewhere")
    p.add_argument("--exit-code", action="store_true", help="Exit 3 if any check fails")
    add_no_capacity(p)


def build_parser(prog: str = "kubectl cpumodel", output=None) -> argparse.ArgumentParser:
    parents = [global_flags()]
    parser = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG, parents=parents, allow_abbrev=False,
                    formatter_class=sized(argparse.RawDescriptionHelpFormatter), output=output)
    parser.add_argument("--version", action="version", version="kubectl-cpumodel %s" % __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=lambda **kw: Parser(output=output, allow_abbrev=False, **kw))
    for add in (add_diff, add_common, add_why_not, add_set, add_drain_check, add_audit, add_watch_drain, add_what_if,
                add_upgrade_check):
        add(subparsers, parents)
    return parser


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict:
    """{command name: its parser} of a parser built by build_parser."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# Flags whose value kubectl takes only after `=`: bare, they mean this value and never eat the next word.
BARE_FLAG_VALUES = {"--dry-run": "client", "--insecure-skip-tls-verify": "true"}


def kubectl_style(argv: List[str]) -> List[str]:
    out, passthrough = [], False
    for word in argv:
        passthrough = passthrough or word == "--"
        bare = None if passthrough else BARE_FLAG_VALUES.get(word)
        out.append("%s=%s" % (word, bare) if bare else word)
    return out


def positionals_last(argv: List[str], parser: argparse.ArgumentParser) -> List[str]:
    """kubectl lets flags and arguments mix (`set vm/a --dry-run M`); argparse wants a positional run unbroken.

    Flags (with their values) keep their place before or after the subcommand; the subcommand's
    positional arguments follow, in the order given. Everything after `--` stays as it is.
    """
    commands = subcommand_parsers(parser)
    before: List[str] = []
    command: List[str] = []
    after: List[str] = []
    positionals: List[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            positionals += argv[i:]
            break
        active = commands[command[0]] if command else parser
        if word.startswith("-") and word != "-":
            flags = after if command else before
            flags.append(word)
            action = active._option_string_actions.get(word.split("=", 1)[0])
            if action is not None and action.nargs != 0 and "=" not in word and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        elif not command and word in commands:
            command.append(word)
        else:
            positionals.append(word)
        i += 1
    return before + command + after + positionals


def with_global_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Global flags use SUPPRESS defaults (so either side of the subcommand works); fill the absent ones."""
    for key, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def parse(argv: List[str], prog: str = "kubectl cpumodel", output=None) -> Optional[argparse.Namespace]:
    """The parsed command line; None when argparse already answered (--help, --version)."""
    try:
        parser = build_parser(prog, output)
        return with_global_defaults(parser.parse_args(positionals_last(kubectl_style(argv), parser)))
    except SystemExit:
        return None


def build_manpage_parser() -> argparse.ArgumentParser:
    """The parser for argparse-manpage: a prog without a space keeps the man page header valid."""
    return build_parser(prog="kubectl-cpumodel")
