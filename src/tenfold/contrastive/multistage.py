"""SimSiam and SimSiam-Multi: multi-stage aggregation with a per-sample memory bank (paper Sec. 5.2; spec 1.3 V2).

SimSiam: ``L = -1/2 cos(p1, sg z2) - 1/2 cos(p2, sg z1)``.
SimSiam-Multi (Jumping Knowledge with training stages as layers): a bank ``M`` holds each sample's
projector output from the previous epoch; once the epoch counter (from 0) exceeds ``mix_after`` the targets become
``sg((1 - beta) z2 + beta M[i])`` and ``sg((1 - beta) z1 + beta M[i])``. During an epoch ``sg(z2_i)`` is
written to a staging copy; :meth:`MultiStageBank.commit` copies it into ``M`` at the epoch end.

Control (``bank_rows="shuffled"`` of :class:`~tenfold.contrastive.methods.MethodConfig`, the ablation of the
SimSiam-Multi claim): each sample's target mixes in the memory row of another sample of the batch (a
random derangement of the rows looked up, their ``filled`` flags with them) at the same ``beta`` and on
the same schedule, so the bank, its commits and the mixing stay and only the tie of ``M[i]`` to sample
``i``'s own earlier stage goes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tenfold.errors import require

BANK_ROWS = ("own", "shuffled")


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``-1/2 cos(p1, sg z2) - 1/2 cos(p2, sg z1)`` averaged over the batch."""
    return -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=1).mean()
                   + F.cosine_similarity(p2, z1.detach(), dim=1).mean())


class MultiStageBank:
    """Per-sample memory ``M`` (num_samples x dim) with a staging copy that becomes ``M`` at each epoch end."""

    def __init__(self, num_samples: int, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        require(num_samples >= 1, "num_samples", num_samples, "a positive dataset size")
        require(dim >= 1, "dim", dim, "a positive feature dimension")
        self.bank = torch.zeros(num_samples, dim, device=device, dtype=dtype)
        self.filled = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self._staging = torch.zeros_like(self.bank)
        self._staged = torch.zeros_like(self.filled)

    @property
    def num_samples(self) -> int:
        return self.bank.shape[0]

    def check_dataset(self, dataset_size: int) -> None:
        require(dataset_size == self.num_samples, "bank size", self.num_samples,
                f"the dataset size {dataset_size} (one memory row per training sample)")

    def _check_index(self, index: torch.Tensor) -> None:
        require(index.dim() == 1, "index", tuple(index.shape), "a 1-d tensor of sample indices")
        bad = index[(index < 0) | (index >= self.num_samples)]
        require(bad.numel() == 0, "index", int(bad[0]) if bad.numel() else None,
                f"sample indices in 0..{self.num_samples - 1} (bank size must match the dataset)")

    @torch.no_grad()
    def stage(self, index: torch.Tensor, z: torch.Tensor) -> None:
        """Write ``sg(z)`` for the samples ``index`` into the staging copy (``M`` itself is unchanged)."""
        self._check_index(index)
        require(z.shape == (len(index), self.bank.shape[1]), "z", tuple(z.shape),
                f"shape ({len(index)}, {self.bank.shape[1]})")
        self._staging[index.to(self.bank.device)] = z.detach().to(self.bank.dtype)
        self._staged[index.to(self.bank.device)] = True

    @torch.no_grad()
    def commit(self) -> None:
        """Epoch end: ``M <- staging`` for every sample staged so far."""
        self.bank[self._staged] = self._staging[self._staged]
        self.filled |= self._staged

    def lookup(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M[index], filled[index])``."""
        self._check_index(index)
        return self.bank[index], self.filled[index]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank, "filled": self.filled, "staging": self._staging, "staged": self._staged}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        require(tuple(state["bank"].shape) == tuple(self.bank.shape), "bank", tuple(state["bank"].shape),
                f"shape {tuple(self.bank.shape)}")
        self.bank, self.filled = state["bank"].clone(), state["filled"].clone()
        self._staging, self._staged = state["staging"].clone(), state["staged"].clone()


def simsiam_multi_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                       memory: torch.Tensor, beta: float, filled: torch.Tensor | None = None) -> torch.Tensor:
    """``-1/2 cos(p1, sg((1-b) z2 + b M)) - 1/2 cos(p2, sg((1-b) z1 + b M))``.

    Rows whose memory is not yet ``filled`` use plain SimSiam targets (``b = 0`` for that row). ``M`` is
    each sample's ``sg(z2)`` of the previous epoch, kept by a :class:`MultiStageBank` (paper Sec. 5.2).

    >>> import torch
    >>> from tenfold.contrastive import MultiStageBank, simsiam_multi_loss
    >>> bank = MultiStageBank(num_samples=100, dim=16)          # one row per training sample
    >>> index = torch.tensor([3, 14, 15, 92])                   # the batch's sample ids
    >>> p1, p2, z1, z2 = (torch.randn(4, 16, requires_grad=True) for _ in range(4))
    >>> memory, filled = bank.lookup(index)
    >>> loss = simsiam_multi_loss(p1, p2, z1, z2, memory, beta=0.5, filled=filled)
    >>> loss.backward(); bank.stage(index, z2)                  # every step
    >>> bank.commit()                                           # at each epoch end
    >>> bank.lookup(index)[1].tolist()
    [True, True, True, True]
    """
    require(0.0 <= beta <= 1.0, "beta", beta, "a mixing weight in [0, 1]")
    require(memory.shape == z1.shape, "memory", tuple(memory.shape), f"the shape of z {tuple(z1.shape)}")
    b = torch.full((len(z1), 1), float(beta), dtype=z1.dtype, device=z1.device)
    if filled is not None:
        b = b * filled.to(z1.dtype).view(-1, 1)
    m = memory.detach().to(z1.dtype)
    t2 = (1 - b) * z2.detach() + b * m
    t1 = (1 - b) * z1.detach() + b * m
    return simsiam_loss(p1, p2, t1, t2)
