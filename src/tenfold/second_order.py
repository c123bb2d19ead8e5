"""Second-order behaviour of Tenfold's custom autograd functions: exact, or a clear refusal.

A ``torch.autograd.Function`` whose backward is not itself differentiable gives *silently wrong*
second derivatives under ``create_graph=True`` (its first-order gradient enters the second backward as
a constant). Every Function in Tenfold is therefore marked with :func:`second_order`:

- ``"exact"``: the backward is written in differentiable operations when a graph is requested, so the
  double backward is the derivative of the first-order (surrogate or closed-form) gradient
  (tested with ``torch.autograd.gradgradcheck`` in float64);
- ``"refuses"``: the backward calls :func:`refuse_second_order`, which raises a one-line
  :class:`SecondOrderError` naming the function and the alternative when a graph is requested.

Inside a backward, ``torch.is_grad_enabled()`` is True exactly when the caller asked for
``create_graph=True`` (autograd runs the backward in the grad mode of ``create_graph``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from tenfold.errors import TenfoldError

KINDS = ("exact", "refuses")
F = TypeVar("F", bound=type)


class SecondOrderError(TenfoldError, RuntimeError):
    """A second derivative (``create_graph=True``) was asked of a backward that has none."""


def second_order(kind: str, alternative: str = "") -> Callable[[F], F]:
    """Class decorator recording how a ``torch.autograd.Function`` behaves under ``create_graph=True``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: expected one of {', '.join(KINDS)}")

    def mark(cls: F) -> F:
        cls.second_order = kind
        cls.second_order_alternative = alternative
        return cls

    return mark


def creating_graph() -> bool:
    """True inside a backward that was called with ``create_graph=True``."""
    return torch.is_grad_enabled()


def refuse_second_order(fn: type) -> None:
    """Raise a one-line :class:`SecondOrderError` when the running backward was asked for a graph."""
    if torch.is_grad_enabled():
        name = f"{fn.__module__}.{fn.__qualname__}"
        hint = getattr(fn, "second_order_alternative", "")
        raise SecondOrderError(f"create_graph=True is not supported through {name}: its backward has no second "
                               f"derivative{'; ' + hint if hint else ''}")
