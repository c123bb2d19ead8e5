"""FSCIL metrics: per-session accuracy on all / base / novel classes, the session x class-group
accuracy matrix, Avg (mean over sessions), PD (first - last) and forgetting (best past - final),
the quantities CEC-style papers, PyCIL and Avalanche report."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SessionRecord:
    """Accuracies after one session; ``groups[g]`` is the accuracy on class group g (0 = base)."""

    session: int
    seen: int
    all: float
    base: float
    novel: float | None
    groups: list[float] = field(default_factory=list)
    finetune_counts: dict[int, int] | None = None  # class -> samples in this session's fine-tuning set


def session_record(pred: torch.Tensor, labels: torch.Tensor, group_of_class: torch.Tensor, session: int,
                   seen: int) -> SessionRecord:
    """Accuracies of predictions ``pred`` on test samples of the seen classes (labels in session order)."""
    correct = (pred == labels).float()
    groups = group_of_class[labels]
    per_group = [float(correct[groups == g].mean()) for g in range(session + 1)]
    novel = correct[groups > 0]
    return SessionRecord(session, seen, float(correct.mean()), per_group[0],
                         float(novel.mean()) if len(novel) else None, per_group)


def accuracy_matrix(records: list[SessionRecord]) -> list[list[float | None]]:
    """``M[t][g]``: accuracy on class group g after session t (None before the group arrives)."""
    n = len(records)
    return [[r.groups[g] if g < len(r.groups) else None for g in range(n)] for r in records]


def average_accuracy(records: list[SessionRecord]) -> float:
    """Avg: the mean over sessions of the accuracy on all seen classes."""
    return sum(r.all for r in records) / len(records)


def performance_drop(records: list[SessionRecord]) -> float:
    """PD: accuracy after the base session minus accuracy after the last one."""
    return records[0].all - records[-1].all


def forgetting(records: list[SessionRecord]) -> float:
    """Mean over the groups learnt before the last session of (best earlier accuracy - final accuracy)."""
    if len(records) < 2:
        return 0.0
    final = records[-1]
    drops = [max(r.groups[g] for r in records[g:-1]) - final.groups[g] for g in range(len(records) - 1)]
    return sum(drops) / len(drops)
