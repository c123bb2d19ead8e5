"""The papers' backbones: ResNet-12 (miniImageNet, CIFAR-100) and ResNet-18 (CUB-200).

Both end in global average pooling, so the memory stores one pooled feature per class; the official
code stores the spatial map and its neck pools it, which gives the same class means (pooling is linear).
"""

from __future__ import annotations

import torch
from torch import nn

from tenfold.errors import DataError, require


class ResNet12Block(nn.Module):
    """Three conv3x3-BN (LeakyReLU 0.1 after the first two), a conv1x1-BN shortcut, LeakyReLU after the sum,
    then 2x2 max-pooling (the few-shot ResNet-12 of mmfewshot, without DropBlock: the released configs use
    drop_rate 0)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()

        def conv(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b)]

        self.body = nn.Sequential(*conv(cin, cout), nn.LeakyReLU(0.1), *conv(cout, cout), nn.LeakyReLU(0.1),
                                  *conv(cout, cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.act, self.pool = nn.LeakyReLU(0.1), nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.body(x) + self.shortcut(x)))


def resnet12(channels: tuple[int, ...] = (64, 160, 320, 640), in_channels: int = 3) -> nn.Module:
    """ResNet-12 with widths ``channels`` (default 64-160-320-640: 640 output features), GAP at the end."""
    require(len(channels) >= 1, "channels", channels, "at least one stage width")
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in channels:
        layers.append(ResNet12Block(cin, cout))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class _FrozenStages(nn.Module):
    """A timm ResNet whose stem and first ``frozen`` stages neither learn nor update BN statistics
    (mmcls ``frozen_stages``)."""

    def __init__(self, net: nn.Module, frozen: int) -> None:
        super().__init__()
        self.net, self.frozen = net, frozen
        for p in self._frozen_modules().parameters():
            p.requires_grad_(False)

    def _frozen_modules(self) -> nn.ModuleList:
        mods = [self.net.conv1, self.net.bn1] if self.frozen >= 0 else []
        mods += [getattr(self.net, f"layer{i}") for i in range(1, self.frozen + 1)]
        return nn.ModuleList(mods)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self._frozen_modules().eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18(weights: str | None = None, frozen_stages: int = 1) -> nn.Module:
    """ResNet-18 (timm, 512 pooled features). ``weights``: a local ImageNet checkpoint (torchvision or timm
    ``state_dict``; the classifier ``fc`` is dropped), since Tenfold never downloads; the paper starts CUB
    from ImageNet weights. ``frozen_stages=1`` freezes the stem and stage 1, as the official CUB config."""
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=0)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # missing, not a checkpoint, or not loadable without pickled code
            raise DataError(f"ResNet-18 weights {weights} cannot be read as a state dict "
                            f"({type(exc).__name__})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise DataError(f"ResNet-18 weights {weights} hold no tensor state dict")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise DataError(f"ResNet-18 weights {weights} do not fit: missing {missing[:3]}, unexpected "
                            f"{unexpected[:3]}")
    return _FrozenStages(net, frozen_stages) if frozen_stages >= 0 else net
