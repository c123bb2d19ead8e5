"""Encoders and heads for contrastive learning (spec 1.4).

- :func:`resnet18_cifar`: torchvision ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), 512-d.
- :func:`small_cnn`, :func:`mlp_encoder`: CPU-sized encoders for the quick experiments.
- :func:`simclr_projector`: ``Linear(c,c) -> BN -> ReLU -> Linear(c,out) -> BN``, no biases (SimCLR-Attn code).
- :func:`simsiam_projector` (3 layers with BN) and :func:`simsiam_predictor` (bottleneck ``c -> c/4 -> c``).
"""

from __future__ import annotations

import torch
from torch import nn

from tenfold.errors import require


def resnet18_cifar() -> nn.Module:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool; returns 512-d features."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512  # type: ignore[assignment]
    return net


def small_cnn(in_channels: int = 3, width: int = 32, out_dim: int = 128) -> nn.Module:
    """Three conv-BN-ReLU blocks with pooling, global average pool and a linear layer to ``out_dim``."""
    require(width >= 1, "width", width, "a positive channel count")
    w = width
    net = nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, out_dim),
    )
    net.out_dim = out_dim  # type: ignore[assignment]
    return net


def mlp_encoder(in_dim: int, hidden: int = 256, out_dim: int = 128) -> nn.Module:
    """``Flatten -> Linear -> BN -> ReLU -> Linear``."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                        nn.Linear(hidden, out_dim))
    net.out_dim = out_dim  # type: ignore[assignment]
    return net


def simclr_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, in_dim, bias=False), nn.BatchNorm1d(in_dim), nn.ReLU(),
                         nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))


def simsiam_projector(in_dim: int, dim: int = 2048) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))


def simsiam_predictor(dim: int = 2048, hidden: int | None = None) -> nn.Module:
    hidden = hidden or max(dim // 4, 1)
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))


class ContrastiveModel(nn.Module):
    """``encoder -> h``, ``projector(h) -> z`` and, for SimSiam, ``predictor(z) -> p``."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.projector, self.predictor = encoder, projector, predictor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x)
        z = self.projector(h)
        p = self.predictor(z) if self.predictor is not None else None
        return h, z, p
