"""partformer-scenes' learning-rate search (issue 35, item 1): the best validation rate wins, a grid whose
optimum lies on its edge grows, every model of a seed (the ablations too) runs the same search on the same
batches, and the validation scenes are new scenes that leave the training and held-out scenes as they were."""

import math

import numpy as np
import pytest
import torch

from tenfold.config import resolve
from tenfold.engine import RunContext
from tenfold.errors import ConfigError
from tenfold.papers.partformer import experiments as E
from tenfold.papers.partformer.experiments import search_lr


def _peak(at: float):
    calls = []

    def score(lr):
        calls.append(lr)
        return -abs(math.log(lr / at))
    return score, calls


def test_the_best_validation_rate_wins_and_each_rate_is_scored_once():
    score, calls = _peak(3e-3)
    best, grid, scores, on_edge = search_lr(score, [1e-2, 1e-3, 3e-3, 1e-3], extend=1)
    assert best == 3e-3 and grid == [1e-3, 3e-3, 1e-2] and not on_edge
    assert sorted(calls) == grid and set(scores) == set(grid)


def test_ties_go_to_the_smaller_rate():
    best, _, _, _ = search_lr(lambda lr: (0.5, 0.1) if lr in (1e-3, 3e-3) else (0.2, 0.9), [3e-4, 1e-3, 3e-3, 1e-2])
    assert best == 1e-3


def test_an_optimum_on_an_edge_grows_the_grid_by_its_end_ratio():
    score, calls = _peak(0.05)
    best, grid, _, on_edge = search_lr(score, [1e-3, 3e-3, 1e-2], extend=3)
    # 1e-2 on the upper edge: x(1e-2 / 3e-3) -> 1/30, then x again -> 1/9: 1/30 is inside
    assert grid == pytest.approx([1e-3, 3e-3, 1e-2, 1 / 30, 1 / 9])
    assert best == pytest.approx(1 / 30) and not on_edge and len(calls) == 5
    score, _ = _peak(1e-5)
    best, grid, _, on_edge = search_lr(score, [1e-3, 1e-2], extend=1)
    assert grid == pytest.approx([1e-4, 1e-3, 1e-2]) and best == pytest.approx(1e-4) and on_edge
    best, grid, _, on_edge = search_lr(score, [1e-3, 1e-2], extend=0)
    assert grid == [1e-3, 1e-2] and best == 1e-3 and on_edge
    assert search_lr(score, [1e-3], extend=2)[1:] == ([1e-3], {1e-3: score(1e-3)}, False)   # no search
    with pytest.raises(ConfigError, match=r"lrs=\[\] is invalid"):
        search_lr(score, [])


TINY = ["train_scenes=8", "val_scenes=4", "tune_scenes=4", "size=32", "steps=2", "chunk=1", "batch_size=2",
        "num_points=32", "seeds=2", "lrs=[0.001,0.002,0.004,0.008]"]
# validation optimum of each model (shared features: beyond the grid, which grows once and stays on its edge);
# the held-out scenes prefer another rate, which the search must not see
PEAKS = {"full": 2e-3, "no part-whole attention": 4e-3, "shared features": 0.05}


def _fake_training(monkeypatch) -> list[tuple]:
    """Training records (stage, lr, order key, training scenes) and scores each model by its rate: on the
    validation scenes peaked at its variant's PEAKS rate, on the held-out scenes at 0.1."""
    trained, held = [], []
    real_model, real_data = E._model, E._data

    def fake_train(model, data, cfg, ctx, name, order_key=None):
        model._lr = cfg.lr
        trained.append((name, cfg.lr, order_key, len(data)))
        return [1.0, 0.5]

    def fake_evaluate(model, data, spec, cfg, out_dir=None):
        peak = 0.1 if data is held[-1] else PEAKS[model._variant]   # held-out scenes, else validation
        v = 0.5 - 0.1 * abs(math.log10(model._lr / peak))
        return {"PQ": v, "PartPQ": v, "PartPQ_parts": v, "part_mIoU": v, "PWQ (provisional)": v,
                "per_class": {str(s): {"name": f"c{s}", "PartPQ": v} for s in spec.parts_sids}}

    def tagged_model(cfg, spec, **switches):
        model = real_model(cfg, spec, **switches)
        model._variant = {(): "full", ("part_whole_attention",): "no part-whole attention",
                          ("decoupled",): "shared features"}[tuple(switches)]
        return model

    def data(cfg, ctx, seed, tune=False):
        out = real_data(cfg, ctx, seed, tune)
        held.append(out[1])
        return out

    monkeypatch.setattr(E, "_train", fake_train)
    monkeypatch.setattr(E, "_evaluate", fake_evaluate)
    monkeypatch.setattr(E, "_model", tagged_model)
    monkeypatch.setattr(E, "_data", data)
    monkeypatch.setattr(E, "evaluate_folders", lambda *a: {"PartPQ": 0.5})
    monkeypatch.setattr(E, "_figure", lambda *a: "predictions.png")
    monkeypatch.setattr(E, "save_weights", lambda *a: None)
    return trained


def test_every_model_runs_its_own_search_on_the_validation_scenes_with_the_same_batches(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    cfg = resolve(E.PartFormerScenesConfig, "partformer-scenes", "quick", TINY)
    result = E.run(cfg, RunContext(out_dir=tmp_path))

    names = [t[0] for t in trained]
    assert len(names) == len(set(names))                    # every search run is its own resumable stage
    for k in range(2):
        runs = [t for t in trained if t[0].endswith(f"seed{k}")]
        assert {t[2] for t in runs} == {f"seed{k}"}          # one batch order for all rates and models
        assert all(t[3] == 8 for t in runs)                  # trained on the training scenes only
        for variant, grid in (("full", [1e-3, 2e-3, 4e-3, 8e-3]), ("no part-whole attention", [1e-3, 2e-3, 4e-3, 8e-3]),
                              ("shared features", [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2])):
            stem = variant.replace(" ", "-")
            assert sorted(t[1] for t in runs if t[0].startswith(stem + "-lr")) == pytest.approx(grid)
    table = result.tables[next(t for t in result.tables if t.startswith("learning rate picked"))]
    picked = {(int(r.split("|")[1]), r.split("|")[2].strip()): float(r.split("|")[3])
              for r in table.splitlines()[2:]}
    want = {"full": 2e-3, "no part-whole attention": 4e-3, "shared features": 1.6e-2}
    assert picked == pytest.approx({(k, v): want[v] for k in range(2) for v in want})
    assert result.metrics["lr_on_edge"] == 2                 # shared features on both seeds
    # the held-out scores are those of the picked models (validation chose, the held-out scenes did not)
    assert np.allclose(result.samples["PartPQ_parts_gain_vs_shared_features"], 0.1 * math.log10(2e-3 / 1.6e-2))
    assert np.allclose(result.samples["PartPQ_parts_gain_vs_no_part_whole_attention"], 0.1 * math.log10(2e-3 / 4e-3))


def test_without_a_grid_there_is_no_search_and_no_validation_scenes(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    cfg = resolve(E.PartFormerScenesConfig, "partformer-scenes", "quick",
                  [t for t in TINY if not t.startswith("lrs")] + ["lrs=[0.002]", "seeds=1", "ablations=false"])
    result = E.run(cfg, RunContext(out_dir=tmp_path))
    assert [t[:3] for t in trained] == [("full-seed0", 0.002, "seed0")]
    assert result.metrics["lr_on_edge"] == 0 and len(result.tables) == 1
    assert not (tmp_path / "scenes" / "seed0" / "tune").exists()


def test_validation_scenes_are_new_and_leave_the_other_scenes_unchanged(tmp_path):
    cfg = resolve(E.PartFormerScenesConfig, "partformer-scenes", "quick", TINY)
    a = E._data(cfg, RunContext(out_dir=tmp_path / "a"), 7, tune=False)
    b = E._data(cfg, RunContext(out_dir=tmp_path / "b"), 7, tune=True)
    assert a[4] is None and len(b[4]) == 4
    for i in (0, 1):   # train and held-out scenes
        assert len(a[i]) == len(b[i]) and all(torch.equal(a[i][j][0], b[i][j][0]) for j in range(len(a[i])))
    seen = [b[i][j][0] for i in (0, 1) for j in range(len(b[i]))]
    assert not any(torch.equal(t[0], s) for t in (b[4][j] for j in range(4)) for s in seen)


def test_on_a_data_folder_the_last_training_images_validate(tmp_path):
    from test_partformer_cli import _cpp_folder

    _cpp_folder(tmp_path / "cpp", n_train=8, n_val=2, size=(32, 32))
    cfg = resolve(E.PartFormerScenesConfig, "partformer-scenes", "quick",
                  [f"data_root={tmp_path / 'cpp'}", "eval_spec=ppq_cpp_19_23_cvpr21_default", "tune_scenes=4"])
    train, val, _, _, tune = E._data(cfg, RunContext(out_dir=tmp_path / "run"), 0, tune=True)
    assert len(train) == 4 and len(tune) == 4 and len(val) == 2
    assert not set(tune.names) & set(train.names)
    assert tune.label(0).shape == (32, 32) and tune[0][0].shape == (3, 32, 32)
    cfg = resolve(E.PartFormerScenesConfig, "partformer-scenes", "quick",
                  [f"data_root={tmp_path / 'cpp'}", "eval_spec=ppq_cpp_19_23_cvpr21_default", "tune_scenes=5"])
    with pytest.raises(ConfigError, match="tune_scenes=5 is invalid"):
        E._data(cfg, RunContext(out_dir=tmp_path / "run2"), 0, tune=True)
