"""SPIDE networks at configurable width: MLP-F (digits), LeNet-5, AlexNet-F and CIFARNet-F.

Xiao et al. 2023, Sec. 5 and the official code's models (spec snn.md 2.3). Every builder returns a
:class:`~tenfold.snn.spide.SpideNetwork`; :class:`SpideClassifier` adds the ordinary Linear read-out on
the last layer's rates, trained by autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tenfold.errors import require
from tenfold.snn.spide import SpideNetwork, SpideState


# Kaiming's fan-in init preserves the signal through ReLU; SPIDE's equilibrium is clamp(z / V) with V = 2,
# whose slope 1/2 would halve the rates at every layer, so weights are scaled by V to keep deep layers firing.
INIT_GAIN = 2.0


def _kaiming_(module: nn.Module, gain: float = INIT_GAIN) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in")
            with torch.no_grad():
                m.weight.mul_(gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _width(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def mlp_f(inputs: int, hidden: Sequence[int] = (128,), feedback: bool = True, feedback_gain: float = 0.1,
          **net_kwargs) -> SpideNetwork:
    """``inputs -> hidden[0] -> ... -> hidden[-1]``, with a Linear feedback from the last hidden layer
    to the first when ``feedback`` (a recurrent layer if there is one hidden layer)."""
    require(len(hidden) >= 1 and all(h >= 1 for h in hidden), "hidden", list(hidden), "one or more positive sizes")
    input_op = _kaiming_(nn.Linear(inputs, hidden[0]))
    layers = [_kaiming_(nn.Linear(a, b)) for a, b in zip(hidden[:-1], hidden[1:])]
    fb = _kaiming_(nn.Linear(hidden[-1], hidden[0], bias=False), feedback_gain) if feedback else None
    return SpideNetwork(input_op, layers, fb, **net_kwargs)


def lenet5(in_channels: int = 1, size: int = 28, width: float = 1.0, **net_kwargs) -> SpideNetwork:
    """LeNet-5 of the paper's MNIST model: 15C5-P2-40C5-P2-300, no feedback. Pooling layers are spiking
    layers of their own, as in the official code."""
    require(size % 4 == 0, "size", size, "an image size divisible by 4")
    c1, c2, fc = _width(15, width), _width(40, width), _width(300, width)
    input_op = _kaiming_(nn.Conv2d(in_channels, c1, 5, padding=2))
    layers = [nn.AvgPool2d(2), _kaiming_(nn.Conv2d(c1, c2, 5, padding=2)), nn.AvgPool2d(2),
              nn.Sequential(nn.Flatten(), _kaiming_(nn.Linear(c2 * (size // 4) ** 2, fc)))]
    return SpideNetwork(input_op, layers, None, **net_kwargs)


def _conv_f(channels: Sequence[int], in_channels: int, **net_kwargs) -> SpideNetwork:
    """The CIFAR feedback nets: a stride-2 input conv, four 3x3 convs (the second with stride 2), and a
    stride-2 ConvTranspose feedback from the last conv layer to the first layer."""
    c0, c1, c2, c3, c4 = channels
    input_op = _kaiming_(nn.Conv2d(in_channels, c0, 3, stride=2, padding=1))
    layers = [_kaiming_(nn.Conv2d(c0, c1, 3, padding=1)), _kaiming_(nn.Conv2d(c1, c2, 3, stride=2, padding=1)),
              _kaiming_(nn.Conv2d(c2, c3, 3, padding=1)), _kaiming_(nn.Conv2d(c3, c4, 3, padding=1))]
    fb = _kaiming_(nn.ConvTranspose2d(c4, c0, 3, stride=2, padding=1, output_padding=1, bias=False), 0.1)
    return SpideNetwork(input_op, layers, fb, **net_kwargs)


def alexnet_f(in_channels: int = 3, width: float = 1.0, **net_kwargs) -> SpideNetwork:
    """AlexNet-F: 96-256-384-384-256 with ConvTranspose feedback."""
    return _conv_f([_width(c, width) for c in (96, 256, 384, 384, 256)], in_channels, **net_kwargs)


def cifarnet_f(in_channels: int = 3, width: float = 1.0, **net_kwargs) -> SpideNetwork:
    """CIFARNet-F: 128-256-512-1024-512 with ConvTranspose feedback."""
    return _conv_f([_width(c, width) for c in (128, 256, 512, 1024, 512)], in_channels, **net_kwargs)


class SpideClassifier(nn.Module):
    """A SPIDE network followed by a Linear read-out of its last layer's (flattened) rates."""

    def __init__(self, snn: SpideNetwork, features: int, classes: int) -> None:
        super().__init__()
        self.snn = snn
        self.head = nn.Linear(features, classes)

    def forward_with_state(self, x: torch.Tensor, *, events: bool = False,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, SpideState]:
        state = self.snn.simulate(x, events=events, generator=generator)
        rates = self.snn.attach(state, x) if self.training and torch.is_grad_enabled() else state.rates[-1]
        return self.head(rates.flatten(1)), state

    def forward(self, x: torch.Tensor, *, events: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.forward_with_state(x, events=events, generator=generator)[0]


def feature_count(snn: SpideNetwork, example: torch.Tensor, events: bool = False) -> int:
    """Number of units in the last layer for inputs shaped like ``example`` (one short simulation)."""
    was = snn.training
    snn.eval()
    saved = snn.time_steps
    snn.time_steps = 1
    try:
        x = example[:1, :1] if events else example[:1]
        rates = snn.simulate(x, events=events).rates[-1]
    finally:
        snn.time_steps = saved
        snn.train(was)
    return rates[0].numel()
