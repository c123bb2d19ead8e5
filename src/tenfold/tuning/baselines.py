"""Baselines of the survey (sec. 1 of the spec): linear probing (head only) and full fine-tuning."""

from __future__ import annotations

from torch import nn

from tenfold.tuning.common import freeze, train_head
from tenfold.tuning.options import FullOptions, LinearOptions
from tenfold.tuning.registry import register_method


def apply_linear(model: nn.Module) -> nn.Module:
    """Linear probe: the frozen backbone's features into a trainable head, D*C + C parameters."""
    freeze(model)
    train_head(model)
    return model


def apply_full(model: nn.Module) -> nn.Module:
    """Full fine-tuning: every parameter trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


register_method("linear", apply_linear, family="baseline", description="train the head only", options=LinearOptions)
register_method("full", apply_full, family="baseline", description="train every parameter", options=FullOptions)
