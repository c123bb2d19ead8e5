"""The online weighted-kNN monitor (InstDisc; solo-learn WeightedKNNClassifier)."""

import csv

import torch
import torch.nn.functional as F

from tenfold.contrastive.probe import extract_features, knn_accuracy, weighted_knn_predict
from tenfold.data import ArrayDataset
from tenfold.engine import RunContext


def _direct(train_h, train_y, query_h, k, t, c):
    """One query at a time: cosine to every training row, the k largest, exp(cos/t) votes per class."""
    preds = []
    for q in query_h:
        cos = torch.stack([F.cosine_similarity(q, h, dim=0) for h in train_h])
        order = sorted(range(len(cos)), key=lambda j: -float(cos[j]))[:k]
        votes = [0.0] * c
        for j in order:
            votes[int(train_y[j])] += float(torch.exp(cos[j] / t))
        preds.append(max(range(c), key=lambda m: (votes[m], -m)))
    return torch.tensor(preds)


def test_predictions_equal_the_direct_computation():
    g = torch.Generator().manual_seed(0)
    train_h, train_y = torch.randn(60, 5, generator=g), torch.randint(0, 4, (60,), generator=g)
    query_h = torch.randn(25, 5, generator=g)
    for k, t in ((1, 0.1), (7, 0.1), (20, 0.07), (60, 1.0)):
        assert torch.equal(weighted_knn_predict(train_h, train_y, query_h, k, t, 4, chunk=8),
                           _direct(train_h, train_y, query_h, k, t, 4))


def test_accuracy_on_a_toy_separable_set_equals_the_direct_computation():
    g = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(3, 8, generator=g), dim=1) * 5
    y_train, y_test = torch.arange(90) % 3, torch.arange(30) % 3
    x_train = centres[y_train] + 0.3 * torch.randn(90, 8, generator=g)
    x_test = centres[y_test] + 0.3 * torch.randn(30, 8, generator=g)
    x_test[0] = centres[1] + 0.3 * torch.randn(8, generator=g)  # one test point in the wrong cluster
    acc = knn_accuracy(x_train, y_train, x_test, y_test, k=20, t=0.1)
    direct = float((_direct(x_train, y_train, x_test, 20, 0.1, 3) == y_test).double().mean())
    assert acc == direct == 29 / 30


def test_votes_are_weighted_by_similarity():
    """k = 3: one very close neighbour of class 0 outvotes two farther ones of class 1 at a small t."""
    train_h = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    train_y = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.05]])
    assert weighted_knn_predict(train_h, train_y, q, k=3, t=0.1).item() == 0
    assert weighted_knn_predict(train_h, train_y, q, k=3, t=100.0).item() == 1  # ~ majority vote


def test_pretraining_logs_knn_acc_per_epoch_and_it_equals_the_final_encoder(tmp_path):
    from tenfold.contrastive.models import mlp_encoder
    from tenfold.contrastive.pretrain import TrainConfig, pretrain

    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(torch.rand(64, 1, 4, 4, generator=g), torch.arange(64) % 4)
    test = ArrayDataset(torch.rand(20, 1, 4, 4, generator=g), torch.arange(20) % 4)
    torch.manual_seed(0)
    t = TrainConfig(epochs=3, batch_size=16, proj_dim=8, knn_monitor_k=5)
    model, last = pretrain("simclr", mlp_encoder(16, 12, 6), train, t, RunContext(out_dir=tmp_path), stage="pre",
                           monitor=test)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["stage"] for r in rows] == ["pre"] * 3 and all(r["knn_acc"] != "" for r in rows)
    expected = knn_accuracy(extract_features(model.encoder, train.x), train.y, extract_features(model.encoder, test.x),
                            test.y, 5, 0.1, 4)
    assert last["knn_acc"] == expected == float(rows[-1]["knn_acc"])
    torch.manual_seed(0)
    off = TrainConfig(epochs=3, batch_size=16, proj_dim=8, knn_monitor=False)
    plain, last_off = pretrain("simclr", mlp_encoder(16, 12, 6), train, off, RunContext(out_dir=tmp_path / "off"),
                               stage="pre", monitor=test)
    assert "knn_acc" not in last_off
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
