"""The panoptic-parts file codec: uids and the label and prediction files.

It lives in ``tenfold.data`` so that the data layer (``data/panoptic_scenes.py``) and the panoptic method
family (``tenfold.panoptic.format`` re-exports every name) share it without data importing a method.

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
from pathlib import Path

import numpy as np
import torch

from tenfold.errors import DataError
from tenfold.io import atomic_write_bytes

__all__ = ["NO_PREDICTION", "UNKNOWN_PART", "MAX_UID", "check_uids", "decode_uids", "encode_ids", "read_gt",
           "write_gt", "read_prediction", "write_prediction"]

NO_PREDICTION = 255
UNKNOWN_PART = 255
MAX_UID = 9_999_999


# ---------------------------------------------------------------------------------------------
# uid codec
# ---------------------------------------------------------------------------------------------
def check_uids(uids: np.ndarray | torch.Tensor, where: str = "uids") -> None:
    """Raise DataError naming ``where`` and an offending value for negative, 3-digit or too large uids."""
    if not isinstance(uids, torch.Tensor):
        uids = np.asarray(uids)
        # the common case (every uid valid) in a few read-only passes; the full mask only to name a value
        if uids.size == 0:
            return
        if int(uids.min()) >= 0 and int(uids.max()) <= MAX_UID and not ((uids >= 100) & (uids <= 999)).any():
            return
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
    arr = arr.astype(np.int32, copy=False)   # the file's own fresh array when it is int32 already
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
