"""The panoptic-parts label format: uid codec, dataset/evaluation spec files, label and prediction files.

uid encoding (de Geus et al., CVPR'21, panoptic_parts toolkit; ``panoptic_parts.md`` section 1), one int32 per
pixel:

- ``uid <= 99``: semantic only, ``sid = uid`` (stuff, or a things "crowd" region without an instance id);
- ``1000 <= uid <= 99_999``: ``sid = uid // 1000``, ``iid = uid % 1000``;
- ``uid >= 100_000``: ``sid = uid // 100_000``, ``iid = (uid // 100) % 1000``, ``pid = uid % 100``;
- 3-digit uids (100-999) and uids above 9_999_999 are invalid.

Decoded "no information" is ``-1`` for iids and ``0`` for pids (pid 0 = unlabelled part).
Predictions are HxWx3 uint8 PNGs holding (sid, iid, pid); sid 255 = no prediction, pid 255 = unknown part.
"""

from __future__ import annotations

import io

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tenfold.config import read_yaml_mapping
from tenfold.engine.checkpoint import atomic_write_bytes
from tenfold.errors import DataError

SPEC_DIR = Path(__file__).parent / "specs"
NO_PREDICTION = 255
UNKNOWN_PART = 255
MAX_UID = 9_999_999


# ---------------------------------------------------------------------------------------------
# uid codec
# ---------------------------------------------------------------------------------------------
def check_uids(uids: np.ndarray | torch.Tensor, where: str = "uids") -> None:
    """Raise DataError naming ``where`` and an offending value for negative, 3-digit or too large uids."""
    bad = (uids < 0) | ((uids >= 100) & (uids <= 999)) | (uids > MAX_UID)
    if bool(bad.any()):
        value = int(uids[bad].reshape(-1)[0])
        raise DataError(f"{where}: uid {value} is invalid: expected 0-99 (sid), 1000-99999 (sid_iid) or "
                        f"100000-9999999 (sid_iid_pid); 3-digit uids are not allowed")


def decode_uids(uids: np.ndarray | torch.Tensor, where: str = "uids"):
    """Element-wise ``(sid, iid, pid)`` of panoptic-parts uids (numpy or torch, any shape).

    Pads each uid to 7 digits (x10^5 if <= 99, x10^2 if <= 99_999) and splits it; ``iid = -1`` where the
    uid carries no instance, ``pid = 0`` where it carries no part.
    """
    check_uids(uids, where)
    is_torch = isinstance(uids, torch.Tensor)
    where_ = torch.where if is_torch else np.where
    u = uids.long() if is_torch else np.asarray(uids).astype(np.int64)
    padded = where_(u <= 99, u * 100_000, where_(u <= 99_999, u * 100, u))
    sid = padded // 100_000
    iid = where_(u <= 99, -1, (padded // 100) % 1000)
    pid = where_(u <= 99_999, 0, padded % 100)
    if not is_torch:
        return sid.astype(np.int32), iid.astype(np.int32), pid.astype(np.int32)
    return sid.int(), iid.int(), pid.int()


def encode_ids(sid, iid, pid, where: str = "ids"):
    """Inverse of :func:`decode_uids`: ``iid < 0`` gives a semantic-only uid; ``pid <= 0`` no part digits.

    A part needs an instance (``sid_iid_pid``); ``pid > 0`` with ``iid < 0`` is rejected.
    """
    is_torch = isinstance(sid, torch.Tensor)
    lib = torch if is_torch else np
    sid, iid, pid = ((x.long() if is_torch else np.asarray(x).astype(np.int64)) for x in (sid, iid, pid))
    for name, x, hi, lo in (("sid", sid, 99, 0), ("iid", iid, 999, -1), ("pid", pid, 99, -1)):
        bad = (x > hi) | (x < lo)
        if bool(bad.any()):
            raise DataError(f"{where}: {name} {int(x[bad].reshape(-1)[0])} is out of range: expected {max(lo, 0)}..{hi}")
    bad = (sid == 0) & (iid >= 0)
    if bool(bad.any()):
        raise DataError(f"{where}: sid 0 (unlabelled) cannot carry an instance id")
    bad = (pid > 0) & (iid < 0)
    if bool(bad.any()):
        raise DataError(f"{where}: a pid needs an iid (pid {int(pid[bad].reshape(-1)[0])} given without instance)")
    sid_iid = lib.where(iid < 0, sid, sid * 1000 + iid)
    uid = lib.where(pid > 0, sid_iid * 100 + pid, sid_iid)
    return uid.int() if is_torch else uid.astype(np.int32)


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
                   flat_lut, sid2name, flat2name)

    def without_parts(self) -> "EvalSpec":
        """The same spec with every class evaluated without parts (PartPQ then equals PQ)."""
        return EvalSpec(self.path, self.dataset, self.ignore_label, self.eval_sids, self.things, self.stuff, {},
                        self.sid_pid_map, self.flat_lut, self.sid2name, self.flat2name)


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
# label and prediction files
# ---------------------------------------------------------------------------------------------
def read_gt(path: str | Path) -> np.ndarray:
    """Read a ground-truth label file (int32 TIFF, or an integer PNG) as an int32 uid array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ground-truth file {path} does not exist")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            arr = np.array(Image.open(path))
    except Exception as exc:  # unreadable image: name the file
        raise DataError(f"ground-truth file {path} cannot be read: {exc}") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"ground-truth file {path} holds a {arr.dtype} array of shape {arr.shape}: "
                        "expected a single-channel integer uid image")
    arr = arr.astype(np.int32)
    check_uids(arr, str(path))
    return arr


def write_gt(path: str | Path, uids: np.ndarray) -> Path:
    """Write uids as a single-channel int32 TIFF (the panoptic_parts ground-truth format)."""
    import tifffile

    path = Path(path)
    uids = np.asarray(uids, dtype=np.int32)
    check_uids(uids, str(path))
    buf = io.BytesIO()
    tifffile.imwrite(buf, uids)
    return atomic_write_bytes(path, buf.getvalue())


def read_prediction(path: str | Path) -> np.ndarray:
    """Read an HxWx3 uint8 PNG (sid, iid, pid) as a uint8 array of shape (H, W, 3)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"prediction file {path} does not exist")
    try:
        arr = np.array(Image.open(path))
    except Exception as exc:
        raise DataError(f"prediction file {path} cannot be read: {exc}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(f"prediction file {path} holds a {arr.dtype} array of shape {arr.shape}: "
                        "expected an HxWx3 uint8 PNG of (sid, iid, pid)")
    return arr


def write_prediction(path: str | Path, sid: np.ndarray, iid: np.ndarray, pid: np.ndarray) -> Path:
    """Write (sid, iid, pid) maps as an HxWx3 uint8 PNG; values must lie in 0..255 (<= 255 instances)."""
    from PIL import Image

    path = Path(path)
    for name, x in (("sid", sid), ("iid", iid), ("pid", pid)):
        x = np.asarray(x)
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"prediction {path}: {name} value {int(x.max() if x.max() > 255 else x.min())} "
                            "does not fit the PNG format: expected 0..255 (at most 255 instances per class)")
    arr = np.stack([np.asarray(sid), np.asarray(iid), np.asarray(pid)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
