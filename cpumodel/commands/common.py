"""`common`: the highest CPU model every VM-capable node supports, and what holds back a better one."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from cpumodel.commands.context import (Common, Environment, Problems, checked_selector, common_options, emit,
                                       note_config, open_source)
from cpumodel.core.catalog import Catalog
from cpumodel.core.highest_common import analyse_common
from cpumodel.core.nodes import Summarizer, split_nodes
from cpumodel.output.common_report import render_table, to_document
from cpumodel.output.render import names
from cpumodel.sources.reader import ClusterReader


@dataclass(frozen=True)
class Options:
    common: Common
    selector: Optional[str]


def options(args: argparse.Namespace) -> Options:
    problems = Problems()
    common = common_options(args, problems)
    selector = problems.check(lambda: checked_selector(args.selector))
    problems.raise_any()
    return Options(common, selector)


def run(args: argparse.Namespace, env: Environment) -> int:
    o = options(args)
    reader = ClusterReader(open_source(args, env, o.common.timeout))
    nodes = reader.nodes(o.selector, view="status", then=Summarizer())
    config = reader.cluster_config()
    result = analyse_common(Catalog.load(), split_nodes(nodes), config.kubevirt)
    if not nodes and o.common.fmt not in ("json", "yaml"):
        env.warn("no nodes found%s" % (" matching %s" % o.selector if o.selector else ""))
    note_config(env, config)
    emit(env, o.common, lambda: to_document(result, config), lambda style: render_table(result, config, style),
         lambda: names("node", result.nodes))
    return 0
