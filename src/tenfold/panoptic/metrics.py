"""PQ, PartPQ, part mIoU and PWQ (provisional) from ONE joint histogram per image.

Per image we label every pixel with a compact GT-segment id ``g`` (void, per-class crowd, or a (sid, iid)
segment), a predicted-segment id ``p`` (none, or a (sid, iid) segment), its GT part id ``a`` and its
predicted part id ``b``, and count ``H[g, p, a, b]`` with one ``bincount``. Every quantity follows:

- overlaps ``|g ∩ p| = Σ_ab H``, areas, void and crowd overlaps of each prediction;
- IoU(p, g) = |p ∩ g| / (|p ∪ g| − |p ∩ V|)   (panopticapi; match iff same class and IoU > 0.5);
- the part confusion of a matched pair over E = all − V − crowd_c − {x ∈ g : pid_gt(x) = 0}, where
  ``y_gt = pid_gt`` inside g and 0 outside, ``y_pr = pid_pr`` inside p and 0 outside; the background cell
  outside p ∪ g is ``|E| − |E ∩ (p ∪ g)|``.

PartPQ (de Geus et al., CVPR'21, Eq. 1; semantics of the reference implementation panoptic_parts 2.0rc6):
``PartPQ_c = Σ_TP IOU_p / (|TP| + ½|FP| + ½|FN|)`` with ``IOU_p`` = IoU for classes without parts and the
mean part IoU over the labels present in E (background 0 included, unknown part 255 dropped) for classes
with parts. GT segments of a parts class without any part label become crowd. ``include_bg=False`` gives
the paper's wording (mean over part labels only).

PQ (Kirillov et al., CVPR'19; panopticapi): the same counting with the IoU as segment score and no
part-less-to-crowd conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tenfold.errors import ConfigError, DataError
from tenfold.panoptic.format import MAX_UID, NO_PREDICTION, UNKNOWN_PART, EvalSpec, check_uids, decode_uids

NUM_SIDS = 100
# compact-key layout of GT pixels: 0 void, 1 + sid crowd of a things class, SEG_BASE + sid*1000 + iid segment
SEG_BASE = 1 + NUM_SIDS
COMBINERS = ("geometric", "harmonic", "arithmetic")


@dataclass
class ClassCounts:
    """Per-class sums over images (index = sid): TPs, FPs, FNs and the TP segment scores.

    The scores are kept one per TP and summed with ``math.fsum`` (correctly rounded), so the totals do not
    depend on the order or grouping in which images are added: statistics merged from several processes
    equal those of one process exactly."""

    tp: np.ndarray = field(default_factory=lambda: np.zeros(NUM_SIDS, np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(NUM_SIDS, np.int64))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(NUM_SIDS, np.int64))
    scores: dict[int, list[float]] = field(default_factory=dict)

    @property
    def score(self) -> np.ndarray:
        """(100,) sum of the TP segment scores of each class (exactly rounded)."""
        out = np.zeros(NUM_SIDS, np.float64)
        for sid, values in self.scores.items():
            out[sid] = math.fsum(values)
        return out

    def __iadd__(self, other: "ClassCounts") -> "ClassCounts":
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        for sid, values in other.scores.items():
            self.scores.setdefault(sid, []).extend(values)
        return self


@dataclass
class PartStats:
    """Sums over images of everything the metrics need: PQ and PartPQ counts, flat-part confusion."""

    pq: ClassCounts = field(default_factory=ClassCounts)
    part_pq: ClassCounts = field(default_factory=ClassCounts)
    part_confusion: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int64))
    images: int = 0

    def __iadd__(self, other: "PartStats") -> "PartStats":
        self.pq += other.pq
        self.part_pq += other.part_pq
        k = max(self.part_confusion.shape[0], other.part_confusion.shape[0])
        conf = np.zeros((k, k), np.int64)
        for c in (self.part_confusion, other.part_confusion):
            conf[: c.shape[0], : c.shape[1]] += c
        self.part_confusion = conf
        self.images += other.images
        return self


# ---------------------------------------------------------------------------------------------
# decoding ground truth and predictions
# ---------------------------------------------------------------------------------------------
def gt_labels(uids: np.ndarray, spec: EvalSpec, where: str = "ground truth") -> tuple[np.ndarray, ...]:
    """``(sid, iid, pid_eval)`` of a GT uid map: countable parts folded with the dataset spec, then
    dataset sid_pid -> eval sid_pid (the reference applies the latter only when it is not the identity;
    IGNORED sid_pids keep their pid)."""
    uids = np.asarray(uids)
    sid, iid, pid = decode_uids(uids, where)
    check_gt_ids(uids, sid, iid, pid, spec, where)
    if spec.dataset.sid_pid_file2sid_pid is not None or spec.sid_pid_map is not None:
        sid_pid = np.where(pid == 0, sid, sid * 100 + pid).astype(np.int64)
        if spec.dataset.sid_pid_file2sid_pid is not None:
            sid_pid = spec.dataset.sid_pid_file2sid_pid[sid_pid]
        if spec.sid_pid_map is not None:
            sid_pid = spec.sid_pid_map[sid_pid]
        pid = np.where(sid_pid >= 100, sid_pid % 100, 0).astype(np.int32)
    return sid, iid, pid


def _part_counts(spec: EvalSpec) -> np.ndarray:
    """(100,) number of named parts of each dataset sid (0 for classes without parts)."""
    n = np.zeros(NUM_SIDS, np.int64)
    for s, names in spec.dataset.part_classes.items():
        n[s] = len(names) - 1
    return n


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def check_gt_ids(uids: np.ndarray, sid: np.ndarray, iid: np.ndarray, pid: np.ndarray, spec: EvalSpec,
                 where: str = "ground truth") -> None:
    """Every GT uid must be a label of the spec's dataset (a one-line :class:`DataError` naming ``where``,
    the uid and what was expected): its sid a class of the dataset spec (and listed in the eval spec's
    ``dataset_sid2eval_sid`` when that has no DEFAULT); no instance id on an evaluated stuff class (an
    instance-less ``sid_000_pid`` is allowed where the class has parts); no part id on a class without
    parts, nor outside the class's parts (countable part ids of ``countable_pids_groupings`` included).

    Without these checks a wrong label map (e.g. Cityscapes train ids, or a custom dataset's ids) is scored
    silently: unknown sids fall into the DEFAULT void, stuff instances become extra segments."""
    uids, sid, iid, pid = (np.asarray(x).reshape(-1).astype(np.int64) for x in (uids, sid, iid, pid))
    if uids.size == 0:
        return
    ds = spec.dataset
    n_classes = len(ds.scene_classes)
    bad = sid >= n_classes
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where}: uid {uids[i]} has semantic id {sid[i]}, which is not a class of dataset spec "
                        f"{ds.path}: expected a sid in 0..{n_classes - 1}")
    if spec.listed_sids is not None:
        bad = ~np.isin(sid, sorted(spec.listed_sids))
        if bad.any():
            i = _first(bad)
            raise DataError(f"{where}: uid {uids[i]} has semantic id {sid[i]}, which eval spec {spec.path} does not "
                            f"map: expected a sid listed in dataset_sid2eval_sid {sorted(spec.listed_sids)}")
    n_parts = _part_counts(spec)
    stuff = np.isin(sid, spec.stuff)
    bad = stuff & ((iid > 0) | ((iid == 0) & (n_parts[sid] == 0)))
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where}: uid {uids[i]} gives instance id {iid[i]} to stuff class {sid[i]} "
                        f"({ds.scene_classes[sid[i]]}): expected a semantic-only uid {sid[i]} (the eval spec lists "
                        "it in eval_sid_stuff)")
    lut = ds.sid_pid_file2sid_pid
    if lut is not None:
        bad = (pid > 0) & (lut[np.clip(sid * 100 + pid, 0, 9999)] < 0)
    else:
        bad = pid > n_parts[sid]
    if bad.any():
        i = _first(bad)
        s = int(sid[i])
        what = (f"class {s} ({ds.scene_classes[s]}) has no parts: expected a uid without part digits"
                if n_parts[s] == 0 else
                f"class {s} ({ds.scene_classes[s]}) has parts 1..{n_parts[s]} ({', '.join(ds.part_classes[s][1:])})"
                + (" and the countable part ids of countable_pids_groupings" if lut is not None else ""))
        raise DataError(f"{where}: uid {uids[i]} has part id {pid[i]}, but {what} in dataset spec {ds.path}")


def check_prediction_ids(c_sid: np.ndarray, c_iid: np.ndarray, cell_combo: np.ndarray, cell_pid: np.ndarray,
                         spec: EvalSpec, where: str = "prediction") -> None:
    """Predicted ``(sid, iid, pid)`` values must fit the spec (one-line :class:`DataError`): sid a class of
    the dataset spec or 255 (no prediction); on an evaluated class with parts, pid one of its evaluated pids,
    0, or the ignore label / 255 (unknown part); on an evaluated class without parts, pid 0, 1 (the dummy),
    the ignore label or one of the class's dataset pids (ignored there, as by the reference). ``c_sid``/``c_iid``: distinct predicted (sid, iid) values; ``cell_combo``/``cell_pid``:
    the (index into them, pid) pairs present."""
    ds = spec.dataset
    n_classes = len(ds.scene_classes)
    bad = (c_sid >= n_classes) & (c_sid != NO_PREDICTION)
    if spec.listed_sids is not None:
        bad |= ~np.isin(c_sid, sorted(spec.listed_sids)) & (c_sid != NO_PREDICTION)
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where}: pixel (sid, iid) = ({c_sid[i]}, {c_iid[i]}) has semantic id {c_sid[i]}, which "
                        f"is not a class of dataset spec {ds.path}: expected a dataset sid "
                        f"(0..{n_classes - 1}) or {NO_PREDICTION} (no prediction)")
    allowed = np.zeros((NUM_SIDS, 256), bool)
    allowed[:, [0, 1, spec.ignore_label, UNKNOWN_PART]] = True
    # a class evaluated without parts ignores its pids (as the reference): its dataset pids are fine too,
    # e.g. a car predicted with parts under a no-parts spec (PartPQ = PQ)
    for s, n in enumerate(_part_counts(spec)):
        allowed[s, : n + 1] = True
    for s in spec.parts_sids:
        allowed[s, 1] = False
        allowed[s, spec.sid2pids[s]] = True
    psid = c_sid[cell_combo]
    evaluated = np.isin(psid, spec.eval_sids)
    bad = evaluated & ~allowed[np.clip(psid, 0, NUM_SIDS - 1), cell_pid]
    if bad.any():
        i = _first(bad)
        s, p = int(psid[i]), int(cell_pid[i])
        expected = (f"one of its evaluated pids {spec.sid2pids[s]}, 0 or {spec.ignore_label} (unknown part)"
                    if spec.has_parts(s) else f"1 (the dummy pid of a class evaluated without parts), 0 or "
                    f"{spec.ignore_label}")
        raise DataError(f"{where}: pixel (sid, iid, pid) = ({s}, {int(c_iid[cell_combo[i]])}, {p}) has part id {p} "
                        f"on class {s} ({spec.sid2name.get(s, s)}): expected {expected}")


def check_prediction(pred: np.ndarray, shape: tuple[int, int], where: str = "prediction") -> None:
    """Shape (H, W, 3) equal to the GT's and values in 0..255 (the PNG format's range)."""
    if pred.ndim != 3 or pred.shape[2] != 3:
        raise DataError(f"{where}: shape {tuple(pred.shape)} is invalid: expected (H, W, 3) = (sid, iid, pid)")
    if tuple(pred.shape[:2]) != tuple(shape):
        raise DataError(f"{where}: size {pred.shape[0]}x{pred.shape[1]} does not match the ground truth's "
                        f"{shape[0]}x{shape[1]}")
    if pred.dtype not in (np.uint8, torch.uint8) and pred.shape[0] * pred.shape[1] and \
            (int(pred.min()) < 0 or int(pred.max()) > 255):
        raise DataError(f"{where}: value {int(pred.max() if pred.max() > 255 else pred.min())} is invalid: "
                        "expected 0..255 (at most 255 instances per class)")


def _lut(size: int, sids) -> np.ndarray:
    table = np.zeros(size, bool)
    table[list(sids)] = True
    return table


# ---------------------------------------------------------------------------------------------
# one image
# ---------------------------------------------------------------------------------------------
def image_stats(gt_uids: np.ndarray, pred: np.ndarray, spec: EvalSpec, *, include_bg: bool = True,
                pred_flat: np.ndarray | None = None, where: str = "image", gt_where: str | None = None) -> PartStats:
    """PQ and PartPQ counts and the flat-part confusion of one image.

    ``gt_uids``: (H, W) int uids; ``pred``: (H, W, 3) ints (sid, iid, pid), numpy arrays or torch tensors
    (tensors are processed on their own device); ``pred_flat``: optional
    (H, W) flat part-semantic prediction (0 = background) for part mIoU; by default it is derived from
    ``pred`` (sid with parts and a valid pid -> flat id, else background).

    Both inputs are validated against ``spec`` (:func:`check_gt_ids`, :func:`check_prediction_ids`,
    :func:`check_prediction`); errors name ``gt_where`` (default ``where``) or ``where``.

    Pixels are touched only by a few O(N) passes: a histogram of GT uid values and one of predicted
    (sid, iid) values give per-value lookup tables, and one ``bincount`` over (GT value class, predicted
    (sid, iid), predicted pid) gives the joint histogram; decoding happens on the distinct values only.
    """
    on_torch = isinstance(gt_uids, torch.Tensor) or isinstance(pred, torch.Tensor)
    if on_torch:  # stay on the tensors' device: only small per-value tables go to the host
        device = (gt_uids if isinstance(gt_uids, torch.Tensor) else pred).device
        gt, pred = (torch.as_tensor(x, device=device) for x in (gt_uids, pred))
    else:
        gt, pred = np.asarray(gt_uids), np.asarray(pred)
    gt_where = where if gt_where is None else gt_where
    if gt.ndim != 2:
        raise DataError(f"{gt_where}: ground truth of shape {tuple(gt.shape)} is invalid: expected (H, W) uids")
    check_prediction(pred, tuple(gt.shape), where)
    # float labels would be truncated to ids silently (e.g. an interpolated or normalised map)
    for name, x, w in (("ground truth", gt, gt_where), ("prediction", pred, where)):
        if not _is_integer(x):
            raise DataError(f"{w}: {name} has dtype {x.dtype}: expected integer labels")
    if pred_flat is not None and tuple(pred_flat.shape) != tuple(gt.shape):
        raise DataError(f"{where}: part-semantic prediction of shape {tuple(pred_flat.shape)} does not match the "
                        f"ground truth's {tuple(gt.shape)}: expected (H, W) flat part ids")
    evaluated, is_thing, with_parts = (_lut(256, spec.eval_sids), _lut(256, spec.things),
                                       _lut(256, spec.parts_sids))

    # --- GT: distinct uid values -> classes "gj" of (segment key, part id)
    # numpy: one cast to the index type, so bincount and take read it without casting it again
    g = gt.reshape(-1).long() if on_torch else gt.reshape(-1).astype(np.intp, copy=False)
    if g.numel() if on_torch else g.size:
        if int(g.min()) < 0 or int(g.max()) > MAX_UID:
            check_uids(g, gt_where)
    uvals = _distinct(g)
    sid, iid, gpid = (x.astype(np.int64) for x in gt_labels(uvals, spec, gt_where))
    gvalid = evaluated[sid]
    crowd = gvalid & is_thing[sid] & (iid < 0)
    # void | crowd(sid) | segment(sid, iid); stuff without iid is segment (sid, 0) as in the reference,
    # where "no instance" decodes to iid 0
    gkey = np.where(gvalid, np.where(crowd, 1 + sid, SEG_BASE + sid * 1000 + np.maximum(iid, 0)), 0)
    gpid = np.where(gvalid & ~crowd & with_parts[sid], gpid, 0)  # parts matter only inside parts segments
    gj_keys, gj_of_u = np.unique(gkey * 100 + gpid, return_inverse=True)
    gj_of_u = gj_of_u.reshape(-1)
    gkeys, g_of_gj = np.unique(gj_keys // 100, return_inverse=True)
    avals, a_of_gj = np.unique(gj_keys % 100, return_inverse=True)
    g_of_gj, a_of_gj = g_of_gj.reshape(-1), a_of_gj.reshape(-1)

    # --- predictions: distinct (sid, iid) values "combos"
    p = pred.reshape(-1, 3)
    seg_px = _pred_segments(p)
    svals = _distinct(seg_px)
    c_sid, c_iid = svals // 256, svals % 256
    # predicted sids that the spec does not evaluate (e.g. Cityscapes void ids 0-6) belong to no predicted
    # segment: the reference's prediction_parsing only collects the evaluated classes, so they are ignored
    nc = svals.size

    # --- the joint histogram over (GT class gj, predicted combo, predicted pid)
    size = gj_keys.size * nc * 256
    joint = _joint_keys(g, uvals, gj_of_u, seg_px, svals, p, size)
    nz, counts = _histogram(joint, size)
    del joint
    gj, rest = np.divmod(nz, nc * 256)
    combo, praw = np.divmod(rest, 256)
    check_prediction_ids(c_sid, c_iid, combo, praw, spec, where)
    c_valid = evaluated[c_sid]
    pkeys, p_of_c = np.unique(np.where(c_valid, 1 + c_sid * 256 + c_iid, 0), return_inverse=True)
    ppid = np.where((c_valid & with_parts[c_sid])[combo], praw, 0)
    if spec.ignore_label != UNKNOWN_PART:
        ppid = np.where(ppid == spec.ignore_label, UNKNOWN_PART, ppid)
    bvals, b_idx = np.unique(ppid, return_inverse=True)
    hist = np.zeros((gkeys.size, pkeys.size, avals.size, bvals.size), np.int64)
    np.add.at(hist, (g_of_gj[gj], p_of_c.reshape(-1)[combo], a_of_gj[gj], b_idx.reshape(-1)), counts)

    stats = PartStats(images=1)
    _segment_counts(hist, gkeys, pkeys, avals, bvals, spec, stats, include_bg)
    stats.part_confusion = _flat_confusion(gj_keys, gj, c_sid[combo], ppid, counts, spec, with_parts,
                                           None if pred_flat is None else
                                           (pred_flat, _gather(_table(uvals, gj_of_u), g), where))
    return stats


def _is_integer(x) -> bool:
    if isinstance(x, torch.Tensor):
        return not (x.is_floating_point() or x.is_complex()) and x.dtype != torch.bool
    return np.issubdtype(x.dtype, np.integer)


def _distinct(x) -> np.ndarray:
    """Sorted distinct values of a non-negative integer array or tensor.

    Tensors: one bincount, O(N + max). Arrays: label maps are piecewise constant, so the values where a run
    starts (one comparison pass) are few; their distinct values come from a sort when there are few of them,
    else from a bincount. The bincount alone would allocate and scan a table of max + 1 entries (26 MB for
    Cityscapes uids such as 2_600_101)."""
    if isinstance(x, torch.Tensor):
        return torch.nonzero(torch.bincount(x)).reshape(-1).cpu().numpy()
    if x.size == 0:
        return np.zeros(0, np.intp)
    starts = np.empty(x.size, bool)
    starts[0] = True
    np.not_equal(x[1:], x[:-1], out=starts[1:])
    values = x[starts]
    if values.size * 16 < int(values.max()):
        return np.unique(values)
    return np.flatnonzero(np.bincount(values))


def _pred_segments(p):
    """Per-pixel predicted ``sid * 256 + iid`` of an (N, 3) prediction: a long tensor, or an intp array."""
    if isinstance(p, torch.Tensor):
        p = p.long()
        return p[:, 0] * 256 + p[:, 1]
    if p.dtype == np.uint8 and p.flags.c_contiguous:
        # the (sid, iid) bytes of each pixel read as one big-endian 16-bit number, in one pass
        return np.ndarray((p.shape[0],), ">u2", p, 0, (3,)).astype(np.intp)
    return p[:, 0].astype(np.intp) * 256 + p[:, 1]


def _table(values: np.ndarray, targets: np.ndarray, dtype=np.int64) -> np.ndarray:
    """Dense lookup table over ``0..values[-1]`` (``values`` sorted) with ``table[values] = targets``."""
    table = np.zeros(int(values[-1]) + 1, dtype)
    table[values] = targets
    return table


def _joint_keys(g, uvals, gj_of_u, seg_px, svals, p, size: int):
    """Per-pixel joint key ``(gj * nc + combo) * 256 + pid`` (``nc`` = number of predicted combos).

    numpy: the two factors are folded into the lookup tables, so each pixel costs two ``take`` and two
    in-place adds, in int32 where the keys fit (half the memory traffic of int64)."""
    nc = svals.size
    if isinstance(g, torch.Tensor):
        gj_px = _gather(_table(uvals, gj_of_u), g)
        return (gj_px * nc + _gather(_table(svals, np.arange(nc)), seg_px)) * 256 + p[:, 2]
    dtype = np.int32 if size < 2 ** 31 else np.int64
    joint = np.take(_table(uvals, gj_of_u * (nc * 256), dtype), g)
    joint += np.take(_table(svals, np.arange(nc) * 256, dtype), seg_px)
    np.add(joint, p[:, 2], out=joint, casting="unsafe")   # pids are checked to lie in 0..255
    return joint


def _gather(table: np.ndarray, x):
    """``table[x]`` on the array's or tensor's own device."""
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(table, device=x.device)[x]
    return table[x]


def _histogram(keys, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(non-empty keys, counts) of integer keys in [0, size): a dense bincount, or a sort if size is huge."""
    if isinstance(keys, torch.Tensor):
        if size <= 50_000_000:
            counts = torch.bincount(keys, minlength=size)
            nz = torch.nonzero(counts).reshape(-1)
            return nz.cpu().numpy(), counts[nz].cpu().numpy()
        nz, counts = torch.unique(keys, return_counts=True)
        return nz.cpu().numpy(), counts.cpu().numpy()
    if size <= 50_000_000:
        counts = np.bincount(keys, minlength=size)
        nz = np.flatnonzero(counts)
        return nz, counts[nz]
    nz, counts = np.unique(keys, return_counts=True)
    return nz.astype(np.int64), counts


def _flat_confusion(gj_keys, gj, psid, ppid, counts, spec, with_parts, pred_flat):
    """Confusion of flat part ids (0 = background) over pixels that are not void and not unlabelled parts;
    from the joint histogram's cells, or from a separate part-semantic map ``pred_flat``."""
    k = spec.num_flat + 1
    key = gj_keys // 100
    gj_sid = np.where(key >= SEG_BASE, (key - SEG_BASE) // 1000, np.where(key > 0, key - 1, 0))
    gj_pid = gj_keys % 100
    gflat = np.where(with_parts[gj_sid] & (gj_pid > 0), spec.flat_lut[gj_sid * 100 + gj_pid], 0)
    gflat = np.where(with_parts[gj_sid] & (gflat == 0), -1, gflat)   # unlabelled or not-evaluated parts
    gflat = np.where(key == 0, -1, gflat)                             # void
    conf = np.zeros((k, k), np.int64)
    if pred_flat is None:
        pflat = np.where(with_parts[psid] & (ppid > 0) & (ppid < 100),
                         spec.flat_lut[np.clip(psid * 100 + ppid, 0, 9999)], 0)
        keep = gflat[gj] >= 0
        np.add.at(conf, (gflat[gj][keep], pflat[keep]), counts[keep])
        return conf
    flat_map, gj_px, where = pred_flat
    if isinstance(gj_px, torch.Tensor):
        pf = torch.as_tensor(flat_map, device=gj_px.device).reshape(-1).long()
    else:
        pf = np.asarray(flat_map).reshape(-1).astype(np.int64)
    n = gj_px.numel() if isinstance(gj_px, torch.Tensor) else gj_px.size
    if (pf.numel() if isinstance(pf, torch.Tensor) else pf.size) != n or int(pf.min()) < 0 or int(pf.max()) >= k:
        raise DataError(f"{where}: part-semantic prediction must hold {n} flat ids in 0..{k - 1}")
    gf = _gather(gflat, gj_px)
    keep = gf >= 0
    nz, counts = _histogram(gf[keep] * k + pf[keep], k * k)
    conf[np.divmod(nz, k)] = counts
    return conf


def _segment_counts(hist, gkeys, pkeys, avals, bvals, spec, stats, include_bg):
    overlap = hist.sum(axis=(2, 3))                    # (ng, np)
    gt_area = overlap.sum(1)
    pred_area = overlap.sum(0)
    void_row = np.flatnonzero(gkeys == 0)
    p_void = overlap[void_row].sum(0) if void_row.size else np.zeros(pkeys.size, np.int64)
    g_is_seg = gkeys >= SEG_BASE
    g_sid = np.where(g_is_seg, (gkeys - SEG_BASE) // 1000, np.where(gkeys > 0, gkeys - 1, -1))
    p_sid = np.where(pkeys > 0, (pkeys - 1) // 256, -1)
    # a GT segment of a parts class whose pixels carry no part label at all -> crowd (PartPQ only)
    seg_has_part = hist[:, :, avals > 0, :].sum(axis=(1, 2, 3)) > 0 if (avals > 0).any() else np.zeros(gkeys.size, bool)
    partless = g_is_seg & np.isin(g_sid, spec.parts_sids) & ~seg_has_part

    for sid in spec.eval_sids:
        preds = np.flatnonzero(p_sid == sid)
        crowd_row = (gkeys == 1 + sid)
        segs = np.flatnonzero(g_is_seg & (g_sid == sid))
        # --- PQ: every segment is a segment, crowd = things pixels without instance
        _count_class(stats.pq, sid, segs, preds, crowd_row, overlap, gt_area, pred_area, p_void, None)
        # --- PartPQ: part-less segments of a parts class join that class's crowd
        parts_ctx = None
        crowd_pp = crowd_row | (partless & (g_sid == sid))
        if spec.has_parts(sid):
            parts_ctx = (hist, gkeys, avals, bvals, include_bg)
        _count_class(stats.part_pq, sid, np.flatnonzero(g_is_seg & (g_sid == sid) & ~partless), preds, crowd_pp,
                     overlap, gt_area, pred_area, p_void, parts_ctx)


def _count_class(counts, sid, segs, preds, crowd_rows, overlap, gt_area, pred_area, p_void, parts_ctx):
    matched_p = np.zeros(preds.size, bool)
    pairs: list[tuple[int, int, float]] = []          # (GT row, index into preds, IoU) in GT order
    if segs.size and preds.size:
        # every (segment, prediction) IoU at once, elementwise as panopticapi computes it
        inter = overlap[np.ix_(segs, preds)]
        union = gt_area[segs][:, None] + pred_area[preds] - inter - p_void[preds]
        iou = inter / np.where(union > 0, union, 1)
        gi, pj = np.nonzero(iou > 0.5)
        # GT segments are disjoint and so are predictions, so IoU > 0.5 (void left out of the union) pairs
        # each segment with at most one prediction and back: these are the greedy loop's matches, in its order.
        # Should that ever not hold, run the greedy loop itself.
        if gi.size == np.unique(gi).size == np.unique(pj).size:
            pairs = [(int(segs[a]), int(b), float(iou[a, b])) for a, b in zip(gi, pj)]
        else:
            for a in range(segs.size):
                hits = np.flatnonzero((iou[a] > 0.5) & ~matched_p)
                if hits.size:
                    matched_p[hits[0]] = True
                    pairs.append((int(segs[a]), int(hits[0]), float(iou[a, hits[0]])))
    tp = len(pairs)
    scores = []
    for g, j, value in pairs:
        matched_p[j] = True
        scores.append(value if parts_ctx is None else part_iou(g, preds[j], crowd_rows, overlap, gt_area, parts_ctx))
    p_crowd = overlap[crowd_rows][:, preds].sum(0) if crowd_rows.any() else np.zeros(preds.size, np.int64)
    ignored_frac = (p_void[preds] + p_crowd) / np.maximum(pred_area[preds], 1)
    counts.tp[sid] += tp
    counts.fp[sid] += int(np.count_nonzero(~matched_p & (ignored_frac <= 0.5)))
    counts.fn[sid] += segs.size - tp
    if scores:
        counts.scores.setdefault(sid, []).extend(scores)


def part_iou(g: int, p: int, crowd_rows: np.ndarray, overlap: np.ndarray, gt_area: np.ndarray, ctx) -> float:
    """Mean part IoU of a matched pair over E (reference semantics, ``panoptic_parts.md`` section 2)."""
    hist, gkeys, avals, bvals, include_bg = ctx
    labels = np.union1d(np.union1d(avals, bvals), [0])  # label 0 (background) sits at index 0
    ai = np.searchsorted(labels, avals)
    bi = np.searchsorted(labels, bvals)
    conf = np.zeros((labels.size, labels.size), np.int64)
    valid_rows = (gkeys != 0) & ~crowd_rows                     # E's rows: not void, not crowd of c
    keep_a = avals != 0                                         # pid-0 pixels inside g are not evaluated
    both = hist[g, p]                                           # (na, nb): y_gt = a, y_pr = b
    np.add.at(conf, (ai[keep_a][:, None], bi[None, :]), both[keep_a])
    g_only = hist[g].sum(axis=(0, 2)) - both.sum(1)             # (na,): y_pr = 0
    conf[ai[keep_a], 0] += g_only[keep_a]
    p_only = hist[valid_rows, p].sum(axis=(0, 1)) - both.sum(0)  # (nb,): y_gt = 0
    conf[0, bi] += p_only
    n_valid = gt_area[valid_rows].sum()
    p_valid = overlap[valid_rows, p].sum()
    conf[0, 0] += n_valid - gt_area[g] - p_valid + overlap[g, p]
    inter = np.diag(conf)
    rows, cols = conf.sum(1), conf.sum(0)
    present = (rows + cols) > 0
    drop = labels == UNKNOWN_PART
    if not include_bg:
        drop |= labels == 0
    union = rows + cols - inter
    ious = inter[present & ~drop] / union[present & ~drop]
    if ious.size == 0:
        return 0.0
    return float(np.mean(ious))


# ---------------------------------------------------------------------------------------------
# dataset-level summaries
# ---------------------------------------------------------------------------------------------
def _quality(counts: ClassCounts, sids: list[int]) -> dict[str, float | int | None]:
    tp, fp, fn, s = (x[sids].astype(np.float64) for x in (counts.tp, counts.fp, counts.fn, counts.score))
    active = (tp + fp + fn) > 0
    if not active.any():
        return {"PQ": None, "SQ": None, "RQ": None, "n": 0}
    denom = tp + 0.5 * fp + 0.5 * fn
    pq = np.where(active, s / np.where(denom > 0, denom, 1), 0.0)
    sq = np.where(tp > 0, s / np.where(tp > 0, tp, 1), 0.0)
    rq = np.where(active, tp / np.where(denom > 0, denom, 1), 0.0)
    return {"PQ": float(pq[active].mean()), "SQ": float(sq[active].mean()), "RQ": float(rq[active].mean()),
            "n": int(active.sum())}


def part_miou(confusion: np.ndarray, include_background: bool = True) -> tuple[float | None, np.ndarray]:
    """Semantic mIoU of flat part classes (+ background 0) over classes with a non-empty union."""
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    ious = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
    use = union > 0
    if not include_background:
        use[0] = False
    return (float(ious[use].mean()) if use.any() else None), ious


def combine(pq_w: float | None, miou_p: float | None, combiner: str = "geometric") -> float | None:
    """PWQ (provisional; ``panoptic_parts.md`` section 3): a mean of the whole term PQ_w and the part term
    mIoU_p; geometric (default) ``sqrt(PQ_w mIoU_p)``, harmonic or arithmetic."""
    if combiner not in COMBINERS:
        raise ConfigError(f"combiner={combiner!r} is invalid: expected one of {', '.join(COMBINERS)}")
    if pq_w is None or miou_p is None:
        return None
    if combiner == "geometric":
        return math.sqrt(pq_w * miou_p)
    if combiner == "harmonic":
        return 0.0 if pq_w + miou_p == 0 else 2 * pq_w * miou_p / (pq_w + miou_p)
    return 0.5 * (pq_w + miou_p)


def summarize(stats: PartStats, spec: EvalSpec, *, combiner: str = "geometric", include_bg: bool = True) -> dict:
    """JSON-ready results: PQ (all/things/stuff), PartPQ (all/with parts/without parts), part mIoU and
    PWQ (provisional) with its two terms, plus per-class and per-part tables."""
    parts = [s for s in spec.eval_sids if spec.has_parts(s)]
    noparts = [s for s in spec.eval_sids if not spec.has_parts(s)]
    pq = _quality(stats.pq, spec.eval_sids)
    pq_th = _quality(stats.pq, spec.things)
    pq_st = _quality(stats.pq, spec.stuff)
    ppq = _quality(stats.part_pq, spec.eval_sids)
    ppq_p = _quality(stats.part_pq, parts) if parts else {"PQ": None, "SQ": None, "RQ": None, "n": 0}
    ppq_np = _quality(stats.part_pq, noparts) if noparts else {"PQ": None, "SQ": None, "RQ": None, "n": 0}
    miou, ious = part_miou(stats.part_confusion)
    pwq = combine(pq["PQ"], miou, combiner)
    per_class = {}
    for s in spec.eval_sids:
        one_pq, one_ppq = _quality(stats.pq, [s]), _quality(stats.part_pq, [s])
        # the class's own flat parts' IoUs (background excluded), from the dataset-level confusion
        flats = sorted({int(spec.flat_lut[s * 100 + p]) for p in spec.sid2pids.get(s, [])} - {0})
        part_ious = {spec.flat2name.get(f, str(f)): (None if f >= ious.size or math.isnan(ious[f]) else float(ious[f]))
                     for f in flats}
        known = [v for v in part_ious.values() if v is not None]
        per_class[str(s)] = {
            "name": spec.sid2name.get(s, str(s)), "thing": s in spec.things, "has_parts": spec.has_parts(s),
            "PQ": one_pq["PQ"], "SQ": one_pq["SQ"], "RQ": one_pq["RQ"],
            "PartPQ": one_ppq["PQ"], "PartSQ": one_ppq["SQ"], "PartRQ": one_ppq["RQ"],
            "TP": int(stats.part_pq.tp[s]), "FP": int(stats.part_pq.fp[s]), "FN": int(stats.part_pq.fn[s]),
            "part_mIoU": (float(np.mean(known)) if known else None) if spec.has_parts(s) else None,
            "part_IoU": part_ious,
        }
    per_part = {str(k): {"name": "background" if k == 0 else spec.flat2name.get(k, str(k)),
                         "IoU": None if math.isnan(v) else float(v)} for k, v in enumerate(ious)}
    return {
        "images": stats.images,
        "PQ": pq["PQ"], "SQ": pq["SQ"], "RQ": pq["RQ"], "PQ_things": pq_th["PQ"], "PQ_stuff": pq_st["PQ"],
        "PartPQ": ppq["PQ"], "PartSQ": ppq["SQ"], "PartRQ": ppq["RQ"],
        "PartPQ_parts": ppq_p["PQ"], "PartSQ_parts": ppq_p["SQ"], "PartRQ_parts": ppq_p["RQ"],
        "PartPQ_noparts": ppq_np["PQ"], "PartSQ_noparts": ppq_np["SQ"], "PartRQ_noparts": ppq_np["RQ"],
        "n_classes": ppq["n"], "n_parts_classes": ppq_p["n"], "n_noparts_classes": ppq_np["n"],
        "part_mIoU": miou,
        "PWQ (provisional)": pwq,
        "PWQ_terms": {"PQ_w": pq["PQ"], "mIoU_p": miou, "combiner": combiner,
                      "note": "provisional definition (panoptic_parts.md section 3); the paper's formula is "
                              "not confirmed"},
        "include_bg": include_bg,
        "per_class": per_class,
        "per_part": per_part,
    }


def evaluate_arrays(pairs, spec: EvalSpec, *, include_bg: bool = True, combiner: str = "geometric") -> dict:
    """Summarize ``(gt_uids, pred)`` or ``(gt_uids, pred, pred_flat)`` pairs held in memory."""
    total = PartStats()
    for i, item in enumerate(pairs):
        gt, pred, *rest = item
        total += image_stats(gt, pred, spec, include_bg=include_bg, pred_flat=rest[0] if rest else None,
                             where=f"image {i}")
    return summarize(total, spec, combiner=combiner, include_bg=include_bg)
