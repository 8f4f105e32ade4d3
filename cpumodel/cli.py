"""Command line entry: dispatch to a command, and the one place errors become `error: …` and exit 1.

Importing this module must stay cheap: `--help` never loads the kubernetes
client, yaml or HTTP stack (a test checks sys.modules).
"""
from __future__ import annotations

import gc
import importlib
import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations are strings here, and importing typing costs every start (--help) 4 ms
    from typing import List, Mapping, Optional, TextIO

from cpumodel.errors import CpuModelError, ExitCode, UsageError
from cpumodel.parser import COMMANDS, build_parser, parse


def program_name(argv0: str) -> str:
    base = os.path.basename(argv0)
    return "kubectl cpumodel" if base.startswith("kubectl-") or base == "__main__.py" else base


def main(argv: Optional[List[str]] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
         env: Optional[Mapping[str, str]] = None) -> int:
    """The whole command line; streams and environment are injectable so tests run it in-process.

    Called as the program (no argv), it ends the process itself once the output is flushed:
    interpreter teardown only costs time, and would wait for a request still stuck in a thread.
    """
    if argv is None:
        # A command builds large acyclic structures (thousands of nodes, tens of thousands of VMs and pods) and
        # then ends: the cyclic collector would only rescan them again and again (a fifth of `audit -A`'s time at
        # 5,000 nodes) and finds next to nothing (about a thousand objects, whatever the cluster's size; README
        # "Performance"). Reference counting still frees everything else. watch-drain, which runs for hours,
        # turns it back on.
        gc.disable()
        code = run(sys.argv[1:], sys.stdout, sys.stderr, os.environ, program_name(sys.argv[0]))
        os._exit(code)
    return run(argv, stdout or sys.stdout, stderr or sys.stderr, os.environ if env is None else env)


def run(argv: List[str], stdout: TextIO, stderr: TextIO, env: Mapping[str, str],
        prog: str = "kubectl cpumodel") -> int:
    from cpumodel.output.terminal import SafeStream

    stdout, stderr = SafeStream(stdout), SafeStream(stderr)  # type: ignore[assignment]
    code = _dispatch(argv, stdout, stderr, env, prog)
    for stream in (stdout, stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    return code


def _dispatch(argv: List[str], stdout: TextIO, stderr: TextIO, env: Mapping[str, str], prog: str) -> int:
    if argv[:1] == ["__complete"]:  # kubectl_complete-cpumodel for krew installs calls this
        from cpumodel.completion import complete

        return complete(argv[1:], stdout, env)
    try:
        if not argv:
            build_parser(prog, stdout).print_help()
            return ExitCode.OK
        args = parse(argv, prog, stdout)
        if args is None:  # --help and --version answered
            return ExitCode.OK
        if args.command is None:
            raise UsageError("a command is required: one of %s" % ", ".join(COMMANDS))
        from cpumodel.commands.context import Environment

        environment = Environment(stdout=stdout, stderr=stderr, env=dict(env))
        return int(importlib.import_module(COMMANDS[args.command]).run(args, environment))
    except CpuModelError as exc:
        from cpumodel.output.terminal import escape_controls

        stderr.write("error: %s\n" % escape_controls(str(exc)))  # server messages are in some errors
        return ExitCode.ERROR
    except KeyboardInterrupt:
        stderr.write("error: interrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `… | head -1`: the reader has what it wanted
        return ExitCode.OK
    except Exception as exc:  # a bug of ours: still one line, the traceback only on request
        if env.get("CPUMODEL_TRACEBACK"):
            raise
        stderr.write("error: internal error (%s); set CPUMODEL_TRACEBACK=1 for details and please report it\n"
                     % type(exc).__name__)
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
