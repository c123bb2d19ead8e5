"""The one registry of experiments: a name -> config class, run function, paper and description.

Experiment modules in :mod:`tenfold.experiments` register themselves with :func:`register`::

    class Config(tenfold.config.Config):
        epochs: int = Field(20, ge=1)

    @register("digits-mlp", paper="foundation", config=Config, description="MLP on digits")
    def run(cfg: Config, ctx: RunContext) -> Result: ...

The defaults of ``Config`` are the ``quick`` preset; ``tenfold/configs/<name>/paper.yaml`` holds the
paper's recipe.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from tenfold.config import Config
from tenfold.errors import ConfigError


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str
    config: type[Config]
    run: Callable
    description: str = ""
    quick: bool = True  # part of `tenfold reproduce --quick`
    order: int = 100    # position in the report
    claims: tuple = ()  # PaperClaim / Check statements, evaluated by the runner (tenfold.reporting.claims)
    threads: int = 2    # CPU threads of a quick run, so its figures do not depend on the machine
    processes: bool = False  # runs on several processes (--devices N > 1) through the engine's fit / ctx.setup


REGISTRY: dict[str, Experiment] = {}
IMPORT_ERRORS: dict[str, str] = {}
_NOT_EXPERIMENTS = {"registry", "runner", "index"}
_discovered = False


def register(name: str, *, paper: str, config: type[Config], description: str = "", quick: bool = True,
             order: int = 100, claims: list | tuple = (), threads: int = 2,
             processes: bool = False) -> Callable[[Callable], Callable]:
    """Register an experiment. ``claims`` are its :class:`~tenfold.reporting.PaperClaim` and
    :class:`~tenfold.reporting.Check` statements, checked here against ``config`` (a malformed claim is a
    :class:`~tenfold.reporting.claims.ClaimError` at import); ``threads`` pins a quick run's CPU threads;
    ``processes=True`` declares that it runs on several processes (its training goes through the engine's
    ``fit``/``ctx.setup``, every ``batch_size`` field sharded over them); ``--devices N > 1`` on any other
    experiment is refused before any work."""
    from tenfold.reporting.claims import validate_claims

    statements = validate_claims(name, config, claims)
    if threads < 1:
        raise ValueError(f"experiment {name!r}: threads={threads} must be at least 1")

    def wrap(fn: Callable) -> Callable:
        if name in REGISTRY and REGISTRY[name].run.__module__ != fn.__module__:
            raise RuntimeError(f"experiment name {name!r} is registered twice")
        REGISTRY[name] = Experiment(name, paper, config, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                                    quick, order, statements, threads, processes)
        return fn
    return wrap


def discover() -> dict[str, Experiment]:
    """Import every experiment module once. A module that fails to import is recorded, not fatal,
    so one broken experiment cannot take the CLI down; ``tenfold list`` shows it."""
    global _discovered
    if not _discovered:
        import tenfold.experiments as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or info.name in _NOT_EXPERIMENTS:
                continue
            try:
                importlib.import_module(f"tenfold.experiments.{info.name}")
            except Exception as exc:  # recorded and reported by `tenfold list` and the tests
                IMPORT_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
        _discovered = True
    return REGISTRY


def get(name: str) -> Experiment:
    """The experiment ``name``; unknown names raise ConfigError listing close matches."""
    if not _discovered and name not in REGISTRY:
        # the source index tells an unknown name, and which module registers a known one: only that module
        # is imported (importing every experiment took seconds: `tenfold config NAME`)
        from tenfold.experiments.index import experiment_index

        entries = {e["name"]: e for e in experiment_index()}
        known = list(entries)
        if name in entries:
            importlib.import_module(f"tenfold.experiments.{entries[name]['module']}")
            if name not in REGISTRY:  # registered elsewhere than the index says
                discover()
    elif _discovered:
        known = list(REGISTRY)
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    raise ConfigError(f"unknown experiment {name!r}: {hint} (see `tenfold list`)")


def quick_names() -> list[str]:
    discover()
    return [e.name for e in sorted(REGISTRY.values(), key=lambda e: (e.order, e.name)) if e.quick]
