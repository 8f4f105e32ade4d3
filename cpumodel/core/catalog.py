"""libvirt's x86 CPU models as data, and the order we rank them by.

Ordering law (docs/cpu-catalog.md): model A is at least as capable as model B
exactly when A's resolved ISA-view feature set (libvirt core minus `vmx-*`)
contains B's. This is a partial order on feature sets: reflexive, antisymmetric
up to equal sets, transitive. Models with equal sets (aliases such as
`Broadwell` and `Broadwell-v1`) are equal, and incomparable models are never
forced into an order. Wherever one list must be printed, we use a linear
extension of that order: more features first (a strict superset always has
more), then the unversioned name, then the name.

Names the catalog does not know (newer libvirt, other architectures) are kept
and listed after every known model, unranked; they never raise.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

_VERSIONED = re.compile(r"-v\d+$")
DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "cpu_catalog.json")

# KubeVirt's built-in obsolete list (pkg/virt-handler/node-labeller/util/util.go), used
# only when the KubeVirt CR sets no obsoleteCPUModels (a configured map replaces it).
DEFAULT_OBSOLETE_CPU_MODELS = frozenset("""
486 486-v1 pentium pentium-v1 pentium2 pentium2-v1 pentium3 pentium3-v1 pentiumpro pentiumpro-v1
coreduo coreduo-v1 n270 n270-v1 core2duo core2duo-v1 Conroe Conroe-v1 athlon athlon-v1 phenom
phenom-v1 qemu64 qemu64-v1 qemu32 qemu32-v1 kvm64 kvm64-v1 kvm32 kvm32-v1 Opteron_G1 Opteron_G1-v1
Opteron_G2 Opteron_G2-v1""".split())


def is_versioned(name: str) -> bool:
    return bool(_VERSIONED.search(name))


class Catalog:
    """Feature sets of libvirt's x86 models and comparisons between them."""

    def __init__(self, data: dict):
        vocabulary = data["features"]
        self._models = data["models"]
        self._features: Dict[str, FrozenSet[str]] = {
            name: frozenset(vocabulary[i] for i in m["features"]) for name, m in self._models.items()
        }

    @classmethod
    def load(cls, path: str = DATA_FILE) -> "Catalog":
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))

    def knows(self, name: str) -> bool:
        return name in self._features

    def names(self) -> List[str]:
        return sorted(self._features)

    def features(self, name: str) -> FrozenSet[str]:
        return self._features.get(name, frozenset())

    def vendor(self, name: str) -> Optional[str]:
        model = self._models.get(name)
        return model["vendor"] if model else None

    def canonical(self, name: str) -> Optional[str]:
        """QEMU's canonical `X-vN` name of an unversioned alias, else None."""
        model = self._models.get(name)
        return model["canonical"] if model else None

    def at_least(self, a: str, b: str) -> bool:
        """True if model a offers every feature of model b (a ⊇ b). Unknown names compare only to themselves."""
        if a == b:
            return True
        if not (self.knows(a) and self.knows(b)):
            return False
        return self._features[a] >= self._features[b]

    def strictly_better(self, a: str, b: str) -> bool:
        return self.knows(a) and self.knows(b) and self._features[a] > self._features[b]

    def equivalent(self, a: str, b: str) -> bool:
        return a == b or (self.knows(a) and self.knows(b) and self._features[a] == self._features[b])

    def sort_key(self, name: str):
        if not self.knows(name):
            return (1, 0, 0, name)
        return (0, -len(self._features[name]), is_versioned(name), name)

    def rank(self, names: Iterable[str]) -> List[str]:
        """Best first: a linear extension of the partial order; unknown names last."""
        return sorted(set(names), key=self.sort_key)

    def maximal(self, names: Iterable[str]) -> List[str]:
        """Known models no other given model strictly beats, best first (equal sets all kept)."""
        known = [n for n in set(names) if self.knows(n)]
        return self.rank(n for n in known if not any(self.strictly_better(o, n) for o in known))

    def equivalence_classes(self, names: Iterable[str]) -> List[List[str]]:
        """Group names with identical feature sets; each class ranked, classes ranked by their head."""
        classes: Dict[object, List[str]] = {}
        for name in self.rank(names):
            key = self._features[name] if self.knows(name) else ("unknown", name)
            classes.setdefault(key, []).append(name)
        return sorted(classes.values(), key=lambda c: self.sort_key(c[0]))


def obsolete_models(configured: Optional[frozenset], release: Optional[Tuple[int, int, int]] = None) -> frozenset:
    """KubeVirt's rule: a configured obsoleteCPUModels map replaces the default list (kubevirt-rules §1.2).

    The default list grew in patch releases (node-labeller util.go, read at every tag): Opteron_G1/G2 joined
    it in v1.2.1, the `-v1` names in v1.5.2 (a backport, commit 4460da59f6); an unknown release gets the
    newest list."""
    if configured is not None:
        return configured
    models = DEFAULT_OBSOLETE_CPU_MODELS
    if release is not None and release < OBSOLETE_V1_NAMES_SINCE:
        models = frozenset(m for m in models if not m.endswith("-v1"))
    if release is not None and release < OBSOLETE_OPTERON_SINCE:
        models = models - {"Opteron_G1", "Opteron_G2"}
    return models


OBSOLETE_V1_NAMES_SINCE = (1, 5, 2)
OBSOLETE_OPTERON_SINCE = (1, 2, 1)


def cluster_obsolete_models(kubevirt) -> frozenset:
    """The obsolete models of a cluster, from its KubeVirt CR (None: no CR found)."""
    if kubevirt is None:
        return DEFAULT_OBSOLETE_CPU_MODELS
    return obsolete_models(kubevirt.obsolete_cpu_models, kubevirt.release)
