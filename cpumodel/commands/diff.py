"""`diff`: KubeVirt CPU labels that differ between two nodes, or across many as a matrix."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from cpumodel.commands.context import (Common, Environment, Problems, checked_names, checked_selector,
                                       common_options, emit, open_source)
from cpumodel.core.diff import diff_matrix, diff_pair
from cpumodel.errors import UsageError
from cpumodel.output.diff_report import matrix_document, pair_document, render_matrix, render_pair
from cpumodel.output.render import names
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
    checked_names(args.nodes, "node", problems)
    problems.raise_any()
    return Options(common, tuple(args.nodes), selector, args.all)


def _shared_values(node):
    return replace(node, labels={k: "true" if v == "true" else v for k, v in node.labels.items()})


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    if o.pair:
        result = diff_pair(reader.node(o.nodes[0]), reader.node(o.nodes[1]), include_same=o.include_all)
        compared = [result.node_a, result.node_b]
        document, text = (lambda: pair_document(result)), (lambda style: render_pair(result, style))
    else:
        # Every node's labels are kept for the matrix: their thousands of "true" values share one string.
        nodes = reader.nodes(o.selector, view="metadata", then=_shared_values)
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
        compared = sorted(n for column in matrix.columns for n in column)
        document, text = (lambda: matrix_document(matrix)), (lambda style: render_matrix(matrix, style))
    emit(env, o.common, document, text, lambda: names("node", compared))
    return 0
