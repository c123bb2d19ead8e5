"""User path of the SLTT experiments and benchmark: CLI runs, claims, one-line errors (exit code 2)."""

import json

import pytest

from tenfold.cli import cli_main
from tenfold.config import resolve
from tenfold.experiments.registry import get

from snn_files import write_cifar10


def _run(args, capsys):
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_cli_sltt_digits_quick_claims_hold(tmp_path, capsys):
    code, out, err = _run(["run", "sltt-digits", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "sltt-digits").iterdir()
    data = json.loads((folder / "results.json").read_text())
    kinds = [c["kind"] for c in data["claims"]]
    assert kinds == ["paper"] * 5 + ["check"] * 2
    assert all(c["holds"] for c in data["claims"]), data["claims"]
    parity = data["claims"][0]
    assert parity["n"] == 3 and len(parity["samples"]) == 3 and parity["ablation"] == ["sltt_grad=first_layer_dropped"]
    m = data["metrics"]
    assert m["saved_mb_sltt"] == m["saved_mb_sltt_2"] < m["saved_mb_bptt"]
    assert m["forward_max_abs_diff"] == 0.0
    assert (folder / "training.png").is_file() and (folder / "metrics.csv").is_file()


@pytest.mark.slow
def test_sltt_digits_ablations_make_their_claims_fail(tmp_path):
    """Each paper claim's ablation removes its mechanism and the claim then fails (small, fast setting).

    Every run gets its own folder, as `reproduce --falsify` gives each ablation one."""
    from tenfold.engine import RunContext

    exp = get("sltt-digits")
    runs = iter(range(100))
    base = ["epochs=4", "rules=[bptt,sltt]"]
    by_metric = {c.metric: c for c in exp.claims}

    def value(overrides, metric):
        cfg = resolve(exp.config, "sltt-digits", "quick", base + overrides)
        result = exp.run(cfg, RunContext(out_dir=tmp_path / f"run{next(runs)}", seed=0, experiment="sltt-digits"))
        low, high = by_metric[metric].bounds(cfg)
        v = result.metrics[metric]
        return v, low <= v <= high

    assert value([], "acc_sltt_minus_bptt")[1]
    # a partly wrong gradient (the first spiking layer passes none; the later layers still learn) leaves
    # the band, for SLTT and for SLTT-K
    assert not value(["sltt_grad=first_layer_dropped"], "acc_sltt_minus_bptt")[1]
    assert not value(["sltt_grad=first_layer_dropped"], "acc_sltt_k_minus_bptt")[1]
    v, holds = value(["online=false", "seeds=1"], "saved_ratio_sltt_over_bptt")
    assert not holds and v == pytest.approx(1.0, abs=0.01)
    # the time claim's ablation (K = T) is a timing: measured and reported by `reproduce --falsify`, never
    # asserted in a test (on the shared 2-core machine SLTT-6 / BPTT ranged 0.76-1.11 around its 0.75 bound)
    v, _ = value(["timed_k=6", "seeds=1"], "time_ratio_sltt_k_over_bptt")
    assert v > 0


def test_sltt_events_declares_no_cosine_claim_and_reports_it():
    from tenfold.papers.sltt.experiments import CLAIMS, EVENT_CLAIMS

    assert "grad_cosine_min" in {c.metric for c in CLAIMS} - {c.metric for c in get("sltt-events").claims}
    assert get("sltt-events").claims == tuple(EVENT_CLAIMS)
    for name in ("sltt-digits", "sltt-events", "sltt-cifar"):
        assert all(c.ablation for c in get(name).claims if c.kind == "paper")


def test_cifar_preset_is_not_quick_and_reports_missing_data(tmp_path, capsys):
    assert not get("sltt-cifar").quick and get("sltt-digits").quick and get("sltt-events").quick
    cfg = resolve(get("sltt-cifar").config, "sltt-cifar", "paper")
    assert cfg.tau == 1.1 and cfg.T == 6 and cfg.epochs == 200 and cfg.optimizer == "sgd"
    code, _, err = _run(["run", "sltt-cifar", "--preset", "paper", "--out", str(tmp_path),
                         "--set", f"root={tmp_path / 'none'}"], capsys)
    assert code == 2 and "CIFAR-10 not found" in err and len(err.strip().splitlines()) == 1


BAD = [
    ("T=0", "field 'T'=0"),
    ("rules=[sltt-9]", "rule 'sltt-9' needs K=9 in 1..T=6"),
    ("rules=[sltt-0]", "rule 'sltt-0' needs K=0"),
    ("rules=[online]", "rule='online' is invalid"),
    ("tau=0.5", "field 'tau'=0.5"),
    ("v_th=0", "field 'v_th'=0"),
    ("surrogate=relu", "field 'surrogate'='relu'"),
    ("mse_target=zeros", "field 'mse_target'='zeros'"),
]


@pytest.mark.parametrize("override, message", BAD)
def test_bad_config_is_one_line_exit_2_before_work(override, message, tmp_path, capsys):
    code, _, err = _run(["run", "sltt-digits", "--out", str(tmp_path), "--set", override], capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "sltt-digits").exists() or not any((tmp_path / "sltt-digits").iterdir())


@pytest.mark.slow
def test_benchmark_quick_every_target_holds():
    from tenfold.papers.sltt import bench as sltt

    data = sltt.run(quick=True)
    assert data["T"] == [2, 4, 8]
    for key in ("bptt", "sltt", "sltt_k2"):
        assert len(data["saved_bytes"][key]) == 3 and len(data["ms_per_iter"][key]) == 3
    assert data["saved_bytes"]["sltt"][0] == data["saved_bytes"]["sltt"][-1] < data["saved_bytes"]["bptt"][-1]
    b = data["saved_bytes"]["bptt"]  # linear in T: equal growth per added step
    assert b[2] - b[1] == pytest.approx(2 * (b[1] - b[0]), rel=0.02) and b[1] > b[0]
    # memory and gradient targets are deterministic; time targets are measured by `tenfold bench` and
    # reported, never asserted in a test (a busy machine would make them flaky)
    timed = [t for t in data["targets"] if "time" in t["name"]]
    assert timed and all(t["value"] > 0 and isinstance(t["holds"], bool) for t in timed)
    failed = [t for t in data["targets"] if not t["holds"] and t not in timed]
    assert not failed, failed
    # the paper-scale networks by live saved-tensor accounting: BPTT holds T steps' graphs, SLTT one;
    # saved bytes are linear in the batch (measured at batches 1 and 2)
    paper = data["paper_scale"]
    for name, T in (("resnet18", 6), ("vgg11", 10)):
        row = paper[name]
        # at most T steps' graphs plus the multi-step BPTT's one time-major copy of the input (under 1%)
        assert row["T"] == T and 0.95 * T <= row["ratio_bptt_over_sltt"] <= T * 1.01, row
        assert row["ratio_bptt_over_sltt"] >= row["paper_ratio"] > 1
        assert abs(row["bptt_linearity"] - 1) < 0.01 and abs(row["sltt_linearity"] - 1) < 0.01
    assert {t["name"] for t in data["targets"] if "paper" in t["name"]} and len(data["bptt_over_sltt_saved"]) == 3


@pytest.mark.slow
def test_cifar_paper_preset_runs_end_to_end_on_tiny_local_pickles(tmp_path, capsys):
    write_cifar10(tmp_path / "data")
    code, out, err = _run(["run", "sltt-cifar", "--preset", "paper", "--out", str(tmp_path / "runs"),
                           "--set", f"root={tmp_path / 'data'}", "--set", "epochs=1", "--set", "width=4",
                           "--set", "batch_size=16", "--set", "T=2", "--set", "rules=[bptt,sltt-1]",
                           "--set", "train_limit=32", "--set", "time_repeats=5", "--set", "time_batch=8",
                           "--set", "timed_k=1"], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "runs" / "sltt-cifar").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert {"test_acc_bptt", "test_acc_sltt_1", "saved_mb_bptt", "acc_sltt_minus_bptt"} <= set(data["metrics"])
    assert len(data["claims"]) == 7 and all(c["value"] is not None for c in data["claims"])
    assert data["metrics"]["saved_mb_sltt_1"] < data["metrics"]["saved_mb_bptt"]


def test_cifar_augmentation_crops_flips_and_cuts_out():
    import torch

    from tenfold.data.augment import augment_image

    img = torch.rand(3, 32, 32) + 1.0  # strictly positive, so the Cutout hole is the only zeros
    g = torch.Generator().manual_seed(0)
    outs = [augment_image(img, g, cutout=8) for _ in range(20)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    holes = [int((o[0] == 0).sum()) for o in outs]
    assert max(holes) > 0 and len({tuple(o.flatten()[:50].tolist()) for o in outs}) > 1
    assert int((augment_image(img, torch.Generator().manual_seed(1), cutout=0)[0] == 0).sum()) <= 32 * 8


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """BPTT (T forwards, one backward) and SLTT-K (K backward calls per batch) run under DDP and land on
    the same test accuracy as one process up to a couple of digits (the last, odd-sized batch is
    averaged per shard)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TENFOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "tenfold.cli", "run", "sltt-digits", "--device", "cpu", "--set", "epochs=2",
            "--set", "rules=[bptt,sltt-2]"]
    metrics = []
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        proc = subprocess.run(args + ["--out", str(out), "--devices", str(devices)], env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        (folder,) = (out / "sltt-digits").iterdir()
        metrics.append(json.loads((folder / "results.json").read_text())["metrics"])
    for key in ("test_acc_bptt", "test_acc_sltt_2"):
        assert metrics[0][key] > 0.5
        assert metrics[0][key] == pytest.approx(metrics[1][key], abs=3 / 450 + 1e-9), key
