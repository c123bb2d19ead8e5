"""Prompt tuning: VPT-shallow and VPT-deep (Jia et al. 2022; spec sec. 2).

Learnable prompts P in R^{p x D} are inserted after the prefix tokens (class/register tokens) and
before the patch tokens, without positional embedding: [cls, P, E]. VPT-shallow inserts them once
before block 0; VPT-deep gives every block i its own P_i, and block i >= 1 *replaces* the previous
block's p prompt outputs with P_i, so the sequence length stays 1 + p + N throughout.
Init U(-v, v) with v = sqrt(6 / (in_chans * patch^2 + D)) (0.0625 for ViT-B/16).

After the last block the prompt outputs are dropped again, so the final norm, the pooling (token or
average over the patches), the heads (DeiT-distilled's two) and timm's dynamic image size see the
model's own token layout. ``forward_intermediates`` (and so timm's ``features_only`` getter and
``get_intermediate_layers``) returns every block's output without the p prompt tokens: the model's class
becomes ``VPT<timm class>`` (:class:`VPTMixin`), whose override drops them from each
intermediate (they still flow from block to block, as in VPT-shallow they must). Supported: timm VisionTransformer (incl. DeiT-distilled, register tokens) and
Eva (EVA-02: its attention skips rotary embedding on the prefix tokens, which then include the prompts).
Swin (windowed attention) and convolutional nets are refused.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tenfold.errors import require
from tenfold.tuning.common import freeze, reference, seeded, subclass_with, train_head
from tenfold.tuning.options import VPTOptions
from tenfold.tuning.registry import register_method


class VisualPrompts(nn.Module):
    """The prompt tensor (layers, p, D) and the position ``start`` (number of prefix tokens) it goes to."""

    def __init__(self, layers: int, length: int, dim: int, start: int, bound: float, generator: torch.Generator,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.length, self.start = length, start
        self.keep_outputs = False  # True inside forward_intermediates: the last block keeps the prompt outputs
        init = torch.empty(layers, length, dim).uniform_(-bound, bound, generator=generator)  # same draw on any device
        self.prompts = nn.Parameter(init.to(device=device, dtype=dtype))

    def remove(self, x: torch.Tensor) -> torch.Tensor:
        """The sequence without the p prompt tokens (after the last block)."""
        if self.length == 0:
            return x
        return torch.cat([x[:, :self.start], x[:, self.start + self.length:]], dim=1)

    def insert(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer 0: [prefix, P_0, patches]; layer i >= 1: the p tokens after the prefix become P_i."""
        if self.length == 0:
            return x
        p = self.prompts[layer].to(x.dtype).expand(x.shape[0], -1, -1)
        rest = x[:, self.start:] if layer == 0 else x[:, self.start + self.length:]
        return torch.cat([x[:, :self.start], p, rest], dim=1)


class _PromptHook:
    """Forward pre-hook of block ``layer`` that inserts or replaces that layer's prompts."""

    def __init__(self, prompts: VisualPrompts, layer: int):
        self.prompts, self.layer = prompts, layer

    def __call__(self, module: nn.Module, args: tuple):
        return (self.prompts.insert(args[0], self.layer), *args[1:])


class _RemoveHook:
    """Forward hook of the last block that drops the prompt outputs."""

    def __init__(self, prompts: VisualPrompts):
        self.prompts = prompts

    def __call__(self, module: nn.Module, args: tuple, output):
        if self.prompts.keep_outputs:
            return None
        return self.prompts.remove(output)


class VPTMixin:
    """A timm ViT / Eva with VPT prompts whose ``forward_intermediates`` returns the model's own token layout.

    timm collects each block's output as it goes to the next block, which holds the p prompt tokens after
    the prefix tokens (all blocks but the last): without this override the spatial features would hold
    prompts (a wrong grid, silently). Here every block's output keeps them, and they are removed afterwards
    from the intermediates, the final features, and never reach the prefix tokens."""

    def forward_intermediates(self, x: torch.Tensor, indices=None, return_prefix_tokens: bool = False,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, output_dict: bool = False, **kwargs):
        require(output_fmt in ("NCHW", "NLC"), "output_fmt", output_fmt, "'NCHW' or 'NLC'")
        vpt, prefix = self.vpt, self.num_prefix_tokens
        vpt.keep_outputs = True
        try:
            final, inter = super().forward_intermediates(x, indices, return_prefix_tokens=prefix > 0, norm=norm,
                                                         stop_early=stop_early, output_fmt="NLC",
                                                         intermediates_only=False, **kwargs)
        finally:
            vpt.keep_outputs = False
        spatial = [(y[0] if prefix else y)[:, vpt.length:] for y in inter]  # [prompts, patches] -> patches
        prefix_tokens = [y[1] for y in inter] if prefix else None
        if output_fmt == "NCHW":
            b, _, height, width = x.shape
            h, w = self.patch_embed.dynamic_feat_size((height, width))
            spatial = [y.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous() for y in spatial]
        final = vpt.remove(final)
        if output_dict:
            out = {"image_intermediates": spatial}
            if prefix_tokens is not None and return_prefix_tokens:
                out["image_intermediates_prefix"] = prefix_tokens
            if not intermediates_only:
                out["image_features"] = final
            return out
        if return_prefix_tokens and prefix_tokens is not None:
            spatial = list(zip(spatial, prefix_tokens))
        return spatial if intermediates_only else (final, spatial)


def require_prompt_model(model: nn.Module, method: str) -> None:
    """VPT needs a token sequence with prefix tokens: a timm VisionTransformer or Eva of timm blocks."""
    from timm.models.eva import Eva, EvaBlock
    from timm.models.vision_transformer import Block, VisionTransformer

    ok = (isinstance(model, VisionTransformer) and all(isinstance(b, Block) for b in model.blocks)) or (
        isinstance(model, Eva) and all(isinstance(b, EvaBlock) for b in model.blocks))
    require(ok, "model", type(model).__name__,
            f"a timm VisionTransformer or Eva (method {method!r} inserts prompt tokens into a ViT token "
            "sequence; Swin's windowed attention and convolutional nets have none)")


def prompt_init_bound(model: nn.Module) -> float:
    """VPT's uniform bound v = sqrt(6 / (in_chans * patch_h * patch_w + D))."""
    proj = model.patch_embed.proj
    fan = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
    return math.sqrt(6.0 / (fan + model.embed_dim))


def _apply_vpt(model: nn.Module, length: int, deep: bool, seed: int, method: str) -> nn.Module:
    require_prompt_model(model, method)
    require(isinstance(length, int) and length >= 0, "length", length, "an integer prompt length >= 0")
    require(not hasattr(model, "vpt"), "model", type(model).__name__, f"a ViT without prompts already (method {method!r}: apply VPT once)")
    from tenfold.tuning.adapters import ConvPass

    require(not any(isinstance(m, ConvPass) for m in model.modules()), "model", f"{type(model).__name__} with Convpass",
            f"a ViT without Convpass (method {method!r} adds tokens that Convpass's patch grid has no place for)")
    freeze(model)
    layers = len(model.blocks) if deep else 1
    model.vpt = VisualPrompts(layers, length, model.embed_dim, model.num_prefix_tokens, prompt_init_bound(model),
                              seeded(seed), **reference(model))
    for i in range(layers):
        model.blocks[i].register_forward_pre_hook(_PromptHook(model.vpt, i))
    model.blocks[-1].register_forward_hook(_RemoveHook(model.vpt))
    model.__class__ = subclass_with(VPTMixin, type(model))
    for block in model.blocks:  # Eva: rotary embedding skips the prefix tokens, which now include the prompts
        if hasattr(block.attn, "num_prefix_tokens"):
            block.attn.num_prefix_tokens += length
    train_head(model)
    return model


def apply_vpt_shallow(model: nn.Module, *, length: int, seed: int) -> nn.Module:
    """VPT-shallow: p prompts before block 0 (pD parameters)."""
    return _apply_vpt(model, length, deep=False, seed=seed, method="vpt-shallow")


def apply_vpt_deep(model: nn.Module, *, length: int, seed: int) -> nn.Module:
    """VPT-deep: p fresh prompts in every block, replacing the previous ones (LpD parameters)."""
    return _apply_vpt(model, length, deep=True, seed=seed, method="vpt-deep")


register_method("vpt-shallow", apply_vpt_shallow, family="prompt", description="p prompt tokens before block 0",
                options=VPTOptions, check_reach=True)
register_method("vpt-deep", apply_vpt_deep, family="prompt",
                description="p prompt tokens per block, replacing the previous block's", options=VPTOptions, check_reach=True)
