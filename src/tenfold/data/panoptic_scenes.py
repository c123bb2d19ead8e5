"""Procedural panoptic-part scenes in the real panoptic_parts format (``panoptic_parts.md`` section 5).

Stuff: sky (top, blue gradient) and ground (bottom, brown) split at a random horizon. Things, drawn
back to front so later ones occlude earlier ones: cars (window / wheel / body), persons (head / torso /
legs) and balls (a thing class without parts). Labels are uids (int32): stuff ``sid``, things
``sid_iid`` (balls) or ``sid_iid_pid`` (cars, persons). With ``corner_cases`` every image also gets
void blobs (uid 0), a crowd region (sid only), unlabelled part pixels (pid 0) inside part objects and
one part object without any part label (the evaluator turns it into crowd).

``write_scenes`` writes ``images/*.png``, ``labels/*.tif`` (int32), ``images.json`` and matching
``dataset_spec.yaml`` / ``eval_spec.yaml`` (absolute dataset-spec path, readable by the reference toolkit).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tenfold.io import atomic_write_bytes, atomic_write_text
from tenfold.errors import ConfigError

SKY, GROUND, CAR, PERSON, BALL = 1, 2, 3, 4, 5
SCENE_CLASSES = {"sky": [], "ground": [], "car": ["window", "wheel", "body"], "person": ["head", "torso", "legs"],
                 "ball": []}
THINGS = ["car", "person", "ball"]
COLOURS = {"sky": (0.45, 0.65, 0.95), "ground": (0.5, 0.35, 0.2), "ball": (0.9, 0.8, 0.1),
           (CAR, 1): (0.6, 0.85, 0.95), (CAR, 2): (0.1, 0.1, 0.1), (CAR, 3): (0.8, 0.1, 0.1),
           (PERSON, 1): (0.95, 0.75, 0.6), (PERSON, 2): (0.2, 0.5, 0.2), (PERSON, 3): (0.2, 0.2, 0.6)}


def dataset_spec_dict() -> dict:
    return {
        "version": 2.0, "name": "Tenfold procedural scenes",
        "scene_class2part_classes": SCENE_CLASSES,
        "scene_classes_with_instances": THINGS,
        "scene_class2color": {"sky": [70, 130, 180], "ground": [120, 90, 50], "car": [0, 0, 142],
                              "person": [220, 20, 60], "ball": [230, 200, 20]},
    }


def eval_spec_dict(dataset_spec_path: str, parts: bool = True) -> dict:
    """The eval spec of the scenes; ``parts=False`` evaluates every class without parts (PartPQ = PQ)."""
    sid_pids = {s * 100 + p: s * 100 + p for s in (CAR, PERSON) for p in (1, 2, 3)}
    sid_pids.update({0: "IGNORED", CAR: "IGNORED", PERSON: "IGNORED"})
    flat = {s * 100 + p: 3 * (s - CAR) + p for s in (CAR, PERSON) for p in (1, 2, 3)}
    return {
        "version": 2.0, "dataset_spec_path": str(dataset_spec_path), "ignore_label": 255,
        "dataset_sid2eval_sid": {0: "IGNORED", SKY: SKY, GROUND: GROUND, CAR: CAR, PERSON: PERSON, BALL: BALL},
        "dataset_sid_pid2eval_sid_pid": sid_pids,
        "eval_sid_things": [CAR, PERSON, BALL], "eval_sid_stuff": [SKY, GROUND],
        "eval_sid_parts": [CAR, PERSON] if parts else [],
        "eval_sid_no_parts": [SKY, GROUND, BALL] if parts else [SKY, GROUND, CAR, PERSON, BALL],
        "eval_sid_pid2eval_pid_flat": flat,
        "eval_sid2scene_label": {SKY: "sky", GROUND: "ground", CAR: "car", PERSON: "person", BALL: "ball"},
        "eval_pid_flat2scene_part_label": {1: "car-window", 2: "car-wheel", 3: "car-body", 4: "person-head",
                                           5: "person-torso", 6: "person-legs"},
    }


@dataclass
class Scene:
    image: np.ndarray   # (H, W, 3) float32 in [0, 1]
    uids: np.ndarray    # (H, W) int32 panoptic-parts uids


def _ellipse(h, w, cy, cx, ry, rx):
    y, x = np.ogrid[:h, :w]
    return ((y - cy) / max(ry, 0.5)) ** 2 + ((x - cx) / max(rx, 0.5)) ** 2 <= 1.0


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[max(int(y0), 0):max(int(y1), 0), max(int(x0), 0):max(int(x1), 0)] = True
    return m


def _car(h, w, cy, cx, s):
    """Part masks (window, wheel, body) of a car of width ``s`` centred at (cy, cx)."""
    body = _rect(h, w, cy - 0.1 * s, cy + 0.2 * s, cx - 0.5 * s, cx + 0.5 * s)
    cabin = _rect(h, w, cy - 0.35 * s, cy - 0.1 * s, cx - 0.3 * s, cx + 0.25 * s)
    window = _rect(h, w, cy - 0.3 * s, cy - 0.1 * s, cx - 0.25 * s, cx + 0.2 * s)
    wheel = _ellipse(h, w, cy + 0.2 * s, cx - 0.3 * s, 0.12 * s, 0.12 * s) | \
        _ellipse(h, w, cy + 0.2 * s, cx + 0.3 * s, 0.12 * s, 0.12 * s)
    body = (body | cabin) & ~window & ~wheel
    return [window, wheel, body]


def _person(h, w, cy, cx, s):
    head = _ellipse(h, w, cy - 0.38 * s, cx, 0.12 * s, 0.1 * s)
    torso = _rect(h, w, cy - 0.26 * s, cy + 0.1 * s, cx - 0.15 * s, cx + 0.15 * s) & ~head
    legs = _rect(h, w, cy + 0.1 * s, cy + 0.5 * s, cx - 0.13 * s, cx + 0.13 * s)
    return [head, torso, legs]


# "shared" palette: a person's head, torso and legs take the colours of a car's window, body and wheel, so
# colour alone cannot tell the two classes apart (their shapes and part layouts still differ)
SHARED_PART_COLOURS = {(PERSON, 1): COLOURS[(CAR, 1)], (PERSON, 2): COLOURS[(CAR, 3)], (PERSON, 3): COLOURS[(CAR, 2)]}


def generate_scene(rng: np.random.Generator, height: int = 64, width: int = 64, things: tuple[int, int] = (1, 5),
                   corner_cases: bool = True, noise: float = 0.03, shared_part_colours: bool = False) -> Scene:
    """One scene drawn from ``rng``; ``things`` = (min, max) number of thing instances. With
    ``shared_part_colours`` persons are painted in car part colours (parts, not colour, tell the classes apart)."""
    colours = {**COLOURS, **SHARED_PART_COLOURS} if shared_part_colours else COLOURS
    if height < 16 or width < 16:
        raise ConfigError(f"scene size {height}x{width} is invalid: expected at least 16x16 pixels")
    if not 0 <= things[0] <= things[1]:
        raise ConfigError(f"things={things!r} is invalid: expected 0 <= min <= max")
    h, w = height, width
    unit = min(h, w) / 64.0
    horizon = int(rng.uniform(0.3, 0.7) * h)
    uids = np.where(np.arange(h)[:, None] < horizon, SKY, GROUND).astype(np.int32) * np.ones((1, w), np.int32)
    image = np.zeros((h, w, 3), np.float32)
    grad = np.linspace(0.8, 1.1, h, dtype=np.float32)[:, None, None]
    image[:] = np.where((uids == SKY)[..., None], np.array(COLOURS["sky"], np.float32) * grad,
                        np.array(COLOURS["ground"], np.float32))
    n = int(rng.integers(things[0], things[1] + 1))
    next_iid = {CAR: 1, PERSON: 1, BALL: 1}
    partless_done = False
    for k in range(n):
        cls = int(rng.choice([CAR, PERSON, BALL], p=[0.45, 0.4, 0.15]))
        s = rng.uniform(10, 28) * unit
        cy = rng.uniform(horizon, h - 0.2 * s) if cls != BALL else rng.uniform(0.2 * h, h)
        cx = rng.uniform(0, w)
        iid = next_iid[cls]
        next_iid[cls] += 1
        if cls == BALL:
            mask = _ellipse(h, w, cy, cx, 0.25 * s, 0.25 * s)
            uids[mask] = cls * 1000 + iid
            image[mask] = np.array(COLOURS["ball"]) * rng.uniform(0.85, 1.15)
            continue
        masks = _car(h, w, cy, cx, s) if cls == CAR else _person(h, w, cy, cx, s)
        whole = masks[0] | masks[1] | masks[2]
        if not whole.any():
            continue
        # a part object without any part label (becomes crowd for PartPQ), once per scene
        no_parts = corner_cases and not partless_done and rng.random() < 0.3
        partless_done |= no_parts
        for pid, m in enumerate(masks, start=1):
            uids[m] = cls * 1000 + iid if no_parts else cls * 100_000 + iid * 100 + pid
            image[m] = np.array(colours[(cls, pid)]) * rng.uniform(0.85, 1.15, size=3)
        if corner_cases and not no_parts and rng.random() < 0.5:
            # an unlabelled (pid 0) horizontal band inside the object, in either encoding
            ys = np.flatnonzero(whole.any(1))
            y0 = int(rng.integers(ys[0], ys[-1] + 1))
            band = whole & (np.arange(h)[:, None] >= y0) & (np.arange(h)[:, None] < y0 + max(1, int(2 * unit)))
            uids[band] = cls * 1000 + iid if rng.random() < 0.5 else cls * 100_000 + iid * 100
    if corner_cases:
        # a crowd region: a things class labelled with its sid only
        cls = int(rng.choice([CAR, PERSON, BALL]))
        cy, cx = rng.uniform(horizon, h), rng.uniform(0, w)
        crowd = _rect(h, w, cy - 4 * unit, cy + 4 * unit, cx - 8 * unit, cx + 8 * unit)
        uids[crowd] = cls
        image[crowd] = np.array(COLOURS["ball" if cls == BALL else (cls, 3)]) * 0.7
        # void blobs (unlabelled, uid 0)
        for _ in range(int(rng.integers(1, 3))):
            blob = _ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 5) * unit,
                            rng.uniform(2, 6) * unit)
            uids[blob] = 0
            image[blob] = 0.5
    image = np.clip(image + rng.normal(0.0, noise, size=image.shape).astype(np.float32), 0.0, 1.0)
    return Scene(image, uids)


def generate_scenes(n: int, seed: int = 0, **kwargs) -> list[Scene]:
    """``n`` scenes from one seeded generator (same seed, same scenes)."""
    if n < 1:
        raise ConfigError(f"n={n!r} is invalid: expected at least 1 scene")
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, **kwargs) for _ in range(n)]


def write_spec_files(root: str | Path) -> tuple[Path, Path, Path]:
    """Write ``dataset_spec.yaml``, ``eval_spec.yaml`` and ``eval_spec_noparts.yaml`` under ``root``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ds = root / "dataset_spec.yaml"
    atomic_write_text(ds, yaml.safe_dump(dataset_spec_dict(), sort_keys=False))
    ev = root / "eval_spec.yaml"
    atomic_write_text(ev, yaml.safe_dump(eval_spec_dict(str(ds)), sort_keys=False))
    ev_np = root / "eval_spec_noparts.yaml"
    atomic_write_text(ev_np, yaml.safe_dump(eval_spec_dict(str(ds), parts=False), sort_keys=False))
    return ds, ev, ev_np


def write_scenes(root: str | Path, scenes: list[Scene], prefix: str = "scene") -> dict[str, Path]:
    """Write scenes in the panoptic_parts layout: ``images/<id>.png``, ``labels/<id>.tif``, ``images.json``
    and the spec files. Returns the paths (``labels``, ``images``, ``images_json``, ``eval_spec``, ...)."""
    from PIL import Image

    from tenfold.data.panoptic_codec import write_gt

    root = Path(root).resolve()
    ds, ev, ev_np = write_spec_files(root)
    entries = []
    for i, sc in enumerate(scenes):
        sid = f"{prefix}_{i:05d}"
        write_gt(root / "labels" / f"{sid}.tif", sc.uids)
        (root / "images").mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray((sc.image * 255).round().astype(np.uint8)).save(buf, format="PNG")
        atomic_write_bytes(root / "images" / f"{sid}.png", buf.getvalue())
        entries.append({"id": sid, "file_name": f"{sid}.png", "height": int(sc.uids.shape[0]),
                        "width": int(sc.uids.shape[1])})
    atomic_write_text(root / "images.json", json.dumps({"images": entries}, indent=1))
    return scene_paths(root)


def scene_paths(root: str | Path) -> dict[str, Path]:
    """The paths of a folder that :func:`write_scenes` wrote (``labels``, ``images``, ``images_json``, specs)."""
    root = Path(root).resolve()
    return {"root": root, "labels": root / "labels", "images": root / "images", "images_json": root / "images.json",
            "dataset_spec": root / "dataset_spec.yaml", "eval_spec": root / "eval_spec.yaml",
            "eval_spec_noparts": root / "eval_spec_noparts.yaml"}
