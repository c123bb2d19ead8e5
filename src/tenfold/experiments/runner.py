"""Run one experiment: resolve its config, make its run folder, run it (one or several processes),
and write ``results.json``.

Run folder: ``<out>/<experiment>/<timestamp>/`` with ``config.yaml``, ``metrics.csv``, figures,
``checkpoints/`` and ``results.json``. With ``resume=True`` the newest unfinished folder of the same
experiment (or ``run_dir``) is continued with its own stored config, preset and seed, else a finished one is
reported as is; a ``--set``, ``--config``, ``--preset`` or ``--seed`` that would change them is refused with
the fields named.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml

from tenfold.engine.threads import fixed_threads
from tenfold.config import Config, _merge, apply_overrides, build, load_yaml, resolve
from tenfold.io import atomic_write_json, atomic_write_text
from tenfold.engine.context import RunContext
from tenfold.engine.fabric import check_launcher, launcher_world, make_fabric, resolve_device
from tenfold.engine.seed import seed_everything
from tenfold.errors import ConfigError, TenfoldError, alike_on_every_process
from tenfold.experiments.registry import get
from tenfold.reporting.claims import check_seeds, evaluate_claims, tier_of
from tenfold.reporting.results import Result


def _quiet_lightning() -> None:
    """No Lightning info banners ("Initializing distributed ...") on stderr: a spawned worker imports this
    module while unpickling its function, before the process group is set up, so this runs in time there."""
    for logger in ("lightning", "lightning.fabric", "lightning.pytorch", "lightning_fabric", "pytorch_lightning",
                   "lightning_utilities", "lightning.fabric.utilities.rank_zero",
                   "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(logger).setLevel(logging.WARNING)


_quiet_lightning()


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on, and the machine it ran on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "threads": str(torch.get_num_threads())}
    for pkg in ("tenfold", "torch", "torchvision", "timm", "peft", "lightning", "torchdeq", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return out


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """The git commit of the checkout holding ``path`` (default: the tenfold source) and whether its
    tracked files differ from it; both None outside a git checkout or without git."""
    import subprocess

    where = Path(path) if path is not None else Path(__file__).resolve().parent
    state: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return state
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return state
    state["commit"] = head.stdout.strip() or None
    state["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return state


def check_processes(exp, cfg: Config, devices: int) -> None:
    """Refuse ``devices`` processes, before any are spawned, for an experiment that runs in one, or a
    ``batch_size`` field (at any depth of the config) that does not split into ``devices`` equal shards."""
    if not exp.processes:
        raise ConfigError(f"devices={devices} is invalid for {exp.name}: it runs in one process (experiments "
                          "that support several are marked in `tenfold list`)")

    def walk(obj: Any, prefix: str) -> None:
        for key, value in (obj.items() if isinstance(obj, dict) else ()):
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif key == "batch_size" and isinstance(value, int) and (value < devices or value % devices):
                raise ConfigError(f"{prefix}{key}={value} is invalid with --devices {devices}: expected a "
                                  f"multiple of the {devices} processes")
    walk(cfg.to_dict(), "")


PRECISIONS = {"32": "32-true", "32-true": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}


def check_precision(exp, precision: str, accel: str) -> str:
    """Fabric's name for ``precision``, or a one-line ConfigError before any work."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is invalid: expected 32, bf16-mixed or 16-mixed")
    fabric_name = PRECISIONS[precision]
    if fabric_name != "32-true" and not exp.processes:
        raise ConfigError(f"precision={precision!r} is invalid for {exp.name}: it does not train through the "
                          "engine's Fabric (only 32)")
    if fabric_name == "16-mixed" and accel != "cuda":
        raise ConfigError("precision='16-mixed' needs CUDA; use bf16-mixed on the CPU")
    return fabric_name


def _worker_error(exc: BaseException) -> Exception | None:
    """The TenfoldError a worker process raised, rebuilt from the text the launcher gives the parent
    (torch.multiprocessing sends a formatted traceback whose last line is ``module.Class: message``)."""
    import re

    from tenfold import errors

    for line in reversed(str(exc).strip().splitlines()):
        match = re.match(r"^(?:tenfold\.errors\.)?(\w+): (.*)$", line.strip())
        if match:
            cls = getattr(errors, match.group(1), None)
            if isinstance(cls, type) and issubclass(cls, errors.TenfoldError):
                return cls(match.group(2))
            return None
    return None


def _new_run_dir(root: Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / name / stamp
    k = 1
    while path.exists():
        k += 1
        path = root / name / f"{stamp}-{k}"
    return path


def latest_run_dir(root: Path, name: str) -> Path | None:
    folder = root / name
    if not folder.is_dir():
        return None
    runs = sorted((p for p in folder.iterdir() if p.is_dir() and (p / "config.yaml").is_file()),
                  key=lambda p: p.name)
    return runs[-1] if runs else None


def check_resume_folder(path: str | Path, name: str) -> Path:
    """``path`` as a run folder of experiment ``name`` that can be resumed, else a one-line ConfigError."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"--resume-from {path}: not a run folder (no config.yaml in it)")
    try:
        stored = _stored_config(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--resume-from {path}: config.yaml cannot be read ({type(exc).__name__})") from None
    if not isinstance(stored, dict) or stored.get("experiment") != name:
        other = stored.get("experiment") if isinstance(stored, dict) else None
        raise ConfigError(f"--resume-from {path}: a run of {other!r}, not of {name!r}")
    return path


def _finished(run_dir: Path) -> dict | None:
    """The results of a finished run folder, or None when it has none or they record a failure."""
    import json

    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    return data if data.get("status") == "ok" else None


def _stored_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}


def _open_run_folder(root: Path, name: str, header: dict, run_dir: str | Path | None,
                     resume: bool) -> tuple[Path, dict | None]:
    """The run folder, with its config.yaml written: ``run_dir``, or with ``resume`` the newest one of ``name``
    (its stored settings must equal ``header``), else a new one; and its results when that run had finished
    (then nothing is written)."""
    folder: Path | None = Path(run_dir) if run_dir is not None else None
    if folder is None and resume:
        folder = latest_run_dir(root, name)
    if folder is not None and resume and (folder / "config.yaml").is_file():
        stored = _stored_config(folder)
        if stored != header:
            diff = [k for k in header if stored.get(k) != header[k]]
            raise ConfigError(f"--resume: the run in {folder} was started with a different {', '.join(diff)}; "
                              "drop --resume or use the same settings")
        done = _finished(folder)
        if done is not None:
            return folder, done
    if folder is None:
        folder = _new_run_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(header, sort_keys=False))
    return folder, None


def _changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields whose values differ between two config dicts."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            out += _changed_fields(before.get(key), after.get(key), f"{prefix}{key}.")
        return out
    return [] if before == after else [prefix.rstrip(".")]


def _resumed_settings(exp, folder: Path, stored: dict, preset: str | None, seed: int | None,
                      overrides: tuple[str, ...], config_file: str | Path | None) -> tuple[Config, str, int]:
    """The config, preset and seed a resumed run continues with: the run's own. A ``--config`` or ``--set``
    that changes a stored field, or a ``--preset``/``--seed`` other than the stored one, is a ConfigError
    naming the fields and the flag (repeating the stored values is fine)."""
    where = f"resuming {folder}"
    stored_preset, stored_seed = stored.get("preset", "quick"), stored.get("seed", 0)
    for flag, given, kept in (("--preset", preset, stored_preset), ("--seed", seed, stored_seed)):
        if given is not None and given != kept:
            raise ConfigError(f"{where}: {flag} {given} differs from the run's {flag[2:]} {kept}; a resumed run "
                              f"continues with its own settings: drop {flag}, or start a new run without --resume")
    source = f"{exp.name} (stored in {folder / 'config.yaml'})"
    cfg = build(exp.config, stored.get("config") or {}, source=source)
    kept = cfg.to_dict()
    layers = []
    if config_file is not None:
        layers.append(("--config " + str(config_file), lambda d: _merge(d, load_yaml(config_file))))
    if overrides:
        layers.append(("--set", lambda d: apply_overrides(d, overrides)))
    data = kept
    for flag, apply in layers:
        data = apply(data)
        changed = _changed_fields(kept, build(exp.config, data, source=f"{exp.name} ({flag})").to_dict())
        if changed:
            values = ", ".join(f"{f}={_get(kept, f)!r}" for f in changed)
            raise ConfigError(f"{where}: {flag} changes {', '.join(changed)} (the run has {values}); a resumed run "
                              f"continues with its stored config: drop {flag.split()[0]} for these fields, or "
                              "start a new run without --resume")
    return cfg, stored_preset, stored_seed


def _get(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _resume_folder(root: Path, name: str, run_dir: str | Path | None, resume: bool) -> Path | None:
    """The run folder a resume continues, when it has a stored config."""
    if not resume:
        return None
    folder = Path(run_dir) if run_dir is not None else latest_run_dir(root, name)
    return folder if folder is not None and (folder / "config.yaml").is_file() else None


def run_experiment(name: str, *, preset: str | None = None, overrides: tuple[str, ...] | list[str] = (),
                   seed: int | None = None,
                   out: str | Path = "runs", resume: bool = False, device: str = "auto", devices: int | None = 1,
                   config_file: str | Path | None = None, run_dir: str | Path | None = None,
                   precision: str = "32") -> tuple[Path, dict | None]:
    """Run ``name`` and return its run folder and the ``results.json`` content. ``precision`` (32,
    bf16-mixed, 16-mixed) goes through Fabric, so only experiments with ``processes=True`` (training through
    ``ctx.setup``/``ctx.backward``) take a mixed one.

    ``preset`` and ``seed`` default to quick and 0 for a new run; a resumed run (``resume``) continues with
    its stored config, preset and seed, and refuses ``overrides``, ``config_file``, ``preset`` or ``seed`` that
    would change them (the error names the fields).

    Under torchrun (``torchrun --nproc-per-node 2 -m tenfold run ...``) every process calls this: ``devices``
    must equal the launcher's world size (None takes it), the checks run in each process before any work,
    then the processes join the launcher's process group instead of spawning; rank 0 picks the run folder
    and tells the others, writes the files and returns the results; the other ranks return ``(folder, None)``.
    """
    with alike_on_every_process():  # under torchrun only each node's first process prints these errors
        exp = get(name)
        root = Path(out)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--out {root} is a file; expected a folder of run folders")
        resumed = _resume_folder(root, name, run_dir, resume)
        if resumed is not None:  # a resumed run continues with its own stored settings
            try:
                stored = _stored_config(resumed)
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"resuming {resumed}: config.yaml cannot be read ({type(exc).__name__})") from None
            if not isinstance(stored, dict):
                raise ConfigError(f"resuming {resumed}: config.yaml does not hold a run's settings")
            cfg, preset, seed = _resumed_settings(exp, resumed, stored, preset, seed, tuple(overrides), config_file)
        else:
            preset = "quick" if preset is None else preset
            seed = 0 if seed is None else seed
            cfg = resolve(exp.config, name, preset, tuple(overrides), config_file)  # fails before any work
        check_seeds(exp.claims, cfg, name, tier_of(preset))
        accel = resolve_device(device)
        if seed < 0:
            raise ConfigError(f"seed={seed} is invalid: expected a non-negative integer")
        if devices is not None and devices < 1:
            raise ConfigError(f"devices={devices} is invalid: expected a positive number of processes")
        devices = check_launcher(devices)  # under torchrun: its world size, which --devices must equal
        if devices > 1:
            check_processes(exp, cfg, devices)
        precision = check_precision(exp, precision, accel)
    header = {"experiment": name, "preset": preset, "seed": seed, "devices": devices, "config": cfg.to_dict()}
    if precision != "32-true":  # only then, so run folders from before --precision still resume
        header["precision"] = precision

    launched = None  # under torchrun: this process's Fabric, in the launcher's process group
    if devices > 1 and launcher_world() is not None:
        launched = make_fabric(accel, devices, precision)
        _quiet_lightning()  # importing Lightning (in make_fabric) set its loggers back to INFO
        launched.launch()  # joins the process group that torchrun set up; spawns nothing
    main = launched is None or launched.global_rank == 0
    if launched is None:
        folder, done = _open_run_folder(root, name, header, run_dir, resume)
    else:  # rank 0 reads and writes the folder; its choice (or its one-line error) goes to every rank
        picked: Any = None
        if main:
            try:
                picked = _open_run_folder(root, name, header, run_dir, resume)
            except TenfoldError as exc:
                picked = exc
        picked = launched.broadcast(picked, src=0)
        if isinstance(picked, TenfoldError):
            picked.quiet = not main  # printed once, by rank 0
            raise picked
        folder, done = picked
    if done is not None:
        return folder, done if main else None

    start = time.perf_counter()
    try:
        # quick runs are pinned (register(threads=...)), so their figures do not depend on the machine's cores
        with fixed_threads(exp.threads) if preset == "quick" else nullcontext():
            if launched is not None:  # this process is one rank; each raises its own errors
                result, warnings = _worker(launched, name, header["config"], preset, seed, str(folder), resume)
                if not main:
                    return folder, None
            elif devices > 1:
                fabric = make_fabric(accel, devices, precision)
                # the spawn log line about terminating the other workers would come before the error line
                logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
                try:
                    result, warnings = fabric.launch(_worker, name, header["config"], preset, seed, str(folder),
                                                     resume)
                except Exception as exc:  # a TenfoldError in a worker reaches the user as its one line
                    rebuilt = _worker_error(exc)
                    if rebuilt is None:
                        raise
                    raise rebuilt from None
            else:
                fabric = make_fabric(accel, 1, precision) if precision != "32-true" else None
                ctx = RunContext(out_dir=folder, seed=seed, preset=preset, experiment=name,
                                 device=fabric.device if fabric is not None else torch.device(accel),
                                 fabric=fabric, resume=resume)
                seed_everything(seed)
                result = exp.run(cfg, ctx)
                warnings = ctx.warnings
                restored = ctx.restored_epochs
        if not isinstance(result, Result):
            raise TypeError(f"experiment {name!r} returned {type(result).__name__}, expected "
                            "tenfold.reporting.Result")
        claims = evaluate_claims(exp.claims, cfg, result.metrics, result.samples, name, tier_of(preset))
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        if main:
            atomic_write_json(folder / "results.json", {
                "experiment": name, "preset": preset, "seed": seed, "status": status,
                "error": f"{type(exc).__name__}: {exc}", "wall_s": round(time.perf_counter() - start, 3),
                "versions": versions(), "git": git_state()})
        raise
    wall = time.perf_counter() - start
    data = {"experiment": name, "preset": preset, "seed": seed, "precision": precision, "status": "ok",
            **result.to_dict(),
            "warnings": list(warnings), "wall_s": round(wall, 3), "versions": versions(), "git": git_state()}
    if resume and devices == 1:  # how much the resume saved: epochs restored from checkpoints, not rerun
        data["restored_epochs"] = restored
    data["tier"] = tier_of(preset)
    data["claims"] = claims
    atomic_write_json(folder / "results.json", data)
    return folder, data


def _worker(fabric, name: str, cfg_data: dict, preset: str, seed: int, folder: str, resume: bool):
    """One DDP process: the same experiment with a context that knows its rank."""
    _quiet_lightning()
    exp = get(name)
    cfg: Config = exp.config.model_validate(cfg_data)
    ctx = RunContext(out_dir=Path(folder), seed=seed, preset=preset, experiment=name,
                     device=fabric.device, fabric=fabric, resume=resume)
    seed_everything(seed)
    result = exp.run(cfg, ctx)
    return result, ctx.warnings
