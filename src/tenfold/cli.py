"""The ``tenfold`` command: list, config, run, reproduce, bench, eval-parts, merge-parts, export-coco, show-parts,
info.

Deliberate errors (:class:`tenfold.errors.TenfoldError`) print as one line and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tenfold.errors import ConfigError, TenfoldError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ten vision and learning methods, tested, benchmarked and reproduced at laptop scale.")
out = Console()
err = Console(stderr=True)
_DEBUG = {"on": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _DEBUG["on"] = debug


@app.command("list")
def list_experiments(check: bool = typer.Option(False, "--check", help="import every experiment module (slow) "
                                                                      "and report any that fail")) -> None:
    """List the registered experiments (read from their source; --check imports them and reports failures)."""
    table = Table("experiment", "paper", "quick", "devices", "description")
    if check:
        from tenfold.experiments import IMPORT_ERRORS, discover

        rows = [{"name": e.name, "paper": e.paper, "quick": e.quick, "processes": e.processes,
                 "description": e.description} for e in sorted(discover().values(), key=lambda e: (e.order, e.name))]
    else:
        from tenfold.experiments.index import experiment_index

        rows, IMPORT_ERRORS = experiment_index(), {}
    for e in rows:
        table.add_row(e["name"], e["paper"], "yes" if e["quick"] else "", "N" if e["processes"] else "1",
                      e["description"])
    out.print(table)
    for module, message in IMPORT_ERRORS.items():
        err.print(f"[red]experiment module {module} failed to import:[/red] {escape(message)}")


@app.command()
def run(
    name: str = typer.Argument(..., help="experiment name (see `tenfold list`)"),
    preset: Optional[str] = typer.Option(None, show_default="quick; a resumed run's own",
                                         help="quick (smoke run), standard (the evidence tier) or paper (the GPU "
                                              "recipe)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, nested with dots: --set epochs=5 --set base.lr=0.2 (see `tenfold config NAME`)"),
    config: Optional[Path] = typer.Option(None, "--config", help="a YAML file of config fields"),
    seed: Optional[int] = typer.Option(None, show_default="0; a resumed run's own", help="random seed"),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="root folder of run folders"),
    resume: bool = typer.Option(False, help="continue the newest run folder of this experiment under --out "
                                            "from its checkpoints (an error when there is none)"),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", metavar="RUN_FOLDER",
                                               help="continue this run folder (e.g. runs/digits-mlp/20261202-101500) "
                                                    "from its checkpoints"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    devices: Optional[int] = typer.Option(None, show_default="1, or torchrun's world size",
                                          help="number of processes (DDP; gloo on CPU); only for experiments "
                                               "that support several (see `tenfold list`); under torchrun the "
                                               "processes it started (nodes x processes per node)"),
    precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed (CUDA), through Lightning Fabric; "
                                             "mixed ones only for experiments that support several devices"),
) -> None:
    """Run one experiment and write its run folder.

    --resume continues the newest run folder of NAME under --out; --resume-from RUN_FOLDER continues the
    given one. Either way the run continues with its stored config, preset and seed (a --set, --config,
    --preset or --seed that would change them is refused, naming the fields), and finished training stages
    are not repeated.

    Exits 0 when the run finished and its checks hold, 1 when a check fails (a check is a bug: the failing
    ones are named on stderr; TENFOLD_FAILED_CHECKS=warn makes it a warning, for smoke runs at toy
    settings), 2 for bad input.
    """
    from tenfold.errors import alike_on_every_process
    from tenfold.experiments.registry import get

    with alike_on_every_process():  # under torchrun each node's first process prints these, the others not
        get(name)  # an unknown name is an error before torch and the experiments are imported
        from tenfold.experiments.runner import check_resume_folder, latest_run_dir, run_experiment

        run_dir = None
        if resume_from is not None:
            run_dir = check_resume_folder(resume_from, name)
            resume = True
        elif resume:
            if out_dir.exists() and not out_dir.is_dir():
                raise ConfigError(f"--out {out_dir} is a file; expected a folder of run folders")
            if latest_run_dir(out_dir, name) is None:
                raise ConfigError(f"--resume: no earlier run of {name} under {out_dir / name}; drop --resume to "
                                  "start one, or name a run folder with --resume-from")
    folder, data = run_experiment(name, preset=preset, overrides=tuple(set_), seed=seed, out=out_dir,
                                  resume=resume, device=device, devices=devices, config_file=config,
                                  run_dir=run_dir, precision=precision)
    if data is None:  # under torchrun, a rank other than 0: rank 0 prints the result
        return
    _print_result(data)
    out.print(f"run folder: {folder}")
    failed = [c for c in data.get("claims", []) if c.get("kind") == "check" and not c.get("holds")]
    if failed:  # a check states what must hold whatever the paper says: failing it is a bug, not a finding
        # check names hold brackets, e.g. "[max abs error]", so they are escaped for rich's markup
        names = "; ".join(f"{c['name']} = {_number(c.get('value'))} ({c.get('threshold')})" for c in failed)
        warn = os.environ.get("TENFOLD_FAILED_CHECKS", "fail") == "warn"  # smoke runs at toy settings
        word = "[yellow]warning:[/yellow]" if warn else "[red]error:[/red]"
        err.print(f"{word} {len(failed)} check(s) failed: {escape(names)} (run folder: {folder})",
                  highlight=False, soft_wrap=True)
        if not warn:
            raise typer.Exit(1)


@app.command("config")
def show_config(
    name: str = typer.Argument(..., help="experiment name (see `tenfold list`)"),
    preset: str = typer.Option("quick", help="quick, standard or paper (or another preset of the experiment)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, as for `tenfold run`"),
    config: Optional[Path] = typer.Option(None, "--config", help="a YAML file of config fields"),
) -> None:
    """Print an experiment's resolved config as YAML, each field with its description.

    The output is a valid --config file: `tenfold config NAME > my.yaml`, edit, `tenfold run NAME --config my.yaml`.
    """
    from tenfold.config import resolve, to_yaml
    from tenfold.experiments.registry import config_of

    cls, description = config_of(name)  # the paper's torch-free configs module, not the experiment (torch)
    cfg = resolve(cls, name, preset, tuple(set_), config_file=config)
    sys.stdout.write(f"# {name} ({preset}): {description}\n" + to_yaml(cfg))


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _print_result(data: dict) -> None:
    table = Table("metric", "value", title=f"{data['experiment']} ({data['preset']}, seed {data['seed']})")
    for key, value in data.get("metrics", {}).items():
        table.add_row(key, f"{value:.6g}")
    out.print(table)
    from tenfold.reporting.claims import verdict

    for claim in data.get("claims", []):
        word = verdict(claim)
        good = word in ("pass", "reproduced", "reproduced (ablation not run)", "not checked at this tier")
        mark = f"[green]{word}[/green]" if good else f"[red]{word}[/red]"
        ci = claim.get("ci95")
        spread = (f" ± {claim['std']:.2g} over {claim['n']} seeds"
                  + (f", 95% [{ci[0]:.4g}, {ci[1]:.4g}]" if ci and claim.get("kind") == "paper" else "")
                  if claim.get("n", 1) > 1 else "")
        out.print(f"{claim.get('kind', 'paper')}: {claim['name']} = {claim['value']:.4g}{spread} "
                  f"({claim['threshold']}): {mark}", soft_wrap=True)


@app.command()
def reproduce(
    quick: bool = typer.Option(False, "--quick", help="the quick tier: a smoke run of every experiment (CPU, about "
                                                     "5 minutes; no evidence); the same as --preset quick"),
    preset: Optional[str] = typer.Option(None, help="quick (smoke run), standard (the evidence: 2 CPU cores, about "
                                                    "3 hours in all) or paper (the GPU recipes)"),
    only: Optional[str] = typer.Option(None, help="comma-separated experiment names"),
    out_dir: Path = typer.Option(Path("reproduce"), "--out", help="output folder for runs and the report"),
    resume: bool = typer.Option(False, help="skip experiments whose results already exist in --out"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    update_readme: Optional[Path] = typer.Option(None, "--update-readme",
                                                 help="write the results table into this README's results markers"),
    falsify: bool = typer.Option(False, "--falsify",
                                 help="also run every paper claim's ablation (the mechanism removed) and record "
                                      "whether the claim then fails"),
    strict: bool = typer.Option(False, "--strict",
                                help="exit 1 when a paper claim is not reproduced, inconclusive or not falsified, "
                                     "or a check fails"),
) -> None:
    """Run every registered experiment (or --only some) and write report.md and report.html.

    Exits 1 when an experiment crashed (the others still run and are reported); with --strict also when a
    paper claim is not reproduced, inconclusive or not falsified, or a check fails. --resume continues an
    interrupted reproduce in the same --out: finished experiments (and ablation runs) are not run again.
    """
    from tenfold.reporting.reproduce import reproduce as do_reproduce

    if quick and preset not in (None, "quick"):
        raise ConfigError(f"--quick and --preset {preset} disagree: give one of them")
    chosen = "quick" if quick else (preset or "standard")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    outcome = do_reproduce(names, preset=chosen, out=out_dir, resume=resume, seed=seed,
                           device=device, readme=update_readme, falsify_claims=falsify)
    out.print(f"report: {outcome.report}")
    code = 0
    if outcome.crashed:
        err.print(f"[red]error:[/red] {len(outcome.crashed)} experiment(s) crashed: {', '.join(outcome.crashed)} "
                  f"(see {outcome.report})", highlight=False, soft_wrap=True)
        code = 1
    if strict:
        failing = outcome.failing()
        if failing:
            err.print(f"[red]--strict:[/red] {len(failing)} statement(s) not reproduced, inconclusive, not "
                      f"falsified or failing: {'; '.join(failing)}", highlight=False, soft_wrap=True)
            code = 1
    if code:
        raise typer.Exit(code)


@app.command()
def bench(
    name: str = typer.Argument(..., help="benchmark name, or 'all'"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="JSON file to write (default bench/<name>.json)"),
    quick: bool = typer.Option(False, "--quick", help="fewer sizes and repeats (a smoke run)"),
) -> None:
    """Run a benchmark (ratios against a baseline measured in the same run) and write JSON."""
    from tenfold.reporting.bench import run_benchmarks

    path = run_benchmarks(name, out_file, quick=quick)
    out.print(f"wrote {path}")


@app.command("eval-parts")
def eval_parts(
    gt: Path = typer.Option(..., "--gt", help="folder of ground-truth label files (panoptic_parts layout)"),
    pred: Path = typer.Option(..., "--pred", help="folder of prediction PNGs (sid, iid, pid channels)"),
    eval_spec: str = typer.Option(..., "--eval-spec", help="evaluation spec YAML, or a shipped spec's short name"),
    images_json: Optional[Path] = typer.Option(None, "--images-json", help="JSON list of image ids to evaluate"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write the results as JSON here"),
    workers: int = typer.Option(1, help="processes over images"),
) -> None:
    """Evaluate part-aware panoptic predictions: PQ, PartPQ, part mIoU, PWQ (provisional)."""
    try:
        from tenfold.panoptic.evaluator import evaluate_folders, format_table
    except ImportError as exc:  # pragma: no cover - only while the panoptic package is incomplete
        raise ConfigError(f"the panoptic evaluator is not available: {exc}") from None
    from tenfold.io import atomic_write_json

    results = evaluate_folders(gt, pred, eval_spec, images_json=images_json, workers=workers)
    out.print(format_table(results))
    if out_file is not None:
        atomic_write_json(out_file, results)
        out.print(f"wrote {out_file}")


@app.command("merge-parts")
def merge_parts(
    eval_spec: str = typer.Option(..., "--eval-spec", help="evaluation spec YAML, or a shipped spec's short name"),
    panoptic_json: Path = typer.Option(..., "--panoptic-json", help="COCO panoptic predictions JSON"),
    panoptic_dir: Path = typer.Option(..., "--panoptic-dir", help="folder of the COCO panoptic PNGs (RGB ids)"),
    parts_dir: Optional[Path] = typer.Option(None, "--parts-dir", show_default="none: parts unknown (pid 255)",
                                             help="folder of flat part-semantic PNGs (named by image id)"),
    out_dir: Path = typer.Option(..., "--out", help="folder for the PPS prediction PNGs (sid, iid, pid)"),
    images_json: Optional[Path] = typer.Option(None, "--images-json", help="JSON list of image ids to merge"),
) -> None:
    """Merge panoptic and part predictions into part-aware panoptic PNGs (panoptic_parts merge_to_pps)."""
    from tenfold.panoptic.merge import merge_folders

    written = merge_folders(eval_spec, panoptic_json, panoptic_dir, parts_dir, out_dir, images_json)
    out.print(f"wrote {len(written)} PPS predictions to {out_dir}")


@app.command("export-coco")
def export_coco(
    eval_spec: str = typer.Option(..., "--eval-spec", help="evaluation spec YAML, or a shipped spec's short name"),
    pred: Path = typer.Option(..., "--pred", help="folder of PPS prediction PNGs (sid, iid, pid channels)"),
    out_dir: Path = typer.Option(..., "--out", help="folder for predictions.json, predictions/, parts/ (and gt.json, "
                                                    "gt/)"),
    gt: Optional[Path] = typer.Option(None, "--gt", help="also export this ground-truth folder (panoptic_parts "
                                                         "layout, paired as eval-parts pairs it)"),
    images_json: Optional[Path] = typer.Option(None, "--images-json", help="JSON list of image ids to export"),
) -> None:
    """Export PPS predictions (and ground truth) as COCO panoptic PNGs + JSON for panopticapi / detectron2."""
    from tenfold.panoptic.coco import export_folders

    paths = export_folders(eval_spec, pred, out_dir, gt_dir=gt, images_json=images_json)
    out.print(f"wrote {paths['images']} COCO panoptic predictions: {paths['pred_json']} (PNGs in {paths['pred_dir']}, flat part "
              f"PNGs in {paths['parts_dir']})", highlight=False, soft_wrap=True)
    if "gt_json" in paths:
        out.print(f"wrote the ground truth: {paths['gt_json']} (PNGs in {paths['gt_dir']})", highlight=False,
                  soft_wrap=True)


@app.command("show-parts")
def show_parts(
    path: Path = typer.Argument(..., help="a label .tif, a prediction .png, or a folder of them"),
    eval_spec: str = typer.Option(..., "--eval-spec", help="evaluation spec YAML, or a shipped spec's short name"),
    out_dir: Path = typer.Option(..., "--out", help="folder for the colour PNGs"),
    image: Optional[Path] = typer.Option(None, "--image", help="an image (or a folder of images) to blend under"),
) -> None:
    """Colour PNGs of panoptic-parts labels and predictions: class colour, shaded per instance and part."""
    from tenfold.panoptic.visualize import show_folder

    written = show_folder(path, eval_spec, out_dir, image)
    out.print(f"wrote {len(written)} colour PNGs to {out_dir}")


@app.command()
def info() -> None:
    """Versions, device and thread count."""
    from tenfold.experiments.runner import versions

    for key, value in versions().items():
        out.print(f"{key}: {value}")


def cli_main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 on success, 1 when a run's check fails, 2 for a TenfoldError
    or a usage error (printed as one line), 130 on Ctrl-C."""
    try:
        code = app(args=argv, standalone_mode=False)  # typer turns Ctrl-C into an exit code of 130
        if code == 130:
            err.print("interrupted; finished files and checkpoints are kept (continue with --resume)")
        return code if isinstance(code, int) else 0
    except TenfoldError as exc:
        if _DEBUG["on"]:
            raise
        if getattr(exc, "quiet", False):
            # under torchrun the node's first process prints this error and exits 2; this one leaves quietly
            # with 0, because a non-zero exit here could make torchrun kill that process before it prints
            return 0
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; finished files and checkpoints are kept (continue with --resume)")
        return 130
    except ModuleNotFoundError as exc:
        # a package of an extra that is not installed (the core holds only what every family needs)
        if _DEBUG["on"] or not exc.name or exc.name.split(".")[0] == "tenfold":
            raise
        err.print(f"[red]error:[/red] the package {exc.name.split('.')[0]!r} is not installed; the experiments "
                  "need every extra: pip install 'tenfold\\[all]' (or the family's own extra, see README)",
                  highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:
        # typer vendors click, so its exceptions are recognized by their class names
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "ClickException" in kinds:
            message = exc.format_message()  # type: ignore[attr-defined]
            from tenfold.errors import other_process_of_a_launcher

            if other_process_of_a_launcher():  # the node's first process prints it and exits 2 (see above)
                return 0
            if message:  # empty for a bare `tenfold`
                err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
            return 2
        if "Exit" in kinds:
            return int(getattr(exc, "exit_code", 0))
        if "Abort" in kinds:
            return 1
        raise


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
