"""The FSCIL session runner (NC-FSCIL, Sec. 3.3) with its baselines in the same code path.

Session 0 trains backbone ``f`` and projection ``g`` on the base classes. Afterwards ``f`` is frozen and
its features are cached; a memory keeps one mean backbone feature per class seen so far. Session
``t >= 1`` fine-tunes only ``g`` (and a linear classifier, for the linear baselines) on the set the
official code builds (mmfscil/apis/fscil.py with ``mean_neck_feat=True``, see :func:`finetune_set`): the
session's new shots once, each earlier novel class's mean feature ``c_t`` times and each base class's
mean feature once. It then stores the new classes' means and evaluates on every seen class through the
fine-tuned head (neck), either against the ETF (the official default) or against the neck outputs of
the stored class means (the official ``feat_test``).

Methods:
- ``etf-dr``: fixed ETF classifier, dot-regression loss (the paper).
- ``linear-memory``: learnable linear classifier, cross-entropy over seen classes, same memory.
- ``linear-new``: the same, fine-tuned on the new shots only (no memory): forgets by construction,
  kept as an illustration, never as a baseline of a claim.
- ``ncm``: nearest class mean (cosine) on the frozen backbone features of a CE-trained base model;
  no fine-tuning at all.

Labels given to this module are numbered in session order (base classes ``0..B-1``, then each session's
classes in turn): :func:`train_base`, :func:`cache_features` and :func:`run_sessions` check it up front
(a class without training samples would otherwise give an empty, NaN class mean), and
:func:`renumber_sessions` maps a dataset's own class ids (e.g. session 1 = ids 10..14) to that order.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConvergenceError, DataError, require
from tenfold.incremental.augment import mix_batch
from tenfold.incremental.losses import balance_weights, dot_regression_loss
from tenfold.incremental.metrics import SessionRecord, session_record
from tenfold.incremental.model import ETFClassifier, FSCILNet, predict

METHODS = ("etf-dr", "linear-memory", "linear-new", "ncm")


@dataclass
class BaseSettings:
    """Base-session training: SGD with momentum, optional Mixup/CutMix and an optional per-batch image
    transform ``augment(x, generator)`` (crop/flip/jitter; test-time features never see it). The schedule
    is plain cosine (``schedule="cosine"``), the official cosine with cool-down (``"cooldown"``,
    :func:`cooldown_lr`, with ``warmup_steps``/``min_lr_ratio``/``cool_down_steps``; CIFAR, CUB) or step decay
    (``"step"``: times ``step_gamma`` at each fraction of the run in ``step_milestones``, after a linear warm-up
    from ``warmup_ratio``; miniImageNet)."""

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
    schedule: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.01
    cool_down_steps: int = 10
    cool_down_ratio: float = 0.1
    step_milestones: tuple[float, ...] = (0.4, 0.6, 0.7, 0.8, 0.9)
    step_gamma: float = 0.25
    augment: Callable | None = None


@dataclass
class IncrementalSettings:
    """Per-session fine-tuning of the head: ``steps`` SGD steps (one number, or one per session), batch
    ``batch_size`` (shuffled epochs, last incomplete batch dropped), the earlier novel classes' means
    repeated ``c_t = t`` times if ``duplication == "t"`` else that integer (the official ``copy_list``:
    ``t`` for miniImageNet/CUB, 1 for CIFAR); optional feature mixup of the neck outputs (probability,
    fixed ``lam``); class-balanced DR (the official ``with_len``, CIFAR) or not (mini/CUB).

    Schedule ``"cooldown"`` is the official one (CosineAnnealingCooldown: linear warm-up over
    ``warmup_steps`` from ``warmup_ratio``, cosine to ``min_lr_ratio * lr``, the last ``cool_down_steps``
    at ``cool_down_ratio`` of that); ``"cosine"`` is plain cosine to 0 after a linear warm-up.
    ``evaluation`` is ``"etf"`` (argmax of ``w_k^T mu_hat``, the official default) or ``"neck-mean"``
    (argmax of the cosine to the neck output of each stored class mean, the official ``feat_test``).
    ``memory=False`` drops the stored class means from the fine-tuning set (new shots only): the ablation
    of the mean-feature memory.

    With ``balanced`` the per-sample weight ``r_y^2 = (B / #labels in batch) / n_y`` gives every class in the
    batch the same total weight, so the ``c_t`` copies of a mean cancel in a full batch."""

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
    schedule: str = "cooldown"
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.01
    cool_down_steps: int = 5
    cool_down_ratio: float = 0.1
    evaluation: str = "etf"
    memory: bool = True  # False: fine-tune on the new shots only (the "no mean-feature memory" ablation)


CE_SCALE = 16.0  # temperature of cosine logits when the fixed ETF is trained with CE (an ablation only)


class Processes(Protocol):
    """What the training loops need from a run on several processes (the engine's ``RunContext`` has it).

    ``rank`` and ``world_size`` pick this process's shard of every global batch; ``average_gradients(model)``
    replaces each parameter gradient by its mean over processes; ``mean_over_processes(t)`` is the mean of a
    tensor over processes. ``None`` (the default of every loop) is one process."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def average_gradients(self, model: nn.Module) -> None: ...

    def mean_over_processes(self, value: torch.Tensor) -> torch.Tensor: ...


def _world(processes: Processes | None) -> tuple[int, int]:
    return (0, 1) if processes is None else (int(processes.rank), int(processes.world_size))


def _check_sync_norm(net: nn.Module, world: int) -> None:
    """Per-process BatchNorm statistics of a shard are not those of the global batch: refuse them."""
    plain = [type(m).__name__ for m in net.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)]
    require(world == 1 or not plain, "processes", world,
            f"1 for a backbone with {plain[0] if plain else ''} (per-process batch statistics differ from the "
            "global batch's; convert it with torch.nn.SyncBatchNorm.convert_sync_batchnorm on CUDA)")


def _per_sample(net: FSCILNet, mu: torch.Tensor, labels: torch.Tensor, seen: int, dr_weight: float) -> torch.Tensor:
    if net.loss == "dr":
        w = net.prototypes().to(mu.dtype)
        return dr_weight * dot_regression_loss(mu, labels, w, reduction="none")
    logits = net.scores(mu)[:, :seen]
    if isinstance(net.classifier, ETFClassifier):
        logits = CE_SCALE * logits
    return F.cross_entropy(logits, labels, reduction="none")


def _shard_loss(net: FSCILNet, mu: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float, seen: int,
                dr_weight: float, balanced: bool, mine: slice, world: int) -> torch.Tensor:
    """This process's part of the global batch's loss ``lam L(y_a) + (1 - lam) L(y_b)``, scaled so that the
    mean of the parts over processes (what gradient averaging takes) is the one-process loss.

    ``y_a``/``y_b`` are the labels of the whole global batch of ``B`` samples and ``mu`` the neck outputs of
    this process's shard ``mine`` of it. ``L(y) = (1/B) sum_i r_{y_i}^2 l_i`` with the class-balancing
    factors ``r^2`` (:func:`balance_weights`, 1 unless ``balanced``) of the global batch, so a shard returns
    ``(W/B) sum_{i in shard} r_{y_i}^2 l_i`` and ``(1/W) sum_shards = L`` for any split, equal or not."""
    total = len(y_a)
    terms = []
    for labels in (y_a, y_b):
        per = _per_sample(net, mu, labels[mine], seen, dr_weight)
        if balanced:
            per = per * balance_weights(labels)[mine].to(per.dtype)
        terms.append(per.sum())
    return (lam * terms[0] + (1.0 - lam) * terms[1]) / (total / world)


def _update(net: nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, processes: Processes | None,
            where: str) -> float:
    """One SGD update from this process's loss part: checks the global loss, backward, averages the gradients
    over processes (the update equals the one-process update up to float summation order), steps. Returns
    the global batch's loss."""
    world = _world(processes)[1]
    value = loss.detach() if world == 1 else processes.mean_over_processes(loss.detach())
    _check(value, where)  # the same value on every process: all stop together
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if world > 1:
        processes.average_gradients(net)
    opt.step()
    return float(value)


def _check(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise ConvergenceError(f"{where}: the loss became {float(loss.detach())}; lower the learning rate")


def _cosine_lr(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def cooldown_lr(it: int, total: int, lr: float, *, warmup: int = 5, warmup_ratio: float = 0.1,
                min_lr_ratio: float = 0.01, cool_down: int = 5, cool_down_ratio: float = 0.1) -> float:
    """The learning rate of iteration ``it`` (1-based, as the official runner counts) of ``total`` under
    cosine annealing with cool-down (the official CosineAnnealingCooldownLrUpdaterHook, by iteration):

    ``target = min_lr_ratio * lr``; for ``it > total - cool_down`` the rate is ``cool_down_ratio * target``,
    else ``target + (lr - target)(1 + cos(pi it / (total - cool_down)))/2``; during the linear warm-up
    (``it < warmup``) that rate is multiplied by ``1 - (1 - it/warmup)(1 - warmup_ratio)``.
    """
    target = lr * min_lr_ratio
    span = total - cool_down
    if it > span or span <= 0:
        regular = target * cool_down_ratio
    else:
        regular = target + 0.5 * (lr - target) * (1.0 + math.cos(math.pi * it / span))
    if warmup > 0 and it < warmup:
        return regular * (1.0 - (1.0 - it / warmup) * (1.0 - warmup_ratio))
    return regular


def _base_lr(settings: BaseSettings, step: int, total: int) -> float:
    if settings.schedule == "step":
        lr = settings.lr * settings.step_gamma ** sum(step >= m * total for m in settings.step_milestones)
        if step < settings.warmup_steps:
            lr *= 1.0 - (1.0 - step / settings.warmup_steps) * (1.0 - settings.warmup_ratio)
        return lr
    if settings.schedule == "cooldown":
        return cooldown_lr(step + 1, total, settings.lr, warmup=settings.warmup_steps,
                           warmup_ratio=settings.warmup_ratio, min_lr_ratio=settings.min_lr_ratio,
                           cool_down=settings.cool_down_steps, cool_down_ratio=settings.cool_down_ratio)
    return _cosine_lr(step, total, settings.warmup_steps, settings.lr)


def _session_lr(settings: IncrementalSettings, step: int, total: int) -> float:
    if settings.schedule == "cooldown":
        return cooldown_lr(step + 1, total, settings.lr, warmup=settings.warmup_steps,
                           warmup_ratio=settings.warmup_ratio, min_lr_ratio=settings.min_lr_ratio,
                           cool_down=settings.cool_down_steps, cool_down_ratio=settings.cool_down_ratio)
    return _cosine_lr(step, total, settings.warmup_steps, settings.lr)


RENUMBER_HINT = "renumber them with tenfold.incremental.renumber_sessions(train_labels, test_labels)"


def _ids(values: list[int]) -> str:
    """``10..14`` for a run of consecutive ids, else the first few ids."""
    if values and values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}..{values[-1]}"
    return str(values[:8])[:-1] + (", ...]" if len(values) > 8 else "]")


def _classes(labels: torch.Tensor) -> list[int]:
    return torch.unique(labels).tolist()


def renumber_sessions(train_labels: list[torch.Tensor], test_labels: torch.Tensor
                      ) -> tuple[list[torch.Tensor], torch.Tensor, list[int]]:
    """Map a dataset's own class ids to the session order this module expects.

    ``train_labels[t]`` holds the labels of session ``t``'s training samples (``t = 0``: the base session)
    in any ids (e.g. CIFAR-100's, session 1 = ``{10..14}``). Each session's classes get the next numbers
    in increasing order of their ids: base classes ``0..B-1``, then session 1's, and so on. Returns the
    renumbered training labels, the renumbered test labels and ``class_ids`` with ``class_ids[k]`` = the
    original id of class ``k`` (so ``class_ids[pred]`` gives predictions in the dataset's ids). Labels
    already in session order come back unchanged, so a base model trained on them stays valid.

    >>> import torch
    >>> from tenfold.incremental import renumber_sessions
    >>> train = [torch.tensor([3, 0, 7, 0]), torch.tensor([12, 10]), torch.tensor([5, 11])]
    >>> new_train, new_test, class_ids = renumber_sessions(train, torch.tensor([12, 5, 3]))
    >>> [y.tolist() for y in new_train], new_test.tolist(), class_ids
    ([[1, 0, 2, 0], [4, 3], [5, 6]], [4, 5, 1], [0, 3, 7, 10, 12, 5, 11])
    """
    require(len(train_labels) >= 1, "train_labels", len(train_labels), "one label tensor per session")
    order: list[int] = []
    session_of: dict[int, int] = {}
    for t, y in enumerate(train_labels):
        require(y.dim() == 1 and len(y) > 0 and not y.is_floating_point(), f"train_labels[{t}]", tuple(y.shape),
                "a non-empty 1-d tensor of integer class ids", DataError)
        for c in _classes(y):
            require(c >= 0, f"train_labels[{t}]", c, "non-negative class ids", DataError)
            if c in session_of:
                raise DataError(f"class id {c} is in the training labels of sessions {session_of[c]} and {t}: "
                                "expected each class in exactly one session")
            session_of[c] = t
            order.append(c)
    lut = torch.full((max(order) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(order)] = torch.arange(len(order))
    unknown = sorted(set(_classes(test_labels)) - set(order))
    if unknown:
        raise DataError(f"test label ids {_ids(unknown)} belong to no session's training labels: expected test "
                        "samples of the classes the sessions train on")
    return ([lut.to(y.device)[y] for y in train_labels], lut.to(test_labels.device)[test_labels], order)


def check_session_labels(train_labels: list[torch.Tensor], test_labels: torch.Tensor, group_sizes: list[int]) -> None:
    """One-line :class:`DataError` unless session ``t``'s training labels are exactly the classes
    ``sum(sizes[:t]) .. sum(sizes[:t+1]) - 1`` and every test label is one of the ``sum(sizes)`` classes."""
    require(len(group_sizes) == len(train_labels), "group_sizes", list(group_sizes),
            f"one class count per session ({len(train_labels)} sessions of training labels)", DataError)
    start = 0
    for t, (y, size) in enumerate(zip(train_labels, group_sizes)):
        got, want = _classes(y), list(range(start, start + size))
        if got != want:
            raise DataError(f"session {t} training labels are {_ids(got)}: expected {_ids(want)}, the session-order "
                            f"numbering (base classes 0..{group_sizes[0] - 1}, then each session's classes in turn); "
                            + RENUMBER_HINT)
        start += size
    stray = [c for c in _classes(test_labels) if not 0 <= c < start]
    if stray:
        raise DataError(f"test labels {_ids(stray)} are outside the {start} session classes 0..{start - 1}; "
                        + RENUMBER_HINT)


def train_base(net: FSCILNet, x: torch.Tensor, y: torch.Tensor, settings: BaseSettings, generator: torch.Generator,
               on_epoch: Callable[[int, float], None] | None = None, stage: Callable[..., Any] | None = None,
               processes: Processes | None = None) -> FSCILNet:
    """Train ``f`` and ``g`` (and a linear classifier) on the base classes ``y`` in ``0..B-1`` in place.

    ``stage(model=, optimizer=, state=)``, when given, returns a resumable :class:`tenfold.engine.Stage`;
    the epochs then run through it (checkpoint after each, ``loss`` in its row) and ``on_epoch`` is unused.

    ``processes`` (:class:`Processes`, e.g. the run context) splits every step over several processes without
    changing the schedule: the global batch (``settings.batch_size``), its order, augmentation and Mixup/CutMix
    are drawn in full on every process from the same generator, each process forwards its shard (positions
    ``rank, rank + W, ...``) and the averaged gradients give the one-process update (:func:`_shard_loss`), so
    the learning rate and the number of steps do not depend on the number of processes. A backbone with
    (non-synchronised) BatchNorm is refused on several processes.
    """
    require(len(x) == len(y) and len(y) > 0, "x", tuple(x.shape), f"a non-empty batch matching {len(y)} labels")
    got = _classes(y)
    if got != list(range(len(got))):
        raise DataError(f"base-session labels are {_ids(got)}: expected 0..{len(got) - 1} (every base class, numbered "
                        "first in session order); " + RENUMBER_HINT)
    seen = int(y.max()) + 1
    rank, world = _world(processes)
    _check_sync_norm(net, world)
    mine = slice(rank, None, world)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    per_epoch = -(-len(y) // settings.batch_size)
    total = settings.epochs * per_epoch
    rng_seed = int(torch.randint(2**62, (1,), generator=generator))
    st = stage(model=net, optimizer=opt, state={"generator": generator}) if stage is not None else None
    epochs = (e - 1 for e in st.epochs(settings.epochs, progress=False)) if st is not None else range(settings.epochs)
    net.train()
    for epoch in epochs:
        rng = np.random.default_rng([rng_seed, epoch])  # Beta draws: a function of the epoch, nothing to save
        step = epoch * per_epoch
        order = torch.randperm(len(y), generator=generator).to(y.device)
        running = 0.0
        for start in range(0, len(y), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            xb = x[idx] if settings.augment is None else settings.augment(x[idx], generator)
            xb, ya, yb, lam = mix_batch(xb, y[idx], mixup_p=settings.mixup_p, mixup_alpha=settings.mixup_alpha,
                                        cutmix_p=settings.cutmix_p, cutmix_alpha=settings.cutmix_alpha,
                                        generator=generator, rng=rng)
            for group in opt.param_groups:
                group["lr"] = _base_lr(settings, step, total)
            loss = _shard_loss(net, net.head(net.features(xb[mine])), ya, yb, lam, seen, settings.dr_weight,
                               False, mine, world)
            running += _update(net, opt, loss, processes, f"base session, epoch {epoch}") * len(idx)
            step += 1
        if st is not None:
            st.log(loss=running / len(y))
        elif on_epoch is not None:
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


def copies(duplication: int | str, session: int) -> int:
    """``c_t``: how often each earlier novel class's mean enters session ``session``'s fine-tuning set."""
    return session if duplication == "t" else int(duplication)


def finetune_set(memory: torch.Tensor, base_classes: int, new_feats: torch.Tensor, new_labels: torch.Tensor,
                 c_t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fine-tuning set of an incremental session, as the official code builds it
    (mmfscil/apis/fscil.py, ``mean_neck_feat=True``): the session's new shots once, then the mean features
    of the earlier novel classes (memory rows ``base_classes..``) as a block repeated ``c_t`` times, then
    the base classes' mean features (memory rows ``0..base_classes-1``) once.

    ``memory`` holds one mean backbone feature per class seen before this session, row = label.
    """
    require(c_t >= 1, "duplication", c_t, "c_t >= 1 copies")
    labels = torch.arange(len(memory), device=new_labels.device)
    earlier = memory[base_classes:]
    return (torch.cat([new_feats, earlier.repeat(c_t, 1), memory[:base_classes]]),
            torch.cat([new_labels, labels[base_classes:].repeat(c_t), labels[:base_classes]]))


def session_steps(settings: IncrementalSettings, session: int) -> int:
    """The number of fine-tuning steps of incremental session ``session`` (1-based)."""
    if isinstance(settings.steps, int):
        return settings.steps
    require(len(settings.steps) >= session, "steps", settings.steps, f"one entry per session (>= {session})")
    return int(settings.steps[session - 1])


def finetune_head(net: FSCILNet, feats: torch.Tensor, labels: torch.Tensor, seen: int, settings: IncrementalSettings,
                  generator: torch.Generator, session: int, processes: Processes | None = None) -> None:
    """``session_steps`` SGD steps on the head (and a linear classifier) over cached backbone features.

    On several ``processes`` each step's global batch (order, feature-mixup draws and pairing) is drawn in
    full on every process and each process forwards its shard, as in :func:`train_base`."""
    params = list(net.head.parameters()) + [p for p in net.classifier.parameters()]
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    net.head.train()
    rank, world = _world(processes)
    mine = slice(rank, None, world)
    n = len(labels)
    total = session_steps(settings, session)
    order, pos = torch.randperm(n, generator=generator), 0
    for step in range(total):
        if pos + settings.batch_size > n and pos > 0:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos:pos + settings.batch_size].to(labels.device)
        pos += settings.batch_size
        y_a = y_b = labels[idx]
        lam = 1.0
        if settings.feature_mixup_p > 0 and float(torch.rand((), generator=generator)) < settings.feature_mixup_p:
            # The official ImageClassifierCIL.mixup_feat mixes the neck outputs, not the backbone features:
            # lam g(h_i) + (1 - lam) g(h_perm(i)) (augment.mixup's draw), each process forwarding its shard's
            # samples and their partners (the head works per sample: LayerNorm, no batch statistics).
            perm = torch.randperm(len(idx), generator=generator).to(labels.device)
            lam = float(settings.feature_mixup_lam)
            y_b = labels[idx[perm]]
            mu = lam * net.head(feats[idx[mine]]) + (1.0 - lam) * net.head(feats[idx[perm][mine]])
        else:
            mu = net.head(feats[idx[mine]])
        for group in opt.param_groups:
            group["lr"] = _session_lr(settings, step, total)
        loss = _shard_loss(net, mu, y_a, y_b, lam, seen, settings.dr_weight, settings.balanced, mine, world)
        _update(net, opt, loss, processes, f"session {session}, step {step}")
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
    """Frozen backbone features of every session's training samples and of the test set. Labels must be
    in session order (checked before any feature is computed; see :func:`renumber_sessions`)."""
    check_session_labels(list(train_y), test_y, list(group_sizes))
    return SessionData([extract(net, x) for x in train_x], list(train_y), extract(net, test_x), test_y, group_sizes)


@torch.no_grad()
def _scores(net: FSCILNet, method: str, feats: torch.Tensor, memory: torch.Tensor,
            evaluation: str = "etf") -> torch.Tensor:
    if method == "ncm":
        return F.normalize(feats, dim=1) @ F.normalize(memory, dim=1).T
    net.head.eval()
    if evaluation == "neck-mean":
        return F.normalize(net.head(feats), dim=1) @ F.normalize(net.head(memory), dim=1).T
    return net.scores(net.head(feats))


def run_sessions(base_net: FSCILNet, method: str, data: SessionData, settings: IncrementalSettings,
                 generator: torch.Generator,
                 on_session: Callable[[SessionRecord], None] | None = None,
                 on_finetune_set: Callable[[int, torch.Tensor], None] | None = None,
                 stage: Callable[..., Any] | None = None, processes: Processes | None = None,
                 ) -> tuple[list[SessionRecord], FSCILNet]:
    """Sessions 0..T on a copy of the base-trained ``base_net`` with ``method``; returns the records and the net.

    The backbone is frozen (only its cached features are used); the memory holds one mean backbone
    feature per seen class. ``on_finetune_set(t, labels)`` sees the labels of each session's fine-tuning set;
    each record keeps its class counts (``finetune_counts``). ``stage(model=, state=)``, when given, returns a
    resumable :class:`tenfold.engine.Stage` whose epochs are the sessions (one checkpoint per session, the
    accuracies in its rows); ``on_session`` is then called only for the sessions that run. ``processes`` shards
    each fine-tuning step (:func:`finetune_head`); features, memory and evaluation are computed in full on every
    process, so every process holds the same records.
    """
    require(method in METHODS, "method", method, f"one of {', '.join(METHODS)}")
    require(settings.duplication == "t" or (isinstance(settings.duplication, int) and settings.duplication >= 1),
            "duplication", settings.duplication, "'t' or a positive integer")
    require(settings.evaluation in ("etf", "neck-mean"), "evaluation", settings.evaluation, "'etf' or 'neck-mean'")
    require(settings.schedule in ("cooldown", "cosine"), "schedule", settings.schedule, "'cooldown' or 'cosine'")
    check_session_labels(data.train_labels, data.test_labels, data.group_sizes)
    net = copy.deepcopy(base_net)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    sizes = data.group_sizes
    group_of_class = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    group_of_class = group_of_class.to(data.test_labels.device)
    starts = [sum(sizes[:t]) for t in range(len(sizes))]
    # The memory after session t: the class means of sessions 0..t (a function of the cached features).
    means = [class_means(f, y, list(range(starts[t], starts[t] + sizes[t])))
             for t, (f, y) in enumerate(zip(data.train_feats, data.train_labels))]
    done: list[dict] = []
    st = stage(model=net, state={"generator": generator, "records": done}) if stage is not None else None
    sessions = (e - 1 for e in st.epochs(len(sizes), progress=False)) if st is not None else range(len(sizes))
    for t in sessions:
        feats, labels = data.train_feats[t], data.train_labels[t]
        seen = starts[t] + sizes[t]
        counts = None
        if t > 0 and method != "ncm":
            if method == "linear-new" or not settings.memory:
                ft_x, ft_y = feats, labels
            else:
                ft_x, ft_y = finetune_set(torch.cat(means[:t]), sizes[0], feats, labels,
                                          copies(settings.duplication, t))
            if on_finetune_set is not None:
                on_finetune_set(t, ft_y)
            counts = dict(zip(*[v.tolist() for v in torch.unique(ft_y, return_counts=True)]))
            finetune_head(net, ft_x, ft_y, seen, settings, generator, t, processes)
        memory = torch.cat(means[:t + 1])
        mask = data.test_labels < seen
        pred = predict(_scores(net, method, data.test_feats[mask], memory, settings.evaluation), seen)
        record = session_record(pred, data.test_labels[mask], group_of_class, t, seen)
        record.finetune_counts = counts
        done.append(dataclasses.asdict(record))
        if st is not None:
            st.log(session=t, acc_all=record.all, acc_base=record.base,
                   **({} if record.novel is None else {"acc_novel": record.novel}))
        if on_session is not None:
            on_session(record)
    return [SessionRecord(**r) for r in done], net
