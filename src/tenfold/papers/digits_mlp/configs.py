"""digits-mlp's config: its defaults are the quick tier; ``presets/digits-mlp/{standard,paper}.yaml`` list what
the other tiers change."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.config import Config


class DigitsThresholds(Config):
    max_loss_ratio: float = Field(
        0.9, gt=0, description="the hidden layer must cut the tuned linear model's test cross-entropy by at least "
        "10%; LeCun et al. (1998, Table 1) cut the test error by 61% on MNIST (12.0% -> 4.7%), so this asks for a "
        "sixth of the published effect. Cross-entropy, not error: 360 test digits hold about 12 linear-model "
        "errors, too few for an error ratio to be stable")
    min_test_acc: float = Field(
        0.95, ge=0, le=1, description="a one-hidden-layer MLP reaches about 0.97 on this split (docs/"
        "getting-started.md, quick run); 0.95 catches a broken training path, not a tuned result")


class DigitsMLPConfig(Config):
    hidden: int = Field(128, ge=0, description="hidden units (0: no hidden layer, the linear model)")
    activation: Literal["relu", "identity"] = Field(
        "relu", description="the hidden layer's nonlinearity; identity is the claim's ablation: the same "
        "parameters, optimizer and lr search, but the network computes a linear map")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lrs: list[float] = Field([3e-3, 1e-2], min_length=1,
                             description="learning rates tried for the MLP and the linear baseline alike; each "
                             "picks its own on the validation split")
    weight_decay: float = Field(1e-4, ge=0)
    seeds: int = Field(3, ge=1, description="seeds of the MLP-vs-linear comparison")
    split_seed: int = Field(0, ge=0, description="seed of the first seed's stratified train/val/test split; "
                            "seed k uses split_seed + k, so the comparison averages over test sets too")
    thresholds: DigitsThresholds = DigitsThresholds()
