"""The panoptic-parts label format: dataset/evaluation spec files here; the uid codec and the label and
prediction files live in :mod:`tenfold.data.panoptic_codec` (re-exported below, so both import paths work).

The uid encoding is described in the codec module's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tenfold.config import read_yaml_mapping
from tenfold.data.panoptic_codec import (MAX_UID, NO_PREDICTION, UNKNOWN_PART, check_uids,  # noqa: F401
                                         decode_uids, encode_ids, read_gt, read_prediction, write_gt,
                                         write_prediction)
from tenfold.errors import DataError

SPEC_DIR = Path(__file__).parent / "specs"


# ---------------------------------------------------------------------------------------------
# spec files
# ---------------------------------------------------------------------------------------------
def _load_yaml(path: Path, kind: str) -> dict[str, Any]:
    return read_yaml_mapping(path, kind=kind, error=DataError, allow_empty=False)


def _field(data: dict, key: str, path: Path, kind: type | tuple, what: str) -> Any:
    if key not in data:
        raise DataError(f"spec file {path}: missing field '{key}' (expected {what})")
    value = data[key]
    if not isinstance(value, kind):
        raise DataError(f"spec file {path}: field '{key}'={value!r} is invalid: expected {what}")
    return value


def _int_list(data: dict, key: str, path: Path) -> list[int]:
    values = _field(data, key, path, list, "a list of integer sids")
    if not all(isinstance(v, int) and 0 <= v <= 99 for v in values):
        raise DataError(f"spec file {path}: field '{key}'={values!r} is invalid: expected integers 0..99")
    return [int(v) for v in values]


@dataclass
class DatasetSpec:
    """A panoptic_parts dataset spec: ordered ``scene_class2part_classes`` (order gives sid and pid,
    0 = UNLABELED), ``scene_classes_with_instances`` and optional ``countable_pids_groupings``."""

    path: Path
    name: str
    scene_classes: list[str]
    part_classes: dict[int, list[str]]
    things: list[int]
    sid_pid_file2sid_pid: np.ndarray | None  # dense (10000,) LUT folding countable parts, or None

    @classmethod
    def load(cls, path: str | Path) -> "DatasetSpec":
        path = spec_path(path)
        data = _load_yaml(path, "dataset spec")
        sc2pc = _field(data, "scene_class2part_classes", path, dict, "an ordered mapping scene class -> part list")
        names = [str(k) for k in sc2pc]
        if names and names[0] == "UNLABELED":
            names = names[1:]
        scene_classes = ["UNLABELED"] + names
        part_classes: dict[int, list[str]] = {}
        for sid, name in enumerate(scene_classes):
            parts = sc2pc.get(name) or []
            if not isinstance(parts, list):
                raise DataError(f"spec file {path}: parts of '{name}'={parts!r} is invalid: expected a list")
            parts = [str(p) for p in parts if p != "UNLABELED"]
            part_classes[sid] = ["UNLABELED"] + parts
        if len(scene_classes) > 100:
            raise DataError(f"spec file {path}: {len(scene_classes) - 1} scene classes: expected at most 99")
        with_inst = _field(data, "scene_classes_with_instances", path, list, "a list of scene class names")
        unknown = [c for c in with_inst if c not in scene_classes]
        if unknown:
            raise DataError(f"spec file {path}: scene_classes_with_instances names unknown class {unknown[0]!r}")
        things = [scene_classes.index(c) for c in with_inst]
        lut = None
        groupings = data.get("countable_pids_groupings")
        if groupings:
            lut = np.full(10000, -1, dtype=np.int64)
            for sid, parts in part_classes.items():
                lut[sid] = sid
                for pid in range(1, len(parts)):
                    lut[sid * 100 + pid] = sid * 100 + pid
            for scene, groups in groupings.items():
                if scene not in scene_classes:
                    raise DataError(f"spec file {path}: countable_pids_groupings names unknown class {scene!r}")
                sid = scene_classes.index(scene)
                for part, pids in groups.items():
                    if part not in part_classes[sid]:
                        raise DataError(f"spec file {path}: countable_pids_groupings: unknown part {scene}-{part}")
                    for pid in pids:
                        lut[sid * 100 + int(pid)] = sid * 100 + part_classes[sid].index(part)
        return cls(path, str(data.get("name", path.stem)), scene_classes, part_classes, things, lut)


@dataclass
class EvalSpec:
    """A panoptic_parts PartPQ evaluation spec (``ppq_*_evalspec.yaml``).

    A scene class counts as "with parts" only if it is listed in ``eval_sid_parts`` and has at least two
    evaluated part ids (as in the reference, which rejects a parts class with fewer).
    """

    path: Path
    dataset: DatasetSpec
    ignore_label: int
    eval_sids: list[int]
    things: list[int]
    stuff: list[int]
    sid2pids: dict[int, list[int]]          # classes with parts -> their evaluated pids
    sid_pid_map: np.ndarray | None          # dense (10000,) dataset sid_pid -> eval sid_pid, None if identity
    flat_lut: np.ndarray                    # dense (10000,) eval sid_pid -> flat part id (0 = none)
    sid2name: dict[int, str] = field(default_factory=dict)
    flat2name: dict[int, str] = field(default_factory=dict)
    listed_sids: frozenset[int] | None = None  # dataset sids dataset_sid2eval_sid names; None: a DEFAULT covers all

    @property
    def parts_sids(self) -> list[int]:
        return sorted(self.sid2pids)

    @property
    def num_flat(self) -> int:
        return int(self.flat_lut.max())

    def has_parts(self, sid: int) -> bool:
        return sid in self.sid2pids

    @classmethod
    def load(cls, path: str | Path) -> "EvalSpec":
        """Read an eval spec file; a short name such as ``ppq_cpp_19_23_cvpr21_default`` loads a shipped one."""
        path = spec_path(path)
        data = _load_yaml(path, "evaluation spec")
        ds_path = Path(str(_field(data, "dataset_spec_path", path, str, "a path to a dataset spec YAML")))
        dataset = DatasetSpec.load(resolve_dataset_spec(ds_path, path))
        ignore = _field(data, "ignore_label", path, int, "an integer label, usually 255")
        sid2eval = _field(data, "dataset_sid2eval_sid", path, dict, "a mapping dataset sid -> eval sid or IGNORED")
        eval_sids = sorted({int(v) for k, v in sid2eval.items() if v != "IGNORED" and isinstance(v, int)})
        for k, v in sid2eval.items():
            if v != "IGNORED" and not (isinstance(v, int) and 0 < v <= 99):
                raise DataError(f"spec file {path}: dataset_sid2eval_sid[{k}]={v!r} is invalid: "
                                "expected an eval sid 1..99 or IGNORED")
        require_sids = lambda key: _int_list(data, key, path)  # noqa: E731
        things, stuff = require_sids("eval_sid_things"), require_sids("eval_sid_stuff")
        parts, no_parts = require_sids("eval_sid_parts"), require_sids("eval_sid_no_parts")
        if set(things) | set(stuff) != set(eval_sids):
            raise DataError(f"spec file {path}: eval_sid_things + eval_sid_stuff = {sorted(set(things) | set(stuff))} "
                            f"is invalid: expected the evaluated sids {eval_sids}")
        if set(parts) | set(no_parts) != set(eval_sids):
            raise DataError(f"spec file {path}: eval_sid_parts + eval_sid_no_parts is invalid: expected the "
                            f"evaluated sids {eval_sids}")
        # categories must agree with the dataset spec: the evaluator reads GT sids as eval sids and the
        # things' instance ids from the dataset's labels, so a disagreement would silently change PQ
        for key, a, b in (("eval_sid_things", things, stuff), ("eval_sid_parts", parts, no_parts)):
            both = sorted(set(a) & set(b))
            if both:
                raise DataError(f"spec file {path}: sid {both[0]} is listed in {key} and in its complement: "
                                "expected each evaluated sid in exactly one of the two lists")
        n_classes = len(dataset.scene_classes)
        for k, v in sid2eval.items():
            if v == "IGNORED":
                continue
            if not isinstance(k, int) or k != v:
                raise DataError(f"spec file {path}: dataset_sid2eval_sid[{k!r}]={v!r} is not supported: expected "
                                "the identity (dataset sid = eval sid) or IGNORED")
            if k >= n_classes:
                raise DataError(f"spec file {path}: eval sid {k} is not a class of dataset spec {dataset.path}: "
                                f"expected 0..{n_classes - 1}")
        not_things = [s for s in things if s not in dataset.things]
        if not_things:
            raise DataError(f"spec file {path}: eval_sid_things lists sid {not_things[0]} "
                            f"({dataset.scene_classes[not_things[0]]}), which has no instances in dataset spec "
                            f"{dataset.path}: expected a class of scene_classes_with_instances")
        listed = None if "DEFAULT" in sid2eval else frozenset(int(k) for k in sid2eval if isinstance(k, int))
        sp2esp = _field(data, "dataset_sid_pid2eval_sid_pid", path, dict, "a mapping sid_pid -> eval sid_pid")
        eval_sid_pids = sorted({int(v) for v in sp2esp.values() if v != "IGNORED"})
        for v in sp2esp.values():
            if v != "IGNORED" and not (isinstance(v, int) and 0 <= v <= 9999):
                raise DataError(f"spec file {path}: dataset_sid_pid2eval_sid_pid value {v!r} is invalid: "
                                "expected an eval sid_pid (SS_PP) or IGNORED")
        sid2pids: dict[int, list[int]] = {}
        for sp in eval_sid_pids:
            if sp >= 100:
                sid2pids.setdefault(sp // 100, [])
                if sp % 100 not in sid2pids[sp // 100]:
                    sid2pids[sp // 100].append(sp % 100)
        for sid in parts:
            if len(sid2pids.get(sid, [])) < 2:
                raise DataError(f"spec file {path}: eval_sid_parts lists sid {sid} with evaluated pids "
                                f"{sid2pids.get(sid, [])}: expected at least 2 (or list it in eval_sid_no_parts)")
        sid2pids = {s: sorted(sid2pids[s]) for s in parts}
        sid_pid_map = None
        identity = all(v == "IGNORED" or int(k) == int(v) for k, v in sp2esp.items() if isinstance(k, int))
        if not identity:  # the reference maps only when some sid_pid really changes
            sid_pid_map = np.arange(10000, dtype=np.int64)
            for k, v in sp2esp.items():
                if isinstance(k, int) and v != "IGNORED":
                    sid_pid_map[k] = int(v)
        flat = _field(data, "eval_sid_pid2eval_pid_flat", path, dict, "a mapping eval sid_pid -> flat part id")
        flat_lut = np.zeros(10000, dtype=np.int64)
        for k, v in flat.items():
            if not (isinstance(k, int) and isinstance(v, int) and 0 < v < 255 and 0 <= k <= 9999):
                raise DataError(f"spec file {path}: eval_sid_pid2eval_pid_flat[{k!r}]={v!r} is invalid: "
                                "expected SS_PP: flat id in 1..254")
            flat_lut[k] = v
        sid2name = {int(k): str(v) for k, v in (data.get("eval_sid2scene_label") or {}).items()}
        flat2name = {int(k): str(v) for k, v in (data.get("eval_pid_flat2scene_part_label") or {}).items()}
        for sid in eval_sids:
            sid2name.setdefault(sid, dataset.scene_classes[sid] if sid < len(dataset.scene_classes) else str(sid))
        return cls(path, dataset, int(ignore), eval_sids, sorted(things), sorted(stuff), sid2pids, sid_pid_map,
                   flat_lut, sid2name, flat2name, listed)

    def without_parts(self) -> "EvalSpec":
        """The same spec with every class evaluated without parts (PartPQ then equals PQ)."""
        return EvalSpec(self.path, self.dataset, self.ignore_label, self.eval_sids, self.things, self.stuff, {},
                        self.sid_pid_map, self.flat_lut, self.sid2name, self.flat2name, self.listed_sids)


def resolve_dataset_spec(ds_path: Path, eval_spec_path: Path) -> Path:
    """Find the dataset spec an eval spec names: absolute, relative to the eval spec's folder or the
    working directory (the reference's repo-relative paths), or one of ours by file name."""
    candidates = [ds_path] if ds_path.is_absolute() else [eval_spec_path.parent / ds_path, Path.cwd() / ds_path]
    candidates.append(SPEC_DIR / ds_path.name)
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"evaluation spec {eval_spec_path}: dataset_spec_path {str(ds_path)!r} not found "
                    f"(looked in {', '.join(str(c.parent) for c in candidates)})")


def builtin_spec(name: str) -> Path:
    """Path of a shipped spec file by its short name or file name: ``builtin_spec("ppq_cpp_19_23_cvpr21_default")``
    (eval spec), ``builtin_spec("cpp")`` (dataset spec) or the full ``..._evalspec.yaml`` file name."""
    name = str(name)
    for candidate in (name, f"{name}.yaml", f"{name}_evalspec.yaml", f"{name}_datasetspec.yaml"):
        path = SPEC_DIR / candidate
        if "/" not in candidate and path.is_file():
            return path
    known = ", ".join(sorted(p.name.removesuffix(".yaml") for p in SPEC_DIR.glob("*.yaml")))
    raise DataError(f"spec {name!r} is not shipped: expected a file or one of {known} "
                    "(with or without _evalspec / _datasetspec)")


def spec_path(name_or_path: str | Path) -> Path:
    """An existing spec file, or a shipped spec named by short name (see :func:`builtin_spec`)."""
    path = Path(name_or_path)
    if path.is_file() or path.parent != Path("."):
        return path
    try:
        return builtin_spec(str(path.name))
    except DataError:
        return path


# ---------------------------------------------------------------------------------------------
# COCO panoptic PNG ids (panopticapi ``rgb2id`` / ``id2rgb``)
# ---------------------------------------------------------------------------------------------
COCO_MAX_ID = 256 ** 3 - 1


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W) int64 segment ids of a COCO panoptic PNG: ``id = R + 256 G + 256^2 B`` (panopticapi
    ``utils.rgb2id``; id 0 is void). Computed in int64: on uint8 arrays the sum would overflow."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise DataError(f"COCO panoptic PNG of shape {rgb.shape} is invalid: expected (H, W, 3) RGB ids")
    rgb = rgb[..., :3].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of segment ids, the inverse of :func:`rgb2id` (panopticapi ``utils.id2rgb``)."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > COCO_MAX_ID):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise DataError(f"segment id {bad} is invalid: a COCO panoptic PNG holds ids 0..{COCO_MAX_ID}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2], axis=-1).astype(np.uint8)
