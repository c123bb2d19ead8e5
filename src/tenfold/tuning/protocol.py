"""One tuning run of the mini-VTAB protocol: prepare the model for a method, train, measure.

Most methods tune a copy of the foundation model with a new head. The remapping methods need more:
``weight-selection`` builds a smaller student ViT initialised from the foundation model; ``kd`` trains
that student against a teacher already tuned on the same task (``teacher``); ``net2net`` widens the
foundation model's MLPs (function-preserving) and then trains everything.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tenfold.errors import ConfigError
from tenfold.tuning.foundation import build_vit
from tenfold.tuning.registry import apply, count_parameters, get_method
from tenfold.tuning.tasks import Task
from tenfold.tuning.training import accuracy, train_tuned

EFFICIENT_FAMILIES = ("prompt", "adapter", "parameter", "implicit")


@dataclass
class StudentShape:
    embed_dim: int = 32
    depth: int = 2
    num_heads: int = 2


@dataclass
class RunOutcome:
    model: nn.Module
    accuracy: float
    trainable: int
    seconds: float
    backbone_unchanged: bool
    losses: tuple[float, ...] = ()   # mean training loss of each epoch


def make_student(foundation: nn.Module, num_classes: int, shape: StudentShape, seed: int) -> nn.Module:
    """A smaller ViT with the foundation model's input geometry."""
    proj = foundation.patch_embed.proj
    return build_vit(foundation.patch_embed.img_size[0], proj.kernel_size[0], proj.in_channels, num_classes,
                     shape.embed_dim, shape.depth, shape.num_heads, mlp_ratio=2.0, seed=seed)


def prepare(method: str, foundation: nn.Module, num_classes: int, options: dict[str, Any], *,
            student: StudentShape, teacher: nn.Module | None, seed: int) -> nn.Module:
    """The model ``method`` trains, built from a copy of ``foundation`` (never modified)."""
    if method in ("weight-selection", "kd"):
        model = make_student(foundation, num_classes, student, seed)
        model = apply(model, "weight-selection", teacher=foundation)
        if method == "kd":
            if teacher is None:
                raise ConfigError("method 'kd' needs a teacher tuned on the task: include kd_teacher in methods")
            model = apply(model, "kd", teacher=teacher, **options)
        return model
    model = copy.deepcopy(foundation)
    if method == "net2net":
        model = apply(model, "net2net", **options)
        model.reset_classifier(num_classes)
        return model
    model.reset_classifier(num_classes)
    return apply(model, method, **options)


def frozen_snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(p, p.detach().clone()) for p in model.parameters() if not p.requires_grad]


def tune_on_task(method: str, foundation: nn.Module, task: Task, *, options: dict[str, Any], epochs: int,
                 batch_size: int, lr: float, weight_decay: float, seed: int, student: StudentShape,
                 teacher: nn.Module | None = None, device: torch.device | str = "cpu", train=None,
                 freeze_new: bool = False) -> RunOutcome:
    """Train ``method`` on ``task`` (or on ``train``, e.g. the task's training split without its validation
    shots) from ``foundation``; accuracy on the task's test set.

    ``freeze_new`` is the ablation that removes the method's mechanism: prompt methods (VPT) lose their
    prompts (length 0: VPT without prompts, not VPT with prompts frozen at their random init); every other
    method keeps its tensors at their initial values (only the heads train). For the zero-initialised
    methods (AdaptFormer, Houlsby, Pfeiffer, Convpass, LoRA) and BitFit (its biases are the pre-trained
    ones), and for VPT without prompts, the ablated model IS the linear probe, computation for computation
    (the same head init, data order and lr grid give the same accuracy): an ablation equal to the baseline."""
    start = time.perf_counter()
    if freeze_new and get_method(method).family == "prompt":
        options = {**options, "length": 0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # new heads (reset_classifier) draw from the global generator
        model = prepare(method, foundation, task.num_classes, options, student=student, teacher=teacher, seed=seed)
    model = model.to(device)
    if freeze_new:
        from tenfold.tuning.common import classifiers

        heads = {id(p) for h in classifiers(model) for p in h.parameters()}
        for p in model.parameters():
            if id(p) not in heads:
                p.requires_grad_(False)
    snapshot = frozen_snapshot(model)
    losses = train_tuned(model, task.train_data if train is None else train, epochs=epochs, batch_size=batch_size,
                         lr=lr, weight_decay=weight_decay, generator=torch.Generator().manual_seed(seed))
    acc = accuracy(model, task.test_data, batch_size=max(batch_size, 256))
    unchanged = all(torch.equal(p, before) for p, before in snapshot)
    return RunOutcome(model, acc, count_parameters(model)["trainable"], time.perf_counter() - start, unchanged,
                      tuple(losses))


def is_efficient(method: str) -> bool:
    """Parameter-efficient: a prompt, adapter, parameter or implicit-layer method (frozen backbone)."""
    return get_method(method).family in EFFICIENT_FAMILIES


def trains_everything(method: str) -> bool:
    """Full fine-tuning and the remapping methods train every weight of their model."""
    return method == "full" or get_method(method).family == "remapping"
