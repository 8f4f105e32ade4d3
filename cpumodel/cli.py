"""Command line: the parser (global flags anywhere), dispatch, and the one error catcher.

Importing this module must stay cheap: `--help` never loads the kubernetes
client, yaml or tabulate (a test checks sys.modules).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Mapping, Optional, TextIO

from cpumodel import __version__
from cpumodel.commands import common as common_cmd
from cpumodel.commands import diff as diff_cmd
from cpumodel.commands import set_model as set_cmd
from cpumodel.commands import why_not as why_not_cmd
from cpumodel.commands.context import Environment
from cpumodel.errors import CpuModelError, ExitCode, UsageError
from cpumodel.output.render import OUTPUT_FORMATS

COMMANDS = {"diff": diff_cmd, "common": common_cmd, "why-not": why_not_cmd, "set": set_cmd}
GLOBAL_DEFAULTS = {"kubeconfig": None, "context": None, "namespace": None, "request_timeout": "0",
                   "filename": None, "output": "table", "v": 0}

DESCRIPTION = """Find, explain and fix CPU-model live-migration blockers on KubeVirt and Harvester.

KubeVirt labels nodes with the CPU models and features they offer and turns a VM's
CPU settings into scheduling constraints. In clusters that mix CPU generations,
host-model VMs then cannot migrate. This plugin shows which labels differ, the
highest CPU model every node supports, why a VM cannot move to a node, and sets
an explicit model safely."""

EPILOG = """examples:
  kubectl cpumodel common
  kubectl cpumodel diff node-a node-b
  kubectl cpumodel why-not vm/web-1 node-b -n prod
  kubectl cpumodel set vm/web-1 Cascadelake-Server --dry-run=client
  kubectl cpumodel set --cluster Cascadelake-Server
  kubectl cpumodel common -f supportbundle_x.zip"""


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; kubectl exits 1 with `error: …`."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def global_flags() -> argparse.ArgumentParser:
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
    g.add_argument("-o", "--output", default=s, metavar="FORMAT",
                   help="Output format: table (default), wide, json, yaml")
    g.add_argument("-v", "--v", default=s, type=int, metavar="N", dest="v",
                   help="Log each API request (method, path, status, time) to stderr")
    return parent


def build_parser(prog: str = "kubectl cpumodel") -> argparse.ArgumentParser:
    parents = [global_flags()]
    parser = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="kubectl-cpumodel %s" % __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        module.add_parser(subparsers, name, parents)
    return parser


def build_manpage_parser() -> argparse.ArgumentParser:
    """The parser for argparse-manpage: a prog without a space keeps the man page header valid."""
    return build_parser(prog="kubectl-cpumodel")


def program_name(argv0: str) -> str:
    base = os.path.basename(argv0)
    return "kubectl cpumodel" if base.startswith("kubectl-") or base == "__main__.py" else base


def main(argv: Optional[List[str]] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
         env: Optional[Mapping[str, str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    environment = Environment(stdout=stdout, stderr=stderr, env=dict(os.environ if env is None else env))
    if argv[:1] == ["__complete"]:  # kubectl_complete-cpumodel for krew installs calls this
        from cpumodel.completion import complete

        return complete(argv[1:], stdout)
    try:
        parser = build_parser(program_name(sys.argv[0]))
        if not argv:
            parser.print_help(stdout)
            return ExitCode.OK
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version end here
            return int(exc.code or 0)
        for key, value in GLOBAL_DEFAULTS.items():
            if not hasattr(args, key):
                setattr(args, key, value)
        if args.command is None:
            raise UsageError("a command is required: one of %s" % ", ".join(COMMANDS))
        return int(COMMANDS[args.command].run(args, environment))
    except CpuModelError as exc:
        stderr.write("error: %s\n" % exc)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        stderr.write("error: interrupted\n")
        return ExitCode.ERROR
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # a bug of ours: still one line, the traceback only on request
        if environment.env.get("CPUMODEL_TRACEBACK"):
            raise
        stderr.write("error: internal error (%s: %s); set CPUMODEL_TRACEBACK=1 for details and please report it\n"
                     % (type(exc).__name__, exc))
        return ExitCode.ERROR
    finally:
        try:
            stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


if __name__ == "__main__":
    sys.exit(main())
