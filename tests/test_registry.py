"""Every experiment and benchmark module imports; every experiment has the three tiers' presets (quick, standard,
paper), each validates, and the standard tier has the seeds a comparison needs; one name per paper."""

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


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_the_three_tiers(name):
    """quick (the config's defaults), standard (the evidence) and paper (the GPU recipe), each a preset file
    beside the experiment's paper folder except quick."""
    from tenfold.config import preset_path

    assert {"quick", "standard", "paper"} <= set(available_presets(name)), available_presets(name)
    assert preset_path(name, "standard").is_file() and preset_path(name, "paper").is_file()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_standard_tier_has_the_seeds_a_comparison_needs(name):

    from tenfold.reporting.claims import check_seeds

    exp = discover()[name]
    check_seeds(exp.claims, resolve(exp.config, name, "standard"), name, "standard")  # a ConfigError if too few


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_one_name_per_paper(name):
    """The experiment lives in papers/<paper key with _>/, its name starts with the paper key, and the paper's
    docs page is docs/<key>.md (digits-mlp, the smallest example, is documented in getting-started.md)."""
    from pathlib import Path

    from tenfold.reporting.papers import paper

    exp = discover()[name]
    assert exp.run.__module__.split(".")[2] == exp.paper.replace("-", "_"), exp.run.__module__
    assert name == exp.paper or name.startswith(f"{exp.paper}-"), (name, exp.paper)
    docs = Path(__file__).resolve().parents[1] / "docs"
    expected = "getting-started.md" if exp.paper == "digits-mlp" else f"{exp.paper}.md"
    assert paper(exp.paper).docs == expected and (docs / expected).is_file()


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


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_threshold_sources_cite_the_paper_or_a_shipped_measurement(name):
    """A threshold's source reaches the report: it cites the paper's section, the theory, or a measurement shipped
    in the repository (a docs page), never a document outside it (the specs) or an issue number."""
    import re

    from tenfold.reporting.claims import _field

    exp = discover()[name]
    for claim in exp.claims:
        for path in claim.threshold_fields():
            text = _field(exp.config, path).description or ""
            assert not re.search(r"\bspec\b|\bissue \d+", text), f"{name} {path}: {text[:120]}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_paper_tier_has_the_seeds_a_comparison_needs(name):
    """The paper tier is evidence too: a paper preset with fewer seeds than its claims need would fail only
    after hours of GPU training."""
    from tenfold.reporting.claims import check_seeds, tier_of

    exp = discover()[name]
    for preset in available_presets(name):
        if tier_of(preset) == "paper":
            check_seeds(exp.claims, resolve(exp.config, name, preset), f"{name} ({preset})", "paper")
