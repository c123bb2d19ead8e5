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


def launcher_world() -> tuple[int, int] | None:
    """``(world size, processes per node)`` when a launcher (torchrun / torch.distributed.run) started this
    process, else None. Detected as Lightning's ``TorchElasticEnvironment.detect()`` does (``TORCHELASTIC_RUN_ID``),
    with the sizes read from ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``."""
    if not os.environ.get("TORCHELASTIC_RUN_ID"):
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except (KeyError, ValueError):
        raise ConfigError("started by torchrun but WORLD_SIZE / LOCAL_WORLD_SIZE are missing or not numbers") from None
    if world < 1 or local < 1 or world % local:
        raise ConfigError(f"the launcher's world size {world} is not a multiple of its {local} processes per node")
    return world, local


def launcher_rank() -> tuple[int, int]:
    """``(global rank, local rank)`` of this process as the launcher set them (0, 0 without a launcher)."""
    if launcher_world() is None:
        return 0, 0
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))


def check_launcher(devices: int | None) -> int:
    """The number of processes: ``devices``, or the launcher's world size when ``devices`` is None.

    Under torchrun ``devices`` must equal the launcher's world size (processes per node x nodes); a mismatch
    is a ConfigError naming both, raised before any work."""
    launched = launcher_world()
    if launched is None:
        return 1 if devices is None else devices
    world, local = launched
    if devices is None:
        return world
    if devices != world:
        raise ConfigError(f"--devices {devices} does not match the launcher's world size {world} ({local} per node "
                          f"x {world // local} node(s)); use --devices {world} or leave --devices out")
    return devices


def make_fabric(device: str = "auto", devices: int = 1, precision: str = "32-true"):
    """A Fabric for ``devices`` processes on ``device``. More than one process uses DDP.

    Without a launcher, processes are started with ``spawn`` so the same code runs from the CLI, a notebook
    or pytest. Under torchrun (see :func:`launcher_world`) the processes exist already: the DDP strategy does
    not spawn, ``fabric.launch()`` joins the launcher's process group, and ``devices`` (the world size) is split
    into processes per node x nodes. The backend is gloo on CPU and nccl on CUDA.
    """
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    if devices < 1:
        raise ConfigError(f"devices={devices} is invalid: expected a positive number of processes")
    accelerator = resolve_device(device)
    launched = launcher_world() if devices > 1 else None
    per_node, nodes = (devices, 1) if launched is None else (launched[1], check_launcher(devices) // launched[1])
    if accelerator == "cuda" and per_node > torch.cuda.device_count():
        raise ConfigError(f"devices={per_node} but only {torch.cuda.device_count()} CUDA devices are present")
    if devices == 1:
        strategy = "auto"
    else:
        backend = "nccl" if accelerator == "cuda" else "gloo"
        # under torchrun the "popen" launcher sees that the processes are created externally and starts none
        strategy = DDPStrategy(start_method="spawn" if launched is None else "popen", process_group_backend=backend)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return Fabric(accelerator=accelerator, devices=per_node, num_nodes=nodes, strategy=strategy, precision=precision)
