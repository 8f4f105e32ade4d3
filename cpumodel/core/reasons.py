"""Why a node cannot take a VM: the reason categories of the JSON contract, in reporting order."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from cpumodel.core import labels as L


class Category(str, enum.Enum):
    """docs/json-contract.md "Reason categories"; definition order is the order reasons are reported in."""

    NOT_RUNNING = "not-running"
    NOT_MIGRATABLE = "not-migratable"
    SOURCE_NODE = "source-node"
    CPU_MODEL = "cpu-model"
    CPU_MODEL_MIGRATION = "cpu-model-migration"
    CPU_FEATURE = "cpu-feature"
    CPU_VENDOR = "cpu-vendor"
    MACHINE_TYPE = "machine-type"
    TSC_FREQUENCY = "tsc-frequency"
    SCHEDULABLE = "schedulable"
    NODE_SELECTOR = "node-selector"
    NODE_AFFINITY = "node-affinity"
    POD_AFFINITY = "pod-affinity"
    CORDONED = "cordoned"
    TAINT = "taint"
    NOT_READY = "not-ready"
    CAPACITY = "capacity"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {category: i for i, category in enumerate(Category)}

# Selector keys by prefix; anything else is a plain node-selector key.
_KEY_CATEGORIES = ((L.CPU_MODEL, Category.CPU_MODEL), (L.CPU_MODEL_MIGRATION, Category.CPU_MODEL_MIGRATION),
                   (L.CPU_FEATURE, Category.CPU_FEATURE), (L.CPU_VENDOR, Category.CPU_VENDOR),
                   (L.MACHINE_TYPE, Category.MACHINE_TYPE), (L.TSC_SCHEDULING, Category.TSC_FREQUENCY))

# Categories a named CPU model can clear (node-affinity only for CPU keys, see needs_cpu_fix).
CPU_CATEGORIES = frozenset({Category.CPU_MODEL, Category.CPU_MODEL_MIGRATION, Category.CPU_FEATURE,
                            Category.NODE_AFFINITY})


@lru_cache(maxsize=4096)  # asked once per failing key and node when reports list every node
def selector_category(key: str) -> Category:
    if key == L.SCHEDULABLE:
        return Category.SCHEDULABLE
    return next((cat for prefix, cat in _KEY_CATEGORIES if key.startswith(prefix)), Category.NODE_SELECTOR)


@dataclass(frozen=True)
class Reason:
    """One thing that keeps a node from taking the VM.

    `key` is the node-label key it is about (None for node-wide reasons); `origin` says where
    the constraint came from (VM spec, cluster default, an earlier migration, …) when it is one.
    """

    category: Category
    key: Optional[str]
    message: str
    origin: Optional[str] = None

    @property
    def sort_key(self):
        return self.category.rank, self.key or ""
