"""The reproduce report: tables, claims, figures, failures shown as failed, resume skips finished runs."""

import json

import pytest
from pydantic import Field

from tenfold.config import Config
from tenfold.experiments import registry
from tenfold.reporting import Check, PaperClaim, Result
from tenfold.reporting.reproduce import reproduce


class _Cfg(Config):
    value: float = Field(1.0)
    bar: float = Field(0.5, description="source: test fixture")


CLAIMS = (Check("score", metric="score", at_least="bar"), Check("score small", metric="score", at_most="bar"),
          PaperClaim("score by seed", metric="by_seed", at_least="bar", ablation=["value=0.0"], paper="Fig. 1"))


@pytest.fixture
def fake_experiments(monkeypatch):
    registry.discover()
    calls = {"ok": 0}

    def ok(cfg, ctx):
        calls["ok"] += 1
        from tenfold.reporting.figures import new_figure

        fig, ax = new_figure()
        ax.plot([0, 1], [0, cfg.value])
        return Result(metrics={"score": cfg.value}, samples={"by_seed": [cfg.value] * 2},
                      figures=[ctx.save_figure(fig, "line")], key_metric="score", notes="A fake experiment.")

    def broken(cfg, ctx):
        raise RuntimeError("simulated failure inside the experiment")

    monkeypatch.setitem(registry.REGISTRY, "fake-ok", registry.Experiment("fake-ok", "digits-mlp", _Cfg, ok, "ok one", claims=CLAIMS))
    monkeypatch.setitem(registry.REGISTRY, "fake-broken",
                        registry.Experiment("fake-broken", "digits-mlp", _Cfg, broken, "broken one"))
    return calls


def test_report_lists_claims_figures_and_failures(tmp_path, fake_experiments):
    outcome = reproduce(["fake-ok", "fake-broken"], preset="quick", out=tmp_path)
    md = outcome.report.read_text()
    assert "| fake-ok | score | 1 | >= 0.5 | pass |" in md
    assert "| fake-ok | score small | 1 | <= 0.5 | **fail** |" in md
    assert "| fake-broken | (experiment failed) |" in md
    assert "simulated failure inside the experiment" in md
    assert "unclassified" not in md and "1 failed" in md
    assert outcome.crashed == ["fake-broken"]
    assert "![fake-ok: line](runs/fake-ok/" in md
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["status"] for e in summary] == ["ok", "failed"]


def test_resume_skips_finished_experiments(tmp_path, fake_experiments):
    """`reproduce --resume` continues an interrupted reproduce: finished experiments are not run again."""
    reproduce(["fake-ok"], preset="quick", out=tmp_path)
    reproduce(["fake-ok"], preset="quick", out=tmp_path, resume=True)
    assert fake_experiments["ok"] == 1
    reproduce(["fake-ok"], preset="quick", out=tmp_path)
    assert fake_experiments["ok"] == 2


def test_readme_table_is_generated_between_markers(tmp_path, fake_experiments):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nOLD-TABLE\n<!-- results:end -->\nrest\n")
    reproduce(["fake-ok"], preset="quick", out=tmp_path / "rep", readme=readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "OLD-TABLE" not in text
    assert "fake-ok |" in text and "checks 1/2 pass; **score small (fail)**" in text
    assert "Quick tier: a smoke run, not evidence." in text
    # the report is named as seen from the README, not by this machine's absolute path
    assert "full report: `rep/report.html`" in text and str(tmp_path) not in text
    assert "`tenfold reproduce --preset quick --update-readme README.md`" in text


def test_the_key_metric_may_be_a_per_seed_sample():
    from tenfold.reporting.report import _key_metric

    entry = {"metrics": {"a": 1.0}, "samples": {"gain": [0.1, 0.2, 0.3]}, "key_metric": "gain"}
    assert _key_metric(entry) == "gain = 0.2 ± 0.1 (n=3)"
    assert _key_metric({"metrics": {"a": 1.0}, "key_metric": "a"}) == "a = 1"
    assert _key_metric({"metrics": {"a": 1.0}, "key_metric": "left-out-by-the-config"}) == "a = 1"


def test_readme_without_markers_is_refused(tmp_path, fake_experiments):
    from tenfold.errors import ConfigError

    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ConfigError, match="markers"):
        reproduce(["fake-ok"], preset="quick", out=tmp_path / "rep", readme=readme)


def test_the_standard_tier_runs_the_experiments_on_built_in_data():
    """`reproduce --preset standard` is the laptop evidence: the experiments of the quick tier (built-in data),
    not the paper recipes that need a local data root and GPUs."""
    from tenfold.experiments.registry import discover, quick_names
    from tenfold.reporting.reproduce import select

    standard = select(None, "standard")
    assert standard == quick_names() and len(standard) >= 15
    assert "sltt-cifar" not in standard and "sltt-cifar" in discover()
    assert "sltt-cifar" in select(None, "paper")
