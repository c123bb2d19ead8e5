"""LION-style implicit prompts on a frozen backbone ("LION: Implicit Vision Prompt Tuning", arXiv:2303.09992).

Verified from the abstract: two equilibrium (DEQ) layers, one in front of the frozen backbone's input and
one behind its output, produce prompts fused with the image and with the representation before the head;
their weights are pruned following the lottery hypothesis. The layers' form is OUR design (spec sec. 3):

- input layer, pixel space: z* = tanh(gamma K2 * ReLU(K1 * z*) + U * x + b), x_tilde = x + z*;
- output layer, pooled feature h in R^D and a summary phi(x) of the image (average-pooled to p x p):
  s* = tanh(gamma A s* + B h + E phi(x) + c), logits = head(h + W_up s*); ``pool=0`` drops the raw-pixel
  path E phi(x) (VPT has no counterpart of it: the ``lion`` experiment compares the two without it).

K1, K2 are 3x3 convolutions and A is r x r, each scaled to be 1-Lipschitz (tenfold.implicit.lipschitz,
exact singular values and a proven conv bound), and tanh, ReLU are 1-Lipschitz, so with gamma < 1 both maps
are gamma-contractions in z (Banach: unique fixed point, iteration converges). U, b and W_up start at zero,
so at initialisation z* = 0, the prompt is 0 and LION equals the frozen model exactly.

Pruning: every weight tensor listed in ``PRUNABLE`` is used as ``weight * mask`` (mask buffers of ones until
:mod:`tenfold.tuning.lion_pruning` finalises them), so hard-pruned entries stay exactly zero.

Ablation of the equilibrium (``solve="one_step"``): each layer returns one explicit step of the same map
from the same start, z = f(z0) with z0 = 0, on the ordinary autograd tape: same parameters, same
initialisation, no fixed-point solve and no implicit gradient. From z0 = 0 the recurrent weights (K1, K2
of the input layer, A of the output layer) drop out (f(0) = tanh(drive)): what the solve adds over one step
is exactly their recurrence, which is the mechanism the ablation removes; they stay in the parameter count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError, require
from tenfold.implicit import EquilibriumSolver, SolverSettings, jacobian_norm, scale_conv, scale_linear
from tenfold.tuning.common import classifier, freeze


SOLVES = ("equilibrium", "one_step")


def check_solve(solve: str) -> None:
    require(solve in SOLVES, "solve", solve, "'equilibrium' (the fixed point) or 'one_step' (ablation: one "
            "explicit step of the same layer)")


def check_gamma(gamma: float) -> None:
    require(isinstance(gamma, (int, float)) and 0 < gamma < 1, "gamma", gamma,
            "a contraction factor in (0, 1) (gamma >= 1 gives no unique fixed point)")


class MaskedWeights(nn.Module):
    """A module whose ``PRUNABLE`` weights are read through ``masked(name) = weight * weight_mask``."""

    PRUNABLE: tuple[str, ...] = ()

    def _add_masks(self) -> None:
        for name in self.PRUNABLE:
            self.register_buffer(f"{name}_mask", torch.ones_like(getattr(self, name)))

    def masked(self, name: str) -> torch.Tensor:
        return getattr(self, name) * getattr(self, f"{name}_mask")

    def _solve(self, f, z0: torch.Tensor) -> torch.Tensor:
        """z* = f(z*) by the equilibrium solver; under ``solve="one_step"`` (ablation) one explicit step
        f(z0) on the autograd tape (the solver is not called: its ``last_info`` stays None)."""
        if self.solve == "one_step":
            return f(z0)
        return self.solver(f, z0)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero the stored weights under a zero mask (after an optimiser step: AdamW's momentum and weight
        decay move them although their gradient is zero; the forward never sees them, a saved file would)."""
        for name in self.PRUNABLE:
            getattr(self, name).mul_(getattr(self, f"{name}_mask"))


class InputPromptLayer(MaskedWeights):
    """Pixel-space equilibrium prompt: z* = tanh(gamma K2 * ReLU(K1 * z*) + U * x + b); returns x + z*."""

    PRUNABLE = ("k1", "k2", "u")

    def __init__(self, channels: int, hidden: int = 4, gamma: float = 0.9, kernel: int = 3,
                 settings: SolverSettings | None = None, generator: torch.Generator | None = None,
                 solve: str = "equilibrium") -> None:
        super().__init__()
        check_gamma(gamma)
        check_solve(solve)
        self.solve = solve
        require(channels >= 1, "channels", channels, "an integer >= 1")
        require(hidden >= 1, "hidden", hidden, "an integer >= 1")
        require(kernel >= 1 and kernel % 2 == 1, "kernel", kernel, "an odd integer >= 1")
        self.gamma, self.pad = float(gamma), kernel // 2
        k = (kernel, kernel)
        fan_in = channels * kernel ** 2
        self.k1 = nn.Parameter(torch.randn(hidden, channels, *k, generator=generator) / math.sqrt(fan_in))
        self.k2 = nn.Parameter(torch.randn(channels, hidden, *k, generator=generator) / math.sqrt(hidden * kernel ** 2))
        self.u = nn.Parameter(torch.zeros(channels, channels, *k))
        self.b = nn.Parameter(torch.zeros(channels))
        self._add_masks()
        self.solver = EquilibriumSolver(settings)

    def equation(self, x: torch.Tensor):
        """(f, z0) of the fixed-point problem z = f(z) for input ``x``; weights normalised once here, each
        conv to an operator-norm bound of exactly 1 on this image size (so the Lipschitz bound of f is gamma)."""
        size = tuple(x.shape[-2:])
        k1, k2 = scale_conv(self.masked("k1"), size), scale_conv(self.masked("k2"), size)
        drive = F.conv2d(x, self.masked("u"), self.b, padding=self.pad)

        def f(z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.gamma * F.conv2d(F.relu(F.conv2d(z, k1, padding=self.pad)), k2, padding=self.pad)
                              + drive)

        return f, torch.zeros_like(x)

    def prompt(self, x: torch.Tensor) -> torch.Tensor:
        """z*(x), the additive pixel prompt (f(0) = tanh(U * x + b) under ``solve="one_step"``)."""
        return self._solve(*self.equation(x))

    @torch.no_grad()
    def diagnostics(self, x: torch.Tensor) -> dict[str, float]:
        """At the fixed point for ``x``: ``jacobian_norm`` = ||J_f(z*)|| (power iteration; at most the
        bound gamma), ``one_step_gap`` = ||z* - f(0)|| / ||z*|| (0: one explicit step would do)."""
        f, z0 = self.equation(x)
        z = self.solver(f, z0)
        gap = float((z - f(z0)).norm() / z.norm().clamp_min(1e-12))
        return {"jacobian_norm": jacobian_norm(f, z), "bound": self.gamma, "one_step_gap": gap}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.prompt(x)


class OutputPromptLayer(MaskedWeights):
    """Feature-space equilibrium prompt: s* = tanh(gamma A s* + B h + E phi(x) + c); returns W_up s*.
    ``pool=0``: no image summary, s* = tanh(gamma A s* + B h + c) (no E)."""

    PRUNABLE = ("a", "b", "e", "w_up")

    def __init__(self, features: int, channels: int, rank: int = 8, gamma: float = 0.9, pool: int = 2,
                 settings: SolverSettings | None = None, generator: torch.Generator | None = None,
                 solve: str = "equilibrium") -> None:
        super().__init__()
        check_gamma(gamma)
        check_solve(solve)
        self.solve = solve
        for name, value in (("features", features), ("channels", channels), ("rank", rank)):
            require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        require(isinstance(pool, int) and pool >= 0, "pool", pool, "an integer >= 0 (0: no raw-pixel summary)")
        self.gamma, self.pool = float(gamma), pool
        summary = channels * pool * pool
        self.a = nn.Parameter(torch.randn(rank, rank, generator=generator) / math.sqrt(rank))
        self.b = nn.Parameter(torch.randn(rank, features, generator=generator) / math.sqrt(features))
        if pool:
            self.e = nn.Parameter(torch.randn(rank, summary, generator=generator) / math.sqrt(summary))
        else:
            self.PRUNABLE = ("a", "b", "w_up")
        self.c = nn.Parameter(torch.zeros(rank))
        self.w_up = nn.Parameter(torch.zeros(features, rank))
        self._add_masks()
        self.solver = EquilibriumSolver(settings)

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the image average-pooled to pool x pool, flattened."""
        return F.adaptive_avg_pool2d(x, self.pool).flatten(1)

    def equation(self, h: torch.Tensor, x: torch.Tensor):
        """(f, s0) of the fixed-point problem s = f(s) for features ``h`` and image ``x``."""
        a = scale_linear(self.masked("a"))
        drive = h @ self.masked("b").T
        if self.pool:
            drive = drive + self.summary(x) @ self.masked("e").T
        drive = drive + self.c

        def f(s: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.gamma * s @ a.T + drive)

        return f, torch.zeros_like(drive)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._solve(*self.equation(h, x)) @ self.masked("w_up").T

    @torch.no_grad()
    def diagnostics(self, h: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        """As :meth:`InputPromptLayer.diagnostics`, for features ``h`` of image ``x``."""
        f, s0 = self.equation(h, x)
        s = self.solver(f, s0)
        gap = float((s - f(s0)).norm() / s.norm().clamp_min(1e-12))
        return {"jacobian_norm": jacobian_norm(f, s), "bound": self.gamma, "one_step_gap": gap}


def _in_channels(backbone: nn.Module) -> int:
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ConfigError(f"model={type(backbone).__name__} has no Conv2d: expected a timm image model "
                      "(ViT patch embedding or ResNet stem) to read the number of input channels from")


class LION(nn.Module):
    """A frozen timm backbone between two equilibrium prompt layers; only the layers and the head train.

    logits = head(h + P_out(h, x)), h = pooled features of backbone(x + z*_in(x)). The backbone stays in
    eval mode (no BatchNorm statistics updates, no dropout), so its tensors stay bit-identical.
    """

    def __init__(self, backbone: nn.Module, hidden: int = 4, rank: int = 8, gamma: float = 0.9, pool: int = 2,
                 settings: SolverSettings | None = None, seed: int = 0, solve: str = "equilibrium") -> None:
        super().__init__()
        for attr in ("forward_features", "forward_head", "num_features"):
            require(hasattr(backbone, attr), "model", type(backbone).__name__,
                    f"a timm model with {attr} (ViT, ResNet, ...)")
        g = torch.Generator().manual_seed(seed)
        channels = _in_channels(backbone)
        # registered first so that parameter names (and tenfold.tuning.count_parameters) see it as "head"
        self.head = classifier(backbone, "lion")
        self.backbone = freeze(backbone)
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.input_prompt = InputPromptLayer(channels, hidden, gamma, settings=settings, generator=g, solve=solve)
        self.output_prompt = OutputPromptLayer(int(backbone.num_features), channels, rank, gamma, pool,
                                               settings=settings, generator=g, solve=solve)
        ref = next(backbone.parameters())
        self.to(device=ref.device, dtype=ref.dtype)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "LION":
        super().train(mode)
        self.backbone.eval()
        return self

    def get_classifier(self) -> nn.Module:
        return self.head

    def tuning_after_step(self) -> None:
        """Called by the training loops after every optimiser step: pruned weights stay exactly zero."""
        for layer in self.implicit_layers():
            layer.apply_masks()

    def implicit_layers(self) -> tuple[InputPromptLayer, OutputPromptLayer]:
        return self.input_prompt, self.output_prompt

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of the prompted image, before the output prompt."""
        return self.backbone.forward_head(self.backbone.forward_features(self.input_prompt(x)), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h + self.output_prompt(h, x))

    # timm's model API, on the prompted image (the input prompt's effect; shapes as the backbone's)
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's ``forward_features`` of the prompted image x + z*(x)."""
        return self.backbone.forward_features(self.input_prompt(x))

    def forward_intermediates(self, x: torch.Tensor, *args, **kwargs):
        """The backbone's ``forward_intermediates`` of the prompted image x + z*(x) (same arguments)."""
        return self.backbone.forward_intermediates(self.input_prompt(x), *args, **kwargs)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Refused: the output prompt reads the image as well as the features, which forward_head lacks."""
        raise ConfigError("LION.forward_head(features) is not supported: LION's output prompt also reads the image; "
                          "call model(x) for logits or model.features(x) for the pooled features")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """The backbone's gradient checkpointing (the equilibrium layers keep one f call on the tape anyway)."""
        self.backbone.set_grad_checkpointing(enable)

    @property
    def feature_info(self):
        """The backbone's, for timm's FeatureGetterNet(model, prune=False) over forward_intermediates."""
        return self.backbone.feature_info

    @torch.no_grad()
    def diagnostics(self, x: torch.Tensor) -> dict[str, float]:
        """||J|| at the fixed points of both layers and their distance from one explicit step, for ``x``."""
        was = self.training
        self.eval()
        try:
            inp = self.input_prompt.diagnostics(x)
            h = self.features(x)
            out = self.output_prompt.diagnostics(h, x)
        finally:
            self.train(was)
        return {**{f"in_{k}": v for k, v in inp.items()}, **{f"out_{k}": v for k, v in out.items()}}

    def backward_infos(self) -> dict[str, object]:
        """The last IFT backward solve's statistics of both layers (``None`` without one)."""
        return {"input": self.input_prompt.solver.last_backward_info,
                "output": self.output_prompt.solver.last_backward_info}

    def solver_infos(self) -> dict[str, object]:
        """The last forward's solver statistics of both layers (``None`` before the first call, and always
        under ``solve="one_step"``, which never calls the solver)."""
        return {"input": self.input_prompt.solver.last_info, "output": self.output_prompt.solver.last_info}


def lion_parameter_count(model: LION) -> dict[str, int]:
    """Trainable parameters as LION reports them: non-zero entries of the implicit layers plus the head.

    ``dense`` counts every implicit-layer entry (what an unpruned LION trains).
    """
    nnz = dense = 0
    for layer in model.implicit_layers():
        for name, p in layer.named_parameters():
            value = layer.masked(name) if name in layer.PRUNABLE else p
            nnz += int(torch.count_nonzero(value.detach()))
            dense += p.numel()
    head = sum(p.numel() for p in model.head.parameters())
    return {"implicit_nonzero": nnz, "implicit_dense": dense, "head": head, "trainable": nnz + head,
            "dense_trainable": dense + head}


def apply_lion(model: nn.Module, *, hidden: int, rank: int, gamma: float, pool: int, solver: str, f_max_iter: int,
               eval_f_max_iter: int, f_tol: float, backward: str, phantom_steps: int, b_solver: str, b_max_iter: int,
               b_tol: float, seed: int, solve: str) -> LION:
    """``tenfold.tuning.apply(model, "lion", ...)``: wrap a timm model in dense (unpruned) LION (options and
    defaults: :class:`tenfold.tuning.options.LionOptions`). ``solve="one_step"`` is the ablation of the
    equilibrium: one explicit step of the same layers (same parameters and initialisation).

    Default solvers are torchdeq's fixed-point iteration, forward and backward: measured on LION's own
    layers (digits ViT, after 15-20 training steps, one thread) it needs 6.8 / 8.9 forward steps (input /
    output layer) and 10.4 / 11.9 backward steps, our scale-invariant Anderson 7.1 / 8.3 and 10.0 / 11.0
    at more CPU per step, torchdeq's Anderson 10.8 / 13.5 and 29 / 38 (docs/lion.md). Both layers are
    strong contractions (||J|| at z* about 0.3 and 0.7), where acceleration buys nothing."""
    settings = SolverSettings(solver=solver, f_max_iter=f_max_iter, eval_f_max_iter=eval_f_max_iter, f_tol=f_tol,
                              backward=backward, phantom_steps=phantom_steps, b_solver=b_solver,
                              b_max_iter=b_max_iter, b_tol=b_tol)
    return LION(model, hidden=hidden, rank=rank, gamma=gamma, pool=pool, settings=settings, seed=seed, solve=solve)


def _register() -> None:
    from tenfold.tuning.options import LionOptions
    from tenfold.tuning.registry import register_method

    register_method("lion", apply_lion, family="implicit", options=LionOptions,
                    description="equilibrium prompts before and after the frozen backbone (LION-style, dense)")


_register()
