"""The one registry of experiments: a name -> config class, run function, paper and description.

Experiment modules in :mod:`tenfold.experiments` register themselves with :func:`register`::

    class Config(tenfold.config.Config):
        epochs: int = Field(20, ge=1)

    @register("digits-mlp", paper="digits-mlp", config=Config, description="MLP on digits")
    def run(cfg: Config, ctx: RunContext) -> Result: ...

Experiments live in one folder per paper, ``tenfold/papers/<paper>/experiments*.py``. The defaults of ``Config``
are the ``quick`` preset; ``tenfold/papers/<paper>/presets/<name>/standard.yaml`` and ``paper.yaml`` hold the
evidence tier and the paper's recipe.
"""

from __future__ import annotations

import difflib
import importlib
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


def _import(module: str) -> None:
    """Import one experiment module; a failure is recorded (``tenfold list`` and the tests show it), not fatal,
    so one broken experiment cannot take the CLI down."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # recorded and reported by `tenfold list` and the tests
        IMPORT_ERRORS[module.removeprefix("tenfold.papers.")] = f"{type(exc).__name__}: {exc}"


def discover() -> dict[str, Experiment]:
    """Import every experiment module (``tenfold/papers/*/experiments*.py``) once."""
    global _discovered
    if not _discovered:
        from tenfold.experiments.index import experiment_modules

        for module, _ in experiment_modules():
            _import(module)
        _discovered = True
    return REGISTRY


def get(name: str) -> Experiment:
    """The experiment ``name``; unknown names raise ConfigError listing close matches. Only the module that
    registers ``name`` is imported (found from the modules' source)."""
    if name not in REGISTRY and not _discovered:
        from tenfold.experiments.index import experiment_index

        index = experiment_index()
        known = [e["name"] for e in index]
        for entry in index:
            if entry["name"] == name:
                _import(entry["module"])
        if name not in REGISTRY and name in known:
            discover()
    else:
        known = list(REGISTRY)
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    raise ConfigError(f"unknown experiment {name!r}: {hint} (see `tenfold list`)")


def config_of(name: str) -> tuple[type[Config], str]:
    """The config class and description of the experiment ``name``. Where its module's source names the class's
    torch-free module (``tenfold/papers/<paper>/configs.py``, read by :mod:`tenfold.experiments.index`), only that
    module is imported, so ``tenfold config`` answers without torch; otherwise the experiment is imported."""
    if name not in REGISTRY and not _discovered:
        from tenfold.experiments.index import find_entry

        entry = find_entry(name)
        if entry is not None and "config_module" in entry:
            try:
                cls = getattr(importlib.import_module(entry["config_module"]), entry["config"])
            except (ImportError, AttributeError):  # the full import below records or raises the reason
                cls = None
            if isinstance(cls, type) and issubclass(cls, Config):
                return cls, entry["description"]
    exp = get(name)
    return exp.config, exp.description


def quick_names() -> list[str]:
    discover()
    return [e.name for e in sorted(REGISTRY.values(), key=lambda e: (e.order, e.name)) if e.quick]
