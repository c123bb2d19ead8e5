"""Folder evaluator for part-aware panoptic predictions (the ``tenfold eval-parts`` command).

Pairs ground-truth label files (``*.tif``, panoptic_parts layout: files directly in ``gt`` or one folder
down, e.g. ``gtFinePanopticParts/val/<city>/``) with prediction PNGs by image id, evaluates each image
with one joint histogram (:mod:`tenfold.panoptic.metrics`), optionally in several processes, and sums.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tenfold.engine import progress
from tenfold.errors import ConfigError, DataError
from tenfold.panoptic.format import EvalSpec, read_gt, read_prediction
from tenfold.panoptic.metrics import PartStats, image_stats, summarize

GT_SUFFIXES = ("_gtFinePanopticParts",)


def _files(folder: Path, ext: str) -> list[Path]:
    """Files with extension ``ext`` in ``folder`` and one level below (the reference's search depth)."""
    return sorted([*folder.glob(f"*{ext}"), *folder.glob(f"*/*{ext}")])


def _image_id(path: Path) -> str:
    stem = path.stem
    for suffix in GT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _find(image_id: str, files: list[Path], kind: str, folder: Path) -> Path:
    """The file whose name contains ``image_id`` (the reference's rule); exact stems win, ambiguity is an error."""
    hits = [f for f in files if image_id in f.name]
    if len(hits) > 1:
        exact = [f for f in hits if _image_id(f) == image_id or f.stem == image_id]
        hits = exact or [f for f in hits if f.name.startswith(image_id)] or hits
    if not hits:
        raise DataError(f"no {kind} file for image id {image_id!r} in {folder}")
    if len(hits) > 1:
        raise DataError(f"image id {image_id!r} matches several {kind} files in {folder}: "
                        f"{hits[0].name}, {hits[1].name}")
    return hits[0]


def read_image_ids(images_json: str | Path) -> list[str]:
    """The image ids of an images json ``{"images": [{"id": ...}, ...]}`` (one-line errors)."""
    images_json = Path(images_json)
    if not images_json.is_file():
        raise DataError(f"images json {images_json} does not exist")
    try:
        data = json.loads(images_json.read_text())
        return [str(im["id"]) for im in data["images"]]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"images json {images_json} is malformed: expected "
                        '{"images": [{"id": ..., "file_name": ...}, ...]}') from None


def pair_files(gt_dir: str | Path, pred_dir: str | Path, images_json: str | Path | None = None
               ) -> list[tuple[str, Path, Path]]:
    """``[(image_id, gt_file, pred_file), ...]``: ids from ``images_json`` (``{"images": [{"id": ...}]}``)
    or, without it, from every GT ``.tif`` file."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for name, folder in (("--gt", gt_dir), ("--pred", pred_dir)):
        if not folder.is_dir():
            raise DataError(f"{name} folder {folder} does not exist")
    gt_files = _files(gt_dir, ".tif")
    pred_files = _files(pred_dir, ".png")
    if images_json is not None:
        ids = read_image_ids(images_json)
    else:
        ids = [_image_id(f) for f in gt_files]
    if not ids:
        raise DataError(f"no ground-truth .tif files in {gt_dir} (or its subfolders)")
    return [(i, _find(i, gt_files, "ground-truth .tif", gt_dir), _find(i, pred_files, "prediction .png", pred_dir))
            for i in ids]


def evaluate_pair(gt_file: Path, pred_file: Path, spec: EvalSpec, include_bg: bool = True) -> PartStats:
    """Statistics of one image from its files (errors name the files)."""
    gt = read_gt(gt_file)
    pred = read_prediction(pred_file)
    return image_stats(gt, pred, spec, include_bg=include_bg, where=f"prediction {pred_file}",
                       gt_where=f"ground truth {gt_file}")


def _evaluate_chunk(args) -> PartStats:
    spec_path, pairs, include_bg = args
    spec = EvalSpec.load(spec_path)
    total = PartStats()
    for _, gt_file, pred_file in pairs:
        total += evaluate_pair(gt_file, pred_file, spec, include_bg)
    return total


def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, eval_spec_path: str | Path,
                     images_json: str | Path | None = None, workers: int = 1, *, include_bg: bool = True,
                     combiner: str = "geometric") -> dict:
    """Evaluate every image of ``gt_dir`` against ``pred_dir``: PQ, PartPQ (all / with / without parts),
    part mIoU and PWQ (provisional), with per-class and per-part tables. Returns JSON-ready results."""
    if workers < 1:
        raise ConfigError(f"workers={workers!r} is invalid: expected a positive number of processes")
    spec = EvalSpec.load(eval_spec_path)
    pairs = pair_files(gt_dir, pred_dir, images_json)
    total = PartStats()
    if workers == 1 or len(pairs) == 1:
        for _, gt_file, pred_file in progress.track(pairs, "eval-parts images"):
            total += evaluate_pair(gt_file, pred_file, spec, include_bg)
    else:
        chunk = max(1, min(16, len(pairs) // (4 * workers) or 1))
        jobs = [(str(spec.path), pairs[i:i + chunk], include_bg) for i in range(0, len(pairs), chunk)]
        with ProcessPoolExecutor(max_workers=workers) as pool, progress.bar("eval-parts images", len(pairs)) as bar:
            for job, stats in zip(jobs, pool.map(_evaluate_chunk, jobs)):
                total += stats
                bar.advance(len(job[1]))
    results = summarize(total, spec, combiner=combiner, include_bg=include_bg)
    results.update({"eval_spec": str(Path(eval_spec_path)), "gt": str(gt_dir), "pred": str(pred_dir)})
    return results


def _fmt(value) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def format_table(results: dict) -> str:
    """A text table of the headline metrics (percent) and the per-class results."""
    terms = results.get("PWQ_terms", {})
    lines = [
        f"images: {results.get('images')}   eval spec: {results.get('eval_spec', '')}",
        "",
        f"{'metric':<30}{'value':>8}",
        f"{'PQ':<30}{_fmt(results['PQ']):>8}",
        f"{'  PQ things / stuff':<30}{_fmt(results['PQ_things']):>8} / {_fmt(results['PQ_stuff']).strip()}",
        f"{'PartPQ':<30}{_fmt(results['PartPQ']):>8}",
        f"{'  PartPQ with parts':<30}{_fmt(results['PartPQ_parts']):>8}",
        f"{'  PartPQ without parts':<30}{_fmt(results['PartPQ_noparts']):>8}",
        f"{'part mIoU':<30}{_fmt(results['part_mIoU']):>8}",
        f"{'PWQ (provisional)':<30}{_fmt(results['PWQ (provisional)']):>8}",
        f"  = {terms.get('combiner', 'geometric')} mean of PQ_w = {_fmt(terms.get('PQ_w')).strip()} "
        f"and mIoU_p = {_fmt(terms.get('mIoU_p')).strip()}",
        "",
        f"{'class':<18}{'parts':>6}{'PQ':>8}{'PartPQ':>8}{'PartSQ':>8}{'PartRQ':>8}{'TP':>6}{'FP':>6}{'FN':>6}",
    ]
    for sid, row in results.get("per_class", {}).items():
        lines.append(f"{row['name'][:17]:<18}{'yes' if row['has_parts'] else '':>6}{_fmt(row['PQ']):>8}"
                     f"{_fmt(row['PartPQ']):>8}{_fmt(row['PartSQ']):>8}{_fmt(row['PartRQ']):>8}"
                     f"{row['TP']:>6}{row['FP']:>6}{row['FN']:>6}")
    return "\n".join(lines)


class PartPQEvaluator:
    """Streaming PQ / PartPQ / part mIoU / PWQ (provisional) evaluator with detectron2's
    ``DatasetEvaluator`` protocol: :meth:`reset`, :meth:`process` per image or batch, :meth:`evaluate`.

    Each processed image is reduced at once to its counts by one joint histogram
    (:func:`tenfold.panoptic.metrics.image_stats`), so memory does not grow with the number of images;
    :meth:`evaluate` sums them into the same dict as :func:`~tenfold.panoptic.metrics.evaluate_arrays`
    and :func:`evaluate_folders` (PartPQ of de Geus et al., CVPR'21, Eq. 1, as panoptic_parts computes it;
    see :mod:`tenfold.panoptic.metrics`).

    ``spec``: an :class:`EvalSpec` or its path / shipped name (``"ppq_cpp_19_23_cvpr21_default"``).
    Ground truth is (H, W) int uids; predictions are (H, W, 3) ``(sid, iid, pid)``; numpy arrays or torch
    tensors (tensors are counted on their own device).

    >>> import numpy as np
    >>> from tenfold.panoptic import PartPQEvaluator
    >>> ev = PartPQEvaluator("ppq_cpp_19_23_cvpr21_default")
    >>> gt = np.full((8, 8), 23, np.int32)                      # sky (stuff, sid 23)
    >>> gt[2:6, 2:6] = 2_400_101                                # person 1 (sid 24), torso (pid 1)
    >>> pred = np.zeros((8, 8, 3), np.uint8)
    >>> pred[..., 0] = 23; pred[..., 2] = 1                     # sky; pid 1 is the dummy of a class without parts
    >>> pred[2:6, 2:6] = (24, 1, 1)
    >>> ev.reset(); ev.process(gt, pred)
    >>> res = ev.evaluate()
    >>> res["images"], res["PQ"], res["PartPQ"]
    (1, 1.0, 1.0)
    """

    def __init__(self, spec: EvalSpec | str | Path, *, include_bg: bool = True, combiner: str = "geometric") -> None:
        from tenfold.panoptic.metrics import COMBINERS

        if combiner not in COMBINERS:
            raise ConfigError(f"combiner={combiner!r} is invalid: expected one of {', '.join(COMBINERS)}")
        self.spec = spec if isinstance(spec, EvalSpec) else EvalSpec.load(spec)
        self.include_bg, self.combiner = bool(include_bg), combiner
        self.reset()

    def reset(self) -> None:
        """Forget every processed image (call before each evaluation pass)."""
        self._stats = PartStats()

    def process(self, gt, pred, pred_flat=None) -> None:
        """Add one image (``gt`` (H, W), ``pred`` (H, W, 3), optional ``pred_flat`` (H, W) part map for part
        mIoU) or a batch: ``gt`` (N, H, W) or a list, ``pred`` (N, H, W, 3) or a list, whose items may be
        the ``(pred, pred_flat)`` pairs that :func:`tenfold.panoptic.inference.predict` returns."""
        if getattr(gt, "ndim", None) == 2:
            gts, preds, flats = [gt], [pred], [pred_flat]
        else:
            if getattr(gt, "ndim", 3) != 3:
                raise DataError(f"gt has shape {tuple(gt.shape)}: expected (H, W) uids or a batch (N, H, W)")
            gts, preds = list(gt), list(pred)
            flats = [None] * len(gts) if pred_flat is None else list(pred_flat)
            if not len(gts) == len(preds) == len(flats):
                raise DataError(f"a batch of {len(gts)} ground-truth images has {len(preds)} predictions"
                                + ("" if pred_flat is None else f" and {len(flats)} part maps"))
        for g, p, f in zip(gts, preds, flats):
            if isinstance(p, (tuple, list)):  # (pred, pred_flat) from inference.predict
                p, f = p
            self._stats += image_stats(g, p, self.spec, include_bg=self.include_bg, pred_flat=f,
                                       where=f"image {self._stats.images}")

    @property
    def stats(self) -> PartStats:
        """The summed per-image counts (picklable: gather them from other processes or ranks, then
        :meth:`merge`)."""
        return self._stats

    def merge(self, *others: "PartPQEvaluator | PartStats") -> "PartPQEvaluator":
        """Add the images of other evaluators (or their :attr:`stats`), e.g. one per process or distributed
        rank. The result equals one evaluator that processed every image, exactly and in any order: counts
        are integers and the TP scores are summed with ``math.fsum`` when evaluating."""
        for other in others:
            if isinstance(other, PartPQEvaluator):
                if other.spec.path != self.spec.path or other.include_bg != self.include_bg:
                    raise DataError(f"cannot merge an evaluator of eval spec {other.spec.path} "
                                    f"(include_bg={other.include_bg}) into one of {self.spec.path} "
                                    f"(include_bg={self.include_bg}): expected the same eval spec and settings")
                other = other.stats
            self._stats += other
        return self

    def evaluate(self) -> dict:
        """PQ (all / things / stuff), PartPQ (all / with / without parts), part mIoU and PWQ (provisional),
        with per-class and per-part tables, over every image processed since :meth:`reset`."""
        return summarize(self._stats, self.spec, combiner=self.combiner, include_bg=self.include_bg)
