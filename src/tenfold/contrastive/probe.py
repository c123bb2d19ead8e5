"""Linear probes: an online probe trained on detached features during pre-training, and an offline
probe (scikit-learn logistic regression on standardised frozen features) after it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import require


@torch.no_grad()
def extract_features(encoder: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Frozen encoder features of ``x`` in eval mode, on the encoder's device, returned on CPU."""
    require(batch_size >= 1, "batch_size", batch_size, "a positive batch size")
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [encoder(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    encoder.train(was_training)
    return torch.cat(out)


def linear_probe_accuracy(train_h: torch.Tensor, train_y: torch.Tensor, test_h: torch.Tensor, test_y: torch.Tensor,
                          c: float = 1.0, max_iter: int = 1000) -> float:
    """Top-1 accuracy of a multinomial logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    require(len(train_h) == len(train_y) and len(train_h) > 0, "train features", (len(train_h), len(train_y)),
            "as many (> 0) feature rows as labels")
    require(c > 0, "c", c, "a positive inverse regularisation strength")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    clf.fit(train_h.double().numpy(), train_y.numpy())
    return float(np.mean(clf.predict(test_h.double().numpy()) == test_y.numpy()))


class OnlineProbe(nn.Module):
    """A linear classifier on ``sg(h)`` trained alongside the encoder (solo-learn convention)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cross-entropy, accuracy)`` on detached features."""
        logits = self.linear(h.detach())
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


@torch.no_grad()
def weighted_knn_predict(train_h: torch.Tensor, train_y: torch.Tensor, query_h: torch.Tensor, k: int = 20,
                         t: float = 0.1, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN on cosine similarity (InstDisc; solo-learn ``WeightedKNNClassifier``): the ``k`` most
    similar training rows vote for their class with weight ``exp(cos / t)``; the class with the largest
    total wins (ties: the lowest class index)."""
    require(k >= 1, "k", k, "at least one neighbour")
    require(t > 0, "t", t, "a positive temperature")
    require(len(train_h) == len(train_y) and len(train_h) > 0, "train features", (len(train_h), len(train_y)),
            "as many (> 0) feature rows as labels")
    c = int(num_classes if num_classes is not None else int(train_y.max()) + 1)
    bank = F.normalize(train_h.float(), dim=1)
    labels = train_y.long().to(bank.device)
    k = min(k, len(bank))
    out = []
    for start in range(0, len(query_h), chunk):
        q = F.normalize(query_h[start:start + chunk].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        scores = torch.zeros(len(q), c, device=bank.device).scatter_add_(1, labels[idx], (sim / t).exp())
        out.append(scores.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def knn_accuracy(train_h: torch.Tensor, train_y: torch.Tensor, test_h: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, t: float = 0.1, num_classes: int | None = None) -> float:
    """Top-1 accuracy of :func:`weighted_knn_predict` (the online kNN monitor of solo-learn and MoCo's demo)."""
    pred = weighted_knn_predict(train_h, train_y, test_h, k, t, num_classes)
    return float((pred.cpu() == test_y.long().cpu()).double().mean())
