"""One-step spiking networks for SLTT (Meng et al. 2023, Sec. 5 and App.; spec snn.md 1.3).

Every network is called once per time step (``model(x_t) -> o[t]``); its :class:`LIFNeuron` layers
carry the membranes between calls. BatchNorm is plain ``nn.BatchNorm`` called once per step, i.e.
per-step batch statistics, as in the paper's code (not SpikingJelly's multi-step BN pooling T*B).

- :class:`SpikingMLP`: Linear-LIF blocks and a Linear readout.
- :class:`SpikingVGG`: VGG-11-BN for event data: Conv-BN-LIF-Dropout, AvgPool, AdaptiveAvgPool, Linear.
- :class:`SpikingPreActResNet18`: pre-activation spiking ResNet-18 for CIFAR.
- :class:`NFSpikingResNet34` / ``50`` / ``101``: normalizer-free ResNets with scaled weight-standardized convs
  (ImageNet).

Layer for layer as the official code (qymeng94/SLTT ``models/``); tests pin the parameter counts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import require
from tenfold.snn.neurons import LIFNeuron


class StepDropout(nn.Module):
    """Dropout with one mask per sample for all time steps of a batch (redrawn after each reset).

    ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)`` drawn at the first step after :meth:`reset_state`.
    """

    def __init__(self, p: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        require(0.0 <= p < 1.0, "dropout", p, "a probability in [0, 1)")
        self.p, self.generator = float(p), generator
        self.mask: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.mask = None

    def train(self, mode: bool = True) -> "StepDropout":
        """A change between training and evaluation starts a new sequence: the next training batch draws
        a new mask."""
        if mode != self.training:
            self.reset_state()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape != x.shape:
            keep = torch.rand(x.shape, generator=self.generator, device="cpu" if self.generator is not None
                              and self.generator.device.type == "cpu" else x.device)
            self.mask = (keep.to(x.device) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * self.mask


def _lif(neuron: dict[str, Any]) -> LIFNeuron:
    return LIFNeuron(**neuron)


class SpikingMLP(nn.Module):
    """``inputs -> [Linear -> LIF] x len(hidden) -> Linear(classes)``; input flattened; hidden Linear
    layers Kaiming-normal initialized (PyTorch's default leaves narrow layers silent)."""

    def __init__(self, inputs: int, hidden: tuple[int, ...] | list[int] = (128, 128), classes: int = 10,
                 **neuron: Any) -> None:
        super().__init__()
        require(len(hidden) >= 1 and all(h >= 1 for h in hidden), "hidden", hidden, "a list of positive widths")
        layers: list[nn.Module] = [nn.Flatten()]
        width = inputs
        for h in hidden:
            layers += [nn.Linear(width, h), _lif(neuron)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)
        for m in self.body:  # Kaiming (ReLU gain) so that the hidden layers fire from the start
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class SpikingVGG(nn.Module):
    """VGG-11-BN as in the official SLTT code (``models/spiking_vgg_bn.py``): ``Conv3x3(bias)-BN-LIF-Dropout``
    blocks with 2x2 AvgPool at every "M" (five in VGG-11), AdaptiveAvgPool(7), Linear. Init as the
    official: convs Kaiming-normal (fan_out, ReLU gain) with zero bias, BN weight 1 / bias 0, the Linear
    N(0, 0.01) with zero bias.

    ``width`` scales every channel count (1.0 is the paper's VGG-11); ``plan`` and ``pool_to`` (7 in
    the paper) are for the small CPU variants.
    """

    def __init__(self, in_channels: int = 2, classes: int = 10, width: float = 1.0, plan: tuple = VGG11,
                 dropout: float = 0.0, pool_to: int = 7, generator: torch.Generator | None = None,
                 **neuron: Any) -> None:
        super().__init__()
        require(width > 0, "width", width, "a positive channel multiplier")
        layers: list[nn.Module] = []
        c = in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.AvgPool2d(2, 2))
                continue
            out = max(1, int(round(item * width)))
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=True), nn.BatchNorm2d(out), _lif(neuron)]
            if dropout > 0:
                layers.append(StepDropout(dropout, generator))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_to)
        self.head = nn.Linear(c * pool_to * pool_to, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class PreActBlock(nn.Module):
    """``BN -> LIF -> conv3x3 -> BN -> LIF -> dropout -> conv3x3``, shortcut from the first LIF's output."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, generator, neuron: dict) -> None:
        super().__init__()
        self.bn1, self.lif1 = nn.BatchNorm2d(c_in), _lif(neuron)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn2, self.lif2 = nn.BatchNorm2d(c_out), _lif(neuron)
        self.drop = StepDropout(dropout, generator)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(self.bn1(x))
        out = self.conv2(self.drop(self.lif2(self.bn2(self.conv1(s)))))
        return out + self.shortcut(s)


class SpikingPreActResNet18(nn.Module):
    """Pre-activation spiking ResNet-18 (CIFAR) as in the official SLTT code (``models/spiking_resnet.py``):
    stem conv3x3 without bias (no BN), 4 stages of 2 blocks (convs with bias), head ``BN -> LIF ->
    AvgPool -> dropout -> Linear``; ``width`` is the stem channel count (64). Init as the official:
    convs Kaiming-normal (fan_out, ReLU gain; biases PyTorch's default), the Linear's bias zero. The
    official AvgPool(4) on the 4x4 map of a 32x32 input is the global average pool used here."""

    def __init__(self, in_channels: int = 3, classes: int = 10, width: int = 64, dropout: float = 0.0,
                 generator: torch.Generator | None = None, **neuron: Any) -> None:
        super().__init__()
        require(width >= 1, "width", width, "a positive channel count")
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        blocks, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(c, width * mult, stride, dropout, generator, neuron))
                c = width * mult
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.lif = nn.BatchNorm2d(c), _lif(neuron)
        self.drop = StepDropout(dropout, generator)
        self.head = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif(self.bn(self.blocks(self.stem(x))))
        return self.head(self.drop(F.adaptive_avg_pool2d(s, 1).flatten(1)))


class ScaledWSConv2d(nn.Conv2d):
    """Scaled weight standardization (Brock et al. 2021), as the official SLTT NF-ResNets:
    ``W' = gain * (W - mean(W)) / sqrt(var(W) * fan_in + eps)`` per output channel, with the unbiased
    variance (``torch.var``'s default, as in the official code) and ``fan_in = prod(W.shape[1:])``."""

    def __init__(self, *args: Any, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1, device=self.weight.device,
                                            dtype=self.weight.dtype))
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=True)
        return self.gain * (w - mean) / torch.sqrt(var * fan_in + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


GAMMA = 2.74  # variance-preserving gain of the spiking activation used by the paper's NF-ResNets


class NFBlock(nn.Module):
    """NF-ResNet basic block (official ``BasicBlock``): ``s = LIF(x / beta) * gamma``;
    ``out = conv2(LIF(conv1(s)) * gamma) * skip_gain * alpha + shortcut``, where the shortcut is ``x``
    (or a 1x1 WS conv of ``s`` when the shape changes) and ``skip_gain`` starts at 0."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, beta: float, alpha: float, neuron: dict) -> None:
        super().__init__()
        self.beta, self.alpha = beta, alpha
        c_out = planes * self.expansion
        self.lif1, self.lif2 = _lif(neuron), _lif(neuron)
        self.conv1 = ScaledWSConv2d(c_in, planes, 3, stride, 1)
        self.conv2 = ScaledWSConv2d(planes, c_out, 3, 1, 1)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.shortcut = ScaledWSConv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x / self.beta) * GAMMA
        out = self.conv2(self.lif2(self.conv1(s)) * GAMMA) * self.skip_gain * self.alpha
        return out + (self.shortcut(s) if self.shortcut is not None else x)


class NFBottleneck(nn.Module):
    """NF-ResNet bottleneck (official ``Bottleneck``, NF-ResNet-50/101): ``s = LIF(x / beta) * gamma``;
    ``out = conv3(LIF(conv2(LIF(conv1(s)) * gamma)) * gamma) * skip_gain * alpha + shortcut`` with 1x1,
    3x3 (stride), 1x1 (x4 channels) WS convs; shortcut ``x`` or a 1x1 WS conv of ``s``."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, beta: float, alpha: float, neuron: dict) -> None:
        super().__init__()
        self.beta, self.alpha = beta, alpha
        c_out = planes * self.expansion
        self.lif1, self.lif2, self.lif3 = _lif(neuron), _lif(neuron), _lif(neuron)
        self.conv1 = ScaledWSConv2d(c_in, planes, 1)
        self.conv2 = ScaledWSConv2d(planes, planes, 3, stride, 1)
        self.conv3 = ScaledWSConv2d(planes, c_out, 1)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.shortcut = ScaledWSConv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x / self.beta) * GAMMA
        out = self.lif3(self.conv2(self.lif2(self.conv1(s)) * GAMMA)) * GAMMA
        out = self.conv3(out) * self.skip_gain * self.alpha
        return out + (self.shortcut(s) if self.shortcut is not None else x)


class NFSpikingResNet(nn.Module):
    """Normalizer-free spiking ResNet (ImageNet) as the official ``SpikingNFResNet``, no BatchNorm: stem
    7x7/2 WS conv, AvgPool(3, 2, 1), stages of :class:`NFBlock` or :class:`NFBottleneck` with
    expected-variance tracking ``beta = sqrt(var)`` (var = 1 + alpha^2 after a block with a projection
    shortcut, += alpha^2 otherwise), global average pool, Linear. No LIF after the last stage.
    Init as the official: every conv Kaiming-normal (fan_out) with zero bias, the Linear's weight zero
    (its bias PyTorch's default)."""

    def __init__(self, block: type[nn.Module] = NFBlock, stages: tuple[int, ...] = (3, 4, 6, 3),
                 in_channels: int = 3, classes: int = 1000, width: int = 64, alpha: float = 0.2,
                 **neuron: Any) -> None:
        super().__init__()
        require(width >= 1, "width", width, "a positive channel count")
        self.stem = ScaledWSConv2d(in_channels, width, 7, 2, 3)
        self.pool = nn.AvgPool2d(3, 2, 1)
        blocks, c, var = [], width, 1.0
        for i, n in enumerate(stages):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                planes = width * 2 ** i
                c_out = planes * block.expansion
                projected = stride != 1 or c != c_out
                blocks.append(block(c, planes, stride, var ** 0.5, alpha, neuron))
                var = 1.0 + alpha ** 2 if projected else var + alpha ** 2
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.blocks(self.pool(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(s, 1).flatten(1))


class NFSpikingResNet34(NFSpikingResNet):
    """NF-ResNet-34: basic blocks, stages (3, 4, 6, 3)."""

    def __init__(self, in_channels: int = 3, classes: int = 1000, width: int = 64, alpha: float = 0.2,
                 stages: tuple[int, ...] = (3, 4, 6, 3), **neuron: Any) -> None:
        super().__init__(NFBlock, stages, in_channels, classes, width, alpha, **neuron)


class NFSpikingResNet50(NFSpikingResNet):
    """NF-ResNet-50: bottleneck blocks, stages (3, 4, 6, 3)."""

    def __init__(self, in_channels: int = 3, classes: int = 1000, width: int = 64, alpha: float = 0.2,
                 stages: tuple[int, ...] = (3, 4, 6, 3), **neuron: Any) -> None:
        super().__init__(NFBottleneck, stages, in_channels, classes, width, alpha, **neuron)


class NFSpikingResNet101(NFSpikingResNet):
    """NF-ResNet-101: bottleneck blocks, stages (3, 4, 23, 3)."""

    def __init__(self, in_channels: int = 3, classes: int = 1000, width: int = 64, alpha: float = 0.2,
                 stages: tuple[int, ...] = (3, 4, 23, 3), **neuron: Any) -> None:
        super().__init__(NFBottleneck, stages, in_channels, classes, width, alpha, **neuron)
