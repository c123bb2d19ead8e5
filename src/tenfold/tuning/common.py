"""Helpers shared by the tuning methods: freezing, ViT checks, module patterns, seeded init."""

from __future__ import annotations

import re

import torch
from torch import nn

from tenfold.errors import ConfigError, require


def freeze(model: nn.Module) -> nn.Module:
    """Make every parameter of ``model`` non-trainable."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def classifier(model: nn.Module) -> nn.Module:
    """The classifier head of a timm model (``get_classifier()``), else a child named ``head``."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"model={type(model).__name__} has no classifier head: expected a timm model "
                          "(get_classifier()) or a child module named 'head'")
    return head


def train_head(model: nn.Module) -> None:
    """Unfreeze the classifier head (always trainable, as in every method of the survey)."""
    for p in classifier(model).parameters():
        p.requires_grad_(True)


def require_vit(model: nn.Module, method: str) -> None:
    """Raise ConfigError unless ``model`` is a timm VisionTransformer with plain timm ``Block``s."""
    from timm.models.vision_transformer import Block, VisionTransformer

    ok = isinstance(model, VisionTransformer) and all(isinstance(b, Block) for b in model.blocks)
    require(ok, "model", type(model).__name__,
            f"a timm VisionTransformer with timm Blocks (method {method!r} acts inside ViT blocks)")


def matching_modules(model: nn.Module, pattern: str, kind: type | tuple[type, ...] = nn.Module) -> list[str]:
    """Names of modules of type ``kind`` whose full name matches the regex ``pattern`` (re.fullmatch);
    a pattern that matches nothing raises ConfigError showing a few module names."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"target_modules={pattern!r} is not a valid regular expression: {exc}") from None
    names = [n for n, m in model.named_modules() if n and isinstance(m, kind) and regex.fullmatch(n)]
    if not names:
        examples = [n for n, m in model.named_modules() if n and isinstance(m, kind)][:6]
        raise ConfigError(f"target_modules={pattern!r} matches no module: expected a regex over module names "
                          f"such as {', '.join(examples)}")
    return names


def seeded(seed: int) -> torch.Generator:
    """The generator every random initialisation of a method draws from."""
    require(isinstance(seed, int) and seed >= 0, "seed", seed, "a non-negative integer")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


_SUBCLASSES: dict[tuple[type, type], type] = {}  # (mixin, base) -> class, so each pair is created once


def subclass_with(mixin: type, base: type) -> type:
    """The class ``mixin + base``, used to give a module new behaviour in place while keeping its
    parameter names: ``module.__class__ = subclass_with(SSFMixin, type(module))``."""
    key = (mixin, base)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(f"{mixin.__name__.removesuffix('Mixin')}{base.__name__}", (mixin, base),
                                {"_tuning_base": base})
    return _SUBCLASSES[key]


def restore_class(module: nn.Module) -> None:
    """Undo :func:`subclass_with` on ``module`` (after its extra parameters have been folded away)."""
    base = getattr(type(module), "_tuning_base", None)
    if base is not None:
        module.__class__ = base
