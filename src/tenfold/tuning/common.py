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


def classifiers(model: nn.Module) -> list[nn.Module]:
    """Every classifier head of a timm model (``get_classifier()``; DeiT-distilled has two), else the
    child named ``head``."""
    if hasattr(model, "get_classifier"):
        heads = model.get_classifier()
        heads = list(heads) if isinstance(heads, (tuple, list)) else [heads]
        if all(isinstance(h, nn.Module) for h in heads):
            return heads
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"model={type(model).__name__} has no classifier head: expected a timm model "
                          "(get_classifier()) or a child module named 'head'")
    return [head]


def classifier(model: nn.Module, method: str | None = None) -> nn.Module:
    """The single classifier head of ``model``; a model with several heads is refused (naming ``method``)."""
    heads = classifiers(model)
    if len(heads) != 1:
        names = [n for n, m in model.named_modules() if any(m is h for h in heads)]
        raise ConfigError(f"model={type(model).__name__} has {len(heads)} classifier heads ({', '.join(names)}): "
                          f"method {method or 'this method'!r} needs a model with one head")
    return heads[0]


def head_names(model: nn.Module) -> list[str]:
    """Module names of every classifier head (for peft's ``modules_to_save``)."""
    heads = classifiers(model)
    return [n for n, m in model.named_modules() if n and any(m is h for h in heads)]


def train_head(model: nn.Module) -> None:
    """Unfreeze every classifier head (always trainable, as in every method of the survey)."""
    for head in classifiers(model):
        for p in head.parameters():
            p.requires_grad_(True)


def reference(model: nn.Module) -> dict:
    """``{"device", "dtype"}`` of the first floating-point parameter: new tensors of a method follow it."""
    for p in model.parameters():
        if p.is_floating_point():
            return {"device": p.device, "dtype": p.dtype}
    return {"device": torch.device("cpu"), "dtype": torch.get_default_dtype()}


def require_vit(model: nn.Module, method: str) -> None:
    """Raise ConfigError unless ``model`` is a timm VisionTransformer with plain timm ``Block``s."""
    from timm.models.vision_transformer import Block, VisionTransformer

    ok = isinstance(model, VisionTransformer) and all(isinstance(b, Block) for b in model.blocks)
    require(ok, "model", type(model).__name__,
            f"a timm VisionTransformer with timm Blocks (method {method!r} acts inside ViT blocks; "
            "Eva, Swin and convolutional nets are not supported by it)")


def probe_input(model: nn.Module) -> torch.Tensor:
    """One zero-mean random image the model accepts: channels of its first Conv2d, size of its patch
    embedding (``img_size``) or 64 px for convolutional nets; the model's dtype and device."""
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    # the first patch embedding anywhere (a wrapper such as LION or peft holds the ViT inside)
    embed = next((m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == "patch_embed"), None)
    size = getattr(embed, "img_size", None) or (64, 64)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, channels, *size, generator=g).to(**reference(model))


def require_reached(model: nn.Module, method: str, base: nn.Module | None = None) -> None:
    """Refuse (ConfigError, one line) when a trainable tensor of ``model`` other than the head is not on
    the autograd graph of one forward pass: the method added it where this model's forward never looks
    (e.g. Eva computes qkv with F.linear on the weight, bypassing the module). Eval mode, no RNG used.
    Only image models (with a Conv2d stem, whose input :func:`probe_input` can build) are probed."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return
    heads = {id(p) for h in classifiers(model) for p in h.parameters()}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in heads and p.numel() > 0}
    if not params:
        return
    modes = {m: m.training for m in model.modules()}
    saved = {n: p.grad for n, p in params.items()}
    try:
        model.eval()
        for p in params.values():
            p.grad = None
        with torch.enable_grad():
            out = model(probe_input(base if base is not None else model))
            if isinstance(out, (tuple, list)):
                out = out[0]
            grads = torch.autograd.grad(out.float().sum(), list(params.values()), allow_unused=True)
    finally:
        for m, mode in modes.items():
            m.training = mode
        for n, p in params.items():
            p.grad = saved[n]
    dead = [n for n, g in zip(params, grads) if g is None]
    if dead:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
        raise ConfigError(f"model={type(inner).__name__}: method {method!r} adds {len(dead)} of {len(params)} tensors "
                          f"that its forward pass never reaches ({', '.join(dead[:3])}{', ...' if len(dead) > 3 else ''})"
                          ": not supported on this model (choose target_modules the forward calls)")


def route_qkv_through_module(model: nn.Module) -> None:
    """Eva's attention with q/v biases computes ``F.linear(x, qkv.weight, bias)``, never calling the
    ``qkv`` module, so LoRA or SSF on it would be dead; ``qkv_bias_separate = True`` makes it call
    ``qkv(x)`` and add the same bias afterwards (the same function; rounding aside)."""
    for module in model.modules():
        if hasattr(module, "qkv_bias_separate") and getattr(module, "q_bias", None) is not None:
            module.qkv_bias_separate = True


def matching_modules(model: nn.Module, pattern: str, kind: type | tuple[type, ...] = nn.Module,
                     method: str | None = None) -> list[str]:
    """Names of modules of type ``kind`` whose full name matches the regex ``pattern`` (re.fullmatch);
    a pattern that matches nothing raises ConfigError showing a few module names."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"target_modules={pattern!r} is not a valid regular expression: {exc}") from None
    names = [n for n, m in model.named_modules() if n and isinstance(m, kind) and regex.fullmatch(n)]
    if not names:
        examples = [n for n, m in model.named_modules() if n and isinstance(m, kind)][:6]
        where = f"model={type(model).__name__}: method {method!r}: " if method else ""
        raise ConfigError(f"{where}target_modules={pattern!r} matches no module: expected a regex over module names "
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
    parameter names: ``module.__class__ = subclass_with(SSFMixin, type(module))``.

    The class is made at run time, so pickle cannot find it by name; its instances pickle as
    "``subclass_with(mixin, base)``, then this state" (:func:`rebuild_tuned`), which ``torch.save(model)``
    and ``copy.deepcopy`` use, so a whole tuned model round-trips through ``torch.save``/``torch.load``."""
    key = (mixin, base)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(f"{mixin.__name__.removesuffix('Mixin')}{base.__name__}", (mixin, base),
                                {"_tuning_base": base, "_tuning_mixin": mixin, "__reduce_ex__": _reduce_tuned})
    return _SUBCLASSES[key]


def tuning_mixins(cls: type) -> tuple[list[type], type]:
    """(mixins from the outermost to the innermost, the original class) of a class made by
    :func:`subclass_with`, possibly several times (SSF on a qkv that already carries split LoRA)."""
    mixins = []
    while "_tuning_mixin" in cls.__dict__:
        mixins.append(cls._tuning_mixin)
        cls = cls._tuning_base
    return mixins, cls


def _compose(mixins: list[type], root: type) -> type:
    cls = root
    for mixin in reversed(mixins):
        cls = subclass_with(mixin, cls)
    return cls


def _reduce_tuned(self, protocol):
    # pickle the module classes (the mixins and timm's) by name, not the run-time class
    return rebuild_tuned, tuning_mixins(type(self)), self.__getstate__()


def rebuild_tuned(mixins: list[type], root: type) -> object:
    """An empty instance of the class :func:`subclass_with` made from ``mixins`` and ``root``; pickle then
    restores its state."""
    return object.__new__(_compose(mixins, root))


def restore_class(module: nn.Module, mixin: type | None = None) -> None:
    """Undo :func:`subclass_with` on ``module`` for ``mixin`` (default: the outermost one), after its extra
    parameters have been folded away; other mixins stay."""
    mixins, root = tuning_mixins(type(module))
    if not mixins:
        return
    mixins.remove(mixin if mixin is not None else mixins[0])
    module.__class__ = _compose(mixins, root)
