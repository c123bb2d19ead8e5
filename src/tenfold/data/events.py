"""Event-camera (DVS) data: streams simulated from images, and local N-MNIST-style event files.

Every sample is a float tensor of shape (T, 2, H, W): event counts per time bin and polarity
(channel 0 = ON, brightness up; channel 1 = OFF, brightness down).

**Simulation** (:func:`simulate_events`, :func:`simulated_events`): a camera sweeps over a static
image along N-MNIST's triangular saccade (integer shifts up to ``max_shift`` pixels), plus seeded
random noise events. Each pixel keeps a reference log-intensity ``L_ref``; at sub-step k the camera sees
``L_k = log(eps + I_k)`` and emits ``n = floor(|L_k - L_ref| / C)`` events of the sign of the change,
then ``L_ref += sign * n * C`` (the standard contrast-threshold DVS model). Sub-steps are binned into T
frames.

**Files** (:func:`event_files`): ``root/<split>/<class>/<name>.npz``, each holding integer arrays
``x``, ``y``, ``t`` (any time unit) and ``p`` (polarity, 0/1 or -1/+1), as N-MNIST and similar sets are
usually converted, or jAER ``.aedat`` (AEDAT 2.0) recordings such as CIFAR10-DVS
(:func:`read_aedat2`). Events are binned into T equal-duration frames.

**DVS128 Gesture** (:func:`dvs_gesture`): the dataset as published: ``userNN_<lighting>.aedat`` (AEDAT 3.1,
:func:`read_aedat3`) with ``userNN_<lighting>_labels.csv`` (``class,startTime_usec,endTime_usec``, classes
1..11) and ``trials_to_train.txt`` / ``trials_to_test.txt`` listing the recordings of each split; one
sample per labelled interval, as SpikingJelly cuts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tenfold.data.base import ArrayDataset
from tenfold.errors import DataError, require

SOURCES = ("shapes", "digits")


def saccade(steps: int, max_shift: int) -> torch.Tensor:
    """Integer camera offsets (steps, 2) along N-MNIST's triangular saccade
    ``(0, 0) -> (s, s) -> (0, s) -> (0, 0)`` with ``s = max_shift``, one third of the steps per edge."""
    corners = torch.tensor([[0.0, 0.0], [max_shift, max_shift], [0.0, max_shift], [0.0, 0.0]], dtype=torch.float64)
    pos = torch.linspace(0, 3, steps, dtype=torch.float64)
    edge = pos.floor().long().clamp(max=2)
    frac = (pos - edge).unsqueeze(1)
    return torch.round(corners[edge] * (1 - frac) + corners[edge + 1] * frac).long()


def simulate_events(images: torch.Tensor, T: int, generator: torch.Generator, substeps: int = 3,
                    max_shift: int = 2, threshold: float = 0.2, eps: float = 0.1,
                    noise_rate: float = 0.01) -> torch.Tensor:
    """Event frames (N, T, 2, H, W) from images (N, C, H, W) in [0, 1] (C channels averaged to grey).

    The camera follows :func:`saccade` over ``T * substeps + 1`` positions; on top, every pixel fires a
    spurious event of random polarity with probability ``noise_rate`` per bin (sensor noise, drawn from
    ``generator``).
    """
    require(images.dim() == 4, "images", tuple(images.shape), "a (N, C, H, W) tensor", DataError)
    require(isinstance(T, int) and T >= 1, "T", T, "an integer number of time bins >= 1")
    require(substeps >= 1, "substeps", substeps, "an integer >= 1")
    require(threshold > 0, "threshold", threshold, "a positive contrast threshold")
    require(0 <= noise_rate <= 1, "noise_rate", noise_rate, "a probability in [0, 1]")
    grey = images.float().mean(1)                                      # (N, H, W)
    n, h, w = grey.shape
    steps = T * substeps
    paths = saccade(steps + 1, max_shift).unsqueeze(1).expand(steps + 1, n, 2)  # (S+1, N, 2)
    pad = max_shift
    padded = torch.nn.functional.pad(grey, (pad, pad, pad, pad))

    def view(k: int) -> torch.Tensor:
        rows = torch.arange(h).view(1, h, 1) + pad + paths[k, :, 0].view(n, 1, 1)
        cols = torch.arange(w).view(1, 1, w) + pad + paths[k, :, 1].view(n, 1, 1)
        return torch.log(eps + padded[torch.arange(n).view(n, 1, 1), rows, cols])

    ref = view(0)
    frames = torch.zeros(n, T, 2, h, w)
    for k in range(1, steps + 1):
        cur = view(k)
        delta = cur - ref
        count = torch.floor(delta.abs() / threshold)
        sign = torch.sign(delta)
        ref = ref + sign * count * threshold
        b = (k - 1) // substeps
        frames[:, b, 0] += count * (sign > 0)
        frames[:, b, 1] += count * (sign < 0)
    if noise_rate > 0:
        fire = torch.rand(n, T, 1, h, w, generator=generator) < noise_rate
        on = torch.rand(n, T, 1, h, w, generator=generator) < 0.5
        frames += torch.cat([fire & on, fire & ~on], 2).float()
    return frames


def simulated_events(split: str = "train", T: int = 8, seed: int = 0, source: str = "shapes",
                     num_classes: int = 10, size: int = 16, per_class: int = 60,
                     test_fraction: float = 0.25, **simulation) -> ArrayDataset:
    """A seeded event dataset of (T, 2, size, size) samples from ``shapes`` or ``digits`` images.

    ``shapes``: ``per_class`` images of each of the first ``num_classes`` (at most 10) *shapes* (solid,
    one colour: events carry no colour, so classes differ by outline only) at ``size`` px, split ``1 - test_fraction`` / ``test_fraction`` per class. ``digits``: the digits split of that
    name (8x8, ``size`` ignored). The same arguments give the same events.
    """
    require(split in ("train", "test"), "split", split, "'train' or 'test'", DataError)
    require(source in SOURCES, "source", source, f"one of {', '.join(SOURCES)}", DataError)
    require(0 < test_fraction < 1, "test_fraction", test_fraction, "a fraction in (0, 1)", DataError)
    if source == "digits":
        from tenfold.data.digits import digits

        images = digits("train" if split == "train" else "test", seed=seed)
    else:
        from tenfold.data.base import stratified_split
        from tenfold.data.shapes import shapes

        require(1 <= num_classes <= 10, "num_classes", num_classes, "1 to 10 shape classes", DataError)
        images = shapes(classes=[20 * c for c in range(num_classes)], size=size, per_class=per_class, seed=seed)
        train_idx, test_idx = stratified_split(images.y, (1 - test_fraction, test_fraction), seed)
        images = images.subset(train_idx if split == "train" else test_idx)
    gen = torch.Generator().manual_seed(seed * 1000 + (0 if split == "train" else 1))
    return ArrayDataset(simulate_events(images.x, T, gen, **simulation), images.y, images.class_names)


def events_to_frames(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, T: int, height: int,
                     width: int) -> torch.Tensor:
    """Bin events into (T, 2, height, width) counts over T equal-duration bins of ``[t.min(), t.max()]``."""
    x, y, t, p = (np.asarray(a).astype(np.int64).ravel() for a in (x, y, t, p))
    if not len(x) == len(y) == len(t) == len(p):
        raise DataError(f"event arrays have different lengths x={len(x)} y={len(y)} t={len(t)} p={len(p)}")
    frames = torch.zeros(T, 2, height, width)
    if len(t) == 0:
        return frames
    if x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height:
        raise DataError(f"event coordinates outside the {width}x{height} sensor: x in [{x.min()}, {x.max()}], "
                        f"y in [{y.min()}, {y.max()}]")
    span = max(int(t.max() - t.min()), 1)
    b = np.minimum((t - t.min()) * T // span, T - 1)
    pol = (p <= 0).astype(np.int64)  # 1/+1 -> ON channel 0, 0/-1 -> OFF channel 1
    flat = ((b * 2 + pol) * height + y) * width + x
    counts = np.bincount(flat, minlength=T * 2 * height * width)
    return torch.from_numpy(counts.reshape(T, 2, height, width).astype(np.float32))


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path) as data:
            missing = [k for k in ("x", "y", "t", "p") if k not in data.files]
            if missing:
                raise DataError(f"event file {path} lacks the array(s) {', '.join(missing)}: expected x, y, t, p")
            return tuple(data[k] for k in ("x", "y", "t", "p"))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"event file {path} is not a readable .npz ({type(exc).__name__}: {exc})") from None


# AEDAT 2.0 (jAER): ASCII header lines starting with '#', then big-endian (uint32 address, uint32 time)
# pairs. DVS address layout: bit 31 = 0 for polarity events, y in bits 22-30, x in bits 12-21,
# polarity in bit 11 (as used by CIFAR10-DVS and DAVIS recordings).
AEDAT2_LAYOUT = {"type": (0x80000000, 31), "y": (0x7FC00000, 22), "x": (0x003FF000, 12), "p": (0x800, 11)}


def _aedat2_payload_offset(raw: bytes) -> int:
    offset = 0
    while offset < len(raw) and raw[offset:offset + 1] == b"#":
        end = raw.find(b"\n", offset)
        if end < 0:
            return len(raw)
        line, offset = raw[offset:end], end + 1
        if b"End Of ASCII Header" in line:  # newer jAER files mark the end; data may then start with '#'
            break
    return offset


def read_aedat2(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, t, p)`` of the DVS polarity events in an AEDAT 2.0 file (non-DVS records are skipped).

    The raw sensor orientation is kept (CIFAR10-DVS users often flip x and y afterwards).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"event file {path} cannot be read ({exc.strerror})") from None
    payload = raw[_aedat2_payload_offset(raw):]
    if len(payload) % 8:
        raise DataError(f"event file {path} is not AEDAT 2.0: its {len(payload)} data bytes are not 8-byte records")
    data = np.frombuffer(payload, dtype=">u4").astype(np.int64)
    addr, t = data[0::2], data[1::2]

    def field(name: str) -> np.ndarray:
        mask, shift = AEDAT2_LAYOUT[name]
        return (addr & mask) >> shift

    dvs = field("type") == 0
    return field("x")[dvs], field("y")[dvs], t[dvs], field("p")[dvs]


EVENT_SUFFIXES = (".npz", ".aedat")


def _read_events(path: Path) -> tuple[np.ndarray, ...]:
    return _read_npz(path) if path.suffix == ".npz" else read_aedat2(path)


def event_files(root: str | Path, split: str = "train", T: int = 10, height: int = 34, width: int = 34
                ) -> ArrayDataset:
    """Event files ``root/<split>/<class>/*.npz`` or ``*.aedat`` binned into (T, 2, height, width) frames.

    Classes are the sub-folder names in sorted order (N-MNIST: ``0`` .. ``9``, sensor 34x34;
    CIFAR10-DVS ``.aedat``: sensor 128x128).
    """
    require(isinstance(T, int) and T >= 1, "T", T, "an integer number of time bins >= 1")
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"event data not found: expected folder {folder} with one sub-folder of .npz files per "
                        f"class; Tenfold never downloads data")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"event folder {folder} has no class sub-folders: expected {folder}/<class>/<sample>.npz")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for path in sorted(p for p in (folder / name).iterdir() if p.suffix in EVENT_SUFFIXES):
            xs.append(events_to_frames(*_read_events(path), T=T, height=height, width=width))
            ys.append(label)
    if not xs:
        raise DataError(f"event folder {folder} holds no .npz or .aedat files under its class folders")
    return ArrayDataset(torch.stack(xs), torch.tensor(ys), classes)



def event_folder(root: str | Path, split: str, T: int, sensor: int, size: int) -> ArrayDataset:
    """:func:`event_files` of a ``sensor`` x ``sensor`` camera, the frames resized to ``size`` x ``size`` by
    area averaging (CIFAR10-DVS: 128 -> 48 as in the SLTT recipe)."""
    data = event_files(root, split, T=T, height=sensor, width=sensor)
    if size != sensor:
        n, steps = data.x.shape[:2]
        frames = torch.nn.functional.interpolate(data.x.flatten(0, 1), size=(size, size), mode="area")
        data = ArrayDataset(frames.reshape(n, steps, *frames.shape[1:]), data.y, data.class_names)
    return data


def read_aedat3(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, t, p)`` of the polarity events (packet type 1) of an AEDAT 3.1 file (DVS128 Gesture).

    '#' header lines up to ``#!END-HEADER``, then packets: a 28-byte little-endian header (uint16 type,
    uint16 source, uint32 event size, uint32 timestamp offset, uint32 timestamp overflow, uint32 capacity,
    uint32 number, uint32 valid) and ``capacity * size`` bytes of events, each a uint32 word (x in bits
    17-31, y in bits 2-16, polarity in bit 1) and a uint32 timestamp (``| overflow << 31``), as
    SpikingJelly's ``load_aedat_v3`` reads them."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"event file {path} cannot be read ({exc.strerror})") from None
    offset = 0
    while raw[offset:offset + 1] == b"#":
        end = raw.find(b"\n", offset)
        line, offset = raw[offset:end if end >= 0 else len(raw)], (end + 1 if end >= 0 else len(raw))
        if line.rstrip(b"\r") == b"#!END-HEADER":
            break
    xs, ys, ts, ps = [], [], [], []
    while offset + 28 <= len(raw):
        kind, _, size, _, overflow, capacity = np.frombuffer(raw, "<u2", 2, offset).tolist() + \
            np.frombuffer(raw, "<u4", 4, offset + 4).tolist()
        offset += 28
        length = capacity * size
        if size < 8 or size % 4 or offset + length > len(raw):
            raise DataError(f"event file {path} is not AEDAT 3.1: a packet of {capacity} events of {size} bytes "
                            f"runs past the end of the file")
        if kind == 1 and capacity:
            words = np.frombuffer(raw, "<u4", length // 4, offset).reshape(capacity, size // 4).astype(np.int64)
            xs.append((words[:, 0] >> 17) & 0x7FFF)
            ys.append((words[:, 0] >> 2) & 0x7FFF)
            ps.append((words[:, 0] >> 1) & 1)
            ts.append(words[:, 1] | (int(overflow) << 31))
        offset += length
    if offset != len(raw):
        raise DataError(f"event file {path} is not AEDAT 3.1: {len(raw) - offset} trailing bytes after the last packet")
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(xs), cat(ys), cat(ts), cat(ps)


GESTURE_CLASSES = 11


def dvs_gesture(root: str | Path, split: str = "train", T: int = 20, size: int = 128) -> ArrayDataset:
    """DVS128 Gesture from its published files under ``root`` (see the module docstring): one sample per
    row of each recording's label CSV, binned into (T, 2, 128, 128) frames, area-resized to ``size``."""
    require(split in ("train", "test"), "split", split, "train or test")
    root = Path(root)
    listing = root / f"trials_to_{split}.txt"
    if not listing.is_file():
        raise DataError(f"DVS128 Gesture not found: expected {listing} beside the userNN_<lighting>.aedat files and "
                        "their _labels.csv; Tenfold never downloads data")
    frames, labels = [], []
    for name in (line.strip() for line in listing.read_text().splitlines()):
        if not name:
            continue
        aedat = root / name
        csv_file = aedat.with_name(aedat.stem + "_labels.csv")
        if not csv_file.is_file():
            raise DataError(f"DVS128 Gesture recording {aedat.name} has no label file {csv_file}")
        try:
            rows = np.loadtxt(csv_file, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
        except ValueError as exc:
            raise DataError(f"label file {csv_file} is not 'class,startTime_usec,endTime_usec' rows ({exc})") from None
        x, y, t, p = read_aedat3(aedat)
        for label, start, end in rows:
            if not 1 <= label <= GESTURE_CLASSES:
                raise DataError(f"label file {csv_file} has class {label}: expected 1..{GESTURE_CLASSES}")
            keep = (t >= start) & (t < end)
            frames.append(events_to_frames(x[keep], y[keep], t[keep], p[keep], T=T, height=128, width=128))
            labels.append(int(label) - 1)
    if not frames:
        raise DataError(f"{listing} lists no recordings with labelled gestures")
    x = torch.stack(frames)
    if size != 128:
        x = torch.nn.functional.interpolate(x.flatten(0, 1), size=(size, size), mode="area").reshape(
            len(frames), T, 2, size, size)
    return ArrayDataset(x, torch.tensor(labels), [str(k) for k in range(1, GESTURE_CLASSES + 1)])


EVENT_LAYOUTS = ("class-folders", "dvs128-gesture")


def event_dataset(root: str | Path, layout: str, split: str, T: int, sensor: int, size: int) -> ArrayDataset:
    """An event data set from local files: ``class-folders`` (:func:`event_folder`: CIFAR10-DVS AEDAT 2.0 or
    .npz) or ``dvs128-gesture`` (:func:`dvs_gesture`, the published AEDAT 3.1 files; 128x128 sensor)."""
    if layout == "dvs128-gesture":
        return dvs_gesture(root, split, T=T, size=size)
    return event_folder(root, split, T, sensor, size)
