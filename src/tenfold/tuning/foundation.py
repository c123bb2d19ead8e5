"""Small offline "foundation models" to tune (spec sec. 7): timm ViTs pre-trained here, cached on disk.

- ``digits``: ViT img 8, patch 2 (16 tokens), D=64, depth 4, 4 heads, mlp_ratio 2, 1 channel,
  pre-trained on digits 0-4 (80 % of them; 20 % held out) with AdamW and a one-cycle schedule.
- ``shapes``: the same trunk on 32 px RGB procedural shapes, patch 8 (16 tokens), pre-trained to tell
  the 25 shape x texture combinations of shape classes 0-99 (circles, squares, triangles, diamonds,
  crosses in any colour) apart.

``foundation_model(kind)`` returns the pre-trained model. The weights of the built-in specs ship in the
package (``tuning/weights/foundation-<kind>.safetensors``, SHA-256 in :data:`SHIPPED`, made by
``python -m tenfold.tuning.ship_foundation digits shapes``), so every machine tunes the same backbone: pre-training
on another CPU gives other rounding. A changed spec (or ``shipped=False``) is pre-trained from its seed and
cached as safetensors under ``cache_dir`` (default ``~/.cache/tenfold/tuning``). Tasks replace the head with
``model.reset_classifier(num_classes)``.
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

from tenfold.errors import DataError, require


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
        payload = asdict(self)
        if self.kind in CORPORA:   # a changed corpus is a changed spec (digits and shapes keep their keys)
            payload["corpus"] = CORPORA[self.kind]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# Formula-driven pre-training corpora (tenfold.data.fractals): categories, training and held-out instances per
# category, and the seeds of the categories and of each split's instances.
CORPORA = {
    "fractal": {"classes": 500, "per_class": 200, "held_out_per_class": 20, "category_seed": 0,
                "train_seed": 1, "held_out_seed": 2},
}


SPECS = {
    "digits": FoundationSpec("digits", img_size=8, patch_size=2, in_chans=1, num_classes=5, epochs=20,
                             batch_size=64, lr=5e-3),
    # 120 epochs: 35 % held-out accuracy (chance 4 %); the 6 of the first version reached 6.5 %, 30 reached 16 %
    "shapes": FoundationSpec("shapes", img_size=32, patch_size=8, in_chans=3, num_classes=25, epochs=120,
                             batch_size=64, lr=3e-3),
    # the larger backbone (issue 31): 6 blocks of width 128 (1.2M parameters, 8x the others) pre-trained on
    # 100k FractalDB-style images of 500 IFS categories; width 128 rather than 192 keeps a standard-tier tuning
    # run within its 30 minutes on 2 cores (192 trains 2.3x slower, docs/tuning.md "Foundation models")
    "fractal": FoundationSpec("fractal", img_size=32, patch_size=8, in_chans=3, num_classes=500, embed_dim=128,
                              depth=6, num_heads=4, mlp_ratio=4.0, epochs=12, batch_size=128, lr=1e-3),
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

    if kind in CORPORA:   # separate train and held-out instances of the same categories
        from tenfold.data.fractals import fractals

        c, size = CORPORA[kind], SPECS[kind].img_size
        train = fractals(c["classes"], c["per_class"], size, seed=c["train_seed"], category_seed=c["category_seed"])
        held = fractals(c["classes"], c["held_out_per_class"], size, seed=c["held_out_seed"],
                        category_seed=c["category_seed"])
        return (train.x, train.y), (held.x, held.y)
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


def pretrain(spec: FoundationSpec, progress: Callable[[int], None] | None = None,
             log: Callable[[str], None] | None = None) -> tuple[nn.Module, float]:
    """Pre-train ``spec`` deterministically (AdamW, one-cycle); returns (model, held-out accuracy).
    ``log`` receives one line per epoch: mean training loss, held-out accuracy and seconds so far."""
    import time

    from tenfold.tuning.training import accuracy

    start = time.perf_counter()
    (x, y), (xt, yt) = pretraining_data(spec.kind)
    model = build_from_spec(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = -(-len(y) // spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(spec.seed)
    model.train()
    if log is not None:
        log(f"{spec.kind}: {len(y)} training and {len(yt)} held-out images ready after "
            f"{time.perf_counter() - start:.0f} s")
    for epoch in range(spec.epochs):
        order = torch.randperm(len(y), generator=g)
        total = 0.0
        for i in range(0, len(y), spec.batch_size):
            idx = order[i:i + spec.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if progress is not None:
            progress(epoch)
        if log is not None:
            log(f"{spec.kind} epoch {epoch + 1}/{spec.epochs}: loss {total / len(y):.4f}, held-out accuracy "
                f"{accuracy(model, (xt, yt)):.4f}, {time.perf_counter() - start:.0f} s")
            model.train()   # accuracy() leaves the model in eval mode
    return model, accuracy(model, (xt, yt))   # leaves the model in eval mode


def default_cache_dir() -> Path:
    return Path(os.environ.get("TENFOLD_CACHE", Path.home() / ".cache" / "tenfold")) / "tuning"


SHIPPED_DIR = Path(__file__).parent / "weights"
# SHA-256 of the shipped weights; each file's metadata holds its spec, held-out accuracy and the versions
# that made it (docs/tuning.md, "Foundation models").
SHIPPED = {
    "digits": "1932a4f92cadd87afbf62ed5cffa20264a1d86cdc387e38c560faaa2a818cf21",
    "shapes": "094762ebe7df1f35a3200bdb0f3f754edfad69aa42810b158135c1964e669548",
    "fractal": "2f27bf88a4b44fc586dbf22477201469dbfe5e96e5c5b0f890eeeddfcbe241ed",
}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_path(kind: str) -> Path | None:
    """The shipped weights of ``kind`` when they were made from today's spec (else None); a file whose
    SHA-256 differs from :data:`SHIPPED` is a one-line DataError, never a silently different backbone."""
    path = SHIPPED_DIR / f"foundation-{kind}.safetensors"
    if kind not in SHIPPED or not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("key") != SPECS[kind].key():
        return None
    digest = file_sha256(path)
    if digest != SHIPPED[kind]:
        raise DataError(f"{path}: SHA-256 {digest} differs from the shipped {SHIPPED[kind]}; reinstall tenfold "
                        "or pass shipped=False to pre-train it here")
    return path


def _load(spec: FoundationSpec, path: Path) -> tuple[nn.Module, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    model = build_from_spec(spec)
    model.load_state_dict(load_file(str(path)))
    model.eval()
    return model, {"held_out_acc": float(meta.get("held_out_acc", "nan")), "path": str(path)}


def _weights_file(model: nn.Module, spec: FoundationSpec, acc: float) -> bytes:
    from safetensors.torch import save

    import tenfold

    return save({k: v.contiguous() for k, v in model.state_dict().items()},
                metadata={"held_out_acc": repr(acc), "spec": json.dumps(asdict(spec)), "key": spec.key(),
                          "torch": torch.__version__, "tenfold": getattr(tenfold, "__version__", "")})


def foundation_model(kind: str = "digits", cache_dir: str | Path | None = None,
                     progress: Callable[[int], None] | None = None, shipped: bool = True) -> tuple[nn.Module, dict]:
    """The pre-trained foundation model ``kind`` and its info (``held_out_acc``, ``shipped``, ``cached``,
    ``path``, ``sha256``).

    The shipped weights when they match today's spec (``shipped=True``); else loaded from ``cache_dir`` when a
    file for this exact spec exists, else pre-trained and saved there.
    """
    require(kind in SPECS, "kind", kind, f"one of {', '.join(SPECS)}")
    spec = SPECS[kind]
    if shipped and (path := shipped_path(kind)) is not None:
        model, info = _load(spec, path)
        return model, {**info, "shipped": True, "cached": True, "sha256": SHIPPED[kind]}
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"foundation-{kind}-{spec.key()}.safetensors"
    if path.is_file():
        model, info = _load(spec, path)
        return model, {**info, "shipped": False, "cached": True, "sha256": file_sha256(path)}
    model, acc = pretrain(spec, progress)
    from tenfold.io import atomic_write_bytes

    # a unique temporary file + rename: concurrent processes never see or mix half-written caches
    data = _weights_file(model, spec, acc)
    atomic_write_bytes(path, data)
    return model, {"held_out_acc": acc, "shipped": False, "cached": False, "path": str(path),
                   "sha256": hashlib.sha256(data).hexdigest()}


def write_shipped(kinds: list[str], folder: Path = SHIPPED_DIR) -> dict[str, str]:
    """Pre-train each built-in spec from its seed and write ``folder/foundation-<kind>.safetensors``;
    returns their SHA-256 (what :data:`SHIPPED` must hold)."""
    from tenfold.io import atomic_write_bytes

    out = {}
    for kind in kinds:
        require(kind in SPECS, "kind", kind, f"one of {', '.join(SPECS)}")
        model, acc = pretrain(SPECS[kind], log=lambda line: print(line, flush=True))
        data = _weights_file(model, SPECS[kind], acc)
        atomic_write_bytes(folder / f"foundation-{kind}.safetensors", data)
        out[kind] = hashlib.sha256(data).hexdigest()
        print(f"{kind}: held-out accuracy {acc:.4f}, sha256 {out[kind]}", flush=True)
    return out

