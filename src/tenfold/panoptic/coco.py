"""COCO panoptic export and import: our part-aware predictions for detectron2 / Mask2Former / panopticapi
users, and their panoptic predictions for our evaluator.

COCO panoptic format (Kirillov et al., CVPR'19, section 3; panopticapi ``README``): per image one RGB PNG
whose pixel holds a segment id ``id = R + 256 G + 256^2 B`` (:func:`~tenfold.panoptic.format.rgb2id`),
``id = 0`` is void (not scored), and one JSON entry
``{"image_id", "file_name", "segments_info": [{"id", "category_id", "area", "bbox", "iscrowd"}]}``;
the category list ``[{"id", "name", "isthing"}]`` says which classes are things.

Ours to COCO (:func:`to_coco_panoptic`): every distinct evaluated ``(sid, iid)`` of a PPS prediction is one
segment with ``id = 256 sid + iid`` (unique, non-zero since evaluated sids are >= 1, below 2^24) and
``category_id = sid``; sid 255 (no prediction) and dataset classes the spec does not evaluate become void
(id 0), exactly the pixels our evaluator leaves out of every predicted segment. Segments are listed in
``(sid, iid)`` order, so the toolkit's import rule (instance ids count each category's segments in list
order, :func:`tenfold.panoptic.merge.merge_panoptic_file`) gives back each class's instance ids ranked:
ours -> COCO -> ours is the identity on sid and on the segments, and on iid where each class's iids are
``1..n``. The pid channel, which COCO panoptic cannot hold, goes to a flat part-semantic map
(:func:`part_flat_map`), the input of ``tenfold merge-parts``; with it the round trip restores the pids too.

Ground truth to COCO (:func:`gt_to_coco_panoptic`): void = GT sids the spec does not evaluate, one
``iscrowd = 1`` segment per things class for its pixels without instance id, one segment per (sid, iid)
and one per stuff class (instance-less and iid-0 stuff pixels together), as our evaluator counts them.
On these files panopticapi's ``pq_compute`` gives our PQ (``tests/panoptic/test_coco.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from tenfold.errors import DataError
from tenfold.panoptic.format import UNKNOWN_PART, EvalSpec, id2rgb

__all__ = ["coco_categories", "to_coco_panoptic", "part_flat_map", "gt_to_coco_panoptic", "from_coco_panoptic",
           "export_folders", "PRED_JSON", "GT_JSON"]

PRED_JSON, GT_JSON = "predictions.json", "gt.json"


def coco_categories(spec: EvalSpec) -> list[dict]:
    """The COCO ``categories`` of an eval spec: one per evaluated sid, ``id`` = the sid, ``isthing`` from
    ``eval_sid_things``."""
    things = set(spec.things)
    return [{"id": int(s), "name": spec.sid2name.get(s, str(s)), "isthing": int(s in things)}
            for s in spec.eval_sids]


def _as_numpy(pred) -> np.ndarray:
    if isinstance(pred, torch.Tensor):
        return pred.detach().cpu().numpy()
    return np.asarray(pred)


def _check_pps(pred: np.ndarray, spec: EvalSpec, where: str) -> np.ndarray:
    """An (H, W, 3) int64 copy of a PPS prediction whose ids fit the spec (the evaluator's own checks)."""
    from tenfold.panoptic.metrics import check_prediction, check_prediction_ids

    if pred.ndim != 3 or pred.shape[2] != 3:
        raise DataError(f"{where}: shape {tuple(pred.shape)} is invalid: expected (H, W, 3) = (sid, iid, pid)")
    if not np.issubdtype(pred.dtype, np.integer):
        raise DataError(f"{where}: dtype {pred.dtype} is invalid: expected integer (sid, iid, pid)")
    check_prediction(pred, pred.shape[:2], where)
    pred = pred.astype(np.int64)
    # distinct (sid, iid) "combos" and (combo, pid) cells by bincount, as the evaluator (no sort: O(N))
    seg_px = (pred[..., 0] * 256 + pred[..., 1]).reshape(-1)
    svals = np.flatnonzero(np.bincount(seg_px, minlength=1))
    code = np.zeros(256 * 256, np.int64)
    code[svals] = np.arange(svals.size)
    cells = np.flatnonzero(np.bincount(code[seg_px] * 256 + pred[..., 2].reshape(-1), minlength=1))
    check_prediction_ids(svals // 256, svals % 256, cells // 256, cells % 256, spec, where)
    return pred


def _segments_info(ids: np.ndarray, per_class: int, crowd_at_zero: bool = False) -> list[dict]:
    """``segments_info`` of an (H, W) id map (id 0 = void) whose ids are ``per_class * sid + k``:
    ``category_id = id // per_class``, ``iscrowd`` where ``k = 0`` if ``crowd_at_zero``; area = pixel count,
    bbox = [x, y, w, h] of the segment's pixels (panopticapi's converters); in increasing id order."""
    if ids.size == 0:
        return []
    h, w = ids.shape
    area = np.bincount(ids.reshape(-1))
    seg = np.flatnonzero(area)
    seg = seg[seg > 0]
    # the rows and the columns each segment occupies (O(N), no sort), then their first and last
    lut = np.zeros(area.size, np.int64)
    lut[seg] = np.arange(seg.size)
    comp, valid = lut[ids], ids > 0
    rows = np.zeros((seg.size, h), bool)
    rows[comp[valid], np.broadcast_to(np.arange(h)[:, None], ids.shape)[valid]] = True
    cols = np.zeros((seg.size, w), bool)
    cols[comp[valid], np.broadcast_to(np.arange(w)[None, :], ids.shape)[valid]] = True
    y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    return [{"id": int(s), "category_id": int(s) // per_class, "area": int(area[s]),
             "bbox": [int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)],
             "iscrowd": int(crowd_at_zero and int(s) % per_class == 0)} for k, s in enumerate(seg)]


def to_coco_panoptic(pred, spec: EvalSpec, where: str = "prediction") -> tuple[np.ndarray, list[dict]]:
    """``(ids, segments_info)`` of a PPS prediction (an (H, W, 3) ``(sid, iid, pid)`` numpy array or torch
    tensor): ``ids`` (H, W) int64 with ``id = 256 sid + iid`` per evaluated segment and 0 (void) for sid 255
    and for dataset classes the spec does not evaluate; write it with ``id2rgb`` as the COCO PNG.
    Ids outside the spec (a sid that is not a dataset class nor 255, a pid the class cannot have) are a
    one-line :class:`DataError` naming ``where``, as in the evaluator."""
    pred = _check_pps(_as_numpy(pred), spec, where)
    sid, iid = pred[..., 0], pred[..., 1]
    evaluated = np.zeros(256, bool)
    evaluated[spec.eval_sids] = True
    ids = np.where(evaluated[sid], sid * 256 + iid, 0)
    return ids, _segments_info(ids, 256)


def part_flat_map(pred, spec: EvalSpec, where: str = "prediction") -> np.ndarray:
    """(H, W) uint8 flat part-semantic map of a PPS prediction, the inverse of ``merge_to_pps`` on the pid
    channel: inside a class with parts, an evaluated pid gives its flat id (``eval_sid_pid2eval_pid_flat``)
    and any other pid (0, unknown 255, the ignore label) gives 255, which ``merge_to_pps`` reads back as the
    unknown part; elsewhere 0 (background)."""
    pred = _check_pps(_as_numpy(pred), spec, where)
    if spec.num_flat >= UNKNOWN_PART:
        raise DataError(f"eval spec {spec.path}: {spec.num_flat} flat parts do not fit a uint8 part PNG "
                        f"(at most {UNKNOWN_PART - 1})")
    sid, pid = pred[..., 0], pred[..., 2]
    with_parts = np.zeros(256, bool)
    with_parts[spec.parts_sids] = True
    in_parts = with_parts[sid]
    flat = spec.flat_lut[np.clip(sid * 100 + pid, 0, 9999)]
    evaluated_pid = np.zeros((256, 256), bool)
    for s, pids in spec.sid2pids.items():
        evaluated_pid[s, pids] = True
    known = evaluated_pid[sid, pid]
    return np.where(in_parts, np.where(known, flat, UNKNOWN_PART), 0).astype(np.uint8)


def gt_to_coco_panoptic(uids: np.ndarray, spec: EvalSpec, where: str = "ground truth"
                        ) -> tuple[np.ndarray, list[dict]]:
    """``(ids, segments_info)`` of GT uids in COCO panoptic form, as our evaluator counts segments for PQ:
    void (id 0) = sids the spec does not evaluate; per things class one ``iscrowd = 1`` segment
    (``id = 1024 sid``) of its pixels without instance id; per (sid, iid) one segment
    (``id = 1024 sid + iid + 1``); stuff pixels with iid 0 or none form one segment. Invalid uids are a
    one-line :class:`DataError` (the evaluator's GT checks)."""
    from tenfold.panoptic.metrics import gt_labels

    sid, iid, _ = (x.astype(np.int64) for x in gt_labels(np.asarray(uids), spec, where))
    evaluated = np.zeros(256, bool)
    evaluated[spec.eval_sids] = True
    thing = np.zeros(256, bool)
    thing[spec.things] = True
    crowd = thing[sid] & (iid < 0)
    # iids go up to 999: 1024 per class keeps ids unique and below 2^24 (99 * 1024 + 1000)
    ids = np.where(evaluated[sid], sid * 1024 + np.where(crowd, 0, np.maximum(iid, 0) + 1), 0)
    return ids, _segments_info(ids, 1024, crowd_at_zero=True)


def from_coco_panoptic(panoptic, segments_info: list[dict], spec: EvalSpec, part_flat=None,
                       where: str = "prediction") -> np.ndarray:
    """(H, W, 3) uint8 PPS prediction from a COCO panoptic prediction (RGB PNG array or (H, W) ids, and its
    ``segments_info`` with ``category_id`` = dataset sids) and an optional flat part map: the toolkit's
    merge (:func:`tenfold.panoptic.merge.merge_panoptic_file`). Without ``part_flat``, classes with parts
    get the unknown pid 255 (PQ is unaffected; PartPQ then scores those classes' parts as unknown)."""
    from tenfold.panoptic.merge import merge_panoptic_file

    flat = None if part_flat is None else _as_numpy(part_flat)
    return merge_panoptic_file(_as_numpy(panoptic), segments_info, flat, spec, where)


# ---------------------------------------------------------------------------------------------
# folders (the ``tenfold export-coco`` command)
# ---------------------------------------------------------------------------------------------
def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _pred_files(pred_dir: Path, images_json) -> list[tuple[str, Path]]:
    from tenfold.panoptic.evaluator import _files, _find, read_image_ids

    files = _files(pred_dir, ".png")
    if images_json is not None:
        return [(i, _find(i, files, "prediction .png", pred_dir)) for i in read_image_ids(images_json)]
    if not files:
        raise DataError(f"no prediction .png files in {pred_dir} (or its subfolders)")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DataError(f"image id {f.stem!r} names two prediction files in {pred_dir}: {seen[f.stem]}, {f}")
        seen[f.stem] = f
    return list(seen.items())


def export_folders(eval_spec: "str | Path | EvalSpec", pred_dir, out_dir, gt_dir=None, images_json=None
                   ) -> dict:
    """The ``tenfold export-coco`` command. Writes under ``out_dir``:

    - ``predictions.json`` (``images``, ``annotations``, ``categories``) and ``predictions/<id>.png``
      (COCO panoptic; panopticapi finds the folder from the JSON's name);
    - ``parts/<id>.png``: flat part ids (:func:`part_flat_map`), for ``tenfold merge-parts``;
    - with ``gt_dir``: ``gt.json`` and ``gt/<id>.png``, the ground truth in COCO panoptic form
      (:func:`gt_to_coco_panoptic`), images paired as ``tenfold eval-parts`` pairs them.

    Image ids are the prediction file stems (or ``images_json``'s ids, or the GT's). Returns the paths
    (``pred_json``, ``pred_dir``, ``parts_dir`` and, with GT, ``gt_json``, ``gt_dir``) and ``images``, the
    number of images written."""
    from tenfold.io import atomic_write_bytes, atomic_write_json
    from tenfold.panoptic.evaluator import pair_files
    from tenfold.panoptic.format import read_gt, read_prediction

    spec = eval_spec if isinstance(eval_spec, EvalSpec) else EvalSpec.load(eval_spec)
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if gt_dir is not None:
        pairs = [(i, p, g) for i, g, p in pair_files(gt_dir, pred_dir, images_json)]
    else:
        if not pred_dir.is_dir():
            raise DataError(f"--pred folder {pred_dir} does not exist")
        pairs = [(i, p, None) for i, p in _pred_files(pred_dir, images_json)]
    categories = coco_categories(spec)
    images, pred_anns, gt_anns = [], [], []
    for image_id, pred_file, gt_file in pairs:
        pred = read_prediction(pred_file)
        where = f"prediction {pred_file}"
        name = f"{image_id}.png"
        ids, segments = to_coco_panoptic(pred, spec, where)
        atomic_write_bytes(out_dir / "predictions" / name, _png_bytes(id2rgb(ids)))
        atomic_write_bytes(out_dir / "parts" / name, _png_bytes(part_flat_map(pred, spec, where)))
        pred_anns.append({"image_id": image_id, "file_name": name, "segments_info": segments})
        images.append({"id": image_id, "file_name": name, "height": int(pred.shape[0]), "width": int(pred.shape[1])})
        if gt_file is not None:
            uids = read_gt(gt_file)
            if uids.shape != pred.shape[:2]:
                raise DataError(f"{where}: size {pred.shape[0]}x{pred.shape[1]} does not match the ground truth's "
                                f"{uids.shape[0]}x{uids.shape[1]} ({gt_file})")
            gids, gsegments = gt_to_coco_panoptic(uids, spec, f"ground truth {gt_file}")
            atomic_write_bytes(out_dir / "gt" / name, _png_bytes(id2rgb(gids)))
            gt_anns.append({"image_id": image_id, "file_name": name, "segments_info": gsegments})
    paths = {"pred_json": out_dir / PRED_JSON, "pred_dir": out_dir / "predictions", "parts_dir": out_dir / "parts",
             "images": len(pairs)}
    atomic_write_json(paths["pred_json"], {"images": images, "annotations": pred_anns, "categories": categories})
    if gt_dir is not None:
        paths.update(gt_json=out_dir / GT_JSON, gt_dir=out_dir / "gt")
        atomic_write_json(paths["gt_json"], {"images": images, "annotations": gt_anns, "categories": categories})
    return paths

