"""SPIDE behaviour and user path: the experiments through the CLI, bad input as one-line errors."""

import gzip
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tenfold.cli import cli_main
from tenfold.snn.spide_models import SpideClassifier, mlp_f


def run_cli(args, capsys):
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def results(tmp_path, name):
    (folder,) = (tmp_path / name).iterdir()
    return folder, json.loads((folder / "results.json").read_text())


@pytest.mark.slow
def test_spike_backward_learns_digits_like_exact_gradient():
    # The paper's claim at tiny scale: training with spike-computed gradients learns as well as with the
    # exact implicit gradient (same init, same data order); 3 epochs of a 32-unit feedback net.
    from tenfold.data import digits

    train, test = digits("train", flatten=True), digits("test", flatten=True)
    accs = {}
    for mode in ("spike", "exact"):
        torch.manual_seed(0)
        snn = mlp_f(64, (32,), feedback=True, backward=mode, time_steps=20, time_steps_back=60)
        model = SpideClassifier(snn, 32, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        for _ in range(3):
            for i in range(0, len(train), 64):
                idx = order[i:i + 64]
                opt.zero_grad()
                F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
                opt.step()
                snn.cap_feedback_norm_()
        with torch.no_grad():
            accs[mode] = float((model.eval()(test.x).argmax(1) == test.y).float().mean())
    assert accs["spike"] >= 0.85
    assert abs(accs["spike"] - accs["exact"]) <= 0.05


def test_cli_spide_digits_writes_run_folder(tmp_path, capsys):
    code, out = run_cli(["run", "spide-digits", "--out", str(tmp_path), "--set", "epochs=1", "--set", "hidden=16",
                         "--set", "time_steps=10", "--set", "time_steps_back=20"], capsys)
    assert code == 0, out
    folder, data = results(tmp_path, "spide-digits")
    assert data["status"] == "ok" and len(data["claims"]) == 7
    assert [c["kind"] for c in data["claims"]] == ["paper"] * 3 + ["check"] * 4
    assert [c["ablation"] for c in data["claims"][:3]] == [["scale=1.0"], ["reset=soft"], ["reset=soft"]]
    assert {"accuracy.png", "reset_error.png", "metrics.csv"} <= {p.name for p in folder.iterdir()}
    m = data["metrics"]
    assert 0.1 < m["test_acc_feedback_spike"] <= 1 and 0.1 < m["test_acc_feedback_exact"] <= 1
    assert m["rate_error_soft_over_modified"] > 1  # the soft reset's error is larger on every seed's network
    assert m["rate_error_times_2T"] <= 1 + 1e-9 and m["feedback_norm_over_cap"] <= 1 + 1e-6
    assert "SPIDE on digits" in data["tables"]


def test_feedback_blind_adjoint_fails_the_gradient_claim_where_the_feedback_matters():
    """The claim's ablation: with the feedback term dropped from the spike adjoint, the gradient on a
    network with strong feedback (norm 10) is measurably wrong; with it, the spike backward follows the
    exact implicit gradient. At the training cap (norm 2) the two barely differ, which is why the claim is
    measured at norm 10."""
    from tenfold.config import resolve
    from tenfold.data import digits
    from tenfold.experiments.registry import get
    from tenfold.papers.spide.experiments import strong_feedback_cosine

    train = digits("train", flatten=True)
    x, y = train.x[:64], train.y[:64]
    exp = get("spide-digits")
    cfg = resolve(exp.config, "spide-digits")
    threshold = cfg.thresholds.min_grad_cosine
    full = strong_feedback_cosine(cfg, 0, x, y)
    blind = strong_feedback_cosine(resolve(exp.config, "spide-digits", "quick", ["adjoint_feedback=false"]), 0, x, y)
    assert full["cosine"] >= threshold > blind["cosine"], (full, blind)
    assert blind["cosine"] == pytest.approx(full["blind"], abs=1e-6)
    weak = strong_feedback_cosine(resolve(exp.config, "spide-digits", "quick", ["check_feedback_norm=2.0"]), 0, x, y)
    assert weak["blind"] > 0.99  # at the training cap the feedback hardly changes the adjoint


@pytest.mark.slow
def test_quick_spide_digits_checks_pass_and_paper_claims_are_reported(tmp_path, capsys):
    """The quick tier is a smoke run: every check (a property of the code) passes; the paper claims are measured
    and reported with their intervals, and judged at the standard tier."""
    code, out = run_cli(["run", "spide-digits", "--out", str(tmp_path)], capsys)
    assert code == 0, out
    _, data = results(tmp_path, "spide-digits")
    assert all(c["holds"] for c in data["claims"] if c["kind"] == "check"), data["claims"]
    paper = [c for c in data["claims"] if c["kind"] == "paper"]
    assert len(paper) == 3 and all(len(c["ci95"]) == 2 and c["n"] >= 2 for c in paper)


@pytest.mark.slow
def test_quick_spide_events_claims_hold(tmp_path, capsys):
    code, out = run_cli(["run", "spide-events", "--out", str(tmp_path)], capsys)
    assert code == 0, out
    _, data = results(tmp_path, "spide-events")
    assert all(c["holds"] for c in data["claims"]), data["claims"]


@pytest.mark.parametrize("override, field", [
    ("time_steps=0", "time_steps"), ("time_steps_back=0", "time_steps_back"), ("scale=0", "scale"),
    ("scale=-3", "scale"), ("v_th=0", "v_th"), ("feedback_norm_cap=0", "feedback_norm_cap"),
    ("dropout=1.0", "dropout"),
])
def test_cli_bad_values_are_one_line_errors(tmp_path, capsys, override, field):
    code, out = run_cli(["run", "spide-digits", "--out", str(tmp_path), "--set", override], capsys)
    assert code == 2
    assert field in out and "Traceback" not in out
    assert not (tmp_path / "spide-digits").exists() or not any((tmp_path / "spide-digits").rglob("results.json"))


def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(str(path) + ".gz", "wb") as fh:
        fh.write(header + array.tobytes())


def test_mnist_lenet_recipe_runs_on_local_idx_files(tmp_path, capsys):
    root = tmp_path / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 24), ("t10k", 12)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    code, out = run_cli(["run", "spide-mnist-lenet", "--out", str(tmp_path / "runs"), "--set", f"root={root}",
                         "--set", "epochs=1", "--set", "width=0.2", "--set", "time_steps=4",
                         "--set", "time_steps_back=4", "--set", "batch_size=12"], capsys)
    assert code == 0, out
    _, data = results(tmp_path / "runs", "spide-mnist-lenet")
    assert 0 <= data["metrics"]["test_acc"] <= 1
    code, out = run_cli(["run", "spide-mnist-lenet", "--out", str(tmp_path / "runs"), "--set",
                         f"root={tmp_path / 'nowhere'}"], capsys)
    assert code == 2 and "MNIST file" in out


def test_cifar_recipe_runs_on_local_pickles(tmp_path, capsys):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    code, out = run_cli(["run", "spide-cifar", "--out", str(tmp_path / "runs"), "--set", f"root={tmp_path / 'cifar'}",
                         "--set", "epochs=1", "--set", "width=0.03", "--set", "time_steps=3",
                         "--set", "time_steps_back=3", "--set", "batch_size=10", "--set", "dropout=0.2",
                         "--set", "warmup_iters=2"], capsys)
    assert code == 0, out
    _, data = results(tmp_path / "runs", "spide-cifar")
    assert data["metrics"]["max_feedback_norm"] <= 2.0


@pytest.mark.slow
def test_benchmark_memory_flat_for_spide_and_linear_for_bptt():
    from tenfold.papers.spide import bench

    out = bench.run(quick=True)
    rows = {r["T"]: r for r in out["rows"]}
    assert rows[10]["spide_bytes"] == rows[100]["spide_bytes"]
    assert rows[100]["bptt_bytes"] > 5 * rows[10]["bptt_bytes"]
    assert all(t["holds"] for t in out["targets"])


def test_dropout_with_several_processes_is_refused_before_training():
    """Dropout masks are drawn per process (local batch shape), so DDP would not give one process's run."""
    from types import SimpleNamespace

    from tenfold.errors import ConfigError
    from tenfold.papers.spide.configs import SpideDigitsConfig
    from tenfold.papers.spide.experiments import _train

    cfg = SpideDigitsConfig(dropout=0.1)
    model = SpideClassifier(mlp_f(4, (3,), dropout=0.1), 3, 2)
    with pytest.raises(ConfigError, match=r"^dropout=0.1 is not supported with devices=2"):
        _train("x", model, None, None, cfg, SimpleNamespace(world_size=2))
