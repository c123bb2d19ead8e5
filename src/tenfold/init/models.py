"""Small models that the init family's experiments and benchmarks share."""

from __future__ import annotations

from torch import nn


def shapes_cnn(width: int, classes: int) -> nn.Module:
    """Two conv-BN-ReLU-pool blocks (``width``, ``2 * width`` channels), global pooling, a linear head."""

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, width), *block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, classes))
