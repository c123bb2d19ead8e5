"""A query-based part-whole panoptic segmentation model in the Mask2Former style
(PanopticPartFormer++, arXiv:2301.00954; ``panoptic_parts.md`` section 4).

From the paper (abstract): things, stuff and parts are all queries with unified mask classification;
part features are decoupled from thing/stuff features; parts and wholes interact by masked
cross-attention. The body of the ++ paper is not public, so the concrete wiring below is our design:

- backbone (a small CNN, or any timm CNN) -> FPN pixel decoder -> whole features F_w (stride 4 for
  masks, strides 32/16/8 for attention); a *separate* part decoder fusing backbone strides 4 and 8 ->
  part features F_p (stride 4);
- Q whole queries (Hungarian-matched) and one part query per flat part class (fixed assignment);
- L decoder layers, each: (a) whole queries: masked cross-attention on F_w at one level (mask =
  previous prediction >= 0.5, everywhere when empty); (b) part queries: **part-whole masked
  cross-attention** on F_p, restricted to (own previous mask >= 0.5) AND (union of previous masks of
  whole queries whose predicted class has parts); (c) self-attention over [whole; part] queries;
  (d) FFN; heads after every layer (deep supervision).

Ablation switches, each with the full model's parameters (only the mechanism goes):
``decoupled=False`` shares one feature map between wholes and parts: the part decoder's output is added
to the pixel decoder's stride-4 features, F_w = F_p = mask_proj(P_4 + part_proj(part decoder)), and the part
queries attend to the whole pyramid; ``part_whole_attention=False`` restricts part queries by their own
mask only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError


@dataclass(frozen=True)
class PartFormerConfig:
    """Sizes of the part-whole query model (:class:`PartWholeFormer`): whole classes, flat part classes
    (one part query each), which whole classes have parts, the backbone and the decoder widths."""

    num_classes: int                     # whole classes (things + stuff), no-object excluded
    num_parts: int                       # flat part classes = part queries
    parts_classes: tuple[int, ...]       # whole-class indices that have parts
    backbone: str = "tiny"               # "tiny" or a timm CNN name (e.g. "resnet50"), never downloaded
    channels: tuple[int, ...] = (16, 32, 64, 128)
    hidden: int = 64
    part_hidden: int = 64
    num_queries: int = 16
    num_layers: int = 3
    heads: int = 4
    ffn: int = 128
    decoupled: bool = True
    part_whole_attention: bool = True

    def __post_init__(self) -> None:
        checks = [(self.num_classes >= 1, "num_classes", "at least 1"), (self.num_parts >= 0, "num_parts", ">= 0"),
                  (self.num_queries >= 1, "num_queries", "at least 1"), (self.num_layers >= 1, "num_layers", ">= 1"),
                  (self.hidden % self.heads == 0, "hidden", f"a multiple of heads={self.heads}"),
                  (len(self.channels) == 4, "channels", "four stage widths")]
        for ok, field, expected in checks:
            if not ok:
                raise ConfigError(f"{field}={getattr(self, field)!r} is invalid: expected {expected}")
        bad = [c for c in self.parts_classes if not 0 <= c < self.num_classes]
        if bad:
            raise ConfigError(f"parts_classes={list(self.parts_classes)} is invalid: expected class indices "
                              f"in 0..{self.num_classes - 1}")


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """Four stages of strided 3x3 convs: features at strides 4, 8, 16, 32."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        c = channels
        self.stem = conv_bn(3, c[0], 2)
        self.stages = nn.ModuleList([
            nn.Sequential(conv_bn(c[0], c[0], 2), conv_bn(c[0], c[0])),
            nn.Sequential(conv_bn(c[0], c[1], 2), conv_bn(c[1], c[1])),
            nn.Sequential(conv_bn(c[1], c[2], 2), conv_bn(c[2], c[2])),
            nn.Sequential(conv_bn(c[2], c[3], 2), conv_bn(c[3], c[3])),
        ])
        self.out_channels = list(c)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class TimmBackbone(nn.Module):
    """Any timm CNN with ``features_only`` (strides 4..32), built without downloading weights."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        self.out_channels = list(self.net.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


class PixelDecoder(nn.Module):
    """FPN: lateral 1x1 convs, top-down sums, 3x3 output convs; returns features fine -> coarse."""

    def __init__(self, in_channels: list[int], hidden: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, hidden, 1) for c in in_channels])
        self.output = nn.ModuleList([nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.GroupNorm(8, hidden),
                                                   nn.ReLU(inplace=True)) for _ in in_channels])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        outs = [lat[-1]]
        for f in reversed(lat[:-1]):
            outs.insert(0, f + F.interpolate(outs[0], size=f.shape[-2:], mode="nearest"))
        return [conv(o) for conv, o in zip(self.output, outs)]


class PartDecoder(nn.Module):
    """The decoupled part branch: its own fusion of backbone strides 4 and 8 into stride-4 features."""

    def __init__(self, in_channels: list[int], hidden: int) -> None:
        super().__init__()
        self.lat4 = nn.Conv2d(in_channels[0], hidden, 1)
        self.lat8 = nn.Conv2d(in_channels[1], hidden, 1)
        self.fuse = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.ReLU(inplace=True))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f4 = self.lat4(feats[0])
        return self.fuse(f4 + F.interpolate(self.lat8(feats[1]), size=f4.shape[-2:], mode="bilinear",
                                            align_corners=False))


def sine_position(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """2-D sine positional encoding (DETR) flattened to (h*w, dim)."""
    half = dim // 2
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    freq = 10000 ** (torch.arange(half // 2, device=device, dtype=torch.float32) / max(half // 2, 1))
    py = torch.cat([(ys[:, None] / freq).sin(), (ys[:, None] / freq).cos()], dim=1)   # (h, half)
    px = torch.cat([(xs[:, None] / freq).sin(), (xs[:, None] / freq).cos()], dim=1)   # (w, half)
    pos = torch.cat([py[:, None, :].expand(h, w, -1), px[None, :, :].expand(h, w, -1)], dim=-1)
    if pos.shape[-1] < dim:
        pos = F.pad(pos, (0, dim - pos.shape[-1]))
    return pos.reshape(h * w, dim)


def attention_mask(allowed: torch.Tensor, heads: int) -> torch.Tensor:
    """Boolean attention mask (True = blocked) from allowed positions (B, Q, N); a query with no
    allowed position attends everywhere (Mask2Former's rule). Returns (B * heads, Q, N)."""
    empty = ~allowed.any(-1, keepdim=True)
    blocked = ~(allowed | empty)
    return blocked.repeat_interleave(heads, dim=0)


class MLP(nn.Module):
    def __init__(self, dim: int, out: int, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers - 1)] + [nn.Linear(dim, out)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DecoderLayer(nn.Module):
    """Masked cross-attention (whole and part queries on their own features), joint self-attention, FFN."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.whole_cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.part_cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, dim))
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(4)])

    def forward(self, whole: torch.Tensor, part: torch.Tensor, whole_pos: torch.Tensor, part_pos: torch.Tensor,
                mem_w: torch.Tensor, mem_p: torch.Tensor, pos: torch.Tensor,
                mask_w: torch.Tensor, mask_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, _ = self.whole_cross(whole + whole_pos, mem_w + pos, mem_w, attn_mask=mask_w, need_weights=False)
        whole = self.norms[0](whole + a)
        if part.shape[1]:
            b, _ = self.part_cross(part + part_pos, mem_p + pos, mem_p, attn_mask=mask_p, need_weights=False)
            part = self.norms[1](part + b)
        q = whole.shape[1]
        x = torch.cat([whole, part], dim=1)
        qpos = torch.cat([whole_pos, part_pos], dim=1)
        s, _ = self.self_attn(x + qpos, x + qpos, x, need_weights=False)
        x = self.norms[2](x + s)
        x = self.norms[3](x + self.ffn(x))
        return x[:, :q], x[:, q:]


class PartWholeFormer(nn.Module):
    """``forward(images) -> {"layers": [per-layer predictions]}``; each layer's dict holds
    ``class_logits`` (B, Q, C+1), ``mask_logits`` (B, Q, H/4, W/4), ``part_logits`` (B, P) presence
    and ``part_masks`` (B, P, H/4, W/4). The last entry is the final prediction."""

    def __init__(self, cfg: PartFormerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TinyBackbone(cfg.channels) if cfg.backbone == "tiny" else TimmBackbone(cfg.backbone)
        chans = self.backbone.out_channels
        d = cfg.hidden
        self.pixel_decoder = PixelDecoder(chans, d)
        self.mask_proj = nn.Conv2d(d, d, 1)
        self.part_decoder = PartDecoder(chans, cfg.part_hidden)
        self.part_proj = nn.Conv2d(cfg.part_hidden, d, 1)
        self.level_embed = nn.Parameter(torch.zeros(3, d))
        self.whole_query = nn.Embedding(cfg.num_queries, d)
        self.whole_pos = nn.Embedding(cfg.num_queries, d)
        self.part_query = nn.Embedding(cfg.num_parts, d)
        self.part_pos = nn.Embedding(cfg.num_parts, d)
        self.layers = nn.ModuleList([DecoderLayer(d, cfg.heads, cfg.ffn) for _ in range(cfg.num_layers)])
        self.norm = nn.LayerNorm(d)
        self.class_head = nn.Linear(d, cfg.num_classes + 1)
        self.mask_head = MLP(d, d)
        self.presence_head = nn.Linear(d, 1)
        self.part_mask_head = MLP(d, d)
        parts = torch.zeros(cfg.num_classes + 1, dtype=torch.bool)
        parts[list(cfg.parts_classes)] = True
        self.register_buffer("has_parts", parts, persistent=False)

    def _heads(self, whole: torch.Tensor, part: torch.Tensor, fw: torch.Tensor, fp: torch.Tensor) -> dict:
        w = self.norm(whole)
        out = {"class_logits": self.class_head(w),
               "mask_logits": torch.einsum("bqd,bdhw->bqhw", self.mask_head(w), fw)}
        p = self.norm(part)
        out["part_logits"] = self.presence_head(p).squeeze(-1)
        out["part_masks"] = torch.einsum("bqd,bdhw->bqhw", self.part_mask_head(p), fp)
        return out

    def _masks(self, pred: dict, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention masks for the next layer at feature size ``size`` from the previous prediction."""
        h = self.cfg.heads
        whole = F.interpolate(pred["mask_logits"], size=size, mode="bilinear", align_corners=False).sigmoid() >= 0.5
        part = F.interpolate(pred["part_masks"], size=size, mode="bilinear", align_corners=False).sigmoid() >= 0.5
        if self.cfg.part_whole_attention and part.shape[1]:
            with_parts = self.has_parts[pred["class_logits"].argmax(-1)]            # (B, Q): class has parts
            union = (whole & with_parts[..., None, None]).any(1, keepdim=True)     # (B, 1, h, w)
            part = part & union
        return attention_mask(whole.flatten(2), h), attention_mask(part.flatten(2), h)

    def forward(self, images: torch.Tensor) -> dict:
        b = images.shape[0]
        feats = self.backbone(images)
        pyramid = self.pixel_decoder(feats)                     # strides 4, 8, 16, 32
        levels_w = [pyramid[3], pyramid[2], pyramid[1]]         # round-robin 32, 16, 8
        if self.cfg.decoupled:
            fw = self.mask_proj(pyramid[0])
            fp = self.part_proj(self.part_decoder(feats))
            levels_p = [F.adaptive_avg_pool2d(fp, lv.shape[-2:]) for lv in levels_w]
        else:   # the same modules, one shared feature map: the part decoder refines the whole features
            fw = fp = self.mask_proj(pyramid[0] + self.part_proj(self.part_decoder(feats)))
            levels_p = levels_w
        whole = self.whole_query.weight.unsqueeze(0).expand(b, -1, -1)
        part = self.part_query.weight.unsqueeze(0).expand(b, -1, -1)
        whole_pos = self.whole_pos.weight.unsqueeze(0).expand(b, -1, -1)
        part_pos = self.part_pos.weight.unsqueeze(0).expand(b, -1, -1)
        pred = self._heads(whole, part, fw, fp)
        layers = [pred]
        for i, layer in enumerate(self.layers):
            k = i % 3
            mem_w = levels_w[k].flatten(2).transpose(1, 2) + self.level_embed[k]
            mem_p = levels_p[k].flatten(2).transpose(1, 2) + self.level_embed[k]
            hh, ww = levels_w[k].shape[-2:]
            pos = sine_position(hh, ww, self.cfg.hidden, images.device).unsqueeze(0)
            mask_w, mask_p = self._masks(pred, (hh, ww))
            whole, part = layer(whole, part, whole_pos, part_pos, mem_w, mem_p, pos, mask_w, mask_p)
            pred = self._heads(whole, part, fw, fp)
            layers.append(pred)
        return {"layers": layers}


def load_backbone_weights(model: "PartWholeFormer", path: str | "os.PathLike") -> int:
    """Load local backbone weights into ``model.backbone`` (never downloads): a timm checkpoint or a
    torchvision ResNet-50 state dict (``.pth``/``.pt``/``.bin``, optionally wrapped in ``state_dict`` or
    ``model``, or ``.safetensors``). Classifier tensors (``fc.*``, ``head.*``, ``classifier.*``) are
    skipped; every backbone tensor must be found with its shape, else a one-line DataError names the file.
    Returns the number of tensors loaded."""
    from pathlib import Path

    from tenfold.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"backbone weights {path} do not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a checkpoint at all
        raise DataError(f"backbone weights {path} cannot be read as a state dict: {type(exc).__name__}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"backbone weights {path} hold no tensor state dict")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    target = model.backbone.net if isinstance(model.backbone, TimmBackbone) else model.backbone
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        bad = (missing or wrong)[0]
        raise DataError(f"backbone weights {path} do not fit backbone {model.cfg.backbone!r}: {len(missing)} of "
                        f"{len(own)} tensors missing, {len(wrong)} of another shape (first: {bad!r})")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
    return len(own)


def param_groups(model: "PartWholeFormer", lr: float, backbone_lr_mult: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: the backbone at ``lr * backbone_lr_mult`` (Mask2Former: 0.1), the rest at ``lr``."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": backbone, "lr": lr * backbone_lr_mult, "weight_decay": weight_decay},
            {"params": rest, "lr": lr, "weight_decay": weight_decay}]
