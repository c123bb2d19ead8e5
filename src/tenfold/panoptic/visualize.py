"""Colour images of panoptic-parts labels and predictions (the ``tenfold show-parts`` command).

Each pixel gets its class colour from the dataset spec's ``scene_class2color`` (a fixed palette where the
spec has none); instances of a things class are told apart by a brightness step per instance id and
parts by a darker shade per pid, in the spirit of the toolkit's ``uid2color`` (which varies colours per
instance and part with random offsets); here the shades are deterministic so two runs give the same PNG.
Unpredicted / void pixels are black, unknown parts (pid 255) are hatched white.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tenfold.config import read_yaml_mapping
from tenfold.errors import DataError
from tenfold.panoptic.format import NO_PREDICTION, UNKNOWN_PART, EvalSpec, read_gt, read_prediction

_FALLBACK = np.array([[70, 130, 180], [120, 90, 50], [0, 0, 142], [220, 20, 60], [230, 200, 20], [107, 142, 35],
                      [152, 251, 152], [250, 170, 30], [119, 11, 32], [0, 60, 100]], np.float32)


def class_colours(spec: EvalSpec) -> np.ndarray:
    """(256, 3) float RGB in [0, 1] per sid: the dataset spec's ``scene_class2color``, else a palette."""
    table = np.zeros((256, 3), np.float32)
    for sid in range(1, 256):
        table[sid] = _FALLBACK[sid % len(_FALLBACK)]
    try:
        data = read_yaml_mapping(spec.dataset.path, kind="dataset spec", error=DataError, allow_empty=False)
        colours = data.get("scene_class2color") or {}
    except DataError:
        colours = {}
    for sid, name in enumerate(spec.dataset.scene_classes):
        if name in colours and sid > 0:
            table[sid] = np.asarray(colours[name], np.float32)
    table[0] = 0
    table[NO_PREDICTION] = 0
    return table / 255.0


def colourize(sid: np.ndarray, iid: np.ndarray, pid: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] of (sid, iid, pid) maps (prediction channels or decoded labels)."""
    sid = np.asarray(sid, np.int64)
    iid = np.asarray(iid, np.int64)
    pid = np.asarray(pid, np.int64)
    if not (sid.shape == iid.shape == pid.shape) or sid.ndim != 2:
        raise DataError(f"colourize: sid, iid and pid must be (H, W) maps of one size: got {sid.shape}, "
                        f"{iid.shape}, {pid.shape}")
    base = class_colours(spec)[np.clip(sid, 0, 255)]
    things = np.zeros(256, bool)
    things[spec.things] = True
    parts = np.zeros(256, bool)
    parts[spec.parts_sids] = True
    s = np.clip(sid, 0, 255)
    inst = np.where(things[s] & (iid > 0), 1.0 + 0.25 * ((iid % 5) - 2) / 2, 1.0)
    part = np.where(parts[s] & (pid > 0) & (pid < UNKNOWN_PART), 1.0 - 0.18 * ((pid - 1) % 4), 1.0)
    rgb = np.clip(base * (inst * part)[..., None], 0, 1)
    unknown = parts[s] & (pid == UNKNOWN_PART) & ((np.indices(sid.shape).sum(0) // 2) % 2 == 0)
    rgb[unknown] = 1.0
    return rgb


def colourize_file(path: str | Path, spec: EvalSpec) -> np.ndarray:
    """RGB of a GT label file (``.tif``: as the evaluator sees it, i.e. :func:`gt_to_prediction`: void and
    crowd black, unlabelled parts hatched) or of a prediction PNG."""
    from tenfold.panoptic.merge import gt_to_prediction

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        pred = gt_to_prediction(read_gt(path), spec)
        return colourize(pred[..., 0], pred[..., 1], pred[..., 2], spec)
    pred = read_prediction(path)
    return colourize(pred[..., 0], pred[..., 1], pred[..., 2], spec)


def _image_for(image: Path | None, stem: str) -> Path | None:
    if image is None:
        return None
    if image.is_file():
        return image
    key = stem.removesuffix("_gtFinePanopticParts")
    hits = sorted(p for p in image.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg") and key in p.stem)
    return hits[0] if hits else None


def show_folder(path: str | Path, eval_spec: str | Path | EvalSpec, out_dir: str | Path,
                image: str | Path | None = None, alpha: float = 0.6) -> list[Path]:
    """Write ``<stem>_colour.png`` for one label/prediction file or every ``.tif``/``.png`` in a folder
    (and one level down). With ``image`` (a file or a folder searched by image id) the colours are
    blended over the photo with weight ``alpha``."""
    from PIL import Image

    from tenfold.io import atomic_write_bytes

    spec = eval_spec if isinstance(eval_spec, EvalSpec) else EvalSpec.load(eval_spec)
    path, out_dir = Path(path), Path(out_dir)
    image = None if image is None else Path(image)
    if path.is_dir():
        files = sorted([*path.glob("*.tif"), *path.glob("*.png"), *path.glob("*/*.tif"), *path.glob("*/*.png")])
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"show-parts: {path} does not exist")
    if not files:
        raise DataError(f"show-parts: {path} holds no .tif labels or .png predictions")
    written = []
    for f in files:
        rgb = colourize_file(f, spec)
        photo = _image_for(image, f.stem)
        if photo is not None:
            with Image.open(photo) as im:
                base = np.asarray(im.convert("RGB").resize(rgb.shape[1::-1]), np.float32) / 255
            rgb = alpha * rgb + (1 - alpha) * base
        buf = io.BytesIO()
        Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
        written.append(atomic_write_bytes(out_dir / f"{f.stem}_colour.png", buf.getvalue()))
    return written


__all__ = ["class_colours", "colourize", "colourize_file", "show_folder"]
