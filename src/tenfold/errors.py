"""Errors that Tenfold raises on purpose.

The CLI prints any :class:`TenfoldError` as one line (no traceback unless ``--debug``) and exits with
code 2. Every message names the offending field, file or value and says what was expected.
"""

from __future__ import annotations


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
