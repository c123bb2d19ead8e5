"""LION layers: identity at init, contraction, convergence, frozen backbone, exact gradients, bad input."""

from __future__ import annotations

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError
from tenfold.implicit import SolverSettings
from tenfold.tuning.foundation import build_vit
from tenfold.tuning.lion import LION, OutputPromptLayer, lion_parameter_count


def tiny_vit(seed: int = 0):
    return build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=1, num_heads=2,
                     seed=seed)


def tiny_resnet():
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=5, in_chans=1)


def images(n: int = 6, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def perturb(model: torch.nn.Module, scale: float, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("build,size", [(tiny_vit, 8), (tiny_resnet, 16)])
def test_lion_equals_the_frozen_model_at_initialisation(build, size):
    base = build().eval()
    x = images(size=size)
    with torch.no_grad():
        expected = base(x)
        lion = tt.apply(build(), "lion").eval()
        assert torch.allclose(lion(x), expected, atol=1e-6)
        assert torch.equal(lion.input_prompt.prompt(x), torch.zeros_like(x))


def test_only_the_implicit_layers_and_the_head_train():
    lion = tt.apply(tiny_vit(), "lion", rank=4, hidden=2)
    trainable = {n.split(".")[0] for n, p in lion.named_parameters() if p.requires_grad}
    assert trainable == {"head", "input_prompt", "output_prompt"}
    counts = tt.count_parameters(lion)
    d, c, r, h = 16, 5, 4, 2
    output = r * r + r * d + r * 1 * 4 + r + d * r  # A, B, E (1 channel pooled 2x2), c, W_up
    inputs = 9 * h + 9 * h + 9 + 1  # K1, K2, U, b
    assert counts["head"] == d * c + c and counts["trainable"] == d * c + c + output + inputs
    assert lion_parameter_count(lion)["dense_trainable"] == counts["trainable"]


@pytest.mark.parametrize("build,size", [(tiny_vit, 8), (tiny_resnet, 16)])
def test_backbone_stays_bit_identical_while_lion_trains(build, size):
    lion = tt.apply(build(), "lion")
    head = {id(p) for p in lion.head.parameters()}
    frozen = {k: v.clone() for k, v in lion.backbone.state_dict().items() if "head" not in k and "fc." not in k}
    opt = torch.optim.AdamW([p for p in lion.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    lion.train()
    x, y = images(size=size), torch.arange(6) % 5
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lion(x), y).backward()
        opt.step()
    assert lion.backbone.training is False
    after = lion.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # incl. BatchNorm running statistics
    assert all(p.requires_grad == (id(p) in head) for p in lion.backbone.parameters())
    assert lion.output_prompt.w_up.abs().sum() > 0 and lion.input_prompt.u.abs().sum() > 0


def test_both_layers_stay_contractive_and_converge_for_every_sample_with_large_weights():
    lion = tt.apply(tiny_vit(), "lion", f_tol=1e-4)
    perturb(lion, scale=5.0)  # far from init: contraction must come from the construction, not small weights
    lion.eval()
    with torch.no_grad():
        lion(images(16))
    for name, info in lion.solver_infos().items():
        assert info.converged, name
        assert (info.residual <= 1e-4).all() and info.residual.shape == (16,)


def test_output_layer_implicit_gradient_matches_finite_differences_in_float64():
    g = torch.Generator().manual_seed(0)
    settings = SolverSettings(f_tol=1e-12, f_max_iter=200, eval_f_max_iter=200, b_tol=1e-12, b_max_iter=300)
    layer = OutputPromptLayer(features=6, channels=1, rank=4, gamma=0.9, settings=settings, generator=g).double()
    with torch.no_grad():
        layer.w_up.copy_(torch.randn(6, 4, generator=g, dtype=torch.float64))
    h = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(3, 6, generator=g, dtype=torch.float64)
    layer.train()
    (layer(h, x) * w).sum().backward()
    grad = layer.b.grad.clone()
    layer.eval()
    eps, fd = 1e-6, torch.zeros_like(grad)
    with torch.no_grad():
        for i in range(grad.numel()):
            old = layer.b.view(-1)[i].item()
            layer.b.view(-1)[i] = old + eps
            plus = (layer(h, x) * w).sum()
            layer.b.view(-1)[i] = old - eps
            minus = (layer(h, x) * w).sum()
            layer.b.view(-1)[i] = old
            fd.view(-1)[i] = (plus - minus) / (2 * eps)
    assert (grad - fd).norm() / fd.norm() < 1e-4


@pytest.mark.parametrize("options,field", [
    ({"gamma": 1.0}, "gamma"), ({"gamma": 1.5}, "gamma"), ({"solver": "newton"}, "solver"),
    ({"f_tol": 0.0}, "f_tol"), ({"rank": 0}, "rank"),
])
def test_bad_options_are_one_line_errors(options, field):
    with pytest.raises(ConfigError) as err:
        tt.apply(tiny_vit(), "lion", **options)
    assert str(err.value).startswith(f"{field}=") and "\n" not in str(err.value)


def test_a_model_without_timm_feature_api_is_rejected():
    with pytest.raises(ConfigError, match="model="):
        LION(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()))


def test_lion_layers_report_jacobian_at_the_solution_within_gamma_and_backward_residuals():
    """Issue 21: ||J|| at z* is reported and bounded by the configured gamma; the IFT backward solve's
    residual is recorded for both layers."""
    from tenfold.tuning.foundation import build_vit

    vit = build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=1, num_heads=2)
    lion = tt.apply(vit, "lion", rank=4, hidden=2, gamma=0.9, backward="ift")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lion.input_prompt.u.copy_(torch.randn(lion.input_prompt.u.shape, generator=g))
        lion.output_prompt.w_up.copy_(torch.randn(lion.output_prompt.w_up.shape, generator=g))
    x = torch.rand(4, 1, 8, 8, generator=g)
    d = lion.diagnostics(x)
    assert 0 < d["in_jacobian_norm"] <= 0.9 + 1e-4 and 0 < d["out_jacobian_norm"] <= 0.9 + 1e-4
    assert d["in_bound"] == d["out_bound"] == 0.9 and d["in_one_step_gap"] > 0
    lion.train()
    torch.nn.functional.cross_entropy(lion(x), torch.arange(4)).backward()
    back = lion.backward_infos()
    assert back["input"].max_residual <= 1e-6 and back["output"].max_residual <= 1e-6
