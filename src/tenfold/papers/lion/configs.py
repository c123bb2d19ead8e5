"""The lion experiments' configs (their defaults are the quick tier; ``presets/<experiment>/*.yaml`` list
what the other tiers change). Torch-free, so ``tenfold config`` resolves them without importing the experiments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tenfold.config import Config


Rho = Annotated[float, Field(ge=0, lt=1)]


class Thresholds(Config):
    min_gain_over_vpt: float = Field(0.0, description="source: the paper's claim (abstract): LION reaches higher "
                                     "accuracy than VPT with fewer parameters, i.e. a gain >= 0")
    target_ratio: float = Field(0.885, gt=0, description="source: the paper's abstract, 'up to 11.5% fewer "
                                "trainable parameters than VPT' -> LION params <= 0.885 x VPT-deep params")
    max_backward_residual: float = Field(1e-6, gt=0, description="source: b_tol of the IFT backward solve "
                                         "(LION, Sec. 3.2: the implicit gradient solves the adjoint fixed point; docs/lion.md)")
    max_lr_on_edge: float = Field(0, description="source: evidence rules; each method's lr pick lies inside the "
                                  "rates its search tried (an edge pick grows the grid, lr_extend times)")


class LionConfig(Config):
    seeds: int = Field(3, ge=1, description="seeds (init and batch order) of the comparison")
    shots: int = Field(20, ge=2, description="labelled images per class of digits 5-9 (train + validation)")
    val_shots: int = Field(5, ge=1, description="of those, per class held out to pick each method's lr")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    lrs: list[Annotated[float, Field(gt=0)]] = Field([3e-3, 1e-2, 3e-2], min_length=1, description=
                                                      "AdamW lr grid searched for VPT-deep and LION alike (seed 0, "
                                                      "validation accuracy)")
    lr_extend: int = Field(1, ge=0, description="times the lr grid grows by one rate outward when a method's pick "
                           "(seed 0, on validation) is the smallest or largest rate tried")
    weight_decay: float = Field(1e-4, ge=0)
    vpt_length: int | None = Field(None, ge=1, description="VPT-deep prompts per block; null: the smallest p at "
                                   "which LION's count at claim_rho (dense implicit entries - floor(rho n) + head) "
                                   "is at most target_ratio x VPT-deep's L p D + head, i.e. VPT-deep at LION's "
                                   "budget / 0.885, the paper's comparison (p=3 on the digits ViT)")
    rhos: list[Rho] = Field([0.5], min_length=1, description="pruned fractions trained (paper preset: a sweep)")
    hidden: int = Field(4, ge=1, description="channels inside the input layer's contraction")
    rank: int = Field(8, ge=1, description="state size r of the output layer")
    pool: int = Field(0, ge=0, description="raw-pixel summary of the output layer (p x p average pool); 0: none, "
                                           "so neither LION nor VPT-deep reads raw pixels besides the backbone")
    gamma: float = Field(0.9, gt=0, lt=1, description="contraction factor of both layers")
    solver: Literal["fixed_point", "anderson", "broyden", "anderson_torchdeq"] = Field(
        "fixed_point", description="forward solver (torchdeq's fixed-point iteration: measured fewest steps on "
                                   "LION's layers, docs/lion.md)")
    b_solver: Literal["fixed_point", "anderson", "broyden", "anderson_torchdeq"] = "fixed_point"
    f_max_iter: int = Field(30, ge=1)
    eval_f_max_iter: int = Field(50, ge=1)
    f_tol: float = Field(1e-4, gt=0, description="relative residual at which the forward solver stops")
    b_tol: float = Field(1e-6, gt=0, description="relative residual of the IFT backward solve")
    b_max_iter: int = Field(40, ge=1)
    backward: Literal["ift", "phantom"] = Field("ift", description="implicit differentiation, or JFB (phantom)")
    pruning: Literal["soft", "imp"] = Field("soft", description="soft lottery pruning, or iterative magnitude "
                                            "pruning (IMP) with rewinding (epochs per round; costly)")
    imp_rate: float = Field(0.2, gt=0, lt=1, description="IMP: fraction of the surviving weights pruned per round")
    rewind_epoch: int = Field(0, ge=0, description="IMP: rewind to the weights after this many epochs (0 = init)")
    score: Literal["gsm", "magnitude", "random"] = Field("gsm", description="|theta * grad| or |theta|; 'random' "
                                                         "is the ablation of the lottery selection: random masks "
                                                         "of the same sparsity (a seeded draw fixed per run)")
    solve: Literal["equilibrium", "one_step"] = Field("equilibrium", description="'one_step' is the ablation of "
                                                      "the equilibrium: one explicit step z = f(0) of the same "
                                                      "layers (same parameters and init; no solver, no implicit "
                                                      "gradient)")
    prune_decay: float = Field(50.0, ge=0, description="lambda_s of the non-kept weights' decay")
    finalize_at: float = Field(0.75, gt=0, le=1, description="fraction of epochs after which masks become hard")
    freeze_implicit: bool = Field(False, description="ablation: LION's implicit layers stay at their initial "
                                  "values (only the head trains; LION is then the frozen model + head)")
    foundation: Literal["digits", "fractal"] = Field("digits", description="the frozen backbone: the shipped "
                                                     "digits ViT (8 px grey), or the shipped fractal ViT (32 px "
                                                     "RGB; the digits are resized and repeated to 3 channels)")
    split_seed: int = Field(0, ge=0)
    claim_rho: Rho = Field(0.5, description="the sparsity the claims are made at, fixed before the run (picking "
                                            "the best rho on the test set would make the claims hold by selection)")
    thresholds: Thresholds = Thresholds()

    @model_validator(mode="after")
    def _claim_rho_in_sweep(self) -> "LionConfig":
        if self.claim_rho not in self.rhos:
            raise ValueError(f"claim_rho={self.claim_rho} must be one of rhos={self.rhos}")
        if self.val_shots >= self.shots:
            raise ValueError(f"val_shots={self.val_shots} must be below shots={self.shots}")
        return self
