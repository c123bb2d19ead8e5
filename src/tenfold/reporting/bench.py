"""``tenfold bench``: run one benchmark or all of them and write JSON (and a Markdown table for all)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tenfold.benchmarks import IMPORT_ERRORS, discover, get
from tenfold.io import atomic_write_json, atomic_write_text
from tenfold.experiments.runner import versions
from tenfold.reporting.results import markdown_table


def _run_one(name: str, quick: bool) -> dict[str, Any]:
    module = get(name)
    t0 = time.perf_counter()
    data = module.run(quick=quick)
    return {"benchmark": name, "description": getattr(module, "DESCRIPTION", ""), **data,
            "wall_s": round(time.perf_counter() - t0, 3), "versions": versions()}


def targets_table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, data in results.items():
        if "error" in data:
            rows.append({"benchmark": name, "target": "(failed)", "value": data["error"], "threshold": "",
                         "holds": False})
        for t in data.get("targets", []):
            rows.append({"benchmark": name, "target": t["name"], "value": f"{t['value']:.4g}",
                         "threshold": t["threshold"], "holds": t["holds"]})
    return markdown_table(rows)


def run_benchmarks(name: str, out_file: str | Path | None = None, quick: bool = False) -> Path:
    """Run ``name`` (or ``all``); write JSON to ``out_file`` (default ``bench/<name>.json``)."""
    out_file = Path(out_file) if out_file is not None else Path("bench") / f"{name}.json"
    if name != "all":
        return atomic_write_json(out_file, _run_one(name, quick))
    results: dict[str, dict[str, Any]] = {}
    for bench_name in sorted(discover()):
        try:
            results[bench_name] = _run_one(bench_name, quick)
        except Exception as exc:  # one failing benchmark does not hide the others
            results[bench_name] = {"benchmark": bench_name, "error": f"{type(exc).__name__}: {exc}"}
    for module, message in IMPORT_ERRORS.items():
        results[module] = {"benchmark": module, "error": f"import failed: {message}"}
    atomic_write_json(out_file, results)
    atomic_write_text(out_file.with_suffix(".md"), "# Tenfold benchmarks\n\n" + targets_table(results) + "\n")
    return out_file
