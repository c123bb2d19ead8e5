"""The run's metric loggers: Lightning's logger interface, CSV always, TensorBoard when it is installed.

``ctx.log_metrics(**row)`` hands every row to each logger of :func:`run_loggers`:

- :class:`RunCSVLogger`, a :class:`lightning.fabric.loggers.CSVLogger` whose writer is
  :class:`~tenfold.engine.metrics.MetricsLog`: ``<run>/metrics.csv``, one row per call, string columns
  (``stage``, ``method``) kept, each row fsynced, a widened header rewritten atomically, and on ``--resume``
  no row written twice. Lightning's own writer (``_ExperimentWriter``) buffers rows until ``save()``,
  rewrites the file in place when a column appears (a kill then loses it), and after a resume starts with
  no known columns, so it appends repeated rows; that is why the writer is ours and the interface theirs.
- :class:`lightning.fabric.loggers.TensorBoardLogger` in ``<run>/tensorboard/`` when the ``tensorboard``
  package is importable (``pip install tensorboard``; the ``[test]`` extra has it). Its scalars are the
  row's numeric values, named ``<stage>/<key>`` when the row has a ``stage`` (``train-seed0/loss``), at
  step ``step`` (else ``epoch``, else the row's index).

Only the run's rank 0 writes: ``enabled`` decides, not Lightning's process-wide ``rank_zero_only.rank``
(which an earlier Fabric in the same process may have left at another rank).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tenfold.engine.metrics import MetricsLog


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package is installed (Lightning's TensorBoardLogger needs it)."""
    return importlib.util.find_spec("tensorboard") is not None


@contextmanager
def _as_rank_zero() -> Iterator[None]:
    """Lightning's ``rank_zero_only`` decorators read one process-wide rank (set from the environment when
    Lightning is imported, and by every Fabric built since); a logger made for the run's writing rank
    must write even when an earlier Fabric in this process (another run, a test) left another rank there."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    saved = getattr(rank_zero_only, "rank", 0)
    rank_zero_only.rank = 0
    try:
        yield
    finally:
        rank_zero_only.rank = saved


def _csv_logger_class():
    from lightning.fabric.loggers import CSVLogger

    class RunCSVLogger(CSVLogger):
        """Lightning's CSVLogger writing ``<run>/metrics.csv`` through :class:`MetricsLog` (see the module
        docstring for why the writer is ours). Which process writes is decided by ``enabled`` (the run's
        rank 0), not by Lightning's process-wide rank."""

        def __init__(self, run_dir: str | Path, *, resume: bool = False, enabled: bool = True) -> None:
            super().__init__(root_dir=str(run_dir), name="", version="")
            self._resume, self._enabled = resume, enabled

        @property
        def log_dir(self) -> str:
            return str(self._root_dir)

        @property
        def experiment(self) -> MetricsLog:
            if self._experiment is None:
                self._experiment = MetricsLog(Path(self._root_dir) / "metrics.csv", enabled=self._enabled,
                                              resume=self._resume)
            return self._experiment

        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:  # type: ignore[override]
            row = dict(metrics) if step is None or "step" in metrics else {**metrics, "step": step}
            self.experiment.log(**row)

        def save(self) -> None:  # every row is on disk when logged
            return None

    return RunCSVLogger


def csv_logger(run_dir: str | Path, *, resume: bool = False, enabled: bool = True):
    """The run's :class:`RunCSVLogger` (``<run>/metrics.csv``)."""
    return _csv_logger_class()(run_dir, resume=resume, enabled=enabled)


class TensorBoardRows:
    """Rows as TensorBoard scalars through Lightning's TensorBoardLogger (``<run>/tensorboard/``)."""

    def __init__(self, run_dir: str | Path) -> None:
        from lightning.fabric.loggers import TensorBoardLogger

        self.logger = TensorBoardLogger(root_dir=str(Path(run_dir) / "tensorboard"), name="", version="")
        self.rows = 0  # made only on the run's writing rank (see run_loggers), so it writes as rank 0

    def log_metrics(self, row: dict[str, Any], step: int | None = None) -> None:
        prefix = f"{row['stage']}/" if isinstance(row.get("stage"), str) else ""
        at = step if step is not None else row.get("step", row.get("epoch", self.rows))
        scalars = {f"{prefix}{k}": float(v) for k, v in row.items()
                   if k not in ("stage", "step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.rows += 1
        if scalars:
            with _as_rank_zero():
                self.logger.log_metrics(scalars, step=int(at))
                self.logger.experiment.flush()  # on disk now, as metrics.csv is: a kill loses no scalar


def run_loggers(run_dir: str | Path, *, resume: bool = False, enabled: bool = True,
                tensorboard: bool | None = None) -> list:
    """The loggers of a run folder: the CSV one first, then TensorBoard when ``tensorboard`` (default: when
    installed). ``enabled=False`` (ranks other than 0) gives a CSV logger that writes nothing and no
    TensorBoard logger."""
    loggers: list = [csv_logger(run_dir, resume=resume, enabled=enabled)]
    if enabled and (tensorboard_available() if tensorboard is None else tensorboard):
        loggers.append(TensorBoardRows(run_dir))
    return loggers
