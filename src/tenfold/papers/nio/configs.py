"""The nio experiments' configs (their defaults are the quick tier; ``presets/<experiment>/*.yaml`` list
what the other tiers change). Torch-free, so ``tenfold config`` resolves them without importing the experiments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tenfold.config import Config


class NIOThresholds(Config):
    """Fixed before the standard runs (2026-12-03); each description gives the source."""

    min_acc_gain: float = Field(0.014, description=(
        "five test images of the 360 in the digits test split (5/360 = 0.0139; nio-shapes' split has 400): the "
        "paper's CIFAR gains over Kaiming and GradInit are a few tenths of a point (docs/nio.md, 'Anchors'), "
        "below what 360 test images resolve, so a smaller bar would read one or two images as a result"))
    min_gc_gain: float = Field(0.0, description=(
        "Sec. 4 (Alg. 1): NIO maximises GradCosine under the norm bound, so at NIO's own held-out gradient norm its GC "
        "must lie above that of the default init rescaled by one factor to the same norm; 0 asks only that the "
        "interval of the difference lies above zero"))
    max_norm_over_gamma: float = Field(1.25, description=(
        "by construction: a constraint step follows every free step that leaves the norm above gamma, and a free "
        "step moves each scale by about lr (Adam), so an L-layer network's norm overshoots gamma by at most about "
        "(1 + lr)^L: 1.22 for the 4-layer MLP at lr 0.05 (tests/init/test_nio.py); the max over seeds is read"))
    min_alpha_gap: float = Field(0.0, description="by construction: alpha <- max(alpha - step, alpha_min)")


class NIOConfig(Config):
    seeds: int = Field(3, ge=1, description="seeds: each its own initialization, NIO batches and training order")
    init: Literal["kaiming", "pytorch"] = Field("kaiming", description=(
        "initialization every arm starts from: Kaiming (He) normal with zero biases, the paper's baseline, or "
        "PyTorch's default Linear/Conv init"))
    objective: str = Field("gc_gn_sqrt", description=(
        "NIO's free-step objective (tenfold.init.nio.OBJECTIVES): gc_gn_sqrt = -GC - lambda sum ||G_i|| is the "
        "released config (configs/mmcls/resnet_gradcos_init/resnet50_gc_gn.py); gc = -GC is Alg. 1 without the "
        "norm reward"))
    gc_weight: float = Field(1.0, ge=0, description="weight of GradCosine in NIO's objective (0: only the norm "
                             "term is left, the ablation of the paper claims)")
    thresholds: NIOThresholds = NIOThresholds()
    uniform_steps: int = Field(24, ge=1, description="bisection steps on log c of the norm-matched uniform rescale "
                               "(24 halvings of [1e-2, 1e2] leave c within 6e-7 relative; each step is one "
                               "held-out gradient-norm evaluation)")
    gamma: float = Field(5.0, gt=0, description="gradient-norm bound")
    iterations: int = Field(40, ge=1, description="NIO iterations")
    lr: float = Field(0.05, gt=0, description="Adam learning rate of the scales")
    D: int = Field(4, ge=2, description="sub-batches")
    overlap: float = Field(0.2, ge=0, lt=1, description="sub-batch overlap r")
    norm_weight: float = Field(1.0, ge=0, description="lambda in J = -GC - lambda * sum ||G_i||")
    nio_batch: int = Field(128, ge=2, description="batch size of each NIO iteration")
    heldout: int = Field(128, ge=2, description="held-out batch (shuffled, seeded) for the before/after statistics; "
                                                "the NIO batch size keeps the statistics comparable")
    width: int = Field(64, ge=1)
    train_epochs: int = Field(10, ge=0, description="epochs of training from each init (0: skip)")
    train_lrs: list[float] = Field([0.05], min_length=1, description=(
        "training learning rates: every init is trained at each and the one with the best validation accuracy "
        "(the held split, per seed and init) gives its test accuracy"))
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="SGD (momentum 0.9) or AdamW for the training runs")
    weight_decay: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs before the cosine schedule")
    batch_size: int = Field(64, ge=1)
    gradinit_iterations: int = Field(16, ge=1, description=(
        "GradInit iterations; the official CIFAR runs take one epoch (390 at batch 128; the standard preset uses "
        "390): in the quick tier one epoch is 1078 // 64 = 16"))
    gradinit_lr: float = Field(0.01, gt=0, description=(
        "learning rate of GradInit's multipliers: the official value for VGG-19 without BN (launch/run_gradinit.sh; "
        "1e-2), the closest to a plain MLP"))
    gradinit_gamma: float = Field(1.0, gt=0, description="GradInit's bound on ||g||_2 (official CIFAR: 1)")
    gradinit_eta: float = Field(0.1, gt=0, description="GradInit's lookahead step (official CIFAR: 0.1, SGD, "
                                "normalized gradient)")

    @field_validator("train_lrs")
    @classmethod
    def _distinct_lrs(cls, v: list[float]) -> list[float]:
        # each (seed, init, lr) training run is a resumable stage named by its lr: a repeated lr would
        # name two stages alike (and train the same run twice)
        if len(set(v)) != len(v) or any(lr <= 0 for lr in v):
            raise ValueError(f"expected distinct positive learning rates, got {v}")
        return v


class ShapesNIOConfig(NIOConfig):
    D: int = Field(2, ge=2)
    overlap: float = Field(0.0, ge=0, lt=1)
    iterations: int = Field(25, ge=1)
    nio_batch: int = Field(64, ge=2)
    heldout: int = Field(64, ge=2)
    width: int = Field(16, ge=1, description="CNN width")
    num_classes: int = Field(10, ge=2, le=200)
    size: int = Field(16, ge=8, le=64)
    per_class: int = Field(60, ge=10)
    batchnorm: bool = Field(False, description=(
        "BatchNorm after each conv; off by default: under batch statistics a BN network is invariant to the "
        "scale of each conv before a BN, so NIO's per-tensor scales would act only through the BN scales"))
    train_epochs: int = Field(5, ge=0)
    gradinit_iterations: int = Field(5, ge=1, description="GradInit iterations: one epoch, 360 // 64 = 5")
    gradinit_lr: float = Field(0.1, gt=0, description=(
        "learning rate of GradInit's multipliers: the official value for VGG-19 with BN (launch/run_gradinit.sh; "
        "1e-1), the closest to this plain BN CNN"))


class CifarNIOConfig(NIOConfig):
    root: str = Field("data", description="folder holding cifar-10-batches-py/ or cifar-100-python/")
    num_classes: Literal[10, 100] = 10
    model: Literal["resnet18", "swin_tiny"] = Field("resnet18", description="timm architecture, no pretraining")
    D: int = Field(2, ge=2)
    overlap: float = Field(0.0, ge=0, lt=1)
    iterations: int = Field(100, ge=1)
    nio_batch: int = Field(64, ge=2)
    heldout: int = Field(64, ge=2)
    train_epochs: int = Field(1, ge=0)
    batch_size: int = Field(128, ge=1)
    train_lrs: list[float] = Field([0.1], min_length=1)
    gradinit_iterations: int = Field(390, ge=1, description="official CIFAR: one epoch at batch 128 (390)")
    gradinit_lr: float = Field(0.001, gt=0, description="official ResNet-110 with BN (launch/run_gradinit.sh): 1e-3")
