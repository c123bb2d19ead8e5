"""The user path: `tenfold run papal-game / papal-dimension` write results; bad values exit with code 2."""

import json

import pytest

from tenfold.cli import cli_main


def _results(root, name):
    (folder,) = (root / name).iterdir()
    return folder, json.loads((folder / "results.json").read_text())


def test_papal_game_small(tmp_path):
    code = cli_main(["run", "papal-game", "--out", str(tmp_path), "--set", "particles=60", "--set", "outer_steps=4",
                     "--set", "inner_steps=20", "--set", "grid_points=301", "--set", "mfl_steps=40",
                     "--set", "wfr_steps=20", "--set", "gda_steps=20", "--set", "torus_particles=30",
                     "--set", "torus_outer_steps=2", "--set", "torus_inner_steps=10", "--set", "ni_every=2",
                     "--set", "outer_steps=10", "--set", "torus_grid=100"])
    assert code == 0
    folder, data = _results(tmp_path, "papal-game")
    claims = {c["metric"]: c for c in data["claims"]}
    # the exact loop does not depend on the particle settings
    assert claims["gap_slope_minus_log_mu"]["holds"] and claims["gap_slope_minus_log_mu"]["kind"] == "check"
    assert claims["torus_gda_ni"]["holds"] and claims["torus_kl_to_prior"]["holds"]
    w1 = claims["papal_w1_over_floor"]
    assert w1["kind"] == "paper" and w1["n"] == 3 and w1["ablation"] == ["inner=weights"]
    assert claims["torus_ni_excess_over_floor"]["ablation"] == ["extrapolation=0"]
    # MFL-DA at PAPAL's budget is reported beside both paper claims, against the same bars (the claims do not
    # single PAPAL out); convergence checks, so not judged at the quick smoke tier
    for arm, paper in (("mfl_w1_over_floor", "papal_w1_over_floor"),
                       ("torus_mfl_ni_excess_over_floor", "torus_ni_excess_over_floor")):
        assert claims[arm]["kind"] == "check" and claims[arm]["not_checked"]
        assert claims[arm]["threshold"] == claims[paper]["threshold"]
        assert len(data["samples"][arm]) == 3
    assert (folder / "papal_game.png").is_file()
    assert "PAPAL" in (folder / "metrics.csv").read_text()


@pytest.mark.slow
def test_papal_game_ablations_make_their_claims_fail(tmp_path):
    """inner=weights (no particle movement) breaks the W1 claim; extrapolation=0 (no optimism) leaves the
    torus NI several sampling floors further from the regularized MNE. A fresh run folder per run."""
    from tenfold.config import resolve
    from tenfold.engine import RunContext
    from tenfold.experiments.registry import get

    exp = get("papal-game")
    base = ["mfl_steps=20", "wfr_steps=10", "gda_steps=10", "ni_every=100", "grid_points=701"]
    claim = {c.metric: c for c in exp.claims}
    values = {}
    for k, extra in enumerate([[], ["inner=weights"], ["extrapolation=0"]]):
        cfg = resolve(exp.config, "papal-game", "quick", base + extra)
        result = exp.run(cfg, RunContext(out_dir=tmp_path / f"run{k}", seed=0, experiment="papal-game"))
        values[k] = {m: sum(v) / len(v) for m, v in result.samples.items()}
        bounds = {m: claim[m].bounds(cfg) for m in ("papal_w1_over_floor", "torus_ni_excess_over_floor")}
    low, high = bounds["papal_w1_over_floor"]
    assert values[0]["papal_w1_over_floor"] <= high < values[1]["papal_w1_over_floor"]
    low, high = bounds["torus_ni_excess_over_floor"]
    assert values[2]["torus_ni_excess_over_floor"] > max(high, 2 * values[0]["torus_ni_excess_over_floor"])


def test_papal_dimension_small(tmp_path):
    code = cli_main(["run", "papal-dimension", "--out", str(tmp_path), "--set", "dims=[1,4]", "--set", "particles=[8]",
                     "--set", "outer_steps=2", "--set", "inner_steps=5", "--set", "mfl_steps=10",
                     "--set", "wfr_steps=10", "--set", "d1_seeds=2"])
    assert code == 0
    folder, data = _results(tmp_path, "papal-dimension")
    assert len(data["claims"]) == 2 and (folder / "papal_dimension.png").is_file()
    assert "| d | M | seed | prior | PAPAL |" in next(iter(data["tables"].values()))
    assert {c["kind"] for c in data["claims"]} == {"paper", "check"}
    assert "Step sizes chosen on the tuning seed" in " ".join(data["tables"])  # weight_steps has two points


@pytest.mark.parametrize("name,override,field", [
    ("papal-game", "lam2=0", "lam2"), ("papal-game", "lam1=-1", "lam1"), ("papal-game", "step=0", "step"),
    ("papal-game", "particles=0", "particles"), ("papal-game", "sampler=hmc", "sampler"),
    ("papal-dimension", "dims=[0,2]", "dims"), ("papal-dimension", "particles=[0]", "particles"),
    ("papal-dimension", "weight_steps=[0]", "weight_steps"), ("papal-game", "inner=frozen", "inner"),
])
def test_bad_values_exit_2(tmp_path, capsys, name, override, field):
    assert cli_main(["run", name, "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_papal_dimension_weights_ablation_makes_the_claim_fail(tmp_path):
    """inner=weights: PAPAL's prior draws never move, so at d=100 it does no better than weight-only
    mirror-prox and the claim fails. (The d=1 check against the exact regularized MNE needs the standard tier's
    K = 120 Langevin steps; at these quick settings the chains do not mix: 1.49x.)"""
    from tenfold.config import resolve
    from tenfold.engine import RunContext
    from tenfold.experiments.registry import get

    exp = get("papal-dimension")
    claim = {c.metric: c for c in exp.claims}
    out = {}
    for k, extra in enumerate([[], ["inner=weights"]]):
        cfg = resolve(exp.config, "papal-dimension", "quick", ["dims=[1,100]", "mfl_steps=10"] + extra)
        result = exp.run(cfg, RunContext(out_dir=tmp_path / f"run{k}", seed=0, experiment="papal-dimension"))
        out[k] = {m: sum(v) / len(v) for m, v in result.samples.items()}
    high = claim["papal_over_weight_only"].bounds(cfg)[1]
    assert out[0]["papal_over_weight_only"] <= high < out[1]["papal_over_weight_only"]
