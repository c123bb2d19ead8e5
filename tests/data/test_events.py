"""Event data: simulated DVS streams (seeded, shaped, learnable signal) and the .npz event-file loader."""

import numpy as np
import pytest
import torch

from tenfold.data.events import (event_files, events_to_frames, read_aedat2, saccade, simulate_events,
                                 simulated_events)
from tenfold.errors import ConfigError, DataError


def test_simulated_events_are_seeded_and_shaped():
    a = simulated_events("train", T=4, seed=1, source="digits")
    b = simulated_events("train", T=4, seed=1, source="digits")
    c = simulated_events("train", T=4, seed=2, source="digits")
    assert a.x.shape[1:] == (4, 2, 8, 8) and len(a) == len(a.y)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert (a.x >= 0).all() and a.x.sum() > 0 and a.num_classes == 10


def test_shapes_source_gives_one_class_per_outline():
    d = simulated_events("test", T=3, source="shapes", num_classes=4, size=12, per_class=8)
    assert d.x.shape[1:] == (3, 2, 12, 12)
    assert [n.split()[-1] for n in d.class_names] == ["circle", "square", "triangle", "diamond"]


def test_static_camera_gives_only_noise_and_moving_edge_gives_both_polarities():
    img = torch.zeros(1, 1, 8, 8)
    img[..., 2:6, 2:6] = 1.0
    still = simulate_events(img, 3, torch.Generator().manual_seed(0), max_shift=0, noise_rate=0.0)
    assert still.sum() == 0
    moving = simulate_events(img, 3, torch.Generator().manual_seed(0), max_shift=2, noise_rate=0.0)
    assert moving[:, :, 0].sum() > 0 and moving[:, :, 1].sum() > 0
    # the triangle saccade returns to the start: ON and OFF events balance at each pixel overall
    assert torch.equal(moving[:, :, 0].sum(1), moving[:, :, 1].sum(1))


def test_saccade_is_a_closed_triangle():
    path = saccade(13, 2)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [0, 0]
    assert path.max() == 2 and path.min() == 0
    assert (path[1:] - path[:-1]).abs().max() <= 1


def test_events_to_frames_bins_time_and_polarity():
    x, y = np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2])
    t, p = np.array([0, 10, 50, 99]), np.array([1, 0, 1, -1])
    f = events_to_frames(x, y, t, p, T=2, height=3, width=3)
    assert f.shape == (2, 2, 3, 3) and f.sum() == 4
    assert f[0, 0, 0, 0] == 1 and f[0, 1, 0, 1] == 1 and f[1, 0, 1, 1] == 1 and f[1, 1, 2, 2] == 1


def _write_sample(path, n=20, seed=0, size=34):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=rng.integers(0, size, n), y=rng.integers(0, size, n), t=np.sort(rng.integers(0, 1000, n)),
             p=rng.integers(0, 2, n))


def test_event_files_loads_class_folders(tmp_path):
    for c in ("0", "1"):
        for i in range(3):
            _write_sample(tmp_path / "train" / c / f"s{i}.npz", seed=i + 10 * int(c))
    data = event_files(tmp_path, "train", T=5)
    assert data.x.shape == (6, 5, 2, 34, 34) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.class_names == ["0", "1"] and float(data.x[0].sum()) == 20.0


def test_event_file_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="event data not found"):
        event_files(tmp_path, "test")
    (tmp_path / "train" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no .npz or .aedat"):
        event_files(tmp_path, "train")
    np.savez(tmp_path / "train" / "0" / "bad.npz", x=np.zeros(3), y=np.zeros(3))
    with pytest.raises(DataError, match=r"bad\.npz lacks the array\(s\) t, p"):
        event_files(tmp_path, "train")
    (tmp_path / "train" / "0" / "bad.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        event_files(tmp_path, "train")
    _write_sample(tmp_path / "train" / "0" / "bad.npz", size=50)
    with pytest.raises(DataError, match="outside the 34x34 sensor"):
        event_files(tmp_path, "train")


@pytest.mark.parametrize("kwargs, error, field", [
    ({"split": "val"}, DataError, "split"), ({"source": "cifar"}, DataError, "source"),
    ({"T": 0}, ConfigError, "T"), ({"threshold": 0.0}, ConfigError, "threshold"),
    ({"source": "shapes", "num_classes": 11}, DataError, "num_classes"),
])
def test_bad_simulation_arguments(kwargs, error, field):
    with pytest.raises(error, match=f"^{field}="):
        simulated_events(**({"split": "train"} | kwargs))


def _write_aedat(path, records):
    """records: (x, y, p, t, is_dvs) -> an AEDAT 2.0 file with a two-line header."""
    words = []
    for x, y, p, t, dvs in records:
        words += [(0 if dvs else 1 << 31) | (y << 22) | (x << 12) | (p << 11), t]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + np.array(words, dtype=">u4").tobytes())


def test_aedat2_reader_decodes_addresses_and_skips_non_dvs_records(tmp_path):
    _write_aedat(tmp_path / "a.aedat", [(5, 7, 1, 100, True), (127, 0, 0, 250, True), (3, 3, 1, 300, False)])
    x, y, t, p = read_aedat2(tmp_path / "a.aedat")
    assert x.tolist() == [5, 127] and y.tolist() == [7, 0] and t.tolist() == [100, 250] and p.tolist() == [1, 0]
    _write_aedat(tmp_path / "train" / "cat" / "s.aedat", [(1, 2, 1, 0, True), (3, 4, 0, 10, True)])
    data = event_files(tmp_path, "train", T=2, height=128, width=128)
    assert data.x.shape == (1, 2, 2, 128, 128) and data.x[0, 0, 0, 2, 1] == 1 and data.x[0, 1, 1, 4, 3] == 1
    (tmp_path / "b.aedat").write_bytes(b"#!AER-DAT2.0\n" + b"\x00" * 12)
    with pytest.raises(DataError, match="not AEDAT 2.0"):
        read_aedat2(tmp_path / "b.aedat")
