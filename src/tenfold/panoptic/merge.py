"""Part-aware panoptic predictions: merging a panoptic map with a part-semantic map, and turning
ground truth into (perfect) predictions.

Merge rule (panoptic_parts toolkit ``merge_to_pps`` and Panoptic-PartFormer; ``panoptic_parts.md`` section 1):
for a pixel of a predicted segment of class ``c``

- ``c`` has parts: ``pid`` = the eval pid of the pixel's flat part if that flat part belongs to ``c``,
  else 255 (unknown part); the flat-to-pid table is built per class, so grouped specs whose flat ids are
  shared by several classes (``ppq_cpp_19_23_cvpr21_grouped``: 9 flat parts for humans and vehicles)
  decode correctly;
- ``c`` has no parts: ``pid = 1`` (dummy);
- unpredicted pixels (sid 255): ``(255, 0, 0)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tenfold.errors import DataError
from tenfold.panoptic.format import NO_PREDICTION, UNKNOWN_PART, EvalSpec, rgb2id


def flat_to_sid_pid(spec: EvalSpec) -> np.ndarray:
    """(num_flat + 1,) array: flat part id -> the first eval sid_pid that uses it (0 for background).

    With a grouped spec (flat ids shared across classes, e.g. ``ppq_cpp_19_23_cvpr21_grouped``) one flat id
    stands for several sid_pids; use :func:`flat_to_pid_table` to decode flat ids per class."""
    out = np.zeros(spec.num_flat + 1, np.int64)
    for sid_pid in np.flatnonzero(spec.flat_lut)[::-1]:
        out[spec.flat_lut[sid_pid]] = sid_pid
    return out


def flat_to_pid_table(spec: EvalSpec, unknown: int = UNKNOWN_PART) -> np.ndarray:
    """(256, num_flat + 2) table: ``[sid, flat]`` -> the eval pid of ``flat`` inside class ``sid``; the last
    column stands for any flat id outside ``0..num_flat`` (e.g. 255 "ignore" in a part PNG).

    As the toolkit's ``merge_to_pps`` (``_prepare_mappings``), the table is built per sid: for a class with
    parts, every flat id that one of its sid_pids maps to gives that pid, every other flat id (background 0,
    parts of other classes) gives ``unknown``; classes without parts get the dummy pid 1; sid 255 (no
    prediction) gets 0. Flat ids may be shared across classes (grouped specs) but not within one class.
    """
    table = np.ones((256, spec.num_flat + 2), np.int64)   # last column: flat ids outside 0..num_flat
    table[NO_PREDICTION] = 0
    for sid in spec.parts_sids:
        table[sid] = unknown
    for sid_pid in np.flatnonzero(spec.flat_lut):
        sid, pid, flat = sid_pid // 100, sid_pid % 100, int(spec.flat_lut[sid_pid])
        if not spec.has_parts(int(sid)):
            continue
        if table[sid, flat] != unknown:
            raise DataError(f"eval spec {spec.path}: flat part id {flat} is used twice by class {sid}: a flat id "
                            "may be shared between classes, not within one")
        table[sid, flat] = pid
    return table


def merge_to_pps(sid, iid, part_flat, spec: EvalSpec):
    """(H, W, 3) part-aware panoptic prediction from (H, W) sid, iid and flat part maps (numpy or torch).

    ``sid`` uses 255 for "no prediction"; ``part_flat`` uses 0 for background. The pid of a pixel is looked
    up per class in :func:`flat_to_pid_table` (the toolkit's rule, correct for grouped specs too). Torch
    inputs stay on their device and give a torch uint8 tensor.
    """
    is_torch = isinstance(sid, torch.Tensor)
    lib = torch if is_torch else np
    if tuple(sid.shape) != tuple(iid.shape) or tuple(sid.shape) != tuple(part_flat.shape):
        raise DataError(f"merge_to_pps: shapes {tuple(sid.shape)}, {tuple(iid.shape)}, {tuple(part_flat.shape)} "
                        "differ: expected three (H, W) maps")
    if bool((iid > 255).any()) or bool((iid < 0).any()):
        raise DataError("merge_to_pps: iid values must lie in 0..255 (at most 255 instances per class)")
    if bool((sid > 255).any()) or bool((sid < 0).any()):
        raise DataError("merge_to_pps: sid values must lie in 0..255 (255 = no prediction)")
    table = flat_to_pid_table(spec)
    out_of_range = table.shape[1] - 1   # as the toolkit: a flat id no class owns is an unknown part
    if is_torch:
        flat = part_flat.long()
        flat = torch.where((flat < 0) | (flat >= out_of_range), out_of_range, flat)
        pid = torch.as_tensor(table, device=sid.device)[sid.long(), flat]
    else:
        flat = np.asarray(part_flat, np.int64)
        flat = np.where((flat < 0) | (flat >= out_of_range), out_of_range, flat)
        pid = table[np.asarray(sid, np.int64), flat]
    iid = lib.where(sid == NO_PREDICTION, 0, iid)
    if is_torch:
        return torch.stack([sid, iid, pid], dim=-1).to(torch.uint8)
    return np.stack([sid, iid, pid], axis=-1).astype(np.uint8)


def gt_to_prediction(uids: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """A perfect (H, W, 3) prediction from GT uids: void and crowd -> no prediction; instance ids made
    compact per class (1..n, at most 255); parts keep their eval pid (unlabelled parts -> 255), classes
    without parts get pid 1."""
    from tenfold.panoptic.metrics import gt_labels

    sid, iid, pid = gt_labels(uids, spec)
    evaluated = np.zeros(256, bool)
    evaluated[spec.eval_sids] = True
    things = np.zeros(256, bool)
    things[spec.things] = True
    with_parts = np.zeros(256, bool)
    with_parts[spec.parts_sids] = True
    keep = evaluated[sid] & ~(things[sid] & (iid < 0))
    out_iid = np.zeros_like(sid)
    for s in np.unique(sid[keep & things[sid]]):
        sel = keep & (sid == s)
        ids, inv = np.unique(iid[sel], return_inverse=True)
        if ids.size > 255:
            raise DataError(f"ground truth has {ids.size} instances of class {int(s)}: the PNG prediction "
                            "format holds at most 255 per class")
        out_iid[sel] = inv.reshape(-1) + 1
    out_pid = np.where(with_parts[sid], np.where(pid > 0, pid, UNKNOWN_PART), 1)
    out_sid = np.where(keep, sid, NO_PREDICTION)
    out_pid = np.where(keep, out_pid, 0)
    return np.stack([out_sid, out_iid, out_pid], axis=-1).astype(np.int32)


def gt_part_flat(uids: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """(H, W) flat part ids of GT uids (0 where there is no evaluated part)."""
    from tenfold.panoptic.metrics import gt_labels

    sid, _, pid = gt_labels(uids, spec)
    return np.where(pid > 0, spec.flat_lut[np.clip(sid * 100 + pid, 0, 9999)], 0)


def _find_file(image_id: str, files: list, kind: str, folder) -> "Path":
    hits = [f for f in files if str(image_id) in f.name]
    if len(hits) > 1:
        hits = [f for f in hits if f.stem == str(image_id)] or [f for f in hits if f.name.startswith(str(image_id))] \
            or hits
    if not hits:
        raise DataError(f"no {kind} file for image id {image_id!r} in {folder}")
    if len(hits) > 1:
        raise DataError(f"image id {image_id!r} matches several {kind} files in {folder}: {hits[0].name}, "
                        f"{hits[1].name}")
    return hits[0]


def merge_panoptic_file(panoptic: np.ndarray, segments_info: list[dict], part_flat: "np.ndarray | None",
                        spec: EvalSpec, where: str = "prediction") -> np.ndarray:
    """(H, W, 3) PPS prediction from a COCO panoptic PNG (RGB, id = R + 256 G + 256^2 B; or the (H, W) ids
    themselves), its ``segments_info`` and a flat part map (``None``: no part prediction, every pixel of a
    class with parts gets the unknown pid 255). Instance ids count the segments of each category in
    ``segments_info`` order (the toolkit's rule); pixels of ids not listed stay unpredicted. A category id
    that is not a class of the spec's dataset is a one-line error."""
    panoptic = np.asarray(panoptic)
    if panoptic.ndim == 2 and np.issubdtype(panoptic.dtype, np.integer):
        ids = panoptic.astype(np.int64)
    elif panoptic.ndim == 3 and panoptic.shape[2] >= 3:
        ids = rgb2id(panoptic)
    else:
        raise DataError(f"{where}: panoptic PNG of shape {panoptic.shape} is invalid: expected RGB ids")
    if part_flat is None:
        part_flat = np.zeros(ids.shape, np.int64)
    if part_flat.shape != ids.shape:
        raise DataError(f"{where}: part map size {part_flat.shape[0]}x{part_flat.shape[1]} differs from the "
                        f"panoptic size {ids.shape[0]}x{ids.shape[1]}")
    try:
        seg_ids = np.array([int(s["id"]) for s in segments_info], np.int64)
        cats = [int(s["category_id"]) for s in segments_info]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: segments_info is malformed: expected a list of "
                        '{"id": int, "category_id": int, ...}') from None
    n_classes = len(spec.dataset.scene_classes)
    bad = [c for c in cats if not 0 <= c < n_classes]
    if bad:
        raise DataError(f"{where}: category_id {bad[0]} is not a class of dataset spec {spec.dataset.path}: "
                        f"expected a sid 0..{n_classes - 1}")
    count: dict[int, int] = {}
    inst = []
    for c in cats:
        count[c] = count.get(c, 0) + 1
        if count[c] > 255:
            raise DataError(f"{where}: more than 255 segments of category {c}: the PNG format holds at most 255")
        inst.append(count[c])
    sid = np.full(ids.shape, NO_PREDICTION, np.int64)
    iid = np.zeros(ids.shape, np.int64)
    if seg_ids.size:
        order = np.argsort(seg_ids, kind="stable")
        pos = np.clip(np.searchsorted(seg_ids[order], ids), 0, seg_ids.size - 1)
        hit = seg_ids[order][pos] == ids
        k = order[pos]
        sid = np.where(hit, np.asarray(cats, np.int64)[k], NO_PREDICTION)
        iid = np.where(hit, np.asarray(inst, np.int64)[k], 0)
    return merge_to_pps(sid, iid, np.asarray(part_flat, np.int64), spec)


def merge_folders(eval_spec: "str | Path | EvalSpec", panoptic_json, panoptic_dir, parts_dir, out_dir,
                  images_json=None) -> list:
    """The ``tenfold merge-parts`` command: COCO panoptic predictions (JSON + PNGs) and flat part-semantic
    PNGs -> PPS prediction PNGs in ``out_dir`` (one per annotation, same file name). Image ids come from
    ``images_json`` (``{"images": [{"id": ...}]}``) or from the panoptic JSON's annotations; each part PNG
    is found by the image id in its file name. ``parts_dir=None`` converts panoptic predictions alone
    (e.g. detectron2's or Mask2Former's): classes with parts then get the unknown pid 255 everywhere.
    Returns the written paths."""
    import json
    from pathlib import Path

    from PIL import Image

    from tenfold.panoptic.format import write_prediction

    spec = eval_spec if isinstance(eval_spec, EvalSpec) else EvalSpec.load(eval_spec)
    panoptic_json, panoptic_dir, out_dir = map(Path, (panoptic_json, panoptic_dir, out_dir))
    parts_dir = None if parts_dir is None else Path(parts_dir)
    for name, folder in (("--panoptic-dir", panoptic_dir), ("--parts-dir", parts_dir)):
        if folder is not None and not folder.is_dir():
            raise DataError(f"{name} folder {folder} does not exist")
    try:
        annotations = json.loads(panoptic_json.read_text())["annotations"]
        by_id = {str(a["image_id"]): a for a in annotations}
    except FileNotFoundError:
        raise DataError(f"panoptic json {panoptic_json} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise DataError(f"panoptic json {panoptic_json} is malformed: expected COCO panoptic "
                        '{"annotations": [{"image_id", "file_name", "segments_info": [...]}]}') from None
    if images_json is not None:
        try:
            ids = [str(im["id"]) for im in json.loads(Path(images_json).read_text())["images"]]
        except FileNotFoundError:
            raise DataError(f"images json {images_json} does not exist") from None
        except (ValueError, KeyError, TypeError):
            raise DataError(f"images json {images_json} is malformed: expected "
                            '{"images": [{"id": ...}, ...]}') from None
    else:
        ids = list(by_id)
    part_files = [] if parts_dir is None else sorted(p for p in parts_dir.rglob("*.png"))
    written = []
    for image_id in ids:
        if image_id not in by_id:
            raise DataError(f"panoptic json {panoptic_json} has no annotation for image id {image_id!r}")
        ann = by_id[image_id]
        pan_file = panoptic_dir / ann["file_name"]
        if not pan_file.is_file():
            raise DataError(f"panoptic PNG {pan_file} (image id {image_id!r}) does not exist")
        with Image.open(pan_file) as im:
            rgb = np.array(im.convert("RGB"))
        flat = None
        if parts_dir is not None:
            part_file = _find_file(image_id, part_files, "part PNG", parts_dir)
            with Image.open(part_file) as im:
                flat = np.array(im)
        if flat is not None and flat.ndim != 2:
            raise DataError(f"part PNG {part_file} has shape {flat.shape}: expected a single-channel map of flat "
                            "part ids")
        pps = merge_panoptic_file(rgb, ann.get("segments_info", []), flat, spec, where=str(pan_file))
        written.append(write_prediction(Path(out_dir) / Path(ann["file_name"]).name, pps[..., 0], pps[..., 1],
                                        pps[..., 2]))
    return written


__all__ = ["merge_to_pps", "merge_panoptic_file", "merge_folders", "gt_to_prediction", "gt_part_flat", "flat_to_sid_pid", "flat_to_pid_table"]
