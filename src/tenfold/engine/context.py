"""The run context handed to every experiment: where to write, which device, seeds, logging.

Experiments receive a :class:`RunContext` and never touch devices, processes or file layout
themselves. Under DDP every rank gets a context; only the main rank (``ctx.is_main``) writes files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tenfold.engine import progress as _progress
from tenfold.engine.checkpoint import load_state, save_state
from tenfold.io import atomic_write_json
from tenfold.engine.metrics import MetricsLog, check_finite, to_float
from tenfold.engine.seed import derive_seed, make_generator

log = logging.getLogger("tenfold")


@dataclass
class RunContext:
    """Everything an experiment may use from the outside world.

    - ``out_dir``: the run folder; ``path(name)`` gives a file inside it.
    - ``device``: the torch device chosen by the engine; ``fabric``: the Lightning Fabric (or None).
    - ``seed``; ``generator(*keys)``: a torch generator seeded from the run seed and keys.
    - ``log_metrics(step=..., **values)``: a row for every logger in ``loggers`` (``metrics.csv``, and
      TensorBoard when installed); non-finite values stop the run.
    - ``track(iterable, description)``: a progress bar; ``bar(description, total)`` for manual ones.
    - ``stage(name, model=..., optimizer=..., ...)``: a resumable training stage (the way to checkpoint a
      training loop; see :class:`tenfold.engine.stage.Stage`).
    - ``save_checkpoint(name, state)`` / ``load_checkpoint(name)``: atomic; loading only on ``--resume``.
    - ``save_figure(fig, name)``: a PNG in the run folder; returns its relative path.
    - ``warn(message)``: logged, and kept in ``results.json`` under ``warnings``.
    """

    out_dir: Path
    seed: int = 0
    preset: str = "quick"
    experiment: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fabric: Any = None
    resume: bool = False
    warnings: list[str] = field(default_factory=list)
    restored_epochs: int = 0  # epochs that resumed stages took from their checkpoints instead of rerunning

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._loggers: list | None = None

    @property
    def loggers(self) -> list:
        """The run's metric loggers (:func:`tenfold.engine.loggers.run_loggers`: Lightning's CSVLogger interface
        on ``metrics.csv``, TensorBoard in ``tensorboard/`` when installed), made on first use."""
        if self._loggers is None:
            from tenfold.engine.loggers import run_loggers

            self._loggers = run_loggers(self.out_dir, resume=self.resume, enabled=self.is_main)
        return self._loggers

    @property
    def _metrics(self) -> MetricsLog:
        """``metrics.csv``'s writer (stages drop their rows after a checkpoint through it on resume)."""
        return self.loggers[0].experiment

    # processes -------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return int(self.fabric.global_rank) if self.fabric is not None else 0

    @property
    def world_size(self) -> int:
        return int(self.fabric.world_size) if self.fabric is not None else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> str:
        """Fabric's precision (``32-true``, ``bf16-mixed``, ``16-mixed``; ``--precision``). Models set up with
        :meth:`setup` run their forward under its autocast; code that wraps its own forward reads this."""
        return str(self.fabric.strategy.precision.precision) if self.fabric is not None else "32-true"

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward()`` routed through Fabric (gradient sync under DDP, precision scaling)."""
        if self.fabric is not None:
            self.fabric.backward(loss, **kwargs)
        else:
            loss.backward(**kwargs)

    def barrier(self) -> None:
        """Wait for every process (a no-op in one process): e.g. after rank 0 has written files the others read."""
        if self.fabric is not None and self.world_size > 1:
            self.fabric.barrier()

    def mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over processes (``value`` itself in one process)."""
        if self.fabric is None or self.world_size == 1:
            return value
        return self.fabric.all_reduce(value.detach().clone(), reduce_op="mean")

    def average_gradients(self, model: torch.nn.Module) -> None:
        """Replace every parameter gradient by its mean over processes, in one collective (no-op in one process).

        ``g <- (1/W) sum_r g_r``, as DDP's reducer does, but for models whose configuration leaves some
        parameters unused (a parameter without a gradient must be unused on every rank: the graph is the
        same on all ranks). Call it after ``backward`` and before unscaling, clipping and stepping.
        """
        if self.fabric is None or self.world_size == 1:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = self.fabric.all_reduce(torch.cat([g.reshape(-1) for g in grads]), reduce_op="mean")
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def setup(self, model: torch.nn.Module, *optimizers: torch.optim.Optimizer):
        """Move ``model`` to the device and wrap it for DDP when there are several processes."""
        if self.fabric is None:
            model = model.to(self.device)
            return (model, *optimizers) if optimizers else model
        return self.fabric.setup(model, *optimizers)

    # files --------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.out_dir / name

    def generator(self, *keys: int | str) -> torch.Generator:
        return make_generator(derive_seed(self.seed, *keys))

    def log_metrics(self, **values: Any) -> None:
        row = {k: (to_float(v) if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
        check_finite({k: float(v) for k, v in row.items() if isinstance(v, (int, float))},
                     where=", ".join(f"{k}={row[k]}" for k in ("stage", "epoch", "step") if k in row) or "this step")
        for logger in self.loggers:
            logger.log_metrics(row)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        if self.is_main:
            save_state(self.path(f"checkpoints/{name}.pt"), state)

    def stage(self, name: str, **kwargs: Any):
        """A resumable training stage named ``name``: ``Stage(self, name, **kwargs)``; see
        :class:`tenfold.engine.stage.Stage` (model, optimizer, scheduler, state=, monitor=)."""
        from tenfold.engine.stage import Stage

        return Stage(self, name, **kwargs)

    def load_checkpoint(self, name: str) -> dict[str, Any] | None:
        """The checkpoint ``name`` when resuming and it exists, else None."""
        path = self.path(f"checkpoints/{name}.pt")
        if self.resume and path.is_file():
            return load_state(path)
        return None

    def save_figure(self, fig: Any, name: str) -> str:
        from tenfold.reporting.figures import save_figure

        rel = name if name.endswith(".png") else f"{name}.png"
        if self.is_main:
            save_figure(fig, self.path(rel))
        else:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return rel

    def write_json(self, name: str, obj: Any) -> str:
        if self.is_main:
            atomic_write_json(self.path(name), obj)
        return name

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    # progress ---------------------------------------------------------------------------------
    def track(self, iterable, description: str, total: int | None = None):
        return _progress.track(iterable, description, total)

    def bar(self, description: str, total: float | None):
        return _progress.bar(description, total)
