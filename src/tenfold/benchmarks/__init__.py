"""Benchmarks: one module per measured claim, run by ``tenfold bench NAME``.

A benchmark module defines ``NAME`` (the CLI name, e.g. ``"eval-parts"``), a one-line ``DESCRIPTION``
and ``run(quick: bool = False) -> dict``. The returned dict is written as JSON; it holds raw
measurements and the ratios against a baseline measured in the same run, plus ``"targets"``: a list
of ``{"name", "value", "threshold", "holds"}`` (the same shape as a claim) for the issue's targets.
Timings are medians of interleaved repeats with fixed threads; never asserted in tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from tenfold.errors import ConfigError

_CACHE: dict[str, ModuleType] = {}
IMPORT_ERRORS: dict[str, str] = {}


def discover() -> dict[str, ModuleType]:
    if not _CACHE:
        import tenfold.benchmarks as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or info.name == "common":
                continue
            try:
                mod = importlib.import_module(f"tenfold.benchmarks.{info.name}")
            except Exception as exc:
                IMPORT_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
                continue
            _CACHE[getattr(mod, "NAME", info.name.replace("_", "-"))] = mod
    return _CACHE


def get(name: str) -> ModuleType:
    benches = discover()
    if name not in benches:
        raise ConfigError(f"unknown benchmark {name!r}: choose one of {', '.join(sorted(benches)) or 'none'} or 'all'")
    return benches[name]
