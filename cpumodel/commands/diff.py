"""`diff`: KubeVirt CPU labels that differ between two nodes, or across many as a matrix."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional, Tuple

from cpumodel.commands.context import Common, Environment, Problems, checked_selector, common_options, open_source
from cpumodel.core.diff import diff_matrix, diff_pair
from cpumodel.errors import UsageError
from cpumodel.output.diff_report import matrix_document, pair_document, render_matrix, render_pair
from cpumodel.output.render import structured
from cpumodel.sources.reader import ClusterReader


@dataclass(frozen=True)
class Options:
    common: Common
    nodes: Tuple[str, ...]
    selector: Optional[str]
    include_all: bool

    @property
    def pair(self) -> bool:
        return len(self.nodes) == 2 and not self.selector


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    selector = problems.check(lambda: checked_selector(args.selector))
    if len(args.nodes) == 1:
        problems.add("diff needs two nodes (NODE_A NODE_B), or none/several for a matrix")
    problems.raise_any()
    return Options(common, tuple(args.nodes), selector, args.all)


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    wide = o.common.fmt == "wide"
    if o.pair:
        result = diff_pair(reader.node(o.nodes[0]), reader.node(o.nodes[1]), include_same=o.include_all)
        doc, text = pair_document(result), (lambda: render_pair(result, wide))
    else:
        nodes = reader.nodes(o.selector, view="metadata")
        if o.nodes:
            wanted = set(o.nodes)
            missing = sorted(wanted - {n.name for n in nodes})
            if missing:
                raise UsageError("node(s) not found%s: %s" % (
                    " among those matching %s" % o.selector if o.selector else "", ", ".join(missing)))
            nodes = [n for n in nodes if n.name in wanted]
        if not nodes:
            env.warn("no nodes found")
        matrix = diff_matrix(nodes, include_all=o.include_all)
        doc, text = matrix_document(matrix), (lambda: render_matrix(matrix))
    fmt = o.common.fmt
    env.write(structured(doc, fmt) if fmt in ("json", "yaml") else text())
    return 0
