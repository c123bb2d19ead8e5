"""Every experiment and benchmark module imports, and every experiment's quick config validates."""

import pytest

from tenfold.benchmarks import IMPORT_ERRORS as BENCH_ERRORS
from tenfold.benchmarks import discover as discover_benchmarks
from tenfold.config import available_presets, resolve
from tenfold.experiments import IMPORT_ERRORS, discover

EXPERIMENTS = sorted(discover())


def test_experiment_modules_import_cleanly():
    assert IMPORT_ERRORS == {}


def test_benchmark_modules_import_cleanly():
    discover_benchmarks()
    assert BENCH_ERRORS == {}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_preset_validates(name):
    exp = discover()[name]
    for preset in available_presets(name):
        resolve(exp.config, name, preset)


def test_experiments_name_a_known_paper():
    from tenfold.reporting.papers import PAPERS

    unknown = {e.name: e.paper for e in discover().values() if e.paper not in PAPERS}
    assert unknown == {}


def test_the_source_index_matches_the_registry():
    """`tenfold list` reads the experiments from their source: it must agree with the imported registry."""
    from tenfold.experiments.index import experiment_index

    index = {e["name"]: e for e in experiment_index()}
    registry = discover()
    assert set(index) == set(registry)
    for name, exp in registry.items():
        assert {f: index[name][f] for f in ("paper", "description", "quick", "order", "processes")} == \
            {f: getattr(exp, f) for f in ("paper", "description", "quick", "order", "processes")}, name
