"""What every command needs from the outside world, injected so tests can run main() in-process."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Dict, Optional, TextIO

from cpumodel.errors import UsageError
from cpumodel.parser import OUTPUT_FORMATS
from cpumodel.sources.base import Source


@dataclass
class Environment:
    stdout: TextIO
    stderr: TextIO
    env: Dict[str, str] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        self.stderr.write("Warning: %s\n" % message)

    def write(self, text: str) -> None:
        self.stdout.write(text)


def output_format(args: argparse.Namespace) -> str:
    fmt = args.output
    if fmt not in OUTPUT_FORMATS:
        raise UsageError('unable to match a printer suitable for the output format "%s", allowed formats are: %s'
                         % (fmt, ",".join(OUTPUT_FORMATS)))
    return fmt


def request_timeout(args: argparse.Namespace) -> Optional[float]:
    from cpumodel.sources.kubeclient import parse_duration

    try:
        return parse_duration(str(args.request_timeout))
    except ValueError:
        raise UsageError("invalid --request-timeout %r: use a duration such as 0, 30s or 1m" % args.request_timeout)


def open_source(args: argparse.Namespace, environment: Environment) -> Source:
    """-f files/bundles when given, else the live cluster chosen by kubeconfig flags."""
    timeout = request_timeout(args)
    if args.filename:
        from cpumodel.sources.snapshot import SnapshotSource

        return SnapshotSource(list(args.filename), args.namespace)
    from cpumodel.sources.kubeconfig import choose
    from cpumodel.sources.live import LiveSource

    choice = choose(args.kubeconfig, args.context, environment.env)
    return LiveSource(choice, args.namespace, timeout, args.v, environment.stderr)
