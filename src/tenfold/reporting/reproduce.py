"""``tenfold reproduce``: run many experiments with one overall progress display, keep going past
failures, and write one report.

With ``falsify``, every distinct ablation of an experiment's paper claims is run too (claims that share
an ablation share the run), and each paper claim records the ablated run's value, spread and 95% interval
(:func:`~tenfold.reporting.claims.record_ablation`): a claim whose ablated interval still lies on its side
is "not falsified"; one whose ablated run equals the baseline by construction is "ablation = baseline".

Tiers: ``quick`` is the smoke run (demo, CI; no evidence), ``standard`` the evidence, ``paper`` the GPU recipe.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.config import available_presets
from tenfold.engine import progress
from tenfold.io import atomic_write_json
from tenfold.errors import ConfigError
from tenfold.experiments.registry import discover, get, quick_names
from tenfold.experiments.runner import latest_run_dir, run_experiment, versions
from tenfold.reporting.claims import STRICT_FAILURES, ablation_groups, record_ablation, verdict
from tenfold.reporting.report import readme_table, update_readme, write_report


@dataclass(frozen=True)
class Outcome:
    """What a reproduce run wrote, and the counts the exit code is decided from."""

    report: Path
    entries: list[dict[str, Any]]

    @property
    def crashed(self) -> list[str]:
        return [e["experiment"] for e in self.entries if e.get("status") != "ok"]

    def failing(self, verdicts: tuple[str, ...] = STRICT_FAILURES) -> list[str]:
        """``experiment: claim`` for every statement whose verdict is in ``verdicts``."""
        return [f"{e['experiment']}: {c['name']} ({verdict(c)})" for e in self.entries if e.get("status") == "ok"
                for c in e.get("claims", []) if verdict(c) in verdicts]


def ablation_slug(overrides: tuple[str, ...]) -> str:
    """A folder name for an ablation run: readable and unique (a short hash of the overrides)."""
    text = "_".join(overrides)
    readable = re.sub(r"[^A-Za-z0-9.=-]+", "-", text)[:48].strip("-")
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def falsify(entry: dict[str, Any], *, preset: str, runs: Path, resume: bool, seed: int, device: str) -> None:
    """Rerun ``entry``'s experiment once per distinct ablation and record the ablated value of each of its
    paper claims (in place). A crashed ablation run is recorded as ``ablation_error`` on its claims."""
    exp = get(entry["experiment"])
    by_name = {c["name"]: c for c in entry.get("claims", [])}
    for overrides, names in ablation_groups(exp.claims).items():
        if all(by_name[n].get("not_testable") for n in names):  # nothing this run could decide
            for n in names:
                by_name[n]["ablation_skipped"] = "not run: the claim is not testable"
            continue
        root = runs / "ablations" / ablation_slug(overrides)
        try:
            folder, data = run_experiment(exp.name, preset=preset, overrides=overrides, seed=seed, out=root,
                                          resume=resume, device=device)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # recorded on the claims it was meant to test
            for n in names:
                by_name[n]["ablation_error"] = f"{type(exc).__name__}: {exc}"
            continue
        ablated = {c["name"]: c for c in data.get("claims", [])}
        for n in names:
            record_ablation(by_name[n], ablated[n], data.get("samples", {}), str(folder))


def select(names: list[str] | None, preset: str) -> list[str]:
    """Experiment names to run, validated before any work (unknown names raise ConfigError)."""
    if names:
        for n in names:
            get(n)
            if preset not in available_presets(n):
                raise ConfigError(f"preset '{preset}' does not exist for experiment '{n}': choose one of "
                                  f"{', '.join(available_presets(n))}")
        return names
    if preset in ("quick", "standard"):  # the laptop tiers: the experiments that run on built-in data
        return [n for n in quick_names() if preset in available_presets(n)]
    exps = sorted(discover().values(), key=lambda e: (e.order, e.name))
    return [e.name for e in exps if preset in available_presets(e.name)]


def reproduce(names: list[str] | None = None, *, preset: str = "quick", out: str | Path = "reproduce",
              resume: bool = False, seed: int = 0, device: str = "auto", readme: str | Path | None = None,
              falsify_claims: bool = False) -> Outcome:
    """Run the experiments and write ``report.md`` / ``report.html`` in ``out``.

    With ``resume``, experiments whose results already exist in ``out`` are not run again (an
    unfinished one continues from its checkpoints). With ``falsify_claims``, each experiment's ablations
    run too (see :func:`falsify`).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder for the runs and the report")
    if readme is not None and not Path(readme).is_file():
        raise ConfigError(f"--update-readme: {readme} does not exist")
    chosen = select(names, preset)
    if not chosen:
        raise ConfigError(f"no experiment has a '{preset}' preset")
    runs = out / "runs"
    entries: list[dict[str, Any]] = []
    start = time.perf_counter()
    steps = len(chosen) + (sum(len(ablation_groups(get(n).claims)) for n in chosen) if falsify_claims else 0)
    with progress.session():
        with progress.bar("reproduce", total=steps) as overall:
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
                overall.advance()
                if falsify_claims:
                    groups = len(ablation_groups(exp.claims))
                    if data.get("status") == "ok" and groups:
                        overall.describe(f"reproduce: {name} without its mechanisms ({groups} run(s))")
                        falsify(data, preset=preset, runs=runs, resume=resume, seed=seed, device=device)
                    overall.advance(groups)
                entries.append(data)
                atomic_write_json(out / "summary.json", entries)
    total = time.perf_counter() - start
    report = write_report(entries, out, preset=preset, environment=versions(), total_wall=total,
                          falsified=falsify_claims)
    if readme is not None:
        # the report's folder as seen from the README (reproduce/, not this machine's absolute path)
        where = os.path.relpath(Path(out).resolve(), Path(readme).resolve().parent)
        update_readme(readme, readme_table(entries, where, total, falsify=falsify_claims, preset=preset))
    return Outcome(report, entries)
