"""Hyper-parameter grids that grow at an edge: the evidence rules ask that an optimum on the edge of a grid
extend the grid, so that a baseline or a method is never judged at a rate that its own search could not
bracket."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["next_rate_outward", "on_edge"]


def on_edge(rates: Sequence[float], best: float) -> bool:
    """``best`` is the smallest or the largest of two or more distinct ``rates`` (a grid of one rate is no
    search, so nothing is on its edge)."""
    distinct = sorted(set(float(r) for r in rates))
    return len(distinct) > 1 and float(best) in (distinct[0], distinct[-1])


def next_rate_outward(rates: Sequence[float], best: float) -> float | None:
    """The next rate beyond ``best`` when it lies on an edge of ``rates``, spaced by the grid's own end ratio
    (``rates[1] / rates[0]`` below, ``rates[-1] / rates[-2]`` above); None when ``best`` is inside."""
    distinct = sorted(set(float(r) for r in rates))
    if not on_edge(distinct, best):
        return None
    if float(best) == distinct[0]:
        return distinct[0] * distinct[0] / distinct[1]
    return distinct[-1] * distinct[-1] / distinct[-2]
