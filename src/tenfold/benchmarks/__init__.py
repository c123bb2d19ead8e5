"""Benchmarks, run by ``tenfold bench NAME``: each paper's ``tenfold/papers/<paper>/bench*.py``.

This package is the machinery (discovery here, timers and memory probes in :mod:`tenfold.benchmarks.common`);
the benchmarks live in their paper's folder. A benchmark module defines ``NAME`` (the CLI name, e.g. ``"eval-parts"``), a one-line ``DESCRIPTION``
and ``run(quick: bool = False) -> dict``. The returned dict is written as JSON; it holds raw
measurements and the ratios against a baseline measured in the same run, plus ``"targets"``: a list
of ``{"name", "value", "threshold", "holds"}`` (the same shape as a claim) for the issue's targets.
Timings are medians of interleaved repeats with fixed threads; never asserted in tests.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from tenfold.errors import ConfigError

_CACHE: dict[str, ModuleType] = {}
IMPORT_ERRORS: dict[str, str] = {}


def discover() -> dict[str, ModuleType]:
    """Every benchmark module, by its CLI name; one that fails to import is recorded in IMPORT_ERRORS."""
    if not _CACHE:
        papers = Path(__file__).resolve().parent.parent / "papers"
        for path in sorted(papers.glob("*/bench*.py")):
            module = f"tenfold.papers.{path.parent.name}.{path.stem}"
            try:
                mod = importlib.import_module(module)
            except Exception as exc:
                IMPORT_ERRORS[f"{path.parent.name}.{path.stem}"] = f"{type(exc).__name__}: {exc}"
                continue
            _CACHE[getattr(mod, "NAME", path.parent.name.replace("_", "-"))] = mod
    return _CACHE


def get(name: str) -> ModuleType:
    benches = discover()
    if name not in benches:
        raise ConfigError(f"unknown benchmark {name!r}: choose one of {', '.join(sorted(benches)) or 'none'} or 'all'")
    return benches[name]
