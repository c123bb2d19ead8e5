"""Atomic file writes and resumable checkpoints.

Every file is written to a temporary sibling, flushed, fsynced and moved into place with
``os.replace``, so a crash or kill at any moment leaves either the old file or the new one, never a
half-written one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from tenfold.errors import DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes 0600 files


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Save a checkpoint dict (tensors, state dicts, RNG states) atomically with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_state`; a corrupt file raises DataError naming it."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DataError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside Fabric's and DDP's wrappers (both expose ``.module``)."""
    inner = getattr(model, "module", model)
    return getattr(inner, "module", inner)


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """The model's state dict as safetensors, written atomically (DDP/Fabric wrappers unwrapped)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    return atomic_write_bytes(path, save(tensors))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors saved by :func:`save_weights`; a missing or corrupt file raises DataError naming it."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {path} does not exist")
    try:
        return load(path.read_bytes())
    except Exception as exc:
        raise DataError(f"weights file {path} is not a safetensors file ({exc})") from None
