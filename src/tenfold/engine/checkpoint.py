"""Checkpoint files: ``save_state``/``load_state`` (torch, atomic) and safetensors weights.

The atomic writers live in :mod:`tenfold.io`; they are re-exported here so older imports
(``from tenfold.engine.checkpoint import atomic_write_json``) keep working.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from tenfold.errors import DataError
from tenfold.io import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)


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
