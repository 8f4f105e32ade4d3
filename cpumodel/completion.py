"""Shell completion through kubectl's plugin completion (`kubectl_complete-cpumodel`, kubectl >= 1.26).

kubectl runs `kubectl_complete-cpumodel ARGS... WORD` and reads one candidate per
line, then a Cobra directive line (`:4` = no file completion, `:0` = files).
Candidates that need no API call (subcommands, flags, -o values) import nothing
heavy; names of nodes, VMs and models are read from the cluster or from -f files.
"""
from __future__ import annotations

import sys
from typing import Iterable, List, Optional, TextIO, Tuple

NO_FILES = ":4"
FILES = ":0"
ERROR = ":1"
FILE_FLAGS = {"-f", "--filename", "--kubeconfig"}
VALUE_FLAGS = {"--context", "-n", "--namespace", "--request-timeout", "-o", "--output", "-v", "--v", "-l",
               "--selector", "--dry-run", "--target"} | FILE_FLAGS
FIXED_VALUES = {"-o": ("table", "wide", "json", "yaml"), "--output": ("table", "wide", "json", "yaml"),
                "--dry-run": ("none", "client", "server"), "--target": ("kubevirt", "managedchart")}


def _split(words: List[str]):
    """(subcommand, positionals, flag values) from the words typed before the current one."""
    command, positionals, values = None, [], {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            name, eq, value = word.partition("=")
            if name in VALUE_FLAGS and not eq and i + 1 < len(words):
                values.setdefault(name, []).append(words[i + 1])
                i += 1
            elif eq:
                values.setdefault(name, []).append(value)
        elif command is None:
            command = word
        else:
            positionals.append(word)
        i += 1
    return command, positionals, values


def _flags(command: Optional[str]) -> List[str]:
    from cpumodel.parser import build_parser

    parser = build_parser()
    actions = list(parser._actions)
    if command:
        sub = next((a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)), None)
        if sub is not None and command in sub.choices:
            actions = list(sub.choices[command]._actions)
    return sorted({o for a in actions for o in a.option_strings if o.startswith("--") or len(o) == 2})


def _contexts(values) -> List[str]:
    import os

    from cpumodel.sources.kubeconfig import kubeconfig_paths, merge_kubeconfigs

    paths = kubeconfig_paths((values.get("--kubeconfig") or [None])[-1], os.environ)
    return sorted(c.get("name", "") for c in merge_kubeconfigs(paths).get("contexts") or [])


def _reader(values):
    import argparse
    import io
    import os

    from cpumodel.commands.context import Environment, open_source
    from cpumodel.parser import GLOBAL_DEFAULTS
    from cpumodel.sources.reader import ClusterReader

    last = lambda flag, alt=None: (values.get(flag) or values.get(alt) or [None])[-1]  # noqa: E731
    args = argparse.Namespace(**dict(GLOBAL_DEFAULTS, filename=values.get("-f") or values.get("--filename"),
                                     kubeconfig=last("--kubeconfig"), context=last("--context"),
                                     namespace=last("-n", "--namespace"), request_timeout="5s"))
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), env=dict(os.environ))
    return ClusterReader(open_source(args, env))


def _api_candidates(kind: str, values) -> List[str]:
    from cpumodel.core.labels import CPU_MODEL
    from cpumodel.objects import CPU_MODES
    from cpumodel.sources import resources as r

    reader = _reader(values)
    if kind == "nodes":
        return [n.name for n in reader.nodes(view="metadata")]
    if kind == "vms":
        return ["vm/" + v.name for v in reader.vms(reader.source.namespace)]
    if kind == "namespaces":
        return [(o.get("metadata") or {}).get("name", "") for o in reader.source.list(r.NAMESPACES)]
    models = set()
    for node in reader.nodes(view="metadata"):
        models.update(k[len(CPU_MODEL):] for k, v in node.labels.items() if k.startswith(CPU_MODEL) and v == "true")
    return sorted(models) + list(CPU_MODES)


def _positional_kinds(command: str, positionals: List[str], values) -> List[str]:
    if command == "diff":
        return ["nodes"]
    if command == "why-not":
        return ["vms"] if not positionals else (["nodes"] if len(positionals) == 1 else [])
    if command == "set":
        if "--cluster" in values or any(p == "--cluster" for p in positionals):
            return ["models"] if not positionals else []
        return ["vms", "models"]
    return []


def candidates(words: List[str], current: str) -> Tuple[List[str], str]:
    from cpumodel.parser import COMMANDS

    command, positionals, values = _split(words)
    previous = words[-1] if words else ""
    if previous in VALUE_FLAGS and "=" not in previous:
        if previous in FILE_FLAGS:
            return [], FILES
        if previous in FIXED_VALUES:
            return list(FIXED_VALUES[previous]), NO_FILES
        if previous == "--context":
            return _contexts(values), NO_FILES
        if previous in ("-n", "--namespace"):
            return _api_candidates("namespaces", values), NO_FILES
        return [], NO_FILES
    if current.startswith("-"):
        return _flags(command if command in COMMANDS else None), NO_FILES
    if command is None:
        return list(COMMANDS), NO_FILES
    if "--cluster" in words:
        values["--cluster"] = [""]
    found: List[str] = []
    for kind in _positional_kinds(command, positionals, values):
        found.extend(_api_candidates(kind, values))
    return found, NO_FILES


def complete(args: List[str], out: TextIO) -> int:
    """args: the words typed after `kubectl cpumodel`, the last one being completed (may be "")."""
    words, current = (args[:-1], args[-1]) if args else ([], "")
    try:
        found, directive = candidates(words, current)
    except Exception:  # completion must never print a traceback into the user's shell
        out.write(ERROR + "\n")
        return 0
    for item in _matching(found, current):
        out.write(item + "\n")
    out.write(directive + "\n")
    return 0


def _matching(items: Iterable[str], prefix: str) -> List[str]:
    return sorted({i for i in items if i.startswith(prefix)})


def main(argv: Optional[List[str]] = None) -> int:
    return complete(sys.argv[1:] if argv is None else argv, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
