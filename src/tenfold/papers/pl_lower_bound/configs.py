"""The pl-lower-bound experiments' configs (their defaults are the quick tier; ``presets/<experiment>/*.yaml`` list
what the other tiers change). Torch-free, so ``tenfold config`` resolves them without importing the experiments."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tenfold.config import Config


Accuracy = Annotated[float, Field(gt=0, lt=1)]
StepSize = Annotated[float, Field(gt=0)]
Blocks = Annotated[int, Field(ge=1)]


class PLThresholds(Config):
    slope_low: float = Field(0.85, description="Yue, Fang and Lin (COLT 2023), Theorem 4: N >= T t/2 with T = "
                             "kappa/(37 C3), linear in kappa, for every zero-respecting method, AGD and heavy ball "
                             "included; GD's upper bound (1 - mu/L)^k is also linear in kappa: slope 1, +-0.15 for "
                             "the start-up offset of small T (the bound T t/2 itself is affine in T)")
    slope_high: float = Field(1.15, description="see slope_low")
    min_ratio: float = Field(1.0, description="Theorem 4 (and Theorem 6 through the rotation): count / (T t/2) >= 1")
    quad_slope_low: float = Field(0.4, description="Nesterov (1983), as recalled in Yue, Fang and Lin, Section 1: AGD "
                                  "and heavy ball need O(sqrt(kappa) log 1/eps) on strongly convex functions: slope "
                                  "0.5 +- 0.1")
    quad_slope_high: float = Field(0.6, description="see quad_slope_low")
    flag: float = Field(1.0, description="a yes/no property recorded as 1.0 (yes) or 0.0 (no)")
    max_new_per_query: float = Field(0.0, description="resisting oracle: revealed coordinates minus queries is <= 0 "
                                     "(at most one new coordinate per query, by construction)")


class PLConfig(Config):
    blocks: list[Blocks] = Field([2, 4, 8, 16], min_length=2,
                                 description="block lengths T (kappa ~ T); the paper preset adds 32")
    eps: list[Accuracy] = Field([1e-2, 1e-4], min_length=1, description="relative accuracies g/g(start)")
    smoothness: float = Field(37.0, gt=0, description="L: GD step 1/L, AGD/HB parameters (Lemma 2: 37)")
    pl_scale: float | None = Field(None, gt=0, description="mu = pl_scale / T for AGD and heavy ball; None: the "
                                   "smallest PL ratio found on the instance (pl_constant, ~0.097/T at x = y with "
                                   "x_1 = 0.4 y_1; the start's 0.24/T overstates it 2.5x)")
    adam_lrs: list[StepSize] = Field([3e-3, 1e-2, 3e-2, 1e-1], min_length=1, description="Adam: best of these")
    quadratic_dim: int = Field(1000, ge=2, description="dimension of Nesterov's quadratic")
    quadratic_eps: Accuracy = Field(1e-4, description="accuracy on the quadratic")
    budget_factor: float = Field(20.0, ge=1, description="query cap = budget_factor * T t / 2 (quadratic: * kappa)")
    tents: bool = Field(True, description="the tent pieces of v_y (the paper's instance); false: g = q + |x|^2/2 "
                        "(strongly convex with a condition number <= 5 whatever T: it removes the growth of kappa "
                        "along with the hardness, so no claim uses it as its ablation)")
    function: str = Field("pl", pattern="^(pl|quadratic)$", description="the instance of the hard arm: pl (the "
                          "paper's hard function g) or quadratic (ablation: Nesterov's strongly convex quadratic "
                          "with the same L and the same kappa(T) = L/mu(T), dimension quadratic_dim)")
    momentum: float = Field(1.0, ge=0, le=1, description="scale of AGD's and heavy ball's momentum coefficient "
                            "(1: the methods; 0: ablation, both become GD with step 1/L)")
    rotation_blocks: list[Blocks] = Field([2, 4], min_length=1, description="T of the rotated (Adam) runs")
    rotation_eps: Accuracy = Field(1e-2, description="accuracy of the rotated runs")
    rotation_lr: StepSize = Field(0.1, description="Adam's lr on the rotated instances (best of 1e-2..1e-1)")
    rotation_seeds: int = Field(3, ge=1, description="seeds of the rotation's random directions")
    thresholds: PLThresholds = PLThresholds()
