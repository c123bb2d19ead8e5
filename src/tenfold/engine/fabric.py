"""Devices and processes through Lightning Fabric (cpu | cuda, precision, DDP with gloo or nccl)."""

from __future__ import annotations

import os

import torch

from tenfold.errors import ConfigError


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without it is a ConfigError."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r} is invalid: expected auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but CUDA is not available on this machine; use --device cpu")
    return device


def make_fabric(device: str = "auto", devices: int = 1, precision: str = "32-true"):
    """A Fabric for ``devices`` processes on ``device``. More than one process uses DDP.

    Processes are started with ``spawn`` so the same code runs from the CLI, a notebook or pytest;
    the backend is gloo on CPU and nccl on CUDA.
    """
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    if devices < 1:
        raise ConfigError(f"devices={devices} is invalid: expected a positive number of processes")
    accelerator = resolve_device(device)
    if accelerator == "cuda" and devices > torch.cuda.device_count():
        raise ConfigError(f"devices={devices} but only {torch.cuda.device_count()} CUDA devices are present")
    if devices == 1:
        strategy = "auto"
    else:
        backend = "nccl" if accelerator == "cuda" else "gloo"
        strategy = DDPStrategy(start_method="spawn", process_group_backend=backend)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return Fabric(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision)
