"""Backbone -> projection head -> classifier, as in NC-FSCIL (Sec. 3.2 and the released code).

The projection ``g`` maps backbone features (``c`` channels, pooled if spatial) to the ETF space:
``g(h) = Linear(2c, d)(MLP(h)) + Linear(c, d)(h)`` where ``MLP = [Linear -> LayerNorm -> LeakyReLU(0.1)] x 2``.
The classifier is either the fixed ETF (scores ``w_k^T mu_hat``) or a learnable linear layer (baselines).
Prediction is the argmax over the classes seen so far.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import require
from tenfold.incremental.etf import etf


class ProjectionHead(nn.Module):
    """The residual projection ``g``: GAP, two Linear-LayerNorm-LeakyReLU blocks, a bias-free output
    Linear(2c, d), plus a bias-free shortcut Linear(c, d)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        require(in_dim >= 1, "in_dim", in_dim, "a positive feature width")
        require(out_dim >= 1, "out_dim", out_dim, "a positive feature width")
        hidden = 2 * in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, out_dim, bias=False),
        )
        self.shortcut = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 4:
            h = h.mean(dim=(2, 3))
        return self.mlp(h) + self.shortcut(h)


class ETFClassifier(nn.Module):
    """A fixed simplex-ETF classifier: the prototypes are a buffer, never trained, assigned for all
    ``num_classes`` future classes before the base session. Scores are cosines ``w_k^T mu_hat``."""

    def __init__(self, num_classes: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("prototypes", etf(num_classes, dim, seed))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return F.normalize(mu, dim=1) @ self.prototypes.to(mu.dtype)


class FSCILNet(nn.Module):
    """``classifier(g(f(x)))``; ``features`` gives the backbone output ``f(x)`` that the memory stores.

    ``loss`` is ``"dr"`` (dot regression against the classifier's unit columns) or ``"ce"`` (cross-entropy
    over the seen classes); ``None`` picks DR for the fixed ETF and CE for a learnable classifier. The other
    two pairs are the paper's ablations (a learnable classifier with DR, the ETF with CE on scaled cosines).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, classifier: nn.Module, loss: str | None = None) -> None:
        super().__init__()
        require(loss in (None, "dr", "ce"), "loss", loss, "'dr' or 'ce'")
        self.backbone, self.head, self.classifier = backbone, head, classifier
        self.loss = loss or ("dr" if isinstance(classifier, ETFClassifier) else "ce")

    def prototypes(self) -> torch.Tensor:
        """The class directions (d, K) the DR loss pulls toward: the ETF, or a learnable layer's unit rows."""
        if isinstance(self.classifier, ETFClassifier):
            return self.classifier.prototypes
        return F.normalize(self.classifier.weight, dim=1).T

    def scores(self, mu: torch.Tensor) -> torch.Tensor:
        """Class scores of neck outputs ``mu``: cosines for the ETF or a DR-trained layer, logits otherwise."""
        if isinstance(self.classifier, ETFClassifier) or self.loss == "dr":
            return F.normalize(mu, dim=1) @ self.prototypes().to(mu.dtype)
        return self.classifier(mu)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """The head's output ``mu`` for backbone features ``h``."""
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.head(self.backbone(x)))


def predict(scores: torch.Tensor, seen: int) -> torch.Tensor:
    """The argmax over the first ``seen`` classes (classes are numbered in session order)."""
    require(1 <= seen <= scores.shape[1], "seen", seen, f"1..{scores.shape[1]} classes")
    return scores[:, :seen].argmax(dim=1)


def mlp_backbone(inputs: int, width: int, depth: int = 2) -> nn.Module:
    """A ReLU MLP feature extractor (flattening its input), output width ``width``."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def conv_backbone(channels: int = 3, width: int = 32) -> nn.Module:
    """A small 3-stage CNN (conv-BN-ReLU, max-pool) ending in global average pooling: output ``2 * width``."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(channels, width), nn.MaxPool2d(2),
        *block(width, 2 * width), nn.MaxPool2d(2),
        *block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
