"""``eval-parts``: seconds per image of our PartPQ evaluator against the panoptic_parts 2.0rc6 reference.

Same procedural 1024x2048 images for both (17 things + 2 stuff segments each, every corner case,
predictions with shifted, split and dropped instances and swapped parts), one process, one thread.
The benchmark asserts that both give identical per-class TP / FP / FN and segment-score sums
(to 1e-12) before it reports any time. Target: ours at least 25x faster per image.

Timed: the reference's per-image work on in-memory arrays (its file reading excluded), and ours both
on arrays and end to end from the TIFF / PNG files (reading included), so the ratio is conservative.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from tenfold.benchmarks.common import fixed_threads, target

NAME = "eval-parts"
DESCRIPTION = "PartPQ evaluator: seconds per 1024x2048 image, ours vs the panoptic_parts reference"


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


def run(quick: bool = False) -> dict:
    from tenfold.data.panoptic_scenes import generate_scenes, write_scenes
    from tenfold.panoptic.evaluator import evaluate_pair
    from tenfold.panoptic.format import EvalSpec, write_prediction
    from tenfold.panoptic.metrics import PartStats, image_stats

    height, width, n = (256, 512, 2) if quick else (1024, 2048, 3)
    scenes = generate_scenes(n, seed=0, height=height, width=width, things=(17, 17))
    with tempfile.TemporaryDirectory() as tmp, fixed_threads(1):
        paths = write_scenes(Path(tmp) / "data", scenes)
        spec = EvalSpec.load(paths["eval_spec"])
        gts = [s.uids for s in scenes]
        preds = _predictions(gts, spec, seed=1)
        files = []
        for i, (gt_file, pred) in enumerate(zip(sorted(paths["labels"].glob("*.tif")), preds)):
            pred_file = Path(tmp) / "pred" / f"{gt_file.stem}.png"
            write_prediction(pred_file, pred[..., 0], pred[..., 1], pred[..., 2])
            files.append((gt_file, pred_file))

        def ours_arrays():
            total = PartStats()
            for gt, pred in zip(gts, preds):
                total += image_stats(gt, pred, spec)
            return total

        def ours_files():
            total = PartStats()
            for gt_file, pred_file in files:
                total += evaluate_pair(gt_file, pred_file, spec)
            return total

        ours = ours_arrays()
        repeats = 3 if quick else 5
        t_arrays = _median(ours_arrays, repeats)
        t_files = _median(ours_files, repeats)
        result = {
            "image_size": [height, width], "images": n, "things_per_image": 17, "stuff_per_image": 2,
            "ours_s_per_image_arrays": t_arrays / n, "ours_s_per_image_files": t_files / n,
        }
        from tenfold.panoptic.oracle import import_reference, reference_per_class

        try:
            import_reference()
        except ImportError as exc:
            result["reference"] = f"not installed ({exc}); pip install panoptic_parts==2.0rc6 scikit-learn"
            result["targets"] = [target("reference available for the speed ratio", 0.0, "installed", False)]
            return result
        t0 = time.perf_counter()
        ref = reference_per_class(paths["eval_spec"], list(zip(gts, preds)))
        t_ref = time.perf_counter() - t0
        worst = 0.0
        for sid, (tp, fp, fn, iou) in ref.items():
            got = (int(ours.part_pq.tp[sid]), int(ours.part_pq.fp[sid]), int(ours.part_pq.fn[sid]))
            if got != (tp, fp, fn) or abs(ours.part_pq.score[sid] - iou) > 1e-12:
                raise AssertionError(f"eval-parts benchmark: class {sid} differs from the reference: "
                                     f"ours {got}, {ours.part_pq.score[sid]!r} vs reference {(tp, fp, fn)}, {iou!r}")
            worst = max(worst, abs(ours.part_pq.score[sid] - iou))
        speedup_files = t_ref / t_files
        result.update({
            "reference_s_per_image": t_ref / n, "reference_matched_segments": int(sum(v[0] for v in ref.values())),
            "max_abs_difference_vs_reference": worst,
            "speedup_arrays": t_ref / t_arrays, "speedup_files": speedup_files,
            "targets": [target("ours (files, reading included) vs reference (arrays), speed-up", speedup_files,
                               ">= 25", speedup_files >= 25)],
        })
        return result


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
