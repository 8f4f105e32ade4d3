"""The CPU catalog: generated from libvirt's cpu_map, and the ordering law it states."""
import os
import sys

from hypothesis import given, settings, strategies as st

from conftest import ROOT, reference_data
from cpumodel.core.catalog import DEFAULT_OBSOLETE_CPU_MODELS, Catalog

CATALOG = Catalog.load()
NAMES = CATALOG.names()
models = st.sampled_from(NAMES)


def test_shipped_catalog_equals_a_fresh_generation():
    cpu_map = reference_data("cpu_map")
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_catalog

    with open(os.path.join(ROOT, "cpumodel", "data", "cpu_catalog.json"), encoding="utf-8") as fh:
        assert fh.read() == gen_catalog.render(gen_catalog.build_catalog(cpu_map))


def test_resolution_matches_the_spec_tables():
    # ISA-view sizes of libvirt v12.8.0's resolved models (docs/cpu-catalog.md)
    for name, size in {"Broadwell": 54, "Broadwell-v2": 52, "Haswell-noTSX-IBRS": 49, "Cascadelake-Server": 73,
                       "Cascadelake-Server-v2": 79, "SapphireRapids": 109, "SapphireRapids-v6": 120,
                       "GraniteRapids": 116, "SierraForest": 94, "EPYC-Rome-v4": 78, "YongFeng-v3": 80}.items():
        assert len(CATALOG.features(name)) == size, name
    assert len(NAMES) == 176
    assert "mpx" not in CATALOG.features("Skylake-Server")  # removed='yes'
    assert not any(f.startswith("vmx-") for n in NAMES for f in CATALOG.features(n))
    assert CATALOG.canonical("Broadwell-noTSX") == "Broadwell-v2"
    assert CATALOG.vendor("Dhyana") == "Hygon" and CATALOG.vendor("486") is None


# The premises are generated from the raw feature sets, never filtered from random draws,
# so every example exercises the law (a filtered premise holds in ~1-3% of draws).
BELOW = {a: [b for b in NAMES if CATALOG.features(b) <= CATALOG.features(a)] for a in NAMES}
SAME = {a: [b for b in BELOW[a] if CATALOG.features(b) == CATALOG.features(a)] for a in NAMES}
STRICTLY_BELOW = {a: [b for b in BELOW[a] if b not in SAME[a]] for a in NAMES}
with_lower = st.sampled_from([a for a in NAMES if STRICTLY_BELOW[a]])


@settings(max_examples=300, deadline=None)
@given(models.flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(SAME[a]))))
def test_antisymmetry_equal_sets_are_equal_models(pair):
    a, b = pair
    assert CATALOG.at_least(a, b) and CATALOG.at_least(b, a)
    assert CATALOG.equivalent(a, b) and not CATALOG.strictly_better(a, b)


@settings(max_examples=300, deadline=None)
@given(with_lower.flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(STRICTLY_BELOW[a]))))
def test_antisymmetry_a_strict_superset_is_never_below(pair):
    a, b = pair
    assert CATALOG.at_least(a, b) and not CATALOG.at_least(b, a)
    assert CATALOG.strictly_better(a, b) and not CATALOG.equivalent(a, b)


@settings(max_examples=300, deadline=None)
@given(models.flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(BELOW[a])))
       .flatmap(lambda ab: st.tuples(st.just(ab[0]), st.just(ab[1]), st.sampled_from(BELOW[ab[1]]))))
def test_transitivity(chain):
    a, b, c = chain
    assert CATALOG.at_least(a, b) and CATALOG.at_least(b, c)
    assert CATALOG.at_least(a, c)


@settings(max_examples=200, deadline=None)
@given(st.lists(models, min_size=1, max_size=12))
def test_rank_is_a_linear_extension_and_maximal_are_unbeaten(names):
    ranked = CATALOG.rank(names)
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            assert not CATALOG.strictly_better(b, a)
    best = CATALOG.maximal(names)
    assert best and best[0] == ranked[0]
    assert all(not CATALOG.strictly_better(o, m) for m in best for o in names)


def test_aliases_are_equal():
    for name in NAMES:
        canonical = CATALOG.canonical(name)
        if canonical:
            assert CATALOG.equivalent(name, canonical)
            assert CATALOG.rank([canonical, name])[0] == name  # the unversioned name is shown first


def test_known_chains_and_breaks():
    better = CATALOG.strictly_better
    assert better("Broadwell", "Haswell") and better("Cascadelake-Server", "Skylake-Server")
    assert all(better(s, c) for s in NAMES if s.startswith("SapphireRapids")
               for c in NAMES if c.startswith("Cascadelake-Server"))
    assert not CATALOG.at_least("Haswell", "IvyBridge") and not CATALOG.at_least("IvyBridge", "Haswell")
    assert not CATALOG.at_least("Broadwell-noTSX-IBRS", "Broadwell")
    assert not CATALOG.at_least("SapphireRapids", "Cooperlake")  # stibp
    assert CATALOG.maximal(["Cascadelake-Server-noTSX", "Skylake-Server-IBRS"]) == \
        ["Cascadelake-Server-noTSX", "Skylake-Server-IBRS"]


def test_unknown_models_are_kept_unranked():
    assert CATALOG.rank(["FutureLake", "Haswell"]) == ["Haswell", "FutureLake"]
    assert not CATALOG.at_least("FutureLake", "Haswell") and CATALOG.at_least("FutureLake", "FutureLake")
    assert CATALOG.maximal(["FutureLake"]) == []


def test_default_obsolete_list_is_kubevirts():
    assert len(DEFAULT_OBSOLETE_CPU_MODELS) == 34 and "pentiumpro-v1" in DEFAULT_OBSOLETE_CPU_MODELS
    assert "Penryn" not in DEFAULT_OBSOLETE_CPU_MODELS
