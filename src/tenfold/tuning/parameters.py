"""Parameter tuning (spec sec. 2): LoRA (peft, fused qkv), split LoRA on q and v, BitFit, SSF.

- LoRA: W x + (alpha / r) B A x, A kaiming-uniform(a=sqrt 5), B = 0. ``lora`` uses peft on timm's fused
  ``attn.qkv`` (same count as q+v, but also adapts k and shares A); ``lora-qv`` is our split LoRA on the
  q and v row blocks of qkv only, as in the papers: 4 D r parameters per block.
- BitFit: every bias (qkv, proj, fc1, fc2, patch embedding, LayerNorm beta).
- SSF: y = gamma * x + beta after each listed op (patch-embed proj, LN1, qkv, proj, LN2, fc1, fc2, final
  LN), gamma ~ N(1, 0.02), beta ~ N(0, 0.02); foldable into the op: W' = diag(gamma) W, b' = gamma b + beta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import require
from tenfold.tuning.common import (freeze, head_names, matching_modules, reference, route_qkv_through_module, seeded,
                                   subclass_with, train_head)
from tenfold.tuning.options import (QKV_PATTERN, SSF_PATTERN, BitFitOptions, LoraOptions,  # noqa: F401 (re-exported)
                                    LoraQVOptions, SSFOptions)
from tenfold.tuning.registry import register_method


# --- LoRA through peft ------------------------------------------------------------------------------
def apply_lora(model: nn.Module, *, rank: int, alpha: float, dropout: float, target_modules: str, seed: int,
               use_dora: bool, use_rslora: bool) -> nn.Module:
    """peft LoRA on the modules matching ``target_modules`` (default: every fused ``attn.qkv``).

    ``use_dora`` (DoRA: magnitude and direction) and ``use_rslora`` (scale alpha / sqrt(r)) are peft's own
    ``LoraConfig`` options; the result is a ``peft.PeftModel`` (``merge_and_unload``, ``unmerge_adapter``,
    ``add_adapter``/``set_adapter`` for several adapters on one backbone)."""
    from peft import LoraConfig, get_peft_model

    matching_modules(model, target_modules, nn.Linear, method="lora")
    route_qkv_through_module(model)
    freeze(model)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        modules_to_save=head_names(model), use_dora=bool(use_dora), use_rslora=bool(use_rslora))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # peft draws A from the global generator; keep that seeded and local
        return get_peft_model(model, config)


# --- split LoRA on q and v --------------------------------------------------------------------------
class QVLoRAMixin:
    """A fused qkv Linear plus low-rank updates on its q and v row blocks: [q + s B_q A_q x, k, v + s B_v A_v x]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        d = self.out_features // 3
        h = self.lora_dropout(x)
        dq = F.linear(F.linear(h, self.lora_a_q), self.lora_b_q) * self.lora_scale
        dv = F.linear(F.linear(h, self.lora_a_v), self.lora_b_v) * self.lora_scale
        return torch.cat([out[..., :d] + dq, out[..., d:2 * d], out[..., 2 * d:] + dv], dim=-1)


def add_qv_lora(qkv: nn.Linear, rank: int, alpha: float, dropout: float, generator: torch.Generator) -> None:
    """Turn ``qkv`` into a QV-LoRA Linear in place (A kaiming-uniform, B zero)."""
    require(qkv.out_features % 3 == 0, "target module out_features", qkv.out_features, "a fused qkv (3D outputs)")
    require(not isinstance(qkv, QVLoRAMixin), "module", type(qkv).__name__, "a qkv without split LoRA already")
    d, dim = qkv.out_features // 3, qkv.in_features
    qkv.__class__ = subclass_with(QVLoRAMixin, type(qkv))
    ref = {"dtype": qkv.weight.dtype, "device": qkv.weight.device}
    for name in ("q", "v"):
        a = torch.empty(rank, dim)  # drawn on the CPU from the seeded generator, then moved: same values anywhere
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        a = a.to(**ref)
        qkv.register_parameter(f"lora_a_{name}", nn.Parameter(a))
        qkv.register_parameter(f"lora_b_{name}", nn.Parameter(torch.zeros(d, rank, dtype=a.dtype, device=a.device)))
    qkv.lora_scale = alpha / rank
    qkv.lora_dropout = nn.Dropout(dropout)


def apply_lora_qv(model: nn.Module, *, rank: int, alpha: float, dropout: float, target_modules: str,
                  seed: int) -> nn.Module:
    """Split LoRA on q and v of every fused qkv matching ``target_modules``: 4 D r per block."""
    names = matching_modules(model, target_modules, nn.Linear, method="lora-qv")
    route_qkv_through_module(model)
    freeze(model)
    g = seeded(seed)
    modules = dict(model.named_modules())
    for name in names:
        add_qv_lora(modules[name], rank, alpha, dropout, g)
    train_head(model)
    return model


def fold_qv_lora(qkv: nn.Module) -> None:
    """W[q] += s B_q A_q, W[v] += s B_v A_v; the module becomes a plain Linear again."""
    from tenfold.tuning.common import restore_class

    d = qkv.out_features // 3
    with torch.no_grad():
        qkv.weight[:d] += qkv.lora_scale * qkv.lora_b_q @ qkv.lora_a_q
        qkv.weight[2 * d:] += qkv.lora_scale * qkv.lora_b_v @ qkv.lora_a_v
    for name in ("lora_a_q", "lora_b_q", "lora_a_v", "lora_b_v"):
        delattr(qkv, name)
    del qkv.lora_scale, qkv.lora_dropout
    restore_class(qkv, QVLoRAMixin)


# --- BitFit --------------------------------------------------------------------------------------
def apply_bitfit(model: nn.Module) -> nn.Module:
    """Train every bias (linear, conv and LayerNorm beta) and the head."""
    freeze(model)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.requires_grad_(True)
    train_head(model)
    return model


# --- SSF -----------------------------------------------------------------------------------------
class SSFMixin:
    """An op followed by y = gamma * out + beta on its channel dimension (1 for convs, last otherwise)."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = super().forward(*args, **kwargs)
        if out.dim() == 4 and isinstance(self, nn.Conv2d):
            return out * self.ssf_scale.view(1, -1, 1, 1) + self.ssf_shift.view(1, -1, 1, 1)
        return out * self.ssf_scale + self.ssf_shift


def _channels(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    return module.normalized_shape[-1]


def apply_ssf(model: nn.Module, *, target_modules: str, std: float, seed: int) -> nn.Module:
    """Scale-and-shift after every Linear / Conv2d / LayerNorm matching ``target_modules``."""
    names = matching_modules(model, target_modules, (nn.Linear, nn.Conv2d, nn.LayerNorm), method="ssf")
    route_qkv_through_module(model)
    freeze(model)
    g = seeded(seed)
    modules = dict(model.named_modules())
    for name in names:
        module = modules[name]
        require(not isinstance(module, SSFMixin), "module", name, "a module without SSF already")
        ref = reference(module)
        c = _channels(module)
        scale = 1.0 + std * torch.randn(c, generator=g)
        shift = std * torch.randn(c, generator=g)
        module.__class__ = subclass_with(SSFMixin, type(module))
        module.ssf_scale = nn.Parameter(scale.to(**ref))
        module.ssf_shift = nn.Parameter(shift.to(**ref))
    train_head(model)
    return model


def fold_ssf(module: nn.Module) -> None:
    """Fold gamma, beta into the op: W' = diag(gamma) W, b' = gamma * b + beta; plain module again."""
    from tenfold.tuning.common import restore_class

    gamma, beta = module.ssf_scale.detach(), module.ssf_shift.detach()
    require(module.weight is not None, "module", type(module).__name__, "an op with a weight to fold SSF into")
    with torch.no_grad():
        shape = (-1,) + (1,) * (module.weight.dim() - 1)
        module.weight.mul_(gamma.view(shape))
        if module.bias is None:
            module.bias = nn.Parameter(beta.clone(), requires_grad=False)
        else:
            module.bias.copy_(gamma * module.bias + beta)
    del module.ssf_scale, module.ssf_shift
    restore_class(module, SSFMixin)


register_method("lora", apply_lora, family="parameter", description="peft LoRA on the fused qkv (q, k and v)",
                options=LoraOptions, check_reach=True)
register_method("lora-qv", apply_lora_qv, family="parameter", description="split LoRA on q and v only",
                options=LoraQVOptions, check_reach=True)
register_method("bitfit", apply_bitfit, family="parameter", description="train every bias incl. LayerNorm",
                options=BitFitOptions, check_reach=True)
register_method("ssf", apply_ssf, family="parameter", description="scale and shift after each op",
                options=SSFOptions, check_reach=True)
