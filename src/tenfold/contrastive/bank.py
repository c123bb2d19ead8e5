"""A FIFO memory bank of negatives (MoCo; lightly's ``MemoryBankModule`` / ``NTXentLoss(memory_bank_size=)``).

The bank holds the last ``size`` detached, normalised embeddings (both views of past batches). A step
reads the bank as it stands (:meth:`negatives`: only the filled slots, oldest first), computes InfoNCE
over the batch plus those extra negatives, then enqueues its own rows (:meth:`enqueue`), overwriting
the oldest. Departures from lightly: the bank starts empty and grows (lightly fills it with random
unit vectors at the start), and the in-batch negatives stay in the denominator as in SimCLR (lightly
with a bank contrasts each view against its positive and the bank only). Its state (queue, write
pointer, fill count) is a ``state_dict`` so that a :class:`~tenfold.engine.stage.Stage` checkpoint
holds it and ``--resume`` continues with the same negatives.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tenfold.errors import require


class MemoryBank:
    """A FIFO queue of ``size`` detached, normalised embeddings of width ``dim`` used as extra InfoNCE
    negatives (MoCo, He et al., CVPR 2020; lightly's ``MemoryBankModule``): each step reads
    :meth:`negatives`, passes them to the loss (``negatives=``), then :meth:`enqueue` s its own rows.
    The anchor's softmax then runs over ``N - 1 + M`` rows (``M`` = filled slots); the bank gets no gradient.

    >>> import torch
    >>> from tenfold.contrastive import MemoryBank, mp_infonce, pair_positives
    >>> bank = MemoryBank(size=12, dim=16)
    >>> for step in range(2):
    ...     z = torch.randn(8, 16, requires_grad=True)        # [view 1; view 2] of 4 images
    ...     loss = mp_infonce(z, pair_positives(8), tau=0.5, negatives=bank.negatives())
    ...     loss.backward()
    ...     bank.enqueue(z)                                   # after the loss: its own rows are no negatives
    >>> bank.negatives().shape                                # 16 rows written, the newest 12 kept
    torch.Size([12, 16])
    """

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                 ) -> None:
        require(size >= 1, "bank_size", size, "a positive number of slots (0 turns the bank off)")
        require(dim >= 1, "dim", dim, "a positive embedding size")
        self.size, self.dim = int(size), int(dim)
        self.queue = torch.zeros(self.size, self.dim, device=device, dtype=dtype)
        self.ptr = 0      # next slot to write
        self.filled = 0   # slots holding an embedding

    def negatives(self) -> torch.Tensor:
        """The filled slots, oldest first (M <= size rows, detached): a copy, since the loss keeps it for
        its backward and :meth:`enqueue` overwrites the queue before that."""
        if self.filled < self.size:
            return self.queue[: self.filled].clone()
        return torch.cat([self.queue[self.ptr:], self.queue[: self.ptr]])

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, normalize: bool = True) -> None:
        """Write the rows of ``z`` (detached, normalised) over the oldest slots, in order."""
        require(z.dim() == 2 and z.shape[1] == self.dim, "z", tuple(z.shape), f"rows of size {self.dim}")
        rows = z.detach()
        if normalize:
            rows = F.normalize(rows, dim=1)
        rows = rows[-self.size:]  # more rows than slots: only the newest survive
        k = len(rows)
        slots = (self.ptr + torch.arange(k, device=self.queue.device)) % self.size
        self.queue[slots] = rows.to(self.queue.dtype)
        self.ptr = (self.ptr + k) % self.size
        self.filled = min(self.size, self.filled + k)

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.detach().clone(), "ptr": self.ptr, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(tuple(state["queue"].shape) == (self.size, self.dim), "bank checkpoint", tuple(state["queue"].shape),
                f"a queue of shape ({self.size}, {self.dim}) (the run's bank_size and projector width)")
        self.queue.copy_(state["queue"])
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])
