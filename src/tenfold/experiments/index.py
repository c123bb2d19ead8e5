"""The experiments' names, papers and descriptions read from the modules' source, without importing them.

``tenfold list`` and the unknown-name error use this, so they do not import torch and every method family
(seconds); a ``@register(...)`` whose arguments are not literals (or module-level string constants) is
taken from the imported module instead.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import Any

NOT_EXPERIMENTS = {"registry", "runner", "index"}
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


def scan_module(path: Path) -> list[dict[str, Any]] | None:
    """The experiments registered in the module at ``path``, or None when one cannot be read statically."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    constants = _constants(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == "register"):
                continue
            try:
                entry: dict[str, Any] = {"name": _value(deco.args[0], constants), "module": path.stem,
                                         "quick": True, "order": 100, "processes": False,
                                         "description": (ast.get_docstring(node) or "").strip().split("\n")[0]}
                for kw in deco.keywords:
                    if kw.arg in _FIELDS:
                        entry[kw.arg] = _value(kw.value, constants)
            except (ValueError, IndexError, TypeError):
                return None
            if not isinstance(entry["name"], str) or "paper" not in entry:
                return None
            found.append(entry)
    return found


def experiment_index() -> list[dict[str, Any]]:
    """Every experiment as ``{name, paper, description, quick, order, processes, module}``, sorted as the
    report orders them; modules that cannot be read statically are imported."""
    import tenfold.experiments as pkg

    entries: list[dict[str, Any]] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name in NOT_EXPERIMENTS:
            continue
        found = scan_module(Path(pkg.__path__[0]) / f"{info.name}.py")
        if found is None:
            from tenfold.experiments.registry import REGISTRY, discover

            discover()
            found = [{"name": e.name, "paper": e.paper, "description": e.description, "quick": e.quick,
                      "order": e.order, "processes": e.processes, "module": info.name}
                     for e in REGISTRY.values() if e.run.__module__ == f"tenfold.experiments.{info.name}"]
        entries.extend(found)
    return sorted(entries, key=lambda e: (e["order"], e["name"]))
