"""Small offline "foundation models" to tune (spec sec. 7): timm ViTs pre-trained here, cached on disk.

- ``digits``: ViT img 8, patch 2 (16 tokens), D=64, depth 4, 4 heads, mlp_ratio 2, 1 channel,
  pre-trained on digits 0-4 (80 % of them; 20 % held out) with AdamW and a one-cycle schedule.
- ``shapes``: the same trunk on 32 px RGB procedural shapes, patch 8 (16 tokens), pre-trained to tell
  the 25 shape x texture combinations of shape classes 0-99 (circles, squares, triangles, diamonds,
  crosses in any colour) apart.

``foundation_model(kind, cache_dir)`` returns the pre-trained model; the weights are cached as
safetensors under ``cache_dir`` (default ``~/.cache/tenfold/tuning``) and rebuilt bit-for-bit from
the seed when missing. Tasks replace the head with ``model.reset_classifier(num_classes)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tenfold.errors import require


@dataclass(frozen=True)
class FoundationSpec:
    """Architecture and pre-training recipe of one foundation model."""

    kind: str
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


SPECS = {
    "digits": FoundationSpec("digits", img_size=8, patch_size=2, in_chans=1, num_classes=5, epochs=20,
                             batch_size=64, lr=5e-3),
    "shapes": FoundationSpec("shapes", img_size=32, patch_size=8, in_chans=3, num_classes=25, epochs=6,
                             batch_size=64, lr=3e-3),
}


def build_vit(img_size: int = 8, patch_size: int = 2, in_chans: int = 1, num_classes: int = 5, embed_dim: int = 64,
              depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0, seed: int = 0, **kwargs) -> nn.Module:
    """A timm VisionTransformer (class token, token pooling) initialised from ``seed`` without touching
    the caller's global random state."""
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                                 embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, **kwargs)


def build_from_spec(spec: FoundationSpec) -> nn.Module:
    return build_vit(spec.img_size, spec.patch_size, spec.in_chans, spec.num_classes, spec.embed_dim, spec.depth,
                     spec.num_heads, spec.mlp_ratio, seed=spec.seed)


def pretraining_data(kind: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, held-out) tensors of the pre-training task of ``kind``."""
    from tenfold.data import shapes, stratified_split
    from tenfold.data.digits import load_digits_arrays

    if kind == "digits":
        x, y = load_digits_arrays()
        keep = y < 5
        x, y = x[keep], y[keep]
    else:
        data = shapes(classes=list(range(100)), size=32, per_class=16, seed=1000)
        x, y = data.x, data.y // 4  # class c -> (shape, texture); colour c % 4 is ignored
    train_idx, test_idx = stratified_split(y, (0.8, 0.2), seed=0)
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def pretrain(spec: FoundationSpec, progress: Callable[[int], None] | None = None) -> tuple[nn.Module, float]:
    """Pre-train ``spec`` deterministically (AdamW, one-cycle); returns (model, held-out accuracy)."""
    (x, y), (xt, yt) = pretraining_data(spec.kind)
    model = build_from_spec(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = -(-len(y) // spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(spec.seed)
    model.train()
    for epoch in range(spec.epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), spec.batch_size):
            idx = order[i:i + spec.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(-1) == yt).float().mean().item()
    return model, acc


def default_cache_dir() -> Path:
    return Path(os.environ.get("TENFOLD_CACHE", Path.home() / ".cache" / "tenfold")) / "tuning"


def foundation_model(kind: str = "digits", cache_dir: str | Path | None = None,
                     progress: Callable[[int], None] | None = None) -> tuple[nn.Module, dict]:
    """The pre-trained foundation model ``kind`` and its info (``held_out_acc``, ``cached``, ``path``).

    Loaded from ``cache_dir`` when a file for this exact spec exists, else pre-trained and saved there.
    """
    from safetensors.torch import load_file

    require(kind in SPECS, "kind", kind, f"one of {', '.join(SPECS)}")
    spec = SPECS[kind]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"foundation-{kind}-{spec.key()}.safetensors"
    model = build_from_spec(spec)
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        model.load_state_dict(load_file(str(path)))
        model.eval()
        return model, {"held_out_acc": float(meta.get("held_out_acc", "nan")), "cached": True, "path": str(path)}
    model, acc = pretrain(spec, progress)
    from safetensors.torch import save

    from tenfold.io import atomic_write_bytes

    # a unique temporary file + rename: concurrent processes never see or mix half-written caches
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()},
                                  metadata={"held_out_acc": repr(acc), "spec": json.dumps(asdict(spec))}))
    return model, {"held_out_acc": acc, "cached": False, "path": str(path)}
