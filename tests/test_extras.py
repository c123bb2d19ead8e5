"""Each method family needs only the core dependencies and its own extra (pyproject.toml), so that
``pip install 'tenfold[pl]'`` gives a working ``tenfold.pl`` beside a user's own torch. Nothing is installed:

- at import time: a fresh interpreter imports every module of the family; no module it loads belongs to a
  package that another extra names and the core and the family's extra do not bring;
- in the source: every import statement of the family's own modules, at module level or inside a function,
  and of the tenfold modules they import (their module-level imports; the lazy ones too where the family
  imports that module inside a function), names a core distribution or one of the family's extra, or is a
  documented optional path (``OPTIONAL``).
"""

import ast
import importlib.metadata as md
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FAMILIES = ["tuning", "snn", "implicit", "panoptic", "contrastive", "init", "incremental", "minimax", "pl"]
# extras that are not a family's: what the CLI's experiments add, and the developers' tools
NOT_FAMILY_EXTRAS = {"experiments", "tensorboard", "all", "test", "oracles"}

# lazy imports on an optional path of a family, each with the reason its extra does not carry the package
OPTIONAL = {
    ("tenfold.panoptic.model", "timm"): "a timm CNN as backbone (backbone='resnet50'; the default 'tiny' is ours)",
    ("tenfold.incremental.backbones", "timm"): "the CUB ResNet-18 backbone (ResNet-12 and the MLP/CNN are ours)",
    ("tenfold.panoptic.oracle", "panoptic-parts"): "the reference library of the oracle tests ([oracles])",
    ("tenfold.data.digits", "scikit-learn"): "the built-in digits tasks of the experiments ([experiments])",
    ("tenfold.minimax.solve", "matplotlib"): "plot_trajectory, a figure of a saved trajectory ([experiments])",
}


def _canon(name: str) -> str:
    return canonicalize_name(name)


def _requirements(extras: set[str]) -> set[str]:
    """The distributions named by the core and ``extras``, self-references (``tenfold[a,b]``) expanded."""
    reqs, seen, todo = set(), set(), [""] + sorted(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PROJECT["dependencies"] if extra == "" else PROJECT["optional-dependencies"][extra]:
            req = Requirement(text)
            if _canon(req.name) == "tenfold":
                todo.extend(req.extras)
            else:
                reqs.add(_canon(req.name))
    return reqs


@cache
def _closure(names: frozenset[str]) -> frozenset[str]:
    """``names`` and everything the installed distributions require, transitively (with their extras)."""
    out, todo = set(), [(n, frozenset()) for n in names]
    while todo:
        name, extras = todo.pop()
        key = (name, extras)
        if key in out:
            continue
        out.add(key)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((_canon(req.name), frozenset(req.extras)))
    return frozenset(n for n, _ in out)


@cache
def _distributions_of_module() -> dict[str, set[str]]:
    return {top: {_canon(d) for d in dists} for top, dists in md.packages_distributions().items()}


def _allowed(family_extras: set[str]) -> frozenset[str]:
    return _closure(frozenset(_requirements(family_extras)))


def _forbidden(family_extras: set[str]) -> set[str]:
    """The packages that the other extras name and that the core and ``family_extras`` do not bring. (Not
    their requirements: torch itself imports tqdm, say, whenever it is installed.)"""
    every = _requirements(set(PROJECT["optional-dependencies"]) - {"test", "oracles"})
    return set(every - _allowed(family_extras))


def test_every_family_has_an_extra_and_all_holds_every_extra():
    extras = set(PROJECT["optional-dependencies"])
    assert set(FAMILIES) <= extras, sorted(set(FAMILIES) - extras)
    assert _requirements({"all"}) >= _requirements(extras - {"test", "oracles"})
    core = {_canon(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert core == {"torch", "numpy", "pydantic", "pyyaml", "typer", "rich", "safetensors"}
    # a range, never a pin: pip must keep the torch a user has
    assert all(Requirement(r).specifier.__str__().startswith(">=") for r in PROJECT["dependencies"]), \
        PROJECT["dependencies"]


# One interpreter imports the core's heavy packages once, then forks a child per package, which imports
# every module of that package and reports the modules it loaded (a fresh interpreter each costs seconds).
_IMPORT_ALL = """
import importlib, json, os, pkgutil, sys
import numpy, pydantic, rich, safetensors, torch, yaml
for name in sys.argv[1:]:
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            pkg = importlib.import_module(name)
            for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), name + "."):
                importlib.import_module(info.name)
            out = {"modules": sorted(sys.modules)}
        except BaseException as exc:
            out = {"error": repr(exc)}
        os.write(write, json.dumps({name: out}).encode())
        os.close(write)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        print(f.read())
    os.wait()
"""
PACKAGES = {**{f"tenfold.{f}": f for f in FAMILIES}, "tenfold.errors": None, "tenfold.config": None,
            "tenfold.io": None, "tenfold.engine": None, "tenfold.data": None}


@pytest.fixture(scope="module")
def loaded_modules() -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL, *PACKAGES], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one child per family")
@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_family_loads_only_its_extra(package, loaded_modules):
    extra = PACKAGES[package]
    result = loaded_modules[package]
    assert "error" not in result, result.get("error")
    forbidden = _forbidden({extra} if extra else set())
    owners = _distributions_of_module()
    bad = sorted({d for m in result["modules"] for d in owners.get(m.split(".")[0], ()) if d in forbidden})
    assert not bad, f"importing {package} loads {bad}: outside the core and [{extra}]"


def _module_files() -> dict[str, tuple[Path, bool]]:
    files = {}
    for path in (SRC / "tenfold").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return files


@cache
def _imports(module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, inside a function?) for every import statement of ``module``."""
    files = _module_files()
    path, is_package = files[module]
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                target = ".".join(base + ([child.module] if child.module else []))
                found.append((target, lazy))
                found.extend((f"{target}.{a.name}", lazy) for a in child.names if f"{target}.{a.name}" in files)
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return tuple(found)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _source_imports(family: str) -> dict[str, set[str]]:
    """Third-party top-level names -> the tenfold modules that import them, as described in the docstring."""
    files = _module_files()
    own = {m for m in files if m == f"tenfold.{family}" or m.startswith(f"tenfold.{family}.")}
    lazy_checked = set(own)
    for m in own:
        lazy_checked.update(t for t, lazy in _imports(m) if lazy and t in files)
    seen, todo, third = set(), sorted(own | lazy_checked), {}
    while todo:
        module = todo.pop()
        if module in seen or module not in files:
            continue
        seen.add(module)
        todo.extend(_parents(module))
        for target, lazy in _imports(module):
            if lazy and module not in lazy_checked:
                continue
            top = target.split(".")[0]
            if top == "tenfold":
                if module in own or not lazy:
                    todo.extend(t for t in _parents(target) if t in files)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.setdefault(top, set()).add(module)
    return third


@pytest.mark.parametrize("family", FAMILIES)
def test_every_import_of_a_family_is_in_its_extra(family):
    declared = _requirements({family})
    owners = _distributions_of_module()
    bad = []
    for top, modules in sorted(_source_imports(family).items()):
        dists = owners.get(top)
        assert dists, f"{top} (imported by {sorted(modules)}) is not installed: cannot map it to a distribution"
        for module in sorted(modules):
            if not dists & declared and not any((module, d) in OPTIONAL for d in dists):
                bad.append(f"{module} imports {top} ({'/'.join(sorted(dists))})")
    assert not bad, f"add to [{family}] in pyproject.toml, or make optional: {bad}"


def test_the_optional_paths_are_still_there():
    for (module, dist), reason in OPTIONAL.items():
        tops = {t for t, d in _distributions_of_module().items() if dist in d}
        assert any(t.split(".")[0] in tops for t, _ in _imports(module)), (module, dist, reason)
