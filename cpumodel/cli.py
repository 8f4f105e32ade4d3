"""Command line entry: dispatch to a command, and the one place errors become `error: …` and exit 1.

Importing this module must stay cheap: `--help` never loads the kubernetes
client, yaml or tabulate (a test checks sys.modules).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import List, Mapping, Optional, TextIO

from cpumodel.errors import CpuModelError, ExitCode, UsageError
from cpumodel.parser import COMMANDS, build_parser, parse


def program_name(argv0: str) -> str:
    base = os.path.basename(argv0)
    return "kubectl cpumodel" if base.startswith("kubectl-") or base == "__main__.py" else base


def main(argv: Optional[List[str]] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
         env: Optional[Mapping[str, str]] = None) -> int:
    """The whole command line; streams and environment are injectable so tests run it in-process."""
    prog = program_name(sys.argv[0]) if argv is None else "kubectl cpumodel"
    argv = sys.argv[1:] if argv is None else argv
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
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

        environment = Environment(stdout=stdout, stderr=stderr, env=dict(os.environ if env is None else env))
        return int(importlib.import_module(COMMANDS[args.command]).run(args, environment))
    except CpuModelError as exc:
        stderr.write("error: %s\n" % exc)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        stderr.write("error: interrupted\n")
        return ExitCode.ERROR
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # a bug of ours: still one line, the traceback only on request
        if (os.environ if env is None else env).get("CPUMODEL_TRACEBACK"):
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
