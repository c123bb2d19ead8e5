"""Fixtures of the visual-tuning tests: a small timm ViT factory, a batch, and a few training steps."""

import pytest
import torch

SMALL = dict(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)


@pytest.fixture
def tuning_vit():
    """``tuning_vit(seed=0, **overrides)``: a small timm ViT in eval mode (D=32, depth 2, 16 patches)."""
    from tenfold.tuning import build_vit

    def make(seed: int = 0, **overrides):
        return build_vit(**{**SMALL, **overrides}, seed=seed).eval()
    return make


@pytest.fixture
def tuning_batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 8, 8, generator=g), torch.randint(3, (6,), generator=g)


@pytest.fixture
def tuning_steps(tuning_batch):
    """``tuning_steps(model, steps=2)``: AdamW steps with weight decay 0.1 on the trainable parameters."""
    def run(model, steps: int = 2, lr: float = 1e-2):
        x, y = tuning_batch
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
        loss_of = getattr(model, "tuning_loss", None) or (lambda a, b: torch.nn.functional.cross_entropy(model(a), b))
        for _ in range(steps):
            opt.zero_grad()
            loss_of(x, y).backward()
            opt.step()
        return model
    return run
