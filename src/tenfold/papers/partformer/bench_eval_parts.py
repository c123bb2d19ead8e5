"""``eval-parts``: seconds per image of our PartPQ evaluator against the panoptic_parts 2.0rc6 reference.

Same procedural images for both (17 things + 2 stuff segments each, every corner case, predictions with
shifted, split and dropped instances and swapped parts), one process, one thread, at two sizes: 256x512
and the Cityscapes size 1024x2048 (both in ``--quick`` too, with fewer images: the reference takes seconds
per Cityscapes-size image). The benchmark asserts that both give identical per-class TP / FP / FN and
segment-score sums (to 1e-12) before it reports any time.

Timed per image, interleaved (the reference on an image, then ours on the same image), so that a change in
machine load hits both alike: the reference's per-image work on in-memory arrays (its file reading
excluded), and ours both on arrays and end to end from the TIFF / PNG files (reading included), so the
files ratio is conservative. Each time is taken on two clocks: wall (``perf_counter``) and the process's
CPU time (``process_time``; one thread, so on an idle machine the two agree). On a loaded machine the wall
ratio depends on how the scheduler shared the cores while each side ran; the CPU-time ratio does not
(``cpu_share`` says what fraction of a core the measured code got).

Target: ours at least 25x faster per image than the reference, files (reading included) vs the reference
on arrays; the arrays ratio is reported with the same bar. It is checked at each size, on each clock.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tenfold.benchmarks.common import fixed_threads, target

NAME = "eval-parts"
DESCRIPTION = ("PartPQ evaluator: seconds per image at 256x512 and 1024x2048 (Cityscapes), ours (files, arrays) "
               "vs the panoptic_parts reference, wall and CPU time")

TARGET = 25.0   # ours (files, reading included) at least 25x faster than the reference per image
# (height, width, images) per size; the reference costs about 0.6 s (256x512) and 8 s (1024x2048) of CPU per image
QUICK_SIZES = ((256, 512, 2), (1024, 2048, 2))
FULL_SIZES = ((256, 512, 4), (1024, 2048, 3))


def _predictions(gts, spec, seed):
    from tenfold.panoptic.corrupt import CORRUPTIONS
    from tenfold.panoptic.merge import gt_to_prediction

    rng = np.random.default_rng(seed)
    preds = []
    for gt in gts:
        pred = gt_to_prediction(gt, spec)
        for name, fn in CORRUPTIONS.items():
            kwargs = {"shift": 24} if name == "shifted mask" else {}
            pred = fn(pred, spec, 0.2, rng, **kwargs)
        preds.append(pred.astype(np.uint8))
    return preds


def _timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def _median_timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds over ``repeats`` calls."""
    samples = [_timed(fn)[:2] for _ in range(repeats)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def measure_size(height: int, width: int, n: int, repeats: int, reference: bool = True) -> dict:
    """Times of ours (arrays, files) and, if ``reference``, of panoptic_parts on ``n`` procedural images of
    ``height`` x ``width``; raises AssertionError if the two disagree on any class."""
    from tenfold.data.panoptic_scenes import generate_scenes, write_scenes
    from tenfold.panoptic.evaluator import evaluate_pair
    from tenfold.panoptic.format import EvalSpec, write_prediction
    from tenfold.panoptic.metrics import PartStats, image_stats

    scenes = generate_scenes(n, seed=0, height=height, width=width, things=(17, 17))
    row: dict = {"image_size": [height, width], "images": n, "things_per_image": 17, "stuff_per_image": 2}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_scenes(Path(tmp) / "data", scenes)
        spec = EvalSpec.load(paths["eval_spec"])
        gts = [s.uids for s in scenes]
        preds = _predictions(gts, spec, seed=1)
        files = []
        for gt_file, pred in zip(sorted(paths["labels"].glob("*.tif")), preds):
            pred_file = Path(tmp) / "pred" / f"{gt_file.stem}.png"
            write_prediction(pred_file, pred[..., 0], pred[..., 1], pred[..., 2])
            files.append((gt_file, pred_file))
        if reference:
            from tenfold.panoptic.oracle import import_reference, per_class, reference_image_stats, reference_spec

            _, ev = import_reference()
            ref_spec, ref_total = reference_spec(paths["eval_spec"]), ev.PQStat()
        ours = PartStats()
        t = dict.fromkeys(("arrays_wall", "arrays_cpu", "files_wall", "files_cpu", "ref_wall", "ref_cpu"), 0.0)
        image_stats(gts[0], preds[0], spec)                    # warm-up (imports, first allocations)
        for i, (gt, pred) in enumerate(zip(gts, preds)):
            if reference:
                wall, cpu, stat = _timed(lambda: reference_image_stats(ref_spec, gt, pred))
                ref_total += stat
                t["ref_wall"] += wall
                t["ref_cpu"] += cpu
            ours += image_stats(gt, pred, spec)
            for kind, fn in (("arrays", lambda: image_stats(gt, pred, spec)),
                             ("files", lambda: evaluate_pair(*files[i], spec))):
                wall, cpu = _median_timed(fn, repeats)
                t[f"{kind}_wall"] += wall
                t[f"{kind}_cpu"] += cpu
        for clock in ("wall", "cpu"):
            for kind in ("arrays", "files"):
                row[f"ours_s_per_image_{kind}_{clock}"] = t[f"{kind}_{clock}"] / n
        if not reference:
            return row
        worst = 0.0
        for sid, (tp, fp, fn, iou) in per_class(ref_spec, ref_total).items():
            got = (int(ours.part_pq.tp[sid]), int(ours.part_pq.fp[sid]), int(ours.part_pq.fn[sid]))
            if got != (tp, fp, fn) or abs(ours.part_pq.score[sid] - iou) > 1e-12:
                raise AssertionError(f"eval-parts benchmark: {height}x{width}: class {sid} differs from the reference: "
                                     f"ours {got}, {ours.part_pq.score[sid]!r} vs reference {(tp, fp, fn)}, {iou!r}")
            worst = max(worst, abs(ours.part_pq.score[sid] - iou))
        row.update({"reference_s_per_image_wall": t["ref_wall"] / n, "reference_s_per_image_cpu": t["ref_cpu"] / n,
                    "reference_matched_segments": int(sum(ours.part_pq.tp)), "max_abs_difference_vs_reference": worst,
                    "cpu_share_reference": t["ref_cpu"] / t["ref_wall"] if t["ref_wall"] else None})
        for clock in ("wall", "cpu"):
            for kind in ("arrays", "files"):
                row[f"speedup_{kind}_{clock}"] = t[f"ref_{clock}"] / t[f"{kind}_{clock}"]
    return row


def size_targets(row: dict) -> list[dict]:
    """The speed-up targets of one size: files and arrays vs the reference, on the wall and CPU clocks."""
    h, w = row["image_size"]
    out = []
    for kind, what in (("files", "ours from TIFF/PNG files (reading included)"), ("arrays", "ours on arrays")):
        for clock, label in (("wall", "wall time"), ("cpu", "CPU time")):
            value = row[f"speedup_{kind}_{clock}"]
            out.append(target(f"{h}x{w}: {what} vs reference (arrays), speed-up in {label}", value,
                              f">= {TARGET:g}", value >= TARGET))
    return out


def run(quick: bool = False, sizes=None) -> dict:
    from tenfold.panoptic.oracle import import_reference

    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    repeats = 3 if quick else 5
    try:
        import_reference()
        reference = True
    except ImportError as exc:
        reference = False
        missing = f"not installed ({exc}); pip install panoptic_parts==2.0rc6 scikit-learn"
    load_before = os.getloadavg()
    rows = []
    with fixed_threads(1):
        for height, width, n in sizes:
            rows.append(measure_size(height, width, n, repeats, reference))
    result = {"threads": 1, "sizes": rows, "load_average_1min": [load_before[0], os.getloadavg()[0]],
              "cpus": os.cpu_count(),
              "note": "wall-time ratios are only as good as the machine was idle: compare cpu_share_reference "
                      "with 1 (the fraction of a core the reference got while it was timed); CPU-time ratios "
                      "count the work done whatever the load"}
    if not reference:
        result["reference"] = missing
        result["targets"] = [target("reference available for the speed ratio", 0.0, "installed", False)]
        return result
    result["targets"] = [t for row in rows for t in size_targets(row)]
    return result
