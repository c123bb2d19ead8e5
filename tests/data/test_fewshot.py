"""The FSCIL data protocol: class plans, K-shot draws, seeded orders and session index files."""

import pytest
import torch

from tenfold.data.fewshot import (SessionPlan, class_order, draw_shots, plan_sessions, read_session_file,
                                  read_session_files, session_indices, write_session_files)
from tenfold.errors import ConfigError, DataError


def test_plan_gives_disjoint_sessions_covering_the_order():
    order = class_order(100, seed=5)
    plan = plan_sessions(order, base=60, ways=5, sessions=8)
    assert len(plan.base) == 60 and [len(s) for s in plan.sessions] == [5] * 8
    flat = plan.order
    assert len(flat) == len(set(flat)) == 100 and flat == order
    assert plan.seen(2) == order[:70]


def test_class_order_is_seeded_and_a_permutation():
    assert class_order(20, 3) == class_order(20, 3)
    assert class_order(20, 3) != class_order(20, 4)
    assert sorted(class_order(20, 3)) == list(range(20))
    assert class_order(5, None) == [0, 1, 2, 3, 4]


def test_shots_are_exactly_k_per_class_and_seeded():
    labels = torch.arange(10).repeat_interleave(12)
    plan = plan_sessions(list(range(10)), 6, 2, 2)
    a = session_indices(labels, plan, shots=5, seed=1)
    b = session_indices(labels, plan, shots=5, seed=1)
    c = session_indices(labels, plan, shots=5, seed=2)
    assert len(a[0]) == 72 and set(labels[a[0]].tolist()) == set(range(6))
    for t, classes in enumerate(plan.sessions, start=1):
        counts = torch.bincount(labels[a[t]], minlength=10)
        assert all(counts[k] == 5 for k in classes) and counts.sum() == 5 * len(classes)
        assert len(set(a[t].tolist())) == len(a[t])  # without replacement
        assert torch.equal(a[t], b[t])
    assert not all(torch.equal(x, y) for x, y in zip(a[1:], c[1:]))


def test_overlapping_session_classes_are_rejected():
    with pytest.raises(ConfigError, match=r"sessions\[1\]=\[7, 8\] is invalid: class 7 already appears in sessions"):
        SessionPlan((0, 1, 2), ((6, 7), (7, 8)))
    with pytest.raises(ConfigError, match="class 2 already appears in base"):
        SessionPlan((0, 1, 2), ((2, 3),))


def test_more_shots_than_a_class_has_is_a_data_error():
    labels = torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(DataError, match="shots=3 is invalid for class 1: it has only 2 training samples"):
        draw_shots(labels, [0, 1], 3, torch.Generator().manual_seed(0))


def test_too_many_sessions_for_the_classes_is_a_config_error():
    with pytest.raises(ConfigError, match="sessions=3 is invalid"):
        plan_sessions(list(range(10)), 6, 2, 3)


def test_session_files_round_trip_and_missing_images_name_the_file(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "a").mkdir(parents=True)
    for name in ("x1.jpg", "x2.jpg"):
        (root / "train" / "a" / name).write_bytes(b"")
    paths = write_session_files(tmp_path / "index", [["train/a/x1.jpg", "train/a/x2.jpg"], [3, 17]])
    assert [p.name for p in paths] == ["session_1.txt", "session_2.txt"]
    assert read_session_files(tmp_path / "index", 2, root) == [["train/a/x1.jpg", "train/a/x2.jpg"], [3, 17]]
    bad = tmp_path / "index" / "session_3.txt"
    bad.write_text("train/a/x1.jpg\ntrain/a/missing.jpg\n")
    with pytest.raises(DataError, match=r"session_3.txt names 1 missing image\(s\).*train/a/missing.jpg"):
        read_session_file(bad, root)
    with pytest.raises(DataError, match="session_9.txt does not exist"):
        read_session_file(tmp_path / "index" / "session_9.txt", root)
