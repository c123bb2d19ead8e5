"""Merging and saving tuned models.

- ``merge(model)``: LoRA merged into the weights (peft's ``merge_and_unload`` or our split LoRA folded)
  and SSF folded into the preceding op, giving plain timm modules with the same outputs. Methods that
  cannot be re-parameterised (prompts, adapters) are left as they are.
- ``save_tuned(model, path)``: only the trainable tensors plus every applied method and its options.
  A ``path`` ending in ``.safetensors`` is written as that one file (safetensors metadata ``tenfold_tuning``);
  any other path is a folder: peft's ``save_pretrained`` layout plus ``tenfold_tuning.json`` for a peft
  LoRA alone, else ``tuned.safetensors`` inside it.
- ``load_tuned(base, path, is_trainable=False, **options)``: re-applies the methods to ``base`` in turn and
  loads the tensors; ``is_trainable=True`` gives a model ready to train (train mode, the method's tensors
  trainable), ``False`` one ready for inference (eval mode, no parameter requires grad), as peft's
  ``PeftModel.from_pretrained``. Options that are not plain data (a KD teacher) must be passed again.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from tenfold.errors import ConfigError, DataError, require
from tenfold.tuning.common import classifiers, tuning_mixins
from tenfold.tuning.parameters import QVLoRAMixin, SSFMixin, fold_qv_lora, fold_ssf
from tenfold.tuning.registry import _stack, apply, get_method

PEFT_INFO = "tenfold_tuning.json"
FOLDER_FILE = "tuned.safetensors"  # what a folder path holds when the model is not a peft LoRA alone


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
        mixins, _ = tuning_mixins(type(module))
        for mixin in reversed(mixins):  # innermost first: each fold sees the op the later mixins wrap
            if mixin is QVLoRAMixin:
                fold_qv_lora(module)
            elif mixin is SSFMixin:
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


def _is_file_path(path: Path) -> bool:
    return path.suffix == ".safetensors"


def save_tuned(model: nn.Module, path: str | Path) -> Path:
    """Write the trainable tensors and the tuning config of ``model`` to ``path`` (a ``.safetensors`` file,
    or else a folder); returns the path written."""
    from safetensors.torch import save

    from tenfold.io import atomic_write_bytes, atomic_write_text

    info = getattr(model, "tenfold_tuning", None)
    require(info is not None, "model", type(model).__name__, "a model returned by tenfold.tuning.apply")
    require(not info.get("merged"), "model", "merged model", "an unmerged tuned model (save before merge)")
    path = Path(path)
    stack = _stack(info)
    meta = {"method": info["method"], "options": info["options"], "stack": stack, "num_classes": _num_classes(model)}
    if _is_file_path(path):
        if path.is_dir():
            raise DataError(f"path={str(path)!r} is a folder: a path ending in .safetensors is written as one file")
        target = path
    else:
        if path.is_file():
            raise DataError(f"path={str(path)!r} is a file: a path not ending in .safetensors is written as a folder")
        path.mkdir(parents=True, exist_ok=True)
        if _is_peft(model) and len(stack) == 1:
            model.save_pretrained(str(path))
            atomic_write_text(path / PEFT_INFO, json.dumps(meta))
            return path
        target = path / FOLDER_FILE
    atomic_write_bytes(target, save(trainable_state(model), metadata={"tenfold_tuning": json.dumps(meta)}))
    return path


def _read_meta(path: Path) -> tuple[dict, Path | None]:
    """(metadata, the safetensors file to load; None for peft's folder layout)."""
    from safetensors import safe_open

    if path.is_dir():
        if (path / PEFT_INFO).is_file():
            return json.loads((path / PEFT_INFO).read_text()), None
        if not (path / FOLDER_FILE).is_file():
            raise DataError(f"{path} is not a saved tuned model: expected {FOLDER_FILE} or {PEFT_INFO} inside it")
        path = path / FOLDER_FILE
    elif not path.is_file():
        raise DataError(f"{path} does not exist: expected a file or folder written by tenfold.tuning.save_tuned")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DataError(f"{path} is not a safetensors file: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if "tenfold_tuning" not in meta:
        raise DataError(f"{path} has no tenfold_tuning metadata: expected a file written by save_tuned")
    return json.loads(meta["tenfold_tuning"]), path


def _ready(model: nn.Module, is_trainable: bool) -> nn.Module:
    """Train mode with the method's tensors trainable, or eval mode with no parameter requiring grad."""
    if is_trainable:
        return model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_tuned(base: nn.Module, path: str | Path, *, is_trainable: bool = False, **options) -> nn.Module:
    """``base`` (the untuned model) tuned as saved in ``path``, with the saved tensors loaded.

    ``is_trainable``: True gives a model ready to train (train mode; exactly the tensors that were trainable
    when saved are trainable), False (the default, as peft's) one ready for inference (eval mode, no
    parameter requires grad). ``options``: values that are not plain data (``teacher=`` of kd), given to
    every saved method that has such an option."""
    from safetensors.torch import load_file

    require(isinstance(is_trainable, bool), "is_trainable", is_trainable, "True or False")
    path = Path(path)
    meta, file = _read_meta(path)
    classes = meta.get("num_classes")
    if classes is not None and hasattr(base, "reset_classifier") and _num_classes(base) != classes:
        base.reset_classifier(classes)
    stack = _stack(meta)
    if file is None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, str(path), is_trainable=is_trainable)
        model.tenfold_tuning = {"method": meta["method"], "options": meta["options"], "stack": stack}
        return _ready(model, is_trainable)
    used: set[str] = set()
    model, done = base, []
    for entry in stack:
        spec = get_method(entry["method"])
        done.append(entry)
        if spec.initializer:
            # it only sets initial values and leaves every parameter trainable, so they are all in the file:
            # not re-run (it would need its teacher), only its trainability is restored
            for p in model.parameters():
                p.requires_grad_(True)
            model.tenfold_tuning = {"method": entry["method"], "options": entry["options"], "stack": list(done)}
            continue
        extra = {k: v for k, v in options.items() if k in spec.defaults}
        used |= set(extra)
        model = apply(model, entry["method"], {**entry["options"], **extra})
    unused = sorted(set(options) - used)
    if unused:
        raise ConfigError(f"option {unused[0]!r} of load_tuned is unknown: the saved methods "
                          f"({' + '.join(e['method'] for e in stack)}) have no such option")
    model.tenfold_tuning = {"method": meta["method"], "options": meta["options"], "stack": stack}
    tensors = load_file(str(file))
    expected = set(trainable_state(model))
    if set(tensors) != expected:
        missing, extra_names = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ConfigError(f"{path} does not match method {meta['method']!r} on this model: "
                          f"missing {missing[:3]}, unexpected {extra_names[:3]}")
    model.load_state_dict(tensors, strict=False)
    return _ready(model, is_trainable)
