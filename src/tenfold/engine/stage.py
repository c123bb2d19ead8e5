"""The resumable training stage: the one primitive every training loop uses to survive a kill.

A *stage* is a named loop over epochs (or any unit of work you call an epoch: a session, a chunk of
steps). After every epoch it writes one checkpoint holding everything the next epoch depends on:

- the model(s), optimizer(s) and scheduler(s) you pass, and any other object with
  ``state_dict()``/``load_state_dict()`` (a GradScaler, an EMA, a memory bank module), a
  ``torch.Generator``, a tensor (restored in place) or a plain dict/list (restored in place);
- every global RNG state (Python, NumPy, torch CPU and every CUDA device);
- the epoch count and the stage's metrics rows.

With ``--resume`` (``ctx.resume``) the stage restores that checkpoint when its loop starts and runs
only the epochs that are left, so a run killed with ``kill -9`` at any moment and resumed ends with
bit-identical weights and the same ``metrics.csv`` rows (each row once) on the same machine. A stage
that had finished is restored and skipped. The last checkpoint is ``checkpoints/<name>.pt``; with
``monitor=`` the best epoch's is also kept as ``checkpoints/<name>.best.pt``.

Usage (a custom loop; ``fit`` is built on the same primitive)::

    from tenfold.engine import Stage

    model, optimizer = ctx.setup(model, optimizer)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    stage = Stage(ctx, f"train-{rule}", model=model, optimizer=optimizer, scheduler=sched,
                  state={"k_steps": trainer.generator}, monitor="val_acc", mode="max")
    for epoch in stage.epochs(cfg.epochs):          # 1-based; only the epochs still to run
        order = stage.generator()                  # data order seeded by (run seed, stage, epoch)
        for x, y in batches(train, cfg.batch_size, shuffle=True, generator=order,
                            rank=ctx.rank, world_size=ctx.world_size):
            loss = trainer.step(x, y).loss
        sched.step()
        stage.log(loss=loss, val_acc=evaluate(model, val, ctx))  # the epoch's row in metrics.csv
    # here: the loop ended (or was skipped on resume); stage.history holds every row
    stage.restore_best()                           # optional: the best epoch's weights

Rules that make the resume exact:

- Pass every object the loop mutates and that outlives an epoch (``state=``). Things rebuilt from
  the config each epoch need nothing.
- Build models, optimizers and the stage *before* the loop; the restore happens when ``epochs()``
  starts, so code before the loop sees the same weights and RNG in both runs.
- Draw randomness from the global generators, from ``stage.generator()``, or from a generator you
  pass in ``state=``. Anything else must be deterministic.
- Give every stage of a run its own name (``f"base-seed{seed}"``, ``f"session-{k}"``).
- Leaving the loop with ``break`` skips that epoch's checkpoint; finish the epoch instead.

For tests, ``TENFOLD_STOP_AFTER_EPOCHS=N`` raises ``KeyboardInterrupt`` before the (N+1)-th epoch of
a stage, and ``TENFOLD_HANG_AFTER_EPOCHS=N`` makes the process write ``<run>/.hang`` and sleep after
its N-th completed epoch (counted over all stages; ``TENFOLD_HANG_POINT=logged`` hangs after the row
is logged but before the checkpoint is written), so that a test can ``kill -9`` it at a known point.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import torch

from tenfold.engine.checkpoint import load_state, save_state, unwrap
from tenfold.engine.seed import derive_seed, make_generator, rng_state, set_rng_state

__all__ = ["Stage"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_EPOCHS_DONE = {"n": 0}  # epochs completed in this process, over all stages (for TENFOLD_HANG_AFTER_EPOCHS)


def _get_state(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, torch.nn.Module):
        return unwrap(obj).state_dict()
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, (dict, list)):
        import copy

        return copy.deepcopy(obj)
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}: pass objects with state_dict()/load_state_dict(), "
                    "torch generators, tensors, dicts or lists")


def _set_state(obj: Any, value: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(value)
    elif isinstance(obj, torch.nn.Module):
        unwrap(obj).load_state_dict(value)
    elif hasattr(obj, "load_state_dict") and callable(obj.load_state_dict):
        obj.load_state_dict(value)
    elif isinstance(obj, torch.Tensor):
        with torch.no_grad():
            obj.copy_(value)
    elif isinstance(obj, dict):
        obj.clear()
        obj.update(value)
    elif isinstance(obj, list):
        obj[:] = value
    else:  # pragma: no cover - _get_state refused it already
        raise TypeError(f"cannot restore a {type(obj).__name__}")


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Stage:
    """A named, resumable loop over epochs; see the module docstring for the contract and an example.

    - ``ctx``: the run context (its ``resume`` flag, run folder, metrics log and processes).
    - ``name``: unique within the run; names the checkpoint files and fills the ``stage`` column.
    - ``model``/``optimizer``/``scheduler``: one object or a list of them.
    - ``state``: other named objects to checkpoint (see the module docstring for what they may be).
    - ``monitor``/``mode``: a metric of the rows and ``"max"``/``"min"``; keeps the best checkpoint.
    """

    def __init__(self, ctx: Any, name: str, *, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                 state: dict[str, Any] | None = None, monitor: str | None = None, mode: str = "max") -> None:
        if not _NAME.match(name):
            raise ValueError(f"stage name {name!r} must be a file-name-safe word (letters, digits, _ . = + -)")
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: expected 'max' or 'min'")
        used = ctx.__dict__.setdefault("_stage_names", set())
        if name in used:
            raise ValueError(f"stage name {name!r} is used twice in this run; give every stage its own name")
        used.add(name)
        self.ctx, self.name, self.monitor, self.mode = ctx, name, monitor, mode
        self.objects: dict[str, Any] = {}
        for kind, value in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
            for i, obj in enumerate(_as_list(value)):
                self.objects[f"{kind}{i}"] = obj
        for key, obj in (state or {}).items():
            self.objects[f"state.{key}"] = obj
        for key, obj in self.objects.items():
            _get_state(obj)  # refuse what cannot be checkpointed now, not at the first epoch end
        self.epoch = 0              # completed epochs
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.restored = False       # True when a checkpoint was loaded
        self._started = False
        self._row: dict[str, Any] = {}

    # files --------------------------------------------------------------------------------------
    @property
    def last_path(self):
        return self.ctx.path(f"checkpoints/{self.name}.pt")

    @property
    def best_path(self):
        return self.ctx.path(f"checkpoints/{self.name}.best.pt")

    def _snapshot(self) -> dict[str, Any]:
        return {"stage": self.name, "epoch": self.epoch, "history": self.history, "best": self.best,
                "objects": {k: _get_state(o) for k, o in self.objects.items()}, "rng": _all_rng_state()}

    def _load(self, saved: dict[str, Any]) -> None:
        missing = set(self.objects) - set(saved.get("objects", {}))
        if missing:
            raise ValueError(f"checkpoint {self.last_path} of stage {self.name!r} lacks {sorted(missing)}; "
                             "the stage was built with other objects than the run being resumed")
        for key, obj in self.objects.items():
            _set_state(obj, saved["objects"][key])
        _set_all_rng_state(saved["rng"])
        self.epoch, self.history, self.best = int(saved["epoch"]), list(saved["history"]), saved.get("best")

    def restore(self) -> bool:
        """Load the last checkpoint when resuming (once; ``epochs()`` calls it). True if one was loaded.

        Rows of this stage in ``metrics.csv`` after the checkpoint's epoch are dropped, so a resumed
        epoch's row is written once."""
        if self._started:
            return self.restored
        self._started = True
        if not self.ctx.resume:
            return False
        if self.last_path.is_file():
            self._load(load_state(self.last_path))
            self.restored = True
            self.ctx.restored_epochs += self.epoch
        self.ctx._metrics.truncate_after("epoch", self.epoch, stage=self.name)
        return self.restored

    def restore_best(self) -> dict[str, Any] | None:
        """Load the best epoch's objects (``monitor=`` needed); returns its row, or None if there is none.

        Only the objects are loaded (weights, optimizer...); the RNG and the history stay as they are."""
        if self.best is None:
            return None
        if self.best.get("epoch") != self.epoch:  # the last checkpoint already holds the best epoch's state
            saved = load_state(self.best_path)
            for key, obj in self.objects.items():
                _set_state(obj, saved["objects"][key])
        return self.best

    # the loop -------------------------------------------------------------------------------------
    def generator(self, *keys: int | str) -> torch.Generator:
        """A generator seeded by (run seed, stage name, current epoch, keys): a fresh data order per epoch
        that needs no checkpoint."""
        return make_generator(derive_seed(self.ctx.seed, self.name, self.epoch, *keys))

    def log(self, **values: Any) -> None:
        """Add metrics to the current epoch's row (written with the checkpoint at the epoch's end)."""
        self._row.update(values)

    def epochs(self, total: int, *, progress: bool = True) -> Iterator[int]:
        """Yield the 1-based numbers of the epochs still to run, up to ``total``; checkpoint after each."""
        from tenfold.errors import ConfigError

        if int(total) != total or total < 0:
            raise ConfigError(f"epochs={total!r} is invalid: expected a non-negative integer")
        self.restore()
        stop = os.environ.get("TENFOLD_STOP_AFTER_EPOCHS")
        label = f"{self.ctx.experiment or 'run'}: {self.name}"
        with (self.ctx.bar(label, total=total) if progress else _nullbar()) as bar:
            bar.advance(min(self.epoch, total))
            while self.epoch < total:
                if stop and self.epoch >= int(stop):
                    raise KeyboardInterrupt(f"simulated interruption after {stop} epochs of stage {self.name}")
                self._row = {}
                yield self.epoch + 1
                self._end_epoch()
                bar.advance()

    def _end_epoch(self) -> None:
        from tenfold.engine.metrics import to_float

        self.epoch += 1
        values = {k: (to_float(v) if isinstance(v, torch.Tensor) else v) for k, v in self._row.items()}
        if self.ctx.world_size > 1:  # each rank saw its shard: report the mean over processes
            values = {k: (float(self.ctx.fabric.all_reduce(torch.tensor(float(v)), reduce_op="mean"))
                          if isinstance(v, float) else v) for k, v in values.items()}
        row = {"stage": self.name, "epoch": self.epoch, **values}
        self.ctx.log_metrics(**row)  # refuses non-finite values before anything is saved
        self.history.append(row)
        improved = False
        if self.monitor is not None:
            value = row.get(self.monitor)
            if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise KeyError(f"stage {self.name!r}: monitor {self.monitor!r} is not a finite number in the row "
                               f"{sorted(row)}")
            best = None if self.best is None else self.best[self.monitor]
            improved = best is None or (value > best if self.mode == "max" else value < best)
            if improved:
                self.best = dict(row)
        _maybe_hang(self.ctx, "logged")
        snapshot = self._snapshot()
        if self.ctx.is_main:
            if improved:
                save_state(self.best_path, snapshot)
            save_state(self.last_path, snapshot)
        _EPOCHS_DONE["n"] += 1
        _maybe_hang(self.ctx, "saved")


def _all_rng_state() -> dict[str, Any]:
    state = rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_all_rng_state(state: dict[str, Any]) -> None:
    set_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _maybe_hang(ctx: Any, point: str) -> None:
    """Test hook: stop this process at a known point so that a test can kill -9 it there."""
    after = os.environ.get("TENFOLD_HANG_AFTER_EPOCHS")
    if not after or os.environ.get("TENFOLD_HANG_POINT", "saved") != point:
        return
    done = _EPOCHS_DONE["n"] + (1 if point == "logged" else 0)
    if done != int(after):
        return
    if ctx.is_main:
        (ctx.out_dir / ".hang").write_text(f"{ctx.rank} {point} {done}\n")
    while True:
        time.sleep(60)


class _nullbar:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: float = 1.0) -> None:
        return None
