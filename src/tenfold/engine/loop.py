"""``fit`` and ``evaluate`` over a step protocol in which the method decides when backward runs.

A *step* is any callable ``step(batch, state) -> dict[str, float]``. It does its own forward,
``ctx.backward(loss)`` (one or many times: per time step, implicit gradients, double backward) and
optimizer update. The loop owns everything around it: seeded shuffling, sharding each global batch
over DDP processes, device transfer, progress, ``metrics.csv``, NaN detection and checkpoints at
epoch ends (a :class:`~tenfold.engine.stage.Stage`) that make ``--resume`` bit-identical to an
uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from tenfold.engine.context import RunContext
from tenfold.engine.metrics import check_finite, to_float
from tenfold.engine.seed import derive_seed, make_generator
from tenfold.errors import ConfigError


@dataclass
class TrainState:
    """Where training stands; handed to every step."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class Step(Protocol):
    def __call__(self, batch: Any, state: TrainState) -> dict[str, float]: ...


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def collate(items: Sequence[Any]) -> Any:
    return torch.utils.data.default_collate(list(items))


def batches(dataset: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
            drop_last: bool = False, rank: int = 0, world_size: int = 1,
            collate_fn: Callable[[Sequence[Any]], Any] = collate):
    """Yield batches; each global batch of ``batch_size`` is split into ``world_size`` equal shards.

    Sharding the global batch (rather than the dataset) keeps a DDP run mathematically equal to one
    process on the same global batch.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if batch_size < world_size or batch_size % world_size:
        raise ConfigError(f"batch_size={batch_size} is invalid: expected a multiple of the {world_size} processes")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        shard = idx[rank::world_size] if world_size > 1 else idx
        if len(shard) == 0:
            continue
        items = [dataset[int(i)] for i in shard]
        yield collate_fn(items)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class _Callbacks:
    """``extra_state``/``load_extra_state`` callables seen as one checkpointable object."""

    def __init__(self, get: Callable[[], dict[str, Any]] | None, put: Callable[[dict[str, Any]], None] | None):
        self.get, self.put = get, put

    def state_dict(self) -> dict[str, Any]:
        return self.get() if self.get is not None else {}

    def load_state_dict(self, value: dict[str, Any]) -> None:
        if self.put is not None:
            self.put(value)


class _StepCounter:
    def __init__(self, state: TrainState) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.state.step}

    def load_state_dict(self, value: dict[str, Any]) -> None:
        self.state.step = int(value["step"])


def fit(*, model: torch.nn.Module, step: Step, dataset: Dataset, epochs: int, batch_size: int, ctx: RunContext,
        optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, stage: str = "train",
        drop_last: bool = False, collate_fn: Callable[[Sequence[Any]], Any] = collate,
        on_epoch_end: Callable[[TrainState], dict[str, float] | None] | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        load_extra_state: Callable[[dict[str, Any]], None] | None = None,
        stop_after_epochs: int | None = None, monitor: str | None = None, mode: str = "max",
        order_key: str | None = None, scheduler_interval: str = "epoch") -> TrainState:
    """Train for ``epochs`` epochs, calling ``step`` on each (sharded, on-device) batch.

    Metrics returned by ``step`` are averaged per epoch and logged with ``on_epoch_end``'s metrics.
    The loop is a :class:`~tenfold.engine.stage.Stage` named ``stage``: a checkpoint after every epoch
    (``monitor=`` also keeps the best one), and with ``ctx.resume`` training continues after the last
    completed epoch, bit-identically. ``stop_after_epochs`` (or the environment variable
    ``TENFOLD_STOP_AFTER_EPOCHS``) simulates an interruption after that many epochs, for tests.
    The data order is seeded by ``(run seed, order_key or stage, epoch)``: stages that share an
    ``order_key`` see the same batches (paired comparisons of methods).
    ``scheduler_interval="step"`` steps ``scheduler`` after every step instead of every epoch (warm-up
    schedules counted in iterations); either way it is checkpointed with the stage.
    """
    from tenfold.engine.stage import Stage

    if epochs < 0:
        raise ConfigError(f"epochs={epochs} is invalid: expected a non-negative number")
    if scheduler_interval not in ("epoch", "step"):
        raise ConfigError(f"scheduler_interval={scheduler_interval!r} is invalid: expected 'epoch' or 'step'")
    state = TrainState()
    resumable = Stage(ctx, stage, model=model, optimizer=optimizer, scheduler=scheduler, monitor=monitor, mode=mode,
                      state={"extra": _Callbacks(extra_state, load_extra_state), "counter": _StepCounter(state)})
    n = len(dataset)  # type: ignore[arg-type]
    per_epoch = num_batches(n, batch_size, drop_last)
    if batch_size < ctx.world_size or batch_size % ctx.world_size:
        raise ConfigError(f"batch_size={batch_size} is invalid: expected a multiple of the {ctx.world_size} processes")
    with ctx.bar(f"{ctx.experiment or 'run'}: {stage}", total=epochs * per_epoch) as bar:
        resumable.restore()
        state.epoch, state.history = resumable.epoch, [_metrics_of(r) for r in resumable.history]
        bar.advance(min(state.epoch, epochs) * per_epoch)
        for _ in resumable.epochs(epochs, progress=False):
            if stop_after_epochs is not None and state.epoch >= stop_after_epochs:
                raise KeyboardInterrupt(f"simulated interruption after {stop_after_epochs} epochs")
            model.train()
            gen = make_generator(derive_seed(ctx.seed, order_key or stage, state.epoch))
            sums: dict[str, float] = {}
            count = 0
            for batch in batches(dataset, batch_size, shuffle=True, generator=gen, drop_last=drop_last,
                                 rank=ctx.rank, world_size=ctx.world_size, collate_fn=collate_fn):
                out = step(to_device(batch, ctx.device), state)
                values = {k: to_float(v) for k, v in (out or {}).items()}
                check_finite(values, where=f"{stage} epoch {state.epoch + 1}, step {state.step + 1}")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                state.step += 1
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                bar.advance()
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
            state.epoch += 1
            row: dict[str, float] = {k: v / max(count, 1) for k, v in sums.items()}
            if ctx.world_size > 1:  # every rank saw its shard: report the mean over processes
                row = {k: float(ctx.fabric.all_reduce(torch.tensor(v), reduce_op="mean")) for k, v in row.items()}
            if on_epoch_end is not None:
                row.update({k: to_float(v) for k, v in (on_epoch_end(state) or {}).items()})
            state.history.append(row)
            resumable.log(step=state.step, **row)
    return state


def _metrics_of(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k not in ("stage", "epoch", "step")}


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, ctx: RunContext, *, batch_size: int = 512,
             metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
             forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
             collate_fn: Callable[[Sequence[Any]], Any] = collate) -> float:
    """Average ``metric(outputs, targets)`` over ``dataset`` (batches of (input, target)).

    Every process evaluates the whole set, so all ranks agree without a reduction. The default
    metric is top-1 accuracy.
    """
    from tenfold.engine.metrics import accuracy

    metric = metric or accuracy
    was_training = model.training
    model.eval()
    total, weight = 0.0, 0
    for x, y in batches(dataset, batch_size, shuffle=False, collate_fn=collate_fn):
        x, y = to_device(x, ctx.device), to_device(y, ctx.device)
        out = forward(model, x) if forward is not None else model(x)
        total += metric(out, y) * len(y)
        weight += len(y)
    model.train(was_training)
    return total / max(weight, 1)
