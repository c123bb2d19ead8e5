"""NIO on the spec's digits MLP (64-64-64-64-10, no BN, D = 4, r = 0.2) and on timm models; the user path."""

import copy
import json

import pytest
import torch
from torch import nn

from tenfold.cli import cli_main
from tenfold.data import digits
from tenfold.errors import ConfigError
from tenfold.papers.nio.experiments import digits_mlp
from tenfold.init import OBJECTIVES, RescaleAdamState, gradcosine, nio, objective_value, scaled_parameters
from tenfold.init.gradcosine import cosine_statistics


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
    # a free step starts at norm <= gamma and moves each scale by about lr; the norm of this 4-layer MLP
    # is then at most ~(1 + lr)^4 gamma before the next constraint step brings it down
    assert max(hist.norm[first_free:]) <= (1 + 0.05) ** 4 * gamma
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
    assert {"gc_default", "gc_nio", "gc_uniform", "norm_nio", "norm_uniform", "acc_nio"} <= set(result["metrics"])
    assert (folder / "nio.png").is_file()
    kinds = {c["name"]: c["kind"] for c in result["claims"]}
    assert sorted(kinds.values()) == ["check", "check", "paper", "paper", "paper"]
    assert {"acc_gradinit", "gc_gradinit", "norm_gradinit"} <= set(result["metrics"])
    assert len(result["samples"]["acc_nio_minus_gradinit"]) == 3
    # a projection keeps alpha above its bound: a check, not a paper claim
    assert all(kinds[c["name"]] == "check" for c in result["claims"] if "alpha" in c["name"])
    assert all(c["n"] == 3 for c in result["claims"] if c["kind"] == "paper")


def test_cli_bad_gamma_and_overlap_exit_2(tmp_path, capsys):
    assert cli_main(["run", "nio-digits", "--out", str(tmp_path), "--set", "gamma=-1"]) == 2
    assert "gamma" in capsys.readouterr().err
    assert cli_main(["run", "nio-shapes", "--out", str(tmp_path), "--set", "overlap=1.5"]) == 2
    assert "overlap" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_nio_cifar_preset_runs_resnet18_from_a_local_root(tmp_path, capsys):
    from snn_files import write_cifar10  # the shared CIFAR-10 pickle writer (tests/snn)

    write_cifar10(tmp_path / "data", n=100)
    code = cli_main(["run", "nio-cifar", "--out", str(tmp_path / "runs"), "--set", f"root={tmp_path / 'data'}",
                     "--set", "iterations=1", "--set", "train_epochs=0", "--set", "nio_batch=4", "--set", "heldout=4", "--set", "gradinit_iterations=1", "--set", "uniform_steps=2",
                     "--set", "batch_size=8"])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "nio-cifar").iterdir()
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    assert -1 <= metrics["gc_nio"] <= 1 and metrics["norm_nio"] > 0


def test_cli_nio_cifar_missing_root_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["run", "nio-cifar", "--out", str(tmp_path), "--set", f"root={tmp_path / 'none'}"]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_nio_accepts_a_dataloader_and_reiterates_it(setup):
    model, (x, y), _ = setup
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)  # 2 batches
    _, hist = nio(copy.deepcopy(model), loader, gamma=5.0, iterations=5, D=4)
    assert len(hist.gc) == 5


# ------------------------------------------------------------------------------------------------
# the official RescaleAdam details (HarborYuan/GradCosine, gradcos/gradinit_optimizers.py)
# ------------------------------------------------------------------------------------------------
def _official_rescale_adam(grads, constraints, lr=0.05, b1=0.9, b2=0.999, eps=1e-8):
    """An independent transcription of the RescaleAdam update of one scalar scale (min_scale 0)."""
    alpha, m, m_c, v, t, t_c, out = 1.0, 0.0, 0.0, 0.0, 0, 0, []
    for g, c in zip(grads, constraints):
        if c:
            t_c += 1
            m_c = m_c * b1 + g * (1 - b1)
            steps, avg = t_c, m_c
        else:
            t += 1
            m = m * b1 + g * (1 - b1)
            steps, avg = t, m
        v = v * b2 + g * g * (1 - b2)
        denom = (v / (1 - b2 ** (t + t_c))) ** 0.5 + eps
        alpha = alpha - lr / (1 - b1 ** steps) * avg / denom
        out.append(alpha)
    return out


def test_rescale_adam_shares_one_second_moment_between_constraint_and_free_steps():
    grads = [0.3, -0.8, 0.05, 1.0, -0.2, 0.6, 0.01]
    constraints = [True, True, False, False, True, False, False]
    expected = _official_rescale_adam(grads, constraints)
    state, alpha, got = RescaleAdamState(), 1.0, []
    for g, c in zip(grads, constraints):
        alpha -= state.step({"w": g}, 0.05, c)["w"]
        got.append(alpha)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # two separate Adams (the previous implementation) differ from the first phase switch on
    separate, alpha2 = {True: RescaleAdamState(), False: RescaleAdamState()}, 1.0
    for i, (g, c) in enumerate(zip(grads, constraints)):
        alpha2 -= separate[c].step({"w": g}, 0.05, c)["w"]
        if i >= 2:
            assert abs(alpha2 - expected[i]) > 1e-6, i


def _bn_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 4))


def _image_batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_batchnorm_weights_and_biases_are_rescaled_like_rescale_adam():
    model = _bn_cnn()
    with torch.no_grad():
        model[4].bias.normal_()  # a BN bias of non-zero norm is scaled; the zero-initialised one is not
    names = set(scaled_parameters(model))
    assert {"1.weight", "4.weight", "4.bias", "0.weight", "3.weight", "3.bias", "8.weight", "8.bias"} == names
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, hist = nio(model, _image_batch(), gamma=50.0, iterations=4, D=2)
    last = hist.alphas[-1]
    assert abs(last["1.weight"] - 1) > 1e-3 and abs(last["4.bias"] - 1) > 1e-3
    for k in ("1.weight", "4.weight", "4.bias"):
        assert torch.allclose(tuned.state_dict()[k], last[k] * w0[k], rtol=1e-5)
    assert torch.equal(tuned.state_dict()["1.bias"], w0["1.bias"])  # zero norm: left alone


def test_under_batch_statistics_a_conv_scale_alone_does_not_change_the_forward_pass():
    """Why BatchNorm scales must be optimized: conv scales are invisible to the loss under batch stats."""
    from tenfold.init.gradcosine import statistic_mode

    model, (x, _) = _bn_cnn(), _image_batch()
    with statistic_mode(model), torch.no_grad():
        base = model(x)
        model[0].weight.mul_(3.0)
        scaled = model(x)
    assert torch.allclose(base, scaled, atol=1e-4)


def test_every_official_objective_equals_its_formula_and_runs():
    g = torch.randn(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = cosine_statistics(g)
    n = g.norm(dim=1)
    cos = torch.stack([torch.dot(g[i], g[j]) / (n[i] * n[j]) for i in range(3) for j in range(3) if i != j]).mean()
    var = g.var(dim=0, unbiased=False).sum()
    lam = 0.7
    expected = {"gc": -cos, "gc_gn": -cos - lam * (n ** 2).sum(), "gc_gn_sqrt": -cos - lam * n.sum(),
                "gv": var, "gv_gn": var - lam * (n ** 2).sum(), "gv_gn_sqrt": var - lam * n.sum()}
    assert set(expected) == set(OBJECTIVES)
    for name, value in expected.items():
        assert objective_value(name, s, 1.0, lam).item() == pytest.approx(value.item(), rel=1e-12), name
    assert objective_value("gc_gn_sqrt", s, 0.0, lam).item() == pytest.approx(-lam * n.sum().item(), rel=1e-12)
    torch.manual_seed(0)
    model, data = digits_mlp(16), (torch.randn(32, 64), torch.randint(0, 10, (32,)))
    for name in OBJECTIVES:
        _, hist = nio(copy.deepcopy(model), data, gamma=50.0, iterations=2, D=2, objective=name)
        assert len(hist.gc) == 2 and not any(hist.constraint)
    with pytest.raises(ConfigError, match="objective='gx' is invalid"):
        nio(model, data, objective="gx")


def test_gc_weight_zero_leaves_only_the_norm_term():
    model, fixed, held = _mlp_and_batches()
    _, with_gc = nio(copy.deepcopy(model), fixed, gamma=100.0, iterations=4, D=4, overlap=0.2)
    _, no_gc = nio(copy.deepcopy(model), fixed, gamma=100.0, iterations=4, D=4, overlap=0.2, gc_weight=0.0,
                   norm_weight=1.0)
    _, norm_only = nio(copy.deepcopy(model), fixed, gamma=100.0, iterations=4, D=4, overlap=0.2, objective="gc",
                       gc_weight=0.0)
    assert with_gc.alphas[-1] != no_gc.alphas[-1]
    assert all(a == 1.0 for a in norm_only.alphas[-1].values())  # nothing to descend on: zero gradients


def _mlp_and_batches():
    torch.manual_seed(0)
    model = digits_mlp(16)
    train = digits("train", flatten=True)
    return model, (train.x[:32], train.y[:32]), None


def test_alpha_min_projection_holds_scales_at_their_bounds_and_a_zero_bias_stays_frozen():
    """gamma far below the norm: every step is a constraint step shrinking the scales onto their bounds."""
    model, fixed, _ = _mlp_and_batches()
    _, hist = nio(copy.deepcopy(model), fixed, gamma=1e-6, iterations=8, lr=0.5, D=4, overlap=0.2)
    assert all(hist.constraint)
    last = hist.alphas[-1]
    weights = [a for k, a in last.items() if k.endswith("weight")]
    biases = [a for k, a in last.items() if k.endswith("bias")]
    assert min(weights) == 0.01  # projected onto alpha_min, not below
    assert all(a >= 0.01 for row in hist.alphas for k, a in row.items() if k.endswith("weight"))
    assert min(biases) == 0.0 and all(a >= 0.0 for row in hist.alphas for k, a in row.items() if k.endswith("bias"))
    frozen = [k for k in last if k.endswith("bias") and last[k] == 0.0]
    first_zero = {k: next(i for i, row in enumerate(hist.alphas) if row[k] == 0.0) for k in frozen}
    for k, i in first_zero.items():
        assert all(row[k] == 0.0 for row in hist.alphas[i:])  # a tensor scaled to 0 is skipped (official)


def test_uniform_rescale_matches_the_gradient_norm_with_one_factor(setup):
    from tenfold.init import uniform_rescale

    model, fixed, held = setup
    base = gradcosine(model, held, D=4, overlap=0.2)
    target = 2.0 * float(base.norm)
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    scaled, c = uniform_rescale(copy.deepcopy(model), target, held, D=4, overlap=0.2)
    assert abs(float(gradcosine(scaled, held, D=4, overlap=0.2).norm) / target - 1) < 1e-4
    for name, value in scaled.state_dict().items():  # every tensor times the same c
        assert torch.allclose(value, c * w0[name], rtol=1e-5, atol=1e-7)


def test_gc_weight_0_leaves_only_the_norm_term(setup):
    """The ablation of the NIO paper claims: without GradCosine in the objective the scales move
    differently. (Its GC on the training batch is not lower: 0.804 against 0.804 here, the norm term
    alone raises GC, which is why the claims compare with a norm-matched rescale.)"""
    model, fixed, _ = setup
    _, with_gc = nio(copy.deepcopy(model), fixed, gamma=5.0, iterations=20, D=4, overlap=0.2)
    _, without = nio(copy.deepcopy(model), fixed, gamma=5.0, iterations=20, D=4, overlap=0.2, gc_weight=0.0)
    assert with_gc.alphas[-1] != without.alphas[-1]
    assert not any(without.constraint) or without.norm[-1] <= 1.25 * 5.0


def test_gc_term_reaches_the_scales_as_its_finite_difference_gradient():
    """The GradCosine term must steer the scales: d GC / d alpha_l from NIO's differentiable statistics equals
    the central finite difference of GC under ``theta_l = alpha_l theta0_l`` (float64). A detached GC (no
    gradient through the double backward) gives 0 here and fails."""
    from tenfold.init.gradcosine import sub_batch_bounds
    from tenfold.init.nio import scale_statistics

    torch.manual_seed(0)
    model = digits_mlp(8).double()
    train = digits("train", flatten=True)
    batch = (train.x[:24].double(), train.y[:24])
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    bounds = sub_batch_bounds(24, 4, 0.2)

    def gc_at(alphas):
        stats, _ = scale_statistics(model, theta0, alphas, batch, torch.nn.functional.cross_entropy, bounds)
        return stats

    leaves = {k: torch.tensor(1.0, dtype=torch.float64, requires_grad=True) for k in named}
    target = objective_value("gc", gc_at(leaves))  # -GC
    grads = torch.autograd.grad(target, list(leaves.values()))
    h = 1e-6
    for (k, _), g in zip(leaves.items(), grads):
        up = {j: torch.tensor(1.0 + (h if j == k else 0.0), dtype=torch.float64, requires_grad=True) for j in named}
        down = {j: torch.tensor(1.0 - (h if j == k else 0.0), dtype=torch.float64, requires_grad=True) for j in named}
        fd = -(float(gc_at(up).gc) - float(gc_at(down).gc)) / (2 * h)
        assert abs(float(g) - fd) < 1e-6 * max(1.0, abs(fd)), k
    assert max(abs(float(g)) for g in grads) > 1e-3  # the term is not flat here
