"""Merging and saving tuned models.

- ``merge(model)``: LoRA merged into the weights (peft's ``merge_and_unload`` or our split LoRA folded)
  and SSF folded into the preceding op, giving plain timm modules with the same outputs. Methods that
  cannot be re-parameterised (prompts, adapters) are left as they are.
- ``save_tuned(model, path)``: only the trainable tensors plus the method and its options (safetensors
  metadata); a peft LoRA model is written with peft's ``save_pretrained`` into the folder ``path``.
- ``load_tuned(base, path, **options)``: re-applies the method to ``base`` and loads the tensors; options
  that are not plain data (a KD teacher) must be passed again.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from tenfold.errors import ConfigError, DataError, require
from tenfold.tuning.common import classifiers
from tenfold.tuning.parameters import QVLoRAMixin, SSFMixin, fold_qv_lora, fold_ssf
from tenfold.tuning.registry import apply

PEFT_INFO = "tenfold_tuning.json"


def _is_peft(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA and SSF into plain modules (in place for ours; peft returns its unwrapped base model)."""
    info = getattr(model, "tenfold_tuning", None)
    if _is_peft(model):
        model = model.merge_and_unload()
    for module in list(model.modules()):
        if isinstance(module, QVLoRAMixin):
            fold_qv_lora(module)
        elif isinstance(module, SSFMixin):
            fold_ssf(module)
    if info is not None:
        model.tenfold_tuning = {**info, "merged": True}
    return model


def _num_classes(model: nn.Module) -> int | None:
    head = classifiers(model)[0]
    if hasattr(head, "modules_to_save"):  # peft's wrapper around a trained copy of the head
        head = head.modules_to_save["default"]
    return getattr(head, "out_features", None)


def trainable_state(model: nn.Module) -> dict:
    """What ``save_tuned`` writes: the trainable tensors by name, plus the pruning masks of LION's
    implicit layers (buffers ``<weight>_mask`` of modules with ``PRUNABLE`` weights), without which a
    pruned model would come back dense."""
    state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    for prefix, module in model.named_modules():
        for attr in getattr(module, "PRUNABLE", ()):
            name = f"{prefix}.{attr}_mask" if prefix else f"{attr}_mask"
            state[name] = getattr(module, f"{attr}_mask").detach().contiguous()
    return state


def save_tuned(model: nn.Module, path: str | Path) -> Path:
    """Write the trainable tensors and the tuning config of ``model`` to ``path``."""
    from safetensors.torch import save

    from tenfold.io import atomic_write_bytes, atomic_write_text

    info = getattr(model, "tenfold_tuning", None)
    require(info is not None, "model", type(model).__name__, "a model returned by tenfold.tuning.apply")
    require(not info.get("merged"), "model", "merged model", "an unmerged tuned model (save before merge)")
    path = Path(path)
    meta = {"method": info["method"], "options": info["options"], "num_classes": _num_classes(model)}
    if _is_peft(model):
        model.save_pretrained(str(path))
        atomic_write_text(path / PEFT_INFO, json.dumps(meta))
        return path
    atomic_write_bytes(path, save(trainable_state(model), metadata={"tenfold_tuning": json.dumps(meta)}))
    return path


def _read_meta(path: Path) -> dict:
    from safetensors import safe_open

    if path.is_dir():
        info = path / PEFT_INFO
        if not info.is_file():
            raise DataError(f"{path} is not a saved tuned model: expected {PEFT_INFO} inside it")
        return json.loads(info.read_text())
    if not path.is_file():
        raise DataError(f"{path} does not exist: expected a file written by tenfold.tuning.save_tuned")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DataError(f"{path} is not a safetensors file: {exc}") from None
    if "tenfold_tuning" not in meta:
        raise DataError(f"{path} has no tenfold_tuning metadata: expected a file written by save_tuned")
    return json.loads(meta["tenfold_tuning"])


def load_tuned(base: nn.Module, path: str | Path, **options) -> nn.Module:
    """``base`` (the untuned model) tuned as saved in ``path``, with the saved tensors loaded."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = _read_meta(path)
    classes = meta.get("num_classes")
    if classes is not None and hasattr(base, "reset_classifier") and _num_classes(base) != classes:
        base.reset_classifier(classes)
    if path.is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, str(path))
        model.tenfold_tuning = {"method": meta["method"], "options": meta["options"]}
        return model
    model = apply(base, meta["method"], **{**meta["options"], **options})
    tensors = load_file(str(path))
    expected = set(trainable_state(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ConfigError(f"{path} does not match method {meta['method']!r} on this model: "
                          f"missing {missing[:3]}, unexpected {extra[:3]}")
    model.load_state_dict(tensors, strict=False)
    return model
