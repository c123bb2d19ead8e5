"""Shared builders for the panoptic tests: the procedural-scene eval specs and hand-made images."""

from __future__ import annotations

import numpy as np

from tenfold.data.panoptic_scenes import CAR, GROUND, write_spec_files
from tenfold.panoptic.format import EvalSpec


def specs(tmp_path):
    _, ev, ev_np = write_spec_files(tmp_path / "specs")
    return EvalSpec.load(ev), EvalSpec.load(ev_np), ev, ev_np


def car_grid(n: int = 8, size: int = 12) -> np.ndarray:
    """GT uids: ground everywhere, ``n`` cars in a row, each with 3 horizontal part stripes (pids 1, 2, 3)."""
    h, w = size + 8, n * (size + 4) + 4
    uids = np.full((h, w), GROUND, np.int32)
    for k in range(n):
        x0 = 4 + k * (size + 4)
        for p in range(3):
            y0 = 4 + p * size // 3
            uids[y0:y0 + size // 3, x0:x0 + size] = CAR * 100_000 + (k + 1) * 100 + p + 1
    return uids


SHIPPED_EVAL_SPECS = ("ppq_cpp_19_23_cvpr21_default", "ppq_cpp_19_23_cvpr21_grouped", "ppq_ppp_59_57_cvpr21_default")


def shipped_spec_for_reference(name: str, tmp_path):
    """A copy of a shipped eval spec with an absolute dataset spec path (the reference resolves relative
    paths from the working directory)."""
    from tenfold.panoptic.format import builtin_spec, resolve_dataset_spec

    src = builtin_spec(name)
    text = src.read_text()
    for line in text.splitlines():
        if line.startswith("dataset_spec_path:"):
            rel = line.split(":", 1)[1].strip()
            text = text.replace(line, f"dataset_spec_path: {resolve_dataset_spec(__import__('pathlib').Path(rel), src)}")
    path = tmp_path / f"{name}_evalspec.yaml"
    path.write_text(text)
    return path


def random_gt(spec, rng, size: int = 64, block: int = 8) -> np.ndarray:
    """Random blocks of uids of ``spec``'s dataset: void, stuff, crowd and thing instances with parts (every
    dataset pid, countable part instances included, and unlabelled pid-0 rows)."""
    lut = spec.dataset.sid_pid_file2sid_pid
    n_classes = len(spec.dataset.scene_classes)
    stuff = [s for s in spec.stuff if s < n_classes]
    things = spec.things
    uids = np.zeros((size, size), np.int32)
    for y in range(0, size, block):
        for x in range(0, size, block):
            kind = rng.random()
            if kind < 0.1:
                continue                                             # void (uid 0)
            if kind < 0.3:
                uids[y:y + block, x:x + block] = int(rng.choice(stuff))
                continue
            parted = [s for s in things if spec.has_parts(s)]
            sid = int(rng.choice(parted if parted and rng.random() < 0.8 else things))
            if kind < 0.35:
                uids[y:y + block, x:x + block] = sid                 # crowd
                continue
            iid = int(rng.integers(1, 4))
            if lut is not None:
                pids = [sp % 100 for sp in np.flatnonzero(lut >= 0) if sp // 100 == sid and sp >= 100]
            else:
                pids = list(range(1, len(spec.dataset.part_classes.get(sid, [""]))))
            for yy in range(y, y + block, 2):
                pid = int(rng.choice(pids)) if pids and rng.random() < 0.85 else 0
                uids[yy:yy + 2, x:x + block] = sid * 100_000 + iid * 100 + pid if pid else sid * 1000 + iid
    return uids
