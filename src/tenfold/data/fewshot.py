"""The few-shot class-incremental (FSCIL) protocol: class splits, K-shot sessions, seeded orders.

A :class:`SessionPlan` lists the base classes and, per incremental session, its novel classes
(disjoint). :func:`draw_shots` picks exactly ``shots`` training samples of each novel class with a
seeded generator. The standard benchmarks (CEC splits of CIFAR-100, miniImageNet, CUB-200) ship
``session_<t>.txt`` index files: one training image per line, either a path relative to the data root
or an integer index into the training set; :func:`read_session_file` reads them and checks every file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tenfold.errors import ConfigError, DataError, require


@dataclass(frozen=True)
class SessionPlan:
    """Base classes and the novel classes of each incremental session (class ids of the dataset)."""

    base: tuple[int, ...]
    sessions: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        require(len(self.base) >= 1, "base", list(self.base), "at least one base class")
        seen: dict[int, str] = {}
        for name, group in [("base", self.base)] + [(f"sessions[{i}]", s) for i, s in enumerate(self.sessions)]:
            require(len(group) >= 1, name, list(group), "at least one class per session")
            for c in group:
                if c in seen:
                    raise ConfigError(f"{name}={list(group)} is invalid: class {c} already appears in {seen[c]} "
                                      "(session classes must be disjoint)")
                seen[c] = name

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Class groups in session order: the base classes, then each session's classes."""
        return [self.base, *self.sessions]

    @property
    def order(self) -> list[int]:
        """All classes in the order they arrive."""
        return [c for g in self.groups for c in g]

    def seen(self, session: int) -> list[int]:
        """Classes seen after session ``session`` (0 = base)."""
        return [c for g in self.groups[:session + 1] for c in g]


def class_order(num_classes: int, seed: int | None) -> list[int]:
    """``0..num_classes-1`` shuffled by ``seed`` (PyCIL's seeded class order); ``None`` keeps the identity."""
    require(num_classes >= 1, "num_classes", num_classes, "a positive number of classes")
    if seed is None:
        return list(range(num_classes))
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(int(seed))).tolist()


def plan_sessions(order: list[int], base: int, ways: int, sessions: int) -> SessionPlan:
    """The first ``base`` classes of ``order`` as base classes, then ``sessions`` groups of ``ways``."""
    require(base >= 1, "base", base, "at least one base class")
    require(ways >= 1, "ways", ways, "at least one class per session")
    require(sessions >= 0, "sessions", sessions, "a non-negative number of sessions")
    need = base + ways * sessions
    require(need <= len(order), "sessions", sessions,
            f"base + ways * sessions = {need} <= the {len(order)} available classes")
    groups = tuple(tuple(order[base + i * ways: base + (i + 1) * ways]) for i in range(sessions))
    return SessionPlan(tuple(order[:base]), groups)


def draw_shots(labels: torch.Tensor, classes: tuple[int, ...] | list[int], shots: int,
               generator: torch.Generator) -> torch.Tensor:
    """Indices of exactly ``shots`` samples of each class in ``classes`` (seeded, without replacement)."""
    require(shots >= 1, "shots", shots, "at least one shot per class")
    labels = torch.as_tensor(labels)
    picked = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < shots:
            raise DataError(f"shots={shots} is invalid for class {c}: it has only {len(idx)} training samples")
        picked.append(idx[torch.randperm(len(idx), generator=generator)[:shots]])
    return torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long)


def class_indices(labels: torch.Tensor, classes: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Indices of all samples whose label is in ``classes``."""
    labels = torch.as_tensor(labels)
    return torch.nonzero(torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))).flatten()


def session_indices(labels: torch.Tensor, plan: SessionPlan, shots: int, seed: int) -> list[torch.Tensor]:
    """Training indices per session: all samples of the base classes, then ``shots`` per novel class."""
    g = torch.Generator().manual_seed(int(seed))
    return [class_indices(labels, plan.base)] + [draw_shots(labels, s, shots, g) for s in plan.sessions]


# --- session index files (CEC format) -----------------------------------------------------------------

def read_session_file(path: str | Path, root: str | Path | None = None) -> list[str] | list[int]:
    """Entries of one ``session_<t>.txt``: integer indices, or image paths checked to exist under ``root``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"session index file {path} does not exist")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"session index file {path} is empty: expected one image path or index per line")
    if all(ln.isdigit() for ln in lines):
        return [int(ln) for ln in lines]
    base = Path(root) if root is not None else path.parent
    missing = [ln for ln in lines if not (base / ln).is_file()]
    if missing:
        raise DataError(f"session index file {path} names {len(missing)} missing image(s) under {base}, "
                        f"e.g. {missing[0]}")
    return lines


def write_session_files(folder: str | Path, sessions: list[list[str]] | list[list[int]]) -> list[Path]:
    """Write ``session_1.txt`` ... (session 1 = base) in the CEC format; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, entries in enumerate(sessions, start=1):
        p = folder / f"session_{t}.txt"
        p.write_text("".join(f"{e}\n" for e in entries))
        paths.append(p)
    return paths


def read_session_files(folder: str | Path, sessions: int, root: str | Path | None = None) -> list[list]:
    """Read ``session_1.txt`` .. ``session_<sessions>.txt`` from ``folder``."""
    return [read_session_file(Path(folder) / f"session_{t}.txt", root) for t in range(1, sessions + 1)]
