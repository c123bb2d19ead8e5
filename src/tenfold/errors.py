"""Errors that Tenfold raises on purpose.

The CLI prints any :class:`TenfoldError` as one line (no traceback unless ``--debug``) and exits with
code 2. Every message names the offending field, file or value and says what was expected.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


class TenfoldError(Exception):
    """Base class of every error raised deliberately by Tenfold."""


class ConfigError(TenfoldError, ValueError):
    """A configuration value, preset, override or argument is invalid."""


class DataError(TenfoldError, ValueError):
    """A dataset is missing, malformed or inconsistent."""


class ConvergenceError(TenfoldError, RuntimeError):
    """A solver or training run diverged or failed to converge (NaN, inf, residual too large)."""


def require(condition: bool, field: str, value: object, expected: str, error: type[TenfoldError] = ConfigError) -> None:
    """Raise ``error`` naming ``field`` and ``value`` unless ``condition`` holds.

    A one-line guard for argument checks in method code, e.g.
    ``require(tau > 0, "tau", tau, "a positive number")``.
    """
    if not condition:
        raise error(f"{field}={value!r} is invalid: expected {expected}")


def other_process_of_a_launcher() -> bool:
    """True in a process that a launcher (torchrun) started with ``LOCAL_RANK`` other than 0."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID")) and os.environ.get("LOCAL_RANK", "0") != "0"


@contextmanager
def alike_on_every_process():
    """Checks that every process a launcher (torchrun) started makes alike, before any work (the command line,
    the config, the run folder): a TenfoldError raised inside is printed by the first process of each node
    (``LOCAL_RANK`` 0) only, which exits 2; the others exit 0 without printing it (``exc.quiet``): had they
    exited non-zero first, torchrun could have stopped the first process before it printed the line."""
    try:
        yield
    except TenfoldError as exc:
        if other_process_of_a_launcher():
            exc.quiet = True
        raise
