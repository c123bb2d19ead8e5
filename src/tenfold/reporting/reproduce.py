"""``tenfold reproduce``: run many experiments with one overall progress display, keep going past
failures, and write one report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tenfold.config import available_presets
from tenfold.engine import progress
from tenfold.io import atomic_write_json
from tenfold.errors import ConfigError
from tenfold.experiments.registry import discover, get, quick_names
from tenfold.experiments.runner import latest_run_dir, run_experiment, versions
from tenfold.reporting.report import readme_table, update_readme, write_report


def select(names: list[str] | None, preset: str) -> list[str]:
    """Experiment names to run, validated before any work (unknown names raise ConfigError)."""
    if names:
        for n in names:
            get(n)
        return names
    if preset == "quick":
        return quick_names()
    exps = sorted(discover().values(), key=lambda e: (e.order, e.name))
    return [e.name for e in exps if preset in available_presets(e.name)]


def reproduce(names: list[str] | None = None, *, preset: str = "quick", out: str | Path = "reproduce",
              resume: bool = False, seed: int = 0, device: str = "auto", readme: str | Path | None = None) -> Path:
    """Run the experiments and write ``report.md`` / ``report.html`` in ``out``; returns the report path.

    With ``resume``, experiments whose results already exist in ``out`` are not run again (an
    unfinished one continues from its checkpoints).
    """
    out = Path(out)
    if readme is not None and not Path(readme).is_file():
        raise ConfigError(f"--update-readme: {readme} does not exist")
    chosen = select(names, preset)
    if not chosen:
        raise ConfigError(f"no experiment has a '{preset}' preset")
    runs = out / "runs"
    entries: list[dict[str, Any]] = []
    start = time.perf_counter()
    with progress.session():
        with progress.bar("reproduce", total=len(chosen)) as overall:
            for name in chosen:
                exp = get(name)
                overall.describe(f"reproduce: {name}")
                t0 = time.perf_counter()
                try:
                    folder, data = run_experiment(name, preset=preset, seed=seed, out=runs, resume=resume,
                                                  device=device)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # recorded in the report; the others still run
                    folder = latest_run_dir(runs, name)
                    data = {"experiment": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                            "wall_s": time.perf_counter() - t0}
                data = {**data, "paper": exp.paper, "description": exp.description,
                        "run_dir": str(folder) if folder else ""}
                entries.append(data)
                atomic_write_json(out / "summary.json", entries)
                overall.advance()
    total = time.perf_counter() - start
    report = write_report(entries, out, preset=preset, environment=versions(), total_wall=total)
    if readme is not None:
        update_readme(readme, readme_table(entries, str(out), total))
    return report
