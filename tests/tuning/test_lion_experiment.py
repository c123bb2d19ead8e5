"""User path of the ``lion`` experiment: run folder, claims, non-convergence reporting, one-line errors."""

from __future__ import annotations

import json

import pytest

from tenfold.cli import cli_main
from tenfold.tuning.foundation import build_vit

FAST = ["--set", "seeds=3", "--set", "epochs=2", "--set", "rhos=[0.5]", "--set", "shots=5", "--set", "val_shots=2",
        "--set", "lrs=[0.01]"]


@pytest.fixture
def small_foundation(monkeypatch):
    """An untrained small digits ViT instead of the cached pre-trained one (keeps the test fast)."""
    import tenfold.tuning.foundation as foundation

    def fake(kind="digits", cache_dir=None, progress=None):
        return build_vit(embed_dim=16, depth=1, num_heads=2), {"held_out_acc": 0.0, "cached": True, "path": ""}

    monkeypatch.setattr(foundation, "foundation_model", fake)


def results(tmp_path):
    (folder,) = (tmp_path / "lion").iterdir()
    return folder, json.loads((folder / "results.json").read_text())


def test_run_writes_claims_figure_and_solver_metrics(tmp_path, capsys, small_foundation):
    code = cli_main(["run", "lion", "--out", str(tmp_path), *FAST])
    assert code == 0, capsys.readouterr().err
    folder, data = results(tmp_path)
    assert (folder / "accuracy_vs_parameters.png").is_file() and (folder / "training_curves.png").is_file()
    (curves,) = json.loads((folder / "training_curves.json").read_text()).values()   # per method: each seed's epochs
    assert set(curves) == {"VPT-deep", "LION rho=0.5"}
    assert all(len(seeds) == 3 and all(len(c) == 2 for c in seeds) for seeds in curves.values())
    names = [c["name"] for c in data["claims"]]
    assert any("0.885 x VPT-deep" in n for n in names) and any(n.startswith("LION beats VPT-deep") for n in names)
    kinds = {c["name"]: c["kind"] for c in data["claims"]}
    assert kinds[next(n for n in names if "0.885 x VPT-deep" in n)] == "check"
    assert all(c["holds"] for c in data["claims"] if c["kind"] == "check" and "||J_f||" in c["name"])
    m = data["metrics"]
    # VPT-deep at LION's budget: p = 16 is the smallest length at which LION's count at rho 0.5
    # (82 + 320 - floor(0.5 * 401) + 8 + 85 = 295, pool=0) is <= 0.885 x VPT-deep's L p D + head
    # (1 * 16 * 16 + 85 = 341; p = 15 gives 325 and a ratio of 0.908)
    assert m["vpt_length"] == 16 and m["vpt_params"] == 1 * 16 * 16 + 16 * 5 + 5  # exact
    assert m["param_ratio"] <= 0.885
    assert m["param_ratio"] == pytest.approx(m["lion_params"] / m["vpt_params"])
    ratio_claim = next(c for c in data["claims"] if "0.885 x VPT-deep" in c["name"])
    assert ratio_claim["holds"] == (m["param_ratio"] <= 0.885)
    header = (folder / "metrics.csv").read_text().splitlines()[0]
    assert "eval_residual" in header and "backward_residual" in header
    assert m["lion_max_backward_residual"] > 0  # IFT backward solves were measured


def test_a_solver_that_stops_converging_says_so_in_results(tmp_path, capsys, small_foundation):
    code = cli_main(["run", "lion", "--out", str(tmp_path), *FAST, "--set", "f_tol=1e-12",
                     "--set", "f_max_iter=3", "--set", "eval_f_max_iter=3"])
    assert code == 0, capsys.readouterr().err
    _, data = results(tmp_path)
    assert data["metrics"]["lion_eval_nonconverged"] > 0
    assert any("stopped above f_tol" in w for w in data["warnings"])
    residual_claim = next(c for c in data["claims"] if c["name"].startswith("forward solves"))
    assert residual_claim["holds"] is False


@pytest.mark.parametrize("override,message", [
    ("gamma=1.0", "field 'gamma'=1.0"),
    ("rhos=[0.5,1.0]", "field 'rhos.1'=1.0"),
    ("rhos=[-0.1]", "field 'rhos.0'=-0.1"),
    ("solver=newton", "field 'solver'='newton'"),
    ("f_tol=0", "field 'f_tol'=0"),
])
def test_bad_settings_fail_in_one_line_with_exit_code_2(override, message, tmp_path, capsys):
    code = cli_main(["run", "lion", "--out", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_iterative_magnitude_pruning_option_reaches_the_exact_sparsity(tmp_path, capsys, small_foundation):
    code = cli_main(["run", "lion", "--out", str(tmp_path), *FAST, "--set", "epochs=1", "--set", "pruning=imp"])
    assert code == 0, capsys.readouterr().err
    folder, data = results(tmp_path)
    table = data["tables"]["every run"]
    lion_row = next(line for line in table.splitlines() if line.startswith("| LION"))
    assert "| 0.5 |" in lion_row
    params = data["metrics"]["lion_params"]
    # 1 input channel, hidden 4: prunable = 36 + 36 + 9 + (64 + 8*16 + 16*8) (pool=0: no E); biases 1 + 8;
    # head 16*5 + 5
    prunable = 36 + 36 + 9 + 64 + 128 + 128
    # at most: kept entries can be exactly zero (e.g. W_up columns whose state never fires after rewinding)
    assert 0.5 * (prunable // 2) < params - 9 - 85 <= prunable - prunable // 2


def test_interrupted_run_resumes_to_the_same_results(tmp_path, capsys, small_foundation, monkeypatch):
    """One unit of the resumable stage = one training run; --resume after an interruption gives the same
    metrics as an uninterrupted run and metrics.csv holds each run once."""
    args = ["run", "lion", *FAST, "--set", "epochs=1"]
    assert cli_main(args + ["--out", str(tmp_path / "a")]) == 0
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "3")
    assert cli_main(args + ["--out", str(tmp_path / "b")]) == 130
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    assert cli_main(args + ["--out", str(tmp_path / "b"), "--resume"]) == 0
    (a,), (b,) = (tmp_path / "a" / "lion").iterdir(), (tmp_path / "b" / "lion").iterdir()
    ra, rb = (json.loads((f / "results.json").read_text()) for f in (a, b))
    assert ra["metrics"] == rb["metrics"]
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()


def test_paper_preset_runs_a_few_steps(tmp_path, capsys, small_foundation):
    code = cli_main(["run", "lion", "--preset", "paper", "--out", str(tmp_path), "--set", "epochs=1",
                     "--set", "lrs=[0.001]", "--set", "rhos=[0.5]", "--set", "shots=5", "--set", "val_shots=2"])
    assert code == 0, capsys.readouterr().err
    _, data = results(tmp_path)
    assert data["preset"] == "paper" and data["metrics"]["lion_max_backward_residual"] <= 1e-6


@pytest.mark.parametrize("ablation", ["solve=one_step", "score=random"])
def test_budget_keeping_ablations_run_with_the_same_parameter_count(ablation, tmp_path, capsys, small_foundation):
    """The ablations of LION's paper claims (issue 31) change the mechanism only: the same trainable count as
    the full method; one_step records no solver iterations; the claims declare both arms."""
    fast = [*FAST, "--set", "seeds=2", "--set", "epochs=1"]
    assert cli_main(["run", "lion", "--out", str(tmp_path / "full"), *fast]) == 0, capsys.readouterr().err
    assert cli_main(["run", "lion", "--out", str(tmp_path / "ablated"), *fast, "--set", ablation]) == 0
    (full,), (ablated,) = (tmp_path / "full" / "lion").iterdir(), (tmp_path / "ablated" / "lion").iterdir()
    a, b = (json.loads((f / "results.json").read_text()) for f in (full, ablated))
    assert a["metrics"]["lion_params"] == b["metrics"]["lion_params"]
    assert a["metrics"]["vpt_params"] == b["metrics"]["vpt_params"]
    steps = json.loads((ablated / "solver_steps.json").read_text())["runs"]
    full_steps = json.loads((full / "solver_steps.json").read_text())["runs"]
    assert all(run["steps"] for run in full_steps)  # every training step's iterations and residual
    assert all(r["input_steps"] >= 1 for run in full_steps for r in run["steps"])
    if ablation == "solve=one_step":
        assert all(not run["steps"] for run in steps) and b["metrics"]["lion_train_input_steps"] == 0
    claims = {c["ablation"][0]: c for c in a["claims"] if c["kind"] == "paper"}
    assert set(claims) == {"freeze_implicit=true", "solve=one_step", "score=random"}
    assert all(c["arms"] == ["lion_test_acc", "vpt_test_acc"] for c in claims.values())


@pytest.mark.parametrize("caller_threads", [1, 2])
def test_the_run_computes_on_one_thread_whatever_the_callers_setting(caller_threads, tmp_path, capsys, monkeypatch):
    """LION pins one intra-op thread for its whole run (its figures then do not depend on the machine's core
    count: `tenfold run lion` gave identical metrics with OMP_NUM_THREADS=1 and 2, see docs/lion.md), and
    restores the caller's setting afterwards."""
    import torch

    import tenfold.tuning.foundation as foundation

    seen = []

    def fake(kind="digits", cache_dir=None, progress=None):
        seen.append(torch.get_num_threads())
        return build_vit(embed_dim=16, depth=1, num_heads=2), {"held_out_acc": 0.0, "cached": True, "path": ""}

    monkeypatch.setattr(foundation, "foundation_model", fake)
    old = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    try:
        # the standard preset: the quick tier's runner pins threads by itself (exp.threads)
        args = ["run", "lion", "--preset", "standard", "--out", str(tmp_path), *FAST, "--set", "epochs=1",
                "--set", "seeds=5", "--set", "foundation=digits"]
        assert cli_main(args) == 0, capsys.readouterr().err
        assert seen == [1]
        assert torch.get_num_threads() == caller_threads
    finally:
        torch.set_num_threads(old)


def test_the_fractal_foundation_is_asked_for_by_name_and_gets_32_px_rgb_digits(tmp_path, capsys, monkeypatch):
    """``foundation=fractal`` tunes the shipped fractal ViT: the digits reach it resized to its 32 px and
    repeated to its 3 channels (a wrong size or channel count would fail in its patch embedding)."""
    import tenfold.tuning.foundation as foundation

    asked, shapes = [], []

    def fake(kind="digits", cache_dir=None, progress=None):
        asked.append(kind)
        spec = foundation.SPECS[kind]
        vit = build_vit(img_size=spec.img_size, patch_size=spec.patch_size, in_chans=spec.in_chans, embed_dim=16,
                        depth=1, num_heads=2)
        vit.patch_embed.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[1:])))
        return vit, {"held_out_acc": 0.5, "cached": True, "path": ""}

    monkeypatch.setattr(foundation, "foundation_model", fake)
    assert cli_main(["run", "lion", "--out", str(tmp_path), *FAST, "--set", "epochs=1", "--set",
                     "foundation=fractal"]) == 0, capsys.readouterr().err
    _, data = results(tmp_path)
    assert asked == ["fractal"] and set(shapes) == {(3, 32, 32)}
    assert "fractal ViT" in data["notes"]


def test_an_lr_picked_on_an_edge_grows_the_grid_outward(tmp_path, capsys, small_foundation):
    import csv

    args = ["run", "lion", "--out", str(tmp_path), *FAST, "--set", "epochs=1", "--set", "seeds=2",
            "--set", "lrs=[0.01,0.03]", "--set", "lr_extend=1"]
    assert cli_main(args) == 0, capsys.readouterr().err
    folder, data = results(tmp_path)
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    for method in ("VPT-deep", "LION"):
        tried = sorted(float(r["lr"]) for r in rows if r["method"] == method and r["seed"] == "0")
        # a pick on a 2-rate grid is on an edge: one more rate outward, by the grid's own ratio (3)
        assert len(tried) == 3 and {0.01, 0.03} <= set(tried)
        assert all(abs(b / a - 3) < 1e-9 for a, b in zip(tried, tried[1:]))
        (later,) = [float(r["lr"]) for r in rows if r["method"] == method and r["seed"] == "1"]
        assert later in tried
    assert data["metrics"]["lr_on_edge"] in (0.0, 1.0, 2.0)
    assert any(c["name"].startswith("each method's lr pick") for c in data["claims"])
