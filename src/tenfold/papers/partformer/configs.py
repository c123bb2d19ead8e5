"""The partformer experiments' configs (their defaults are the quick tier; ``presets/<experiment>/*.yaml`` list
what the other tiers change). Torch-free, so ``tenfold config`` resolves them without importing the experiments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, model_validator

from tenfold.config import Config


class ScenesThresholds(Config):
    min_gain_vs_baselines: float = Field(0.05, description="source: design; 5 PartPQ points over the best "
                                         "non-learned rule on the classes with parts, the scale of the gaps between "
                                         "published PPS methods (Panoptic-PartFormer R50 57.5 vs TAPPS R50 59.3 "
                                         "PartPQ on Cityscapes-PP); fixed before the run")
    min_pq_gain_vs_baselines: float = Field(0.0, description="source: design; a model that does not segment the "
                                            "scenes better than a rule that reads colours tests no mechanism, so the "
                                            "mechanism claims wait for it; an ordering, so the 95% interval of the "
                                            "per-seed gains decides; fixed before the run")
    min_mechanism_gain: float = Field(0.0, description="source: the papers' mechanism claims are orderings (part-"
                                      "whole attention and decoupled part features each raise PartPQ); the 95% "
                                      "interval of the per-seed paired differences (our own seed spread) decides, "
                                      "so the bar adds no effect size: the ++ paper's +2 PartPQ on Cityscapes-PP "
                                      "is the gain of all its changes together, not of one mechanism")
    max_lr_on_edge: float = Field(0, description="source: design; the learning rate each model picks on the "
                                  "validation scenes lies inside the searched grid for every model and seed (an "
                                  "optimum on an edge extends the grid, lr_extend times)")
    max_parameter_gap: float = Field(0, description="source: evidence rules; an ablation removes only its "
                                     "mechanism and keeps every parameter of the full model")
    max_folder_gap: float = Field(1e-12, description="source: identity; the saved PNGs hold the in-memory "
                                  "predictions exactly, so eval-parts must give the same PartPQ to round-off")


class PartFormerScenesConfig(Config):
    seeds: int = Field(3, ge=1, description="independent seeds (scenes and initialisation) of every comparison")
    train_scenes: int = Field(64, ge=8)
    val_scenes: int = Field(24, ge=4, description="held-out test scenes per seed (every reported figure)")
    size: int = Field(48, ge=32, le=2048, description="scene height and width in pixels (scenes only)")
    shared_part_colours: bool = Field(True, description="persons in car part colours: parts, not colour, "
                                      "separate the classes")
    steps: int = Field(60, ge=1, description="training iterations per model")
    chunk: int = Field(20, ge=1, description="iterations per resumable stage epoch (one checkpoint each)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0, description="used when lrs has fewer than two rates")
    lrs: list[PositiveFloat] = Field([], description="learning rates searched per seed and model (the ablations "
                                     "included) on the validation scenes; the best validation PartPQ of the "
                                     "classes with parts wins. Empty or one rate: no search")
    lr_extend: int = Field(1, ge=0, description="times the lr grid grows by its own end ratio on the side where "
                           "the picked rate lies on its edge")
    tune_scenes: int = Field(24, ge=4, description="validation scenes per seed for the lr search, drawn after the "
                             "training and held-out scenes (only written when lrs is searched)")
    backbone_lr_mult: float = Field(1.0, gt=0, description="backbone learning rate = lr x this (Mask2Former: 0.1)")
    weight_decay: float = Field(0.05, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    amp: bool = Field(False, description="mixed precision (bfloat16 autocast on CPU, float16 + GradScaler on CUDA)")
    num_points: int = Field(256, ge=16, description="sampled points per mask for the mask losses")
    num_queries: int = Field(12, ge=1)
    num_layers: int = Field(2, ge=1)
    hidden: int = Field(32, ge=8)
    part_hidden: int = Field(32, ge=8)
    heads: int = Field(4, ge=1)
    ffn: int = Field(64, ge=1)
    backbone: str = "tiny"
    backbone_weights: str | None = Field(None, description="local backbone weights: a timm checkpoint or a "
                                         "torchvision ResNet-50 state dict (never downloaded)")
    part_whole_attention: bool = Field(True, description="part queries attend inside the wholes with parts "
                                       "(False: only inside their own masks)")
    decoupled: bool = Field(True, description="separate part decoder (False: parts read the whole features)")
    ablations: bool = Field(True, description="also train the two ablated models for the mechanism claims")
    num_part_queries: int | None = Field(None, ge=0, description="must equal the spec's flat part classes; "
                                         "None derives it from the spec")
    data_root: str | None = Field(None, description="data folder instead of scenes: leftImg8bit/{train,val} + "
                                  "gtFinePanopticParts/{train,val} (Cityscapes-Panoptic-Parts) or images/ + labels/")
    eval_spec: str | None = Field(None, description="eval spec YAML (or a shipped short name) for data_root")
    crop: int | None = Field(None, ge=16, description="random crop size for data_root training (Mask2Former "
                             "Cityscapes: 512x1024 as 512); None = whole images")
    min_scale: float = Field(0.5, gt=0, description="random scale range for data_root training (Mask2Former 0.5-2.0)")
    max_scale: float = Field(2.0, gt=0)
    workers: int = Field(0, ge=0, description="DataLoader worker processes for data_root training")
    score_threshold: float = Field(0.5, gt=0, lt=1)
    thresholds: ScenesThresholds = ScenesThresholds()

    @model_validator(mode="after")
    def _spec_with_root(self) -> "PartFormerScenesConfig":
        if self.data_root is not None and self.eval_spec is None:
            raise ValueError("data_root needs eval_spec (the eval spec YAML of that data)")
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale={self.min_scale} is invalid: expected <= max_scale={self.max_scale}")
        return self


class MetricsThresholds(Config):
    exact: float = Field(1e-12, description="source: identities of the definitions; floating-point round-off "
                         "of sums over a few hundred segments stays below 1e-12")
    max_swap_miou: float = Field(0.9, description="source: theory; swapping two of three parts in every car and "
                                 "person zeroes 4 of the 6 flat part IoUs where they are swapped, so part mIoU "
                                 "(background included) must end far below 1; 0.9 is a loose bound")
    max_split_pq: float = Field(0.9, description="source: theory; splitting every thing instance in two turns each "
                                "TP into FN + 2 FP for thing classes (3 of 5 classes), so PQ ends near 0.6; 0.9 "
                                "is a loose bound")
    max_pwq: float = Field(0.95, description="source: design of PWQ (provisional): a geometric mean falls when either "
                           "term falls; 0.95 asks for a visible response to errors that drop one term to <= 0.9")
    bias_tolerance: float = Field(0.03, description="source: measured; segments whose parts are partly occluded "
                                  "score other than 1/2 under a swap, which moves the ratio off the value of the "
                                  "definitions by 0.004-0.007 on 3 scene sets of 8-24 scenes (docs/partformer.md, "
                                  "'partformer-metrics'); 0.03 leaves room for smaller scene sets")
    min_bias_ratio: float = Field(0.30, description="source: de Geus et al. CVPR'21 PartPQ (Eq. 1) as the reference "
                                  "implementation panoptic_parts 2.0rc6 scores it (every class with parts, background "
                                  "label counted in the part mIoU): on these scenes 2 of 5 classes have 3 parts, a swap "
                                  "of two of them scores 1/2 per segment and part mIoU loses 4 of 7 labels, so the "
                                  "published PartPQ gives (2/5)(1/2)/(4/7) = 0.35; the bounds are 0.35 -/+ 0.05")
    max_bias_ratio: float = Field(0.40, description="source: as min_bias_ratio; the ++ paper's 'PartPQ biases to PQ' "
                                  "(arXiv:2301.00954, abstract) for this class mix. A PartPQ without the background "
                                  "term gives 0.47, one that scores the parts of only one class 0.2 or less")


class PanopticMetricsConfig(Config):
    seeds: int = Field(3, ge=1, description="independent scene sets; the bias ratio is reported per seed")
    images: int = Field(24, ge=1, le=10_000, description="procedural scenes per seed")
    height: int = Field(96, ge=16, le=4096)
    width: int = Field(128, ge=16, le=4096)
    min_things: int = Field(3, ge=0, le=100)
    max_things: int = Field(6, ge=1, le=100)
    levels: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], min_length=2,
                                description="fractions of thing segments corrupted (the curves use seed 0)")
    shift_px: int = Field(4, ge=1, le=256, description="shift of the 'shifted mask' corruption")
    combiner: str = Field("geometric", description="PWQ combiner: geometric | harmonic | arithmetic")
    include_bg: bool = Field(True, description="PartPQ's part score counts the background label, as the reference "
                             "implementation does (False: the CVPR'21 paper's wording)")
    partpq_classes: Literal["all", "parts"] = Field("all", description="classes the bias ratio's PartPQ averages: "
                                                    "all (the published PartPQ) or only classes with parts")
    thresholds: MetricsThresholds = MetricsThresholds()
