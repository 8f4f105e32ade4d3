"""Shell completion through kubectl's plugin completion (`kubectl_complete-cpumodel`, kubectl >= 1.26).

kubectl runs `kubectl_complete-cpumodel ARGS... WORD` and reads one candidate per
line, then a Cobra directive line (`:4` = no file completion, `:0` = files).
Flags, which of them take a value, their fixed choices and which name files all come
from the real parser. Candidates that need no API call import nothing heavy; names of
nodes, VMs and models are read from the cluster or from -f files.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, TextIO, Tuple

NO_FILES = ":4"
FILES = ":0"
ERROR = ":1"
LOOKUP_TIMEOUT = "5s"  # a completion must not hang the shell on a dead cluster


@dataclass(frozen=True)
class FlagSpec:
    """What completion needs to know of one parser's flags (the top level's, or a subcommand's)."""

    options: List[str]
    takes_value: frozenset
    choices: Dict[str, Tuple[str, ...]]
    files: frozenset


def flag_specs() -> Dict[Optional[str], FlagSpec]:
    """command (None: before any command) -> the flags its parser knows."""
    from cpumodel.parser import FILE_METAVAR, build_parser, subcommand_parsers

    top = build_parser()
    parsers: Dict[Optional[str], argparse.ArgumentParser] = {None: top}
    parsers.update(subcommand_parsers(top))
    return {command: _spec(parser, FILE_METAVAR) for command, parser in parsers.items()}


def _spec(parser: argparse.ArgumentParser, file_metavar: str) -> FlagSpec:
    actions = [a for a in parser._actions if a.option_strings]
    valued = [a for a in actions if a.nargs != 0]
    return FlagSpec(sorted({o for a in actions for o in a.option_strings if o.startswith("--") or len(o) == 2}),
                    frozenset(o for a in valued for o in a.option_strings),
                    {o: tuple(a.choices) for a in valued if a.choices for o in a.option_strings},
                    frozenset(o for a in valued if a.metavar == file_metavar for o in a.option_strings))


def _split(words: List[str], specs: Dict[Optional[str], FlagSpec]):
    """(subcommand, positionals, flags as token groups) from the words typed before the current one."""
    command, positionals, flags = None, [], []
    i = 0
    while i < len(words):
        word = words[i]
        spec, top = specs.get(command, specs[None]), specs[None]
        if word.startswith("-"):
            name, eq, _ = word.partition("=")
            # A global flag, unless the subcommand gives the same name another meaning (set --cluster).
            is_global = name in top.options and (name in spec.takes_value) == (name in top.takes_value)
            flags.append([name if is_global else "", word])
            if name in spec.takes_value and not eq and i + 1 < len(words):
                flags[-1].append(words[i + 1])
                i += 1
        elif command is None:
            command = word
        else:
            positionals.append(word)
        i += 1
    return command, positionals, flags


def _global_args(flags: List[List[str]], top: FlagSpec) -> argparse.Namespace:
    """The global flags typed so far, parsed by the real parser."""
    from cpumodel.parser import build_parser, with_global_defaults

    tokens = [t for group in flags if group[0] in top.options for t in group[1:]]
    args, _ = build_parser().parse_known_args(tokens)
    return with_global_defaults(args)


def _contexts(args: argparse.Namespace, env: Mapping[str, str]) -> List[str]:
    from cpumodel.sources.kubeconfig import kubeconfig_paths, merge_kubeconfigs

    paths = kubeconfig_paths(args.kubeconfig, env)
    return sorted(c.get("name", "") for c in merge_kubeconfigs(paths).get("contexts") or [])


def _reader(args: argparse.Namespace, env: Mapping[str, str]):
    import io

    from cpumodel.commands.context import Environment, open_source
    from cpumodel.sources.kubeclient import parse_duration
    from cpumodel.sources.reader import ClusterReader

    environment = Environment(stdout=io.StringIO(), stderr=io.StringIO(), env=dict(env))
    return ClusterReader(open_source(args, environment, parse_duration(LOOKUP_TIMEOUT)))


def _api_candidates(kind: str, args: argparse.Namespace, env: Mapping[str, str]) -> List[str]:
    from cpumodel.core.labels import CPU_MODEL
    from cpumodel.objects import CPU_MODES
    from cpumodel.sources import resources as r

    reader = _reader(args, env)
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


FLAG_VALUE_KINDS = {"--remove-node": "nodes", "--cluster-model": "models"}  # what-if's flags that name objects


def _positional_kinds(command: str, positionals: List[str], cluster: bool) -> List[str]:
    if command in ("diff", "drain-check"):
        return ["nodes"]
    if command == "watch-drain":
        return ["nodes"] if not positionals else []
    if command == "why-not":
        return ["vms"] if not positionals else (["nodes"] if len(positionals) == 1 else [])
    if command == "set":
        if cluster:
            return ["models"] if not positionals else []
        return ["vms", "models"]
    return []


def candidates(words: List[str], current: str, env: Mapping[str, str]) -> Tuple[List[str], str]:
    from cpumodel.parser import COMMANDS

    specs = flag_specs()
    command, positionals, flags = _split(words, specs)
    spec, top = specs.get(command, specs[None]), specs[None]
    previous = words[-1] if words else ""
    if previous in spec.takes_value:
        if previous in spec.files:
            return [], FILES
        if previous in spec.choices:
            return list(spec.choices[previous]), NO_FILES
        if previous == "--context":
            return _contexts(_global_args(flags[:-1], top), env), NO_FILES
        if previous in ("-n", "--namespace"):
            return _api_candidates("namespaces", _global_args(flags[:-1], top), env), NO_FILES
        if previous in FLAG_VALUE_KINDS:
            return _api_candidates(FLAG_VALUE_KINDS[previous], _global_args(flags[:-1], top), env), NO_FILES
        return [], NO_FILES
    if current.startswith("-"):
        return spec.options, NO_FILES
    if command is None:
        return list(COMMANDS), NO_FILES
    found: List[str] = []
    args = _global_args(flags, top)
    set_cluster = command == "set" and "--cluster" in words
    for kind in _positional_kinds(command, positionals, set_cluster):
        found.extend(_api_candidates(kind, args, env))
    return found, NO_FILES


def complete(args: List[str], out: TextIO, env: Optional[Mapping[str, str]] = None) -> int:
    """args: the words typed after `kubectl cpumodel`, the last one being completed (may be "")."""
    words, current = (args[:-1], args[-1]) if args else ([], "")
    try:
        found, directive = candidates(words, current, os.environ if env is None else env)
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
