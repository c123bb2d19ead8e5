"""The FSCIL session runner (NC-FSCIL, Sec. 3.3) with its baselines in the same code path.

Session 0 trains backbone ``f`` and projection ``g`` on the base classes. Afterwards ``f`` is frozen and
its features are cached; a memory keeps one mean backbone feature per class seen so far. Session
``t >= 1`` fine-tunes only ``g`` (and a linear classifier, for the linear baselines) on the new shots
(duplicated ``c_t`` times) together with the stored class means, then stores the new classes' means and
evaluates on every seen class.

Methods:
- ``etf-dr``: fixed ETF classifier, dot-regression loss (the paper).
- ``linear-memory``: learnable linear classifier, cross-entropy over seen classes, same memory.
- ``linear-new``: the same, fine-tuned on the new shots only (no memory): catastrophic forgetting.
- ``ncm``: nearest class mean (cosine) on the frozen backbone features of a CE-trained base model;
  no fine-tuning at all.

Labels given to this module are numbered in session order (base classes ``0..B-1``, then each session's).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tenfold.errors import ConvergenceError, require
from tenfold.incremental.augment import mix_batch, mixup
from tenfold.incremental.losses import balance_weights, dot_regression_loss, mixed_loss
from tenfold.incremental.metrics import SessionRecord, session_record
from tenfold.incremental.model import ETFClassifier, FSCILNet, predict

METHODS = ("etf-dr", "linear-memory", "linear-new", "ncm")


@dataclass
class BaseSettings:
    """Base-session training: SGD with momentum, cosine schedule, optional Mixup/CutMix."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dr_weight: float = 10.0
    mixup_p: float = 0.0
    mixup_alpha: float = 0.8
    cutmix_p: float = 0.0
    cutmix_alpha: float = 1.0


@dataclass
class IncrementalSettings:
    """Per-session fine-tuning of the head: ``steps`` SGD steps (one number, or one per session; cosine,
    linear warm-up), batch
    ``batch_size``, novel shots duplicated ``c_t = t`` times if ``duplication == "t"`` else that
    integer; optional feature mixup (probability, fixed ``lam``) and class-balanced DR."""

    steps: int | list[int] = 100
    batch_size: int = 64
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 5
    duplication: int | str = "t"
    dr_weight: float = 10.0
    feature_mixup_p: float = 0.0
    feature_mixup_lam: float = 0.5
    balanced: bool = True


def _loss(net: FSCILNet, mu: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float, seen: int,
          dr_weight: float, balanced: bool = False) -> torch.Tensor:
    if isinstance(net.classifier, ETFClassifier):
        w = net.classifier.prototypes.to(mu.dtype)
        return dr_weight * mixed_loss(dot_regression_loss, mu, y_a, y_b, lam, prototypes=w, balanced=balanced)
    logits = net.classifier(mu)[:, :seen]
    return mixed_loss(_cross_entropy, logits, y_a, y_b, lam, balanced=balanced)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Cross-entropy; with ``balanced`` each sample is weighted by ``r_y^2`` as in the balanced DR loss."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    if balanced:
        per_sample = per_sample * balance_weights(labels).to(per_sample.dtype)
    return per_sample.mean()


def _check(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise ConvergenceError(f"{where}: the loss became {float(loss)}; lower the learning rate")


def _cosine_lr(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_base(net: FSCILNet, x: torch.Tensor, y: torch.Tensor, settings: BaseSettings, generator: torch.Generator,
               on_epoch: Callable[[int, float], None] | None = None) -> FSCILNet:
    """Train ``f`` and ``g`` (and a linear classifier) on the base classes ``y`` in ``0..B-1`` in place."""
    require(len(x) == len(y) and len(y) > 0, "x", tuple(x.shape), f"a non-empty batch matching {len(y)} labels")
    seen = int(y.max()) + 1
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    per_epoch = -(-len(y) // settings.batch_size)
    total = settings.epochs * per_epoch
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    net.train()
    step = 0
    for epoch in range(settings.epochs):
        order = torch.randperm(len(y), generator=generator).to(y.device)
        running = 0.0
        for start in range(0, len(y), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            xb, ya, yb, lam = mix_batch(x[idx], y[idx], mixup_p=settings.mixup_p, mixup_alpha=settings.mixup_alpha,
                                        cutmix_p=settings.cutmix_p, cutmix_alpha=settings.cutmix_alpha,
                                        generator=generator, rng=rng)
            for group in opt.param_groups:
                group["lr"] = _cosine_lr(step, total, 0, settings.lr)
            loss = _loss(net, net.head(net.features(xb)), ya, yb, lam, seen, settings.dr_weight)
            _check(loss, f"base session, epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            step += 1
        if on_epoch is not None:
            on_epoch(epoch, running / len(y))
    net.eval()
    return net


@torch.no_grad()
def extract(net: FSCILNet, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Backbone features of ``x`` in eval mode (the frozen ``f`` after the base session)."""
    net.eval()
    return torch.cat([net.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def class_means(features: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """One mean feature per class in ``classes`` (rows in that order)."""
    return torch.stack([features[labels == c].mean(dim=0) for c in classes])


def session_steps(settings: IncrementalSettings, session: int) -> int:
    """The number of fine-tuning steps of incremental session ``session`` (1-based)."""
    if isinstance(settings.steps, int):
        return settings.steps
    require(len(settings.steps) >= session, "steps", settings.steps, f"one entry per session (>= {session})")
    return int(settings.steps[session - 1])


def finetune_head(net: FSCILNet, feats: torch.Tensor, labels: torch.Tensor, seen: int, settings: IncrementalSettings,
                  generator: torch.Generator, session: int) -> None:
    """``session_steps`` SGD steps on the head (and a linear classifier) over cached backbone features."""
    params = list(net.head.parameters()) + [p for p in net.classifier.parameters()]
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    net.head.train()
    n = len(labels)
    total = session_steps(settings, session)
    order, pos = torch.randperm(n, generator=generator), 0
    for step in range(total):
        if pos + settings.batch_size > n and pos > 0:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos:pos + settings.batch_size].to(labels.device)
        pos += settings.batch_size
        h, y_a, y_b, lam = feats[idx], labels[idx], labels[idx], 1.0
        if settings.feature_mixup_p > 0 and float(torch.rand((), generator=generator)) < settings.feature_mixup_p:
            h, y_a, y_b, lam = mixup(h, labels[idx], settings.feature_mixup_lam, generator)
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, total, settings.warmup_steps, settings.lr)
        loss = _loss(net, net.head(h), y_a, y_b, lam, seen, settings.dr_weight, settings.balanced)
        _check(loss, f"session {session}, step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.head.eval()


@dataclass
class SessionData:
    """Cached backbone features: each session's training samples and the whole test set (session-order labels)."""

    train_feats: list[torch.Tensor]
    train_labels: list[torch.Tensor]
    test_feats: torch.Tensor
    test_labels: torch.Tensor
    group_sizes: list[int]


def cache_features(net: FSCILNet, train_x: list[torch.Tensor], train_y: list[torch.Tensor], test_x: torch.Tensor,
                   test_y: torch.Tensor, group_sizes: list[int]) -> SessionData:
    return SessionData([extract(net, x) for x in train_x], list(train_y), extract(net, test_x), test_y, group_sizes)


@torch.no_grad()
def _scores(net: FSCILNet, method: str, feats: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    if method == "ncm":
        return F.normalize(feats, dim=1) @ F.normalize(memory, dim=1).T
    net.head.eval()
    return net.classifier(net.head(feats))


def run_sessions(base_net: FSCILNet, method: str, data: SessionData, settings: IncrementalSettings,
                 generator: torch.Generator,
                 on_session: Callable[[SessionRecord], None] | None = None) -> tuple[list[SessionRecord], FSCILNet]:
    """Sessions 0..T on a copy of the base-trained ``base_net`` with ``method``; returns the records and the net.

    The backbone is frozen (only its cached features are used); the memory holds one mean backbone
    feature per seen class.
    """
    require(method in METHODS, "method", method, f"one of {', '.join(METHODS)}")
    require(settings.duplication == "t" or (isinstance(settings.duplication, int) and settings.duplication >= 1),
            "duplication", settings.duplication, "'t' or a positive integer")
    net = copy.deepcopy(base_net)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    group_of_class = torch.repeat_interleave(torch.arange(len(data.group_sizes)), torch.tensor(data.group_sizes))
    group_of_class = group_of_class.to(data.test_labels.device)
    memory = torch.zeros(0, data.train_feats[0].shape[1], dtype=data.train_feats[0].dtype,
                         device=data.train_feats[0].device)
    records = []
    seen = 0
    for t, (feats, labels) in enumerate(zip(data.train_feats, data.train_labels)):
        new_classes = list(range(seen, seen + data.group_sizes[t]))
        seen += data.group_sizes[t]
        if t > 0 and method != "ncm":
            c_t = t if settings.duplication == "t" else int(settings.duplication)
            parts_x, parts_y = [feats.repeat(c_t, 1)], [labels.repeat(c_t)]
            if method != "linear-new":
                parts_x.append(memory)
                parts_y.append(torch.arange(len(memory), device=labels.device))
            finetune_head(net, torch.cat(parts_x), torch.cat(parts_y), seen, settings, generator, t)
        memory = torch.cat([memory, class_means(feats, labels, new_classes)])
        mask = data.test_labels < seen
        pred = predict(_scores(net, method, data.test_feats[mask], memory), seen)
        record = session_record(pred, data.test_labels[mask], group_of_class, t, seen)
        records.append(record)
        if on_session is not None:
            on_session(record)
    return records, net
