"""The experiments' names, papers and descriptions read from the modules' source, without importing them.

Experiments are registered in ``tenfold/papers/<paper>/experiments.py`` (and ``experiments_*.py`` beside it).

``tenfold list`` and the unknown-name error use this, so they do not import torch and every method family
(seconds); a ``@register(...)`` whose arguments are not literals (or module-level string constants) is
taken from the imported module instead. ``tenfold config`` uses the ``config=`` class's name and the torch-free
module it is imported from (``from tenfold.papers.<paper>.configs import X``) to import only that module.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

PAPERS_ROOT = Path(__file__).resolve().parent.parent / "papers"
_FIELDS = ("paper", "description", "quick", "order", "processes")


def _constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(value, (str, int, bool)):
                out[node.targets[0].id] = value
    return out


def _value(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in constants:
            return constants[node.id]
        raise ValueError(node.id)
    return ast.literal_eval(node)


def _config_imports(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) of the module-level ``from <...>.configs import ...`` statements: the
    torch-free modules that hold the experiments' config classes."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").endswith(".configs"):
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def experiment_modules() -> list[tuple[str, Path]]:
    """(dotted module name, file) of every module that registers experiments, in a stable order."""
    out = []
    for path in sorted(PAPERS_ROOT.glob("*/experiments*.py")):
        if path.parent.name.startswith("_"):
            continue
        out.append((f"tenfold.papers.{path.parent.name}.{path.stem}", path))
    return out


def scan_module(path: Path, module: str = "") -> list[dict[str, Any]] | None:
    """The experiments registered in the module at ``path``, or None when one cannot be read statically."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    constants = _constants(tree)
    configs = _config_imports(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == "register"):
                continue
            try:
                entry: dict[str, Any] = {"name": _value(deco.args[0], constants), "module": module or path.stem,
                                         "quick": True, "order": 100, "processes": False,
                                         "description": (ast.get_docstring(node) or "").strip().split("\n")[0]}
                for kw in deco.keywords:
                    if kw.arg in _FIELDS:
                        entry[kw.arg] = _value(kw.value, constants)
                    elif kw.arg == "config" and isinstance(kw.value, ast.Name) and kw.value.id in configs:
                        # else (a class defined or imported elsewhere) tenfold config imports the experiment
                        entry["config_module"], entry["config"] = configs[kw.value.id]
            except (ValueError, IndexError, TypeError):
                return None
            if not isinstance(entry["name"], str) or "paper" not in entry:
                return None
            found.append(entry)
    return found


def find_entry(name: str) -> dict[str, Any] | None:
    """The index entry of the experiment ``name``, reading only the modules whose source holds the name (one
    or two, not all of them: ``tenfold config`` runs this once); None when none of them registers it
    statically (the caller then imports)."""
    for module, path in experiment_modules():
        try:
            if name not in path.read_text():
                continue
        except OSError:
            continue
        for entry in scan_module(path, module) or []:
            if entry["name"] == name:
                return entry
    return None


def experiment_index() -> list[dict[str, Any]]:
    """Every experiment as ``{name, paper, description, quick, order, processes, module}`` (and ``config``,
    ``config_module``: its config class's name and torch-free module, where the source names them), sorted as
    the report orders them; modules that cannot be read statically are imported."""
    entries: list[dict[str, Any]] = []
    for module, path in experiment_modules():
        found = scan_module(path, module)
        if found is None:
            import importlib

            from tenfold.experiments.registry import REGISTRY

            importlib.import_module(module)
            found = [{"name": e.name, "paper": e.paper, "description": e.description, "quick": e.quick,
                      "order": e.order, "processes": e.processes, "module": module}
                     for e in REGISTRY.values() if e.run.__module__ == module]
        entries.extend(found)
    return sorted(entries, key=lambda e: (e["order"], e["name"]))
