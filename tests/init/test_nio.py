"""NIO on the spec's digits MLP (64-64-64-64-10, no BN, D = 4, r = 0.2) and on timm models; the user path."""

import copy
import json

import pytest
import torch
from torch import nn

from tenfold.cli import cli_main
from tenfold.data import digits
from tenfold.errors import ConfigError
from tenfold.experiments.nio import digits_mlp
from tenfold.init import gradcosine, nio


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = digits_mlp(64)
    train, held = digits("train", flatten=True), digits("val", flatten=True)
    pick = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:128]
    return model, (train.x[:128], train.y[:128]), (held.x[pick], held.y[pick])


def test_gc_rises_when_gamma_exceeds_the_initial_norm_and_alpha_stays_above_its_bound(setup):
    model, fixed, held = setup
    before = gradcosine(model, held, D=4, overlap=0.2)
    assert before.norm.item() < 5.0
    tuned, hist = nio(copy.deepcopy(model), fixed, gamma=5.0, iterations=30, D=4, overlap=0.2)
    after = gradcosine(tuned, held, D=4, overlap=0.2)
    assert after.gc.item() > before.gc.item() + 0.1
    assert hist.gc[-1] > hist.gc[0]
    for row in hist.alphas:
        for name, a in row.items():
            assert a >= (0.0 if name.endswith("bias") else 0.01)


def test_constraint_steps_lower_the_norm_and_keep_it_within_1_1_gamma(setup):
    model, fixed, _ = setup
    start = gradcosine(model, fixed, D=4, overlap=0.2).norm.item()
    gamma = 0.7 * start  # begin above the bound: constraint steps first
    _, hist = nio(copy.deepcopy(model), fixed, gamma=gamma, iterations=40, lr=0.05, D=4, overlap=0.2)
    assert hist.constraint[0]
    for t in range(len(hist.norm) - 1):
        if hist.constraint[t]:
            assert hist.norm[t + 1] < hist.norm[t], t
    first_free = hist.constraint.index(False)
    assert max(hist.norm[first_free:]) <= 1.1 * gamma
    assert min(min(row.values()) for row in hist.alphas) >= 0.0


def test_model_is_rescaled_per_tensor_and_modes_are_restored(setup):
    model, fixed, _ = setup
    tuned = copy.deepcopy(model).train()
    w0 = {k: v.clone() for k, v in tuned.state_dict().items()}
    tuned, hist = nio(tuned, fixed, gamma=5.0, iterations=3, D=4)
    assert tuned.training
    for name, value in tuned.state_dict().items():
        ratio = value / w0[name]
        finite = ratio[torch.isfinite(ratio)]
        assert torch.allclose(finite, torch.full_like(finite, hist.alphas[-1][name]), rtol=1e-4)


@pytest.mark.slow
def test_nio_runs_on_timm_vit_and_resnet_style_cnn():
    timm = pytest.importorskip("timm")
    vit = timm.models.vision_transformer.VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1,
                                                          num_heads=2, num_classes=3)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
    for model in (vit, cnn):
        bn_state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        _, hist = nio(model, data, gamma=5.0, iterations=2, D=2)
        assert len(hist.gc) == 2 and all(-1 <= v <= 1 for v in hist.gc)
        for k, v in bn_state.items():
            assert torch.equal(model.state_dict()[k], v)


def test_nio_bad_input_is_a_one_line_error(setup):
    model, fixed, _ = setup
    with pytest.raises(ConfigError, match="gamma=0.0 is invalid"):
        nio(model, fixed, gamma=0.0)
    with pytest.raises(ConfigError, match="D=1 is invalid"):
        nio(model, fixed, D=1, iterations=1)
    with pytest.raises(ConfigError, match="model=ReLU is invalid"):
        nio(nn.ReLU(), fixed)


def test_cli_nio_digits_writes_results_and_claims(tmp_path, capsys):
    code = cli_main(["run", "nio-digits", "--out", str(tmp_path), "--set", "iterations=8", "--set", "train_epochs=1"])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "nio-digits").iterdir()
    result = json.loads((folder / "results.json").read_text())
    assert {"gc_before", "gc_after", "norm_before", "norm_after", "acc_nio_init"} <= set(result["metrics"])
    assert (folder / "nio.png").is_file()
    assert result["metrics"]["min_alpha_minus_bound"] >= 0  # a projection keeps alpha above its bound
    assert all("alpha" not in c["name"] for c in result["claims"])  # ... so it is not claimed


def test_cli_bad_gamma_and_overlap_exit_2(tmp_path, capsys):
    assert cli_main(["run", "nio-digits", "--out", str(tmp_path), "--set", "gamma=-1"]) == 2
    assert "gamma" in capsys.readouterr().err
    assert cli_main(["run", "nio-shapes", "--out", str(tmp_path), "--set", "overlap=1.5"]) == 2
    assert "overlap" in capsys.readouterr().err


def _fake_cifar10(root):
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(10).repeat(10)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (100, 3072), dtype=np.uint8), b"labels": labels.tolist()}, f)


@pytest.mark.slow
def test_cli_nio_cifar_preset_runs_resnet18_from_a_local_root(tmp_path, capsys):
    _fake_cifar10(tmp_path / "data")
    code = cli_main(["run", "nio-cifar", "--out", str(tmp_path / "runs"), "--set", f"root={tmp_path / 'data'}",
                     "--set", "iterations=1", "--set", "train_epochs=0", "--set", "nio_batch=4", "--set", "heldout=4"])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "nio-cifar").iterdir()
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    assert -1 <= metrics["gc_after"] <= 1 and metrics["norm_after"] > 0


def test_cli_nio_cifar_missing_root_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["run", "nio-cifar", "--out", str(tmp_path), "--set", f"root={tmp_path / 'none'}"]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_nio_accepts_a_dataloader_and_reiterates_it(setup):
    model, (x, y), _ = setup
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)  # 2 batches
    _, hist = nio(copy.deepcopy(model), loader, gamma=5.0, iterations=5, D=4)
    assert len(hist.gc) == 5
