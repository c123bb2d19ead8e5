"""``--precision`` goes through Lightning Fabric: a model set up with ``ctx.setup`` computes its forward in
bfloat16 under ``bf16-mixed`` (and in float32 under ``32``), the run records the precision, and loops that
wrap their own forward (partformer-scenes) read ``ctx.precision``."""

import json

import pytest
import torch
from torch import nn

from tenfold.cli import cli_main
from tenfold.engine import RunContext
from tenfold.engine.fabric import make_fabric


def _linear_and_input():
    torch.manual_seed(0)
    return nn.Linear(16, 8), torch.randn(5, 16)


def test_a_set_up_model_runs_its_forward_in_bfloat16_under_bf16_mixed(tmp_path):
    model, x = _linear_and_input()
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    ctx = RunContext(out_dir=tmp_path, fabric=make_fabric("cpu", 1, "bf16-mixed"))
    assert ctx.precision == "bf16-mixed"
    out = ctx.setup(model)(x)
    bf16 = nn.functional.linear(x.bfloat16(), w.bfloat16(), b.bfloat16()).float()
    fp32 = nn.functional.linear(x, w, b)
    assert torch.equal(out.float(), bf16)
    assert not torch.allclose(out.float(), fp32, atol=1e-5, rtol=0)  # the rounding is visible: it is not float32


def test_without_a_fabric_or_at_32_the_forward_stays_float32(tmp_path):
    model, x = _linear_and_input()
    expected = model(x).detach()
    plain = RunContext(out_dir=tmp_path / "plain")
    assert plain.precision == "32-true"
    full = RunContext(out_dir=tmp_path / "full", fabric=make_fabric("cpu", 1, "32-true"))
    assert full.precision == "32-true"
    assert torch.equal(full.setup(model)(x), expected)


TINY = ["--set", "epochs=2", "--set", "lrs=[0.01]"]


def _run(tmp_path, name, *extra):
    assert cli_main(["run", "digits-mlp", "--out", str(tmp_path / name)] + TINY + list(extra)) == 0
    (folder,) = (tmp_path / name / "digits-mlp").iterdir()
    return json.loads((folder / "results.json").read_text())


def test_the_cli_trains_digits_mlp_in_bf16_mixed_and_records_it(tmp_path):
    full = _run(tmp_path, "32")
    mixed = _run(tmp_path, "bf16", "--precision", "bf16-mixed")
    assert full["precision"] == "32-true" and mixed["precision"] == "bf16-mixed"
    assert mixed["status"] == "ok"
    # the same seed and data order: only the arithmetic differs, so the losses differ a little, not a lot
    a, b = full["metrics"]["final_loss"], mixed["metrics"]["final_loss"]
    assert a != b
    assert abs(a - b) < 0.1 * a
    assert abs(full["metrics"]["test_acc"] - mixed["metrics"]["test_acc"]) < 0.05


@pytest.mark.slow
def test_two_processes_train_in_bf16_mixed(tmp_path):
    import subprocess
    import sys

    args = [sys.executable, "-m", "tenfold.cli", "run", "digits-mlp", "--out", str(tmp_path), "--devices", "2",
            "--precision", "bf16-mixed"] + TINY
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                                     "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = (tmp_path / "digits-mlp").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert data["precision"] == "bf16-mixed" and data["status"] == "ok"


def test_a_loop_that_wraps_its_own_forward_reads_ctx_precision(tmp_path, monkeypatch):
    """partformer-scenes' training loop turns on its autocast from ``ctx.precision`` (not only ``amp=true``)."""
    from tenfold.papers.partformer import experiments as partformer

    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.append((kwargs.get("dtype"), kwargs.get("enabled")))
        return real(*args, **kwargs)

    monkeypatch.setattr(partformer.torch, "autocast", spy)
    assert cli_main(["run", "partformer-scenes", "--out", str(tmp_path), "--precision", "bf16-mixed",
                     "--set", "steps=1", "--set", "chunk=1", "--set", "train_scenes=8", "--set", "val_scenes=4",
                     "--set", "batch_size=2", "--set", "num_points=32", "--set", "size=32", "--set", "seeds=3",
                     "--set", "ablations=false"]) == 0
    assert seen and all(s == (torch.bfloat16, True) for s in seen)
