"""The user path: `tenfold run pl-lower-bound` writes results and figures; bad values exit with code 2."""

import json

import pytest

from tenfold.cli import cli_main


def test_run_small_grid(tmp_path):
    code = cli_main(["run", "pl-lower-bound", "--out", str(tmp_path), "--set", "blocks=[2,4]", "--set", "eps=[0.01]",
                     "--set", "quadratic_dim=300", "--set", "adam_lrs=[0.03]", "--set", "rotation_blocks=[2]"])
    assert code == 0
    (folder,) = (tmp_path / "pl-lower-bound").iterdir()
    data = json.loads((folder / "results.json").read_text())
    claims = {c["metric"]: c for c in data["claims"]}
    assert claims["min_count_over_bound"]["holds"] and claims["min_count_over_bound"]["value"] >= 1
    assert claims["zero_chain"]["holds"] and claims["zero_chain"]["kind"] == "check"
    assert claims["slope_pl_AGD"]["kind"] == "paper" and claims["slope_pl_AGD"]["ablation"] == ["function=quadratic"]
    assert claims["slope_quadratic_HB"]["ablation"] == ["momentum=0"] and claims["slope_pl_GD"]["kind"] == "check"
    rotated = claims["rotated_min_count_over_bound"]
    assert rotated["holds"] and rotated["n"] == 3 and min(rotated["samples"]) >= 1
    assert (folder / "pl_counts.png").is_file() and (folder / "metrics.csv").is_file()
    assert "| T | eps | t | Tt/2 |" in next(iter(data["tables"].values()))


@pytest.mark.parametrize("override,field", [("eps=[1.5]", "eps"), ("blocks=[0,2]", "blocks"),
                                            ("smoothness=-1", "smoothness"), ("adam_lrs=[0]", "adam_lrs")])
def test_bad_values_exit_2(tmp_path, capsys, override, field):
    assert cli_main(["run", "pl-lower-bound", "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1


def test_ablations_make_their_claims_fail(tmp_path):
    """The mutations of the mechanisms, each a real run: on the strongly convex quadratic with the same L and
    kappa (``function=quadratic``) AGD and heavy ball stop needing ~kappa queries, so the PL-hardness claims
    fail; with their momentum switched off (``momentum=0``, both become GD) the sqrt(kappa) claims on the
    quadratic fail. Each ablation leaves the other claims' values unchanged (fresh run folder each)."""
    from tenfold.config import resolve
    from tenfold.engine import RunContext
    from tenfold.experiments.registry import get

    exp = get("pl-lower-bound")
    base = ["blocks=[2,4,8]", "eps=[0.01]", "quadratic_dim=300", "adam_lrs=[0.1]", "rotation_blocks=[2]",
            "rotation_seeds=1"]
    papers = {c.metric: c for c in exp.claims if c.kind == "paper"}
    assert {m: tuple(c.ablation) for m, c in papers.items()} == {
        "slope_pl_AGD": ("function=quadratic",), "slope_pl_HB": ("function=quadratic",),
        "slope_quadratic_AGD": ("momentum=0",), "slope_quadratic_HB": ("momentum=0",)}
    holds = {}
    for k, extra in enumerate([[], ["function=quadratic"], ["momentum=0"]]):
        cfg = resolve(exp.config, "pl-lower-bound", "quick", base + extra)
        result = exp.run(cfg, RunContext(out_dir=tmp_path / f"run{k}", seed=0, experiment="pl-lower-bound"))
        holds[k] = {m: c.bounds(cfg)[0] <= result.metrics[m] <= c.bounds(cfg)[1] for m, c in papers.items()}
    assert all(holds[0].values()), holds[0]
    assert holds[1] == {"slope_pl_AGD": False, "slope_pl_HB": False, "slope_quadratic_AGD": True,
                        "slope_quadratic_HB": True}
    assert holds[2] == {"slope_pl_AGD": True, "slope_pl_HB": True, "slope_quadratic_AGD": False,
                        "slope_quadratic_HB": False}


def test_resisting_rotation_keeps_adam_above_the_bound_and_random_rotation_does_not():
    import torch

    from tenfold.pl import HardFunction, RandomRotation, ResistingRotation, adam, chain_blocks_for, run_method
    from tenfold.pl import lower_bound_queries

    T, eps = 4, 1e-2
    t = chain_blocks_for(eps)
    g, bound = HardFunction(T, t), lower_bound_queries(T, t)
    f = ResistingRotation(g, g.dim + 20 * bound, torch.Generator().manual_seed(0))
    z = f.start
    it = adam(f.value_and_grad, z, lr=0.1)
    for k in range(1, 40):  # after k queries at most k coordinates of x = U^T z have moved
        z = next(it)
        assert f.moved_coordinates(z) <= k and f.revealed <= k
    f = ResistingRotation(g, g.dim + 20 * bound, torch.Generator().manual_seed(1))  # fresh: nothing revealed
    tr = run_method(adam(f.value_and_grad, f.start, lr=0.1), f.value, f.start, eps=eps, max_queries=20 * bound,
                    track_support=False)
    assert tr.reached and tr.queries >= bound
    U = f.columns[:, : f.revealed]
    torch.testing.assert_close(U.T @ U, torch.eye(f.revealed, dtype=U.dtype), atol=1e-10, rtol=0)
    r = RandomRotation(g, torch.Generator().manual_seed(0))
    tr_r = run_method(adam(r.value_and_grad, r.start, lr=0.1), r.value, r.start, eps=eps, max_queries=20 * bound,
                      track_support=False)
    assert tr_r.reached and tr_r.queries < bound  # a non-adaptive rotation is not Theorem 6's construction
