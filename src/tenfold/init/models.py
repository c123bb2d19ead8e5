"""Small models that the init family's experiments and benchmarks share."""

from __future__ import annotations

from torch import nn


def shapes_cnn(width: int, classes: int, batchnorm: bool = True) -> nn.Module:
    """Two conv-(BN-)ReLU-pool blocks (``width``, ``2 * width`` channels), global pooling, a linear head.

    ``batchnorm=False`` drops the BatchNorm layers: under batch statistics a BN network is invariant to the
    scale of the convolution before each BN, so per-tensor rescaling (NIO, GradInit) acts only through the
    BN scales; without BN every tensor's scale reaches the output."""

    def block(cin, cout):
        norm = [nn.BatchNorm2d(cout)] if batchnorm else []
        return [nn.Conv2d(cin, cout, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, width), *block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, classes))


def kaiming_init_(model: nn.Module) -> nn.Module:
    """He et al. (ICCV 2015) initialization, the paper's "Kaiming" baseline: every Conv and Linear weight
    ``N(0, 2 / fan_in)`` (``kaiming_normal_``, ReLU gain), biases 0; BatchNorm/LayerNorm weight 1, bias 0.
    In place; returns ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
