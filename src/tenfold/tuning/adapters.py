"""Adapter tuning (spec sec. 2): Houlsby, Pfeiffer, AdaptFormer and Convpass inside timm ViT blocks.

A pre-norm block computes x' = x + MHSA(LN1 x); y = x' + MLP(LN2 x'). Adapters hook in as
- sequential (Houlsby: both sublayers; Pfeiffer: MLP only): h <- h + W_up phi(W_down h) on the
  sublayer output h before the residual add;
- parallel (AdaptFormer): y = x' + MLP(LN2 x') + s * W_up Drop(ReLU(W_down x')), reading the un-normed x';
- parallel convolutional (Convpass): x' = x + MHSA(LN1 x) + s * Cv(LN1 x), likewise for the MLP, with
  Cv(u) = W_up Drop(QG(Conv3x3(QG(W_down u)))) and QG(z) = z * sigmoid(1.702 z).
Initialisation: W_down kaiming-uniform(a=sqrt 5) (Convpass: xavier), W_up = 0, biases 0, Convpass's conv
the identity at the centre tap. Only W_up is zero, so every adapter starts as the identity yet learns
(the VPT / V-PETL reference code zeroes both and the adapter degenerates to a bias).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tenfold.errors import require
from tenfold.tuning.common import freeze, reference, require_vit, seeded, subclass_with, train_head
from tenfold.tuning.options import AdaptFormerOptions, ConvpassOptions, HoulsbyOptions, PfeifferOptions
from tenfold.tuning.registry import register_method

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class Bottleneck(nn.Module):
    """W_up Drop(phi(W_down h)): D -> k -> D with W_up = 0 at init (2Dk + k + D parameters)."""

    def __init__(self, dim: int, hidden: int, activation: str, dropout: float, generator: torch.Generator):
        super().__init__()
        self.down, self.act, self.drop = nn.Linear(dim, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5), generator=generator)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.act(self.down(h))))


def quick_gelu(z: torch.Tensor) -> torch.Tensor:
    """QG(z) = z * sigmoid(1.702 z)."""
    return z * torch.sigmoid(1.702 * z)


class ConvPass(nn.Module):
    """Convpass's Cv(u): patch tokens on their sqrt(N) x sqrt(N) grid, prefix tokens as 1x1 images.

    Parameters: 2Dk + D + 9k^2 + 2k (13,648 for D=768, k=8).
    """

    def __init__(self, dim: int, hidden: int, grid: tuple[int, int], prefix: int, dropout: float,
                 generator: torch.Generator):
        super().__init__()
        self.grid, self.prefix = tuple(grid), prefix
        self.down, self.up = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.down.weight, generator=generator)
            self.down.bias.zero_()
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 1] = torch.eye(hidden)
            self.conv.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, n, _ = u.shape
        z = quick_gelu(self.down(u))
        k, (gh, gw) = z.shape[-1], self.grid
        patches = z[:, self.prefix:].transpose(1, 2).reshape(b, k, gh, gw)
        patches = self.conv(patches).reshape(b, k, gh * gw).transpose(1, 2)
        prefix = z[:, :self.prefix].reshape(b * self.prefix, k, 1, 1)
        prefix = self.conv(prefix).reshape(b, self.prefix, k)
        z = quick_gelu(torch.cat([prefix, patches], dim=1))
        return self.up(self.drop(z))


class AdapterSlot(nn.Module):
    """An adapter and how it joins a sublayer: ``sequential`` on the output, or ``parallel`` reading the
    sublayer's normed input (``reads="normed"``) or the un-normed residual stream (``reads="residual"``)."""

    def __init__(self, adapter: nn.Module, placement: str, reads: str = "normed", scale: float = 1.0):
        super().__init__()
        self.adapter, self.placement, self.reads, self.scale = adapter, placement, reads, scale

    def join(self, x: torch.Tensor, u: torch.Tensor, h: torch.Tensor, drop_path: nn.Module,
             layer_scale: nn.Module) -> torch.Tensor:
        if self.placement == "sequential":
            return x + drop_path(layer_scale(h + self.adapter(h)))
        source = u if self.reads == "normed" else x
        return x + drop_path(layer_scale(h)) + self.scale * self.adapter(source)


class AdapterBlockMixin:
    """timm ``Block`` forward with optional ``adapter_attn`` / ``adapter_mlp`` slots (same parameter names)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        u = self.norm1(x)
        h = self.attn(u, attn_mask=attn_mask, is_causal=is_causal)
        x = _join(getattr(self, "adapter_attn", None), x, u, h, self.drop_path1, self.ls1)
        u = self.norm2(x)
        h = self.mlp(u)
        return _join(getattr(self, "adapter_mlp", None), x, u, h, self.drop_path2, self.ls2)


def _join(slot: AdapterSlot | None, x, u, h, drop_path, layer_scale):
    if slot is None:
        return x + drop_path(layer_scale(h))
    return slot.join(x, u, h, drop_path, layer_scale)


def _add_slots(model: nn.Module, method: str, hidden: int, make_slot, sublayers: tuple[str, ...]) -> nn.Module:
    require_vit(model, method)
    require(isinstance(hidden, int) and hidden >= 1, "hidden", hidden, "an integer bottleneck width >= 1")
    freeze(model)
    ref = reference(model)  # initialised on the CPU from the seeded generator, then moved (same values anywhere)
    for block in model.blocks:
        require(not isinstance(block, AdapterBlockMixin), "model", type(model).__name__,
                "a ViT without adapters already (apply one adapter method)")
        block.__class__ = subclass_with(AdapterBlockMixin, type(block))
        for sub in sublayers:
            setattr(block, f"adapter_{sub}", make_slot().to(**ref))
    train_head(model)
    return model


def apply_houlsby(model: nn.Module, *, hidden: int, activation: str, dropout: float, seed: int) -> nn.Module:
    """Houlsby: sequential bottlenecks after both sublayers, 2L(2Dk + k + D) parameters (options:
    :class:`~tenfold.tuning.options.HoulsbyOptions`)."""
    g = seeded(seed)
    return _add_slots(model, "houlsby", hidden, lambda: AdapterSlot(
        Bottleneck(model.embed_dim, hidden, activation, dropout, g), "sequential"), ("attn", "mlp"))


def apply_pfeiffer(model: nn.Module, *, hidden: int, activation: str, dropout: float, seed: int) -> nn.Module:
    """Pfeiffer: one sequential bottleneck after the MLP, L(2Dk + k + D) parameters."""
    g = seeded(seed)
    return _add_slots(model, "pfeiffer", hidden, lambda: AdapterSlot(
        Bottleneck(model.embed_dim, hidden, activation, dropout, g), "sequential"), ("mlp",))


def apply_adaptformer(model: nn.Module, *, hidden: int, scale: float, dropout: float, seed: int) -> nn.Module:
    """AdaptFormer: y = x' + MLP(LN2 x') + s W_up Drop(ReLU(W_down x')), L(2Dk + k + D) parameters."""
    g = seeded(seed)
    return _add_slots(model, "adaptformer", hidden, lambda: AdapterSlot(
        Bottleneck(model.embed_dim, hidden, "relu", dropout, g), "parallel", "residual", scale), ("mlp",))


def apply_convpass(model: nn.Module, *, hidden: int, scale: float, dropout: float, seed: int) -> nn.Module:
    """Convpass: a convolutional bypass in parallel with both sublayers, 2L(2Dk + D + 9k^2 + 2k) parameters."""
    require_vit(model, "convpass")
    require(not hasattr(model, "vpt"), "model", f"{type(model).__name__} with VPT prompts",
            "a ViT without prompt tokens (method 'convpass' convolves the patch tokens on their grid)")
    require(not getattr(model, "dynamic_img_size", False), "model", f"{type(model).__name__}(dynamic_img_size=True)",
            "a ViT with a fixed patch grid (method 'convpass' convolves the patch tokens on that grid)")
    g = seeded(seed)
    grid, prefix = model.patch_embed.grid_size, model.num_prefix_tokens
    return _add_slots(model, "convpass", hidden, lambda: AdapterSlot(
        ConvPass(model.embed_dim, hidden, grid, prefix, dropout, g), "parallel", "normed", scale), ("attn", "mlp"))


register_method("houlsby", apply_houlsby, family="adapter", description="sequential bottleneck after both sublayers",
                options=HoulsbyOptions, check_reach=True)
register_method("pfeiffer", apply_pfeiffer, family="adapter", description="sequential bottleneck after the MLP",
                options=PfeifferOptions, check_reach=True)
register_method("adaptformer", apply_adaptformer, family="adapter",
                description="scaled parallel bottleneck beside the MLP",
                options=AdaptFormerOptions, check_reach=True)
register_method("convpass", apply_convpass, family="adapter",
                description="scaled convolutional bypass beside both sublayers",
                options=ConvpassOptions, check_reach=True)
