"""The fscil experiments' configs (their defaults are the quick tier; ``presets/<experiment>/*.yaml`` list
what the other tiers change). Torch-free, so ``tenfold config`` resolves them without importing the experiments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from tenfold.config import Config


Method = Literal["etf-dr", "linear-memory", "linear-new", "ncm"]


class Thresholds(Config):
    min_base_margin: float = Field(
        0.0, description="source: the paper's claim is an ordering (Sec. 4.3, Fig. 4: the fixed ETF with DR "
                         "keeps the old classes' accuracy where a learnable classifier with CE does not); "
                         "0 = no advantage, so the claim holds when the whole interval of linear+CE's base drop "
                         "minus ETF+DR's is above 0")
    min_final_vs_no_memory: float = Field(
        30.0, description="source: by construction of both protocols: the base classes (6 of 10 digits, 60 of "
                          "100 shapes) hold 60% of the final test set, so a method that forgets them ends up to "
                          "60 points lower; 30 = half "
                          "of that share (the paper, Table 1: every method with a memory ends far above "
                          "fine-tuning)")
    max_set_mismatch: float = Field(
        0.0, description="source: by construction: every session's fine-tuning set has the official class "
                         "counts (new shots once, earlier novel means c_t times, base means once)")
    max_gram_error: float = Field(1e-6, description="source: float32 rounding of a Gram matrix of unit "
                                                    "vectors (the paper, Sec. 3.1: W^T W = K/(K-1) I - 11^T/(K-1))")
    max_lr_on_edge: float = Field(
        0.0, description="source: by construction of the search: the chosen learning rate of every tuned "
                         "method and seed lies inside the searched grid (an optimum on an edge extends it)")


class TuningConfig(Config):
    lr_grid: list[PositiveFloat] = Field(
        [0.025, 0.1, 0.25, 1.0], description="incremental learning rates tried on the validation split, on the "
                                             "scale of a loss of weight 1 (CE); a method whose loss carries "
                                             "weight w (DR: 10) tries these divided by w, so every method gets "
                                             "the same range of effective steps; empty: incremental.lr as is")
    steps_grid: list[PositiveInt] = Field(
        [30, 100], description="fine-tuning steps per session tried jointly with the learning rate; "
                                    "empty: incremental.steps as is")
    extend: int = Field(1, ge=0, description="times the rate grid (x4 or /4) and the steps grid (x3 or /3) "
                                             "are extended when the optimum lies on their edge")
    val_fraction: float = Field(0.25, gt=0, lt=1, description="share of each base class's training samples held "
                                                              "out to score the pseudo-sessions")
    val_sessions: int = Field(1, ge=1, description="pseudo-incremental sessions of `ways` classes carved from the "
                                                   "base classes (the rest is the pseudo-base session)")


class BaseConfig(Config):
    epochs: int = Field(30, ge=1, description="base-session epochs")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0, description="SGD learning rate")
    weight_decay: float = Field(5e-4, ge=0)
    mixup_p: float = Field(0.0, ge=0, le=1, description="probability of Mixup per batch")
    cutmix_p: float = Field(0.0, ge=0, le=1, description="probability of CutMix per batch (images)")
    schedule: Literal["cosine", "cooldown", "step"] = Field("cosine", description="plain cosine, the official "
                                                                                  "cosine with cool-down (CIFAR, "
                                                                                  "CUB) or step decay (mini)")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up iterations")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="warm-up starts at this fraction of lr")
    step_milestones: list[float] = Field([0.4, 0.6, 0.7, 0.8, 0.9], description="step schedule: fractions of "
                                                                                "the run where lr is multiplied "
                                                                                "by step_gamma")
    step_gamma: float = Field(0.25, gt=0, le=1)
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cool-down schedule: final cosine lr / lr")
    cool_down_steps: int = Field(10, ge=0, description="cool-down schedule: last iterations at 0.1 x the final lr")
    augment: bool = Field(False, description="random resized crop (0.6-1), horizontal flip and colour jitter "
                                             "(0.4) of base-session images, as the official train pipeline")


def _changed(parent: type[Config], group: str, **changes) -> Config:
    """The default of ``parent``'s nested config ``group`` with only ``changes`` applied (validated).

    A subclass that wrote ``IncrementalConfig(steps=60)`` would reset every other field of the group to the
    sub-config class's defaults, not the parent experiment's (fscil-shapes lost the class-balanced DR that
    way): deriving from the parent's value changes the named fields and nothing else. The fields the parent
    set stay recorded as set, so tests/test_paper_configs.py can tell a deliberate change from a silent one.
    """
    default = parent.model_fields[group].default
    kept = {name: getattr(default, name) for name in default.model_fields_set}
    return type(default).model_validate({**kept, **changes})


class IncrementalConfig(Config):
    steps: PositiveInt | list[PositiveInt] = Field(100, description="SGD steps of head fine-tuning: one number or "
                                                                   "one per session")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.025, gt=0, description="used when tuning.lr_grid is empty")
    weight_decay: float = Field(5e-4, ge=0)
    duplication: PositiveInt | Literal["t"] = Field("t", description="copies c_t of each earlier novel class's "
                                                                     "mean: 't' (mini/CUB) or an integer (CIFAR: 1)")
    feature_mixup_p: float = Field(0.0, ge=0, le=1, description="probability of mixing the neck outputs (lam 0.5)")
    balanced: bool = Field(False, description="class-balanced loss r_y^2 (the official with_len: CIFAR); "
                                              "false for mini/CUB")
    schedule: Literal["cooldown", "cosine"] = Field("cooldown", description="the official cosine with cool-down "
                                                                            "(5 warm-up, last 5 steps at 1e-3 lr)")
    evaluation: Literal["etf", "neck-mean"] = Field("etf", description="ETF scores of the neck output (official "
                                                                       "default) or cosine to the neck output of "
                                                                       "each class mean (official feat_test)")


class FSCILConfig(Config):
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="one trial per seed (init, shots, ETF)")
    base_classes: int = Field(6, ge=1)
    ways: int = Field(2, ge=1, description="novel classes per session")
    sessions: int = Field(2, ge=1, description="incremental sessions")
    shots: int = Field(5, ge=1, description="training samples per novel class")
    order_seed: int | None = Field(None, description="shuffle the class order with this seed (None: 0, 1, 2, ...)")
    width: int = Field(64, ge=1, description="backbone feature width")
    dim: int = Field(32, ge=1, description="ETF / projection dimension d (>= classes - 1)")
    methods: list[Method] = Field(["etf-dr", "linear-memory", "linear-new", "ncm"], min_length=1)
    classifier: Literal["etf", "learnable"] = Field("etf", description="classifier of the method under test "
                                                                       "(etf-dr); learnable (prototypes trained "
                                                                       "with DR) is the classifier's ablation")
    loss: Literal["dr", "ce"] = Field("dr", description="loss of the method under test; ce (on the fixed ETF) is "
                                                        "the loss's ablation")
    memory: bool = Field(True, description="the method under test fine-tunes with the class-mean memory; false "
                                           "(new shots only) is the memory's ablation")
    base: BaseConfig = BaseConfig()
    # Class-balanced DR (the official with_len): on digits session 1 fine-tunes on 10 new shots and 6 base
    # means, so unbalanced the new classes carry 62% of the loss (miniImageNet: 25 of 85 samples, 29%) and the
    # shared neck drifts toward the novel vertices (docs/fscil.md, "Why ETF+DR forgot"). Balanced, every class
    # in the batch weighs the same, as in the official CIFAR recipe.
    incremental: IncrementalConfig = IncrementalConfig(balanced=True)
    tuning: TuningConfig = TuningConfig()
    thresholds: Thresholds = Thresholds()


class ShapesFSCILConfig(FSCILConfig):
    seeds: list[int] = Field([0, 1], min_length=1, description="seeds; the quick smoke run needs 2 for its claims")
    num_classes: int = Field(100, ge=2, le=200, description="procedural shape classes")
    base_classes: int = Field(60, ge=1)
    ways: int = Field(5, ge=1)
    sessions: int = Field(8, ge=1)
    size: int = Field(16, ge=8, le=64, description="image size in pixels")
    train_per_class: int = Field(30, ge=1)
    test_per_class: int = Field(20, ge=1)
    width: int = Field(16, ge=1, description="CNN width (features: 2 x width)")
    dim: int = Field(128, ge=1)
    base: BaseConfig = _changed(FSCILConfig, "base", epochs=12, lr=0.1)
    incremental: IncrementalConfig = _changed(FSCILConfig, "incremental", steps=60)  # balanced DR kept
    tuning: TuningConfig = _changed(FSCILConfig, "tuning", lr_grid=[])


class BenchmarkFSCILConfig(FSCILConfig):
    """Shared by the real benchmarks; each preset sets the paper's recipe (presets/fscil-*/paper.yaml)."""

    root: str = Field("data", description="dataset folder in its real format (see tenfold.data.fscil_benchmarks)")
    index_dir: str | None = Field(None, description="folder of session_<t>.txt lists in the CEC format; None: the "
                                                    "carried CEC lists")
    image_size: int = Field(84, ge=8, description="images are resized/centre-cropped to this size")
    seeds: list[int] = Field([0], min_length=1)
    base_classes: int = Field(60, ge=1, description="fixed by the benchmark")
    ways: int = Field(5, ge=1, description="fixed by the benchmark")
    sessions: int = Field(8, ge=1, description="fixed by the benchmark")
    backbone: Literal["resnet12", "resnet18", "cnn"] = Field("resnet12", description="ResNet-12 (mini, CIFAR), "
                                                                                     "ResNet-18 (CUB) or a small CNN")
    resnet12_channels: list[PositiveInt] = Field([64, 160, 320, 640], min_length=1)
    resnet18_weights: str | None = Field(None, description="local ImageNet checkpoint for ResNet-18 (CUB)")
    width: int = Field(32, ge=1, description="small CNN width (features: 2 x width)")
    dim: int = Field(512, ge=1)
    tuning: TuningConfig = _changed(FSCILConfig, "tuning", lr_grid=[])
    base: BaseConfig = _changed(FSCILConfig, "base", epochs=20, lr=0.1, batch_size=128, augment=True)
    # The official mini/CUB recipes use the plain (unbalanced) loss; CIFAR's is balanced (with_len).
    incremental: IncrementalConfig = _changed(FSCILConfig, "incremental", steps=100, lr=0.025, balanced=False)


class CifarFSCILConfig(BenchmarkFSCILConfig):
    image_size: int = Field(32, ge=8, description="CIFAR images are 32 px")
    incremental: IncrementalConfig = _changed(BenchmarkFSCILConfig, "incremental", lr=0.25, duplication=1,
                                              balanced=True, feature_mixup_p=0.75)


class CubFSCILConfig(BenchmarkFSCILConfig):
    image_size: int = Field(224, ge=8)
    base_classes: int = Field(100, ge=1, description="fixed by the benchmark")
    ways: int = Field(10, ge=1, description="fixed by the benchmark")
    sessions: int = Field(10, ge=1, description="fixed by the benchmark")
    backbone: Literal["resnet12", "resnet18", "cnn"] = Field("resnet18")
    incremental: IncrementalConfig = _changed(BenchmarkFSCILConfig, "incremental", lr=0.05)
