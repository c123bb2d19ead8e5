"""The session runner and the FSCIL metrics on small synthetic data (fast), and the experiment path."""

import json

import pytest
import torch
from torch import nn

from tenfold.cli import cli_main
from tenfold.incremental import (BaseSettings, ETFClassifier, FSCILNet, IncrementalSettings, ProjectionHead,
                                 SessionRecord, accuracy_matrix, average_accuracy, cache_features, forgetting,
                                 mlp_backbone, performance_drop, run_sessions, train_base)
from tenfold.incremental.metrics import session_record


def _blobs(n_per_class, classes, seed, dim=10):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.tensor(classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


def _setup(classifier):
    torch.manual_seed(0)
    net = FSCILNet(mlp_backbone(10, 16), ProjectionHead(16, 9), classifier)
    xb, yb = _blobs(30, [0, 1, 2, 3, 4, 5], 0)
    train_base(net, xb, yb, BaseSettings(epochs=5, lr=0.05), torch.Generator().manual_seed(0))
    x1, y1 = _blobs(5, [6, 7], 1)
    x2, y2 = _blobs(5, [8, 9], 2)
    xt, yt = _blobs(20, list(range(10)), 3)
    return net, cache_features(net, [xb, x1, x2], [yb, y1, y2], xt, yt, [6, 2, 2])


def test_classifier_and_backbone_never_change_across_sessions_and_only_the_head_learns():
    net, data = _setup(ETFClassifier(10, 9, seed=0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    records, tuned = run_sessions(net, "etf-dr", data, IncrementalSettings(steps=20), torch.Generator().manual_seed(0))
    assert torch.equal(tuned.classifier.prototypes, before["classifier.prototypes"])
    for k, v in tuned.backbone.state_dict().items():
        assert torch.equal(v, before[f"backbone.{k}"])
    assert any(not torch.equal(v, before[f"head.{k}"]) for k, v in tuned.head.state_dict().items())
    for k, v in net.state_dict().items():  # the base model handed in is untouched (a copy is tuned)
        assert torch.equal(v, before[k])
    assert [r.seen for r in records] == [6, 8, 10] and records[0].novel is None
    assert records[-1].groups and len(records[-1].groups) == 3


@pytest.mark.parametrize("method", ["linear-memory", "linear-new", "ncm"])
def test_baselines_run_in_the_same_runner(method):
    net, data = _setup(nn.Linear(9, 10))
    records, _ = run_sessions(net, method, data, IncrementalSettings(steps=10), torch.Generator().manual_seed(0))
    assert len(records) == 3 and all(0.0 <= r.all <= 1.0 for r in records)


def test_session_runner_is_seeded():
    net, data = _setup(ETFClassifier(10, 9, seed=0))
    a, _ = run_sessions(net, "etf-dr", data, IncrementalSettings(steps=10, feature_mixup_p=0.5),
                        torch.Generator().manual_seed(4))
    b, _ = run_sessions(net, "etf-dr", data, IncrementalSettings(steps=10, feature_mixup_p=0.5),
                        torch.Generator().manual_seed(4))
    assert [r.all for r in a] == [r.all for r in b]


def test_metrics_on_known_values():
    group_of_class = torch.tensor([0, 0, 1, 2])
    labels = torch.tensor([0, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 0, 2, 1, 3, 0])
    r = session_record(pred, labels, group_of_class, session=2, seen=4)
    assert r.all == pytest.approx(3 / 6) and r.base == pytest.approx(1 / 2) and r.novel == pytest.approx(2 / 4)
    assert r.groups == pytest.approx([0.5, 0.5, 0.5])
    recs = [SessionRecord(0, 2, 0.9, 0.9, None, [0.9]), SessionRecord(1, 3, 0.8, 0.85, 0.6, [0.85, 0.6]),
            SessionRecord(2, 4, 0.6, 0.7, 0.4, [0.7, 0.5, 0.3])]
    assert average_accuracy(recs) == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert performance_drop(recs) == pytest.approx(0.3)
    assert forgetting(recs) == pytest.approx(((0.9 - 0.7) + (0.6 - 0.5)) / 2)
    assert accuracy_matrix(recs) == [[0.9, None, None], [0.85, 0.6, None], [0.7, 0.5, 0.3]]


def test_bad_method_and_duplication_are_one_line_errors():
    from tenfold.errors import ConfigError

    net, data = _setup(ETFClassifier(10, 9, seed=0))
    with pytest.raises(ConfigError, match="method='etf' is invalid"):
        run_sessions(net, "etf", data, IncrementalSettings(), torch.Generator())
    with pytest.raises(ConfigError, match="duplication=0 is invalid"):
        run_sessions(net, "etf-dr", data, IncrementalSettings(duplication=0), torch.Generator())


def test_cli_dim_below_classes_minus_one_is_a_one_line_error(tmp_path, capsys):
    code = cli_main(["run", "fscil-digits", "--out", str(tmp_path), "--set", "dim=5", "--set", "base.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "dim=5 is invalid: expected >= classes - 1 = 9" in err and "Traceback" not in err


def test_cli_overlapping_sessions_too_many_is_a_one_line_error(tmp_path, capsys):
    code = cli_main(["run", "fscil-digits", "--out", str(tmp_path), "--set", "sessions=3"])
    err = capsys.readouterr().err
    assert code == 2 and "sessions=3 is invalid" in err


@pytest.mark.slow
def test_fscil_digits_claims_hold_for_one_seed_via_cli(tmp_path, capsys):
    code = cli_main(["run", "fscil-digits", "--out", str(tmp_path), "--set", "seeds=[1]"])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "fscil-digits").iterdir()
    result = json.loads((folder / "results.json").read_text())
    claims = result["claims"]
    assert len(claims) == 2 and all(c["holds"] for c in claims), claims
    m = result["metrics"]
    assert m["etf-dr.base_drop"] < m["linear-memory.base_drop"]
    assert m["linear-new.last"] < 40  # no memory: catastrophic forgetting
    assert (folder / "sessions.png").is_file()


def _fake_cifar100(root, per_class_train=6, per_class_test=2):
    import pickle

    import numpy as np

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(100), n)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)


def test_cifar100_experiment_reads_a_local_root_and_cec_index_files(tmp_path, capsys):
    from tenfold.data.fewshot import write_session_files

    _fake_cifar100(tmp_path / "data")
    labels = torch.arange(100).repeat_interleave(6)
    base = torch.nonzero(labels < 60).flatten().tolist()
    novel = [[i for c in range(60 + 5 * t, 65 + 5 * t) for i in torch.nonzero(labels == c).flatten()[:5].tolist()]
             for t in range(8)]
    write_session_files(tmp_path / "index", [base] + novel)
    args = ["run", "fscil-cifar100", "--out", str(tmp_path / "runs"), "--set", f"root={tmp_path / 'data'}",
            "--set", f"index_dir={tmp_path / 'index'}", "--set", "base.epochs=1", "--set", "incremental.steps=2",
            "--set", "width=4", "--set", "dim=99", "--set", "methods=[etf-dr,ncm]"]
    code = cli_main(args)
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "fscil-cifar100").iterdir()
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    assert "etf-dr.session8" in metrics and "ncm.last" in metrics


def test_cifar100_missing_root_is_a_one_line_error(tmp_path, capsys):
    code = cli_main(["run", "fscil-cifar100", "--out", str(tmp_path), "--set", f"root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "CIFAR-100 not found" in err


@pytest.mark.parametrize("override,message", [
    ("incremental.duplication=0", "incremental.duplication"),
    ("incremental.steps=[10,20,30]", "incremental.steps=[10, 20, 30] is invalid: expected one number or one entry"),
    ("shots=0", "shots"),
])
def test_cli_bad_session_settings_fail_before_work(tmp_path, capsys, override, message):
    code = cli_main(["run", "fscil-digits", "--out", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
