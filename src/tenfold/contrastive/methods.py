"""The five training objectives as one call: SimCLR, SimCLR-Attn, SimSiam, SimSiam-Multi, rewiring.

:func:`build_model` puts the right heads on an encoder and :func:`method_loss` computes a method's loss
for two augmented views of a batch (with the sample indices, for the SimSiam-Multi bank).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tenfold.contrastive.attention import ATTENTION_WEIGHTS, simclr_attn_loss
from tenfold.contrastive.bank import MemoryBank
from tenfold.contrastive.config import METHODS, SIAMESE  # noqa: F401  (re-exported: their home is torch-free)
from tenfold.contrastive.losses import MULTI_POSITIVE, mp_infonce, pair_positives, random_derangement
from tenfold.contrastive.models import ContrastiveModel, simclr_projector, simsiam_predictor, simsiam_projector
from tenfold.contrastive.multistage import BANK_ROWS, MultiStageBank, simsiam_loss, simsiam_multi_loss
from tenfold.contrastive.rewiring import PARTNERS, rewired_infonce
from tenfold.errors import require
from tenfold.second_order import second_order


@dataclass(frozen=True)
class MethodConfig:
    """``tau`` (InfoNCE temperature), ``beta`` and ``mix_after`` (SimSiam-Multi mixing: plain SimSiam while the
    epoch counter from 0 is ``<= mix_after``, as the official ``if self.epoch_counter <= 50``), ``knn_k`` and
    ``rewire_beta`` (rewiring), ``multi_positive`` (how several positives of an anchor combine, see
    :func:`~tenfold.contrastive.losses.mp_infonce`; only rewiring has several).

    Controls, each the ablation of one variant: it removes only that variant's mechanism and keeps its
    parameters, optimiser, lr and data order, and is not the base method (random draws come from the
    ``generator`` given to :func:`method_loss`, one derangement or draw per step):

    - ``attention_weights`` (SimCLR-Attn): ``"similarity"`` (the method: ``a_i = softmax_i cos(h_i, h_p(i))``)
      or ``"permuted"`` (the same detached weights handed to the anchors in a random order, so the anchor
      weights keep their spread but no longer follow each anchor's view agreement).
    - ``bank_rows`` (SimSiam-Multi): ``"own"`` (the method: sample ``i``'s target mixes in ``M[i]``, its own
      projection of the previous epoch) or ``"shuffled"`` (``M[j]`` of another sample ``j`` of the batch, same
      ``beta`` and ``mix_after``).
    - ``rewire_partners`` (rewiring): ``"knn"`` (the method: the ``knn_k`` nearest rows in ``sg(z)``) or
      ``"random"`` (``knn_k`` rows drawn uniformly, same weight ``rewire_beta / knn_k``).

    Each is read only by its own method and ignored by the others."""

    name: str = "simclr"
    tau: float = 0.5
    beta: float = 0.5
    mix_after: int = 50
    knn_k: int = 1
    rewire_beta: float = 0.2
    multi_positive: str = "mean_log"
    attention_weights: str = "similarity"
    bank_rows: str = "own"
    rewire_partners: str = "knn"

    def __post_init__(self) -> None:
        require(self.name in METHODS, "method", self.name, f"one of {', '.join(METHODS)}")
        require(self.tau > 0, "tau", self.tau, "a positive temperature")
        require(0 <= self.beta <= 1 and 0 <= self.rewire_beta <= 1, "beta", (self.beta, self.rewire_beta),
                "mixing weights in [0, 1]")
        require(self.mix_after >= -1, "mix_after", self.mix_after, "an epoch >= -1 (-1: mix from the first epoch)")
        require(self.knn_k >= 1, "knn_k", self.knn_k, "at least one neighbour")
        require(self.multi_positive in MULTI_POSITIVE, "multi_positive", self.multi_positive,
                f"one of {', '.join(MULTI_POSITIVE)}")
        require(self.attention_weights in ATTENTION_WEIGHTS, "attention_weights", self.attention_weights,
                f"one of {', '.join(ATTENTION_WEIGHTS)}")
        require(self.bank_rows in BANK_ROWS, "bank_rows", self.bank_rows, f"one of {', '.join(BANK_ROWS)}")
        require(self.rewire_partners in PARTNERS, "rewire_partners", self.rewire_partners,
                f"one of {', '.join(PARTNERS)}")

    @property
    def control(self) -> bool:
        """Whether this method runs one of the random controls (it then draws from ``method_loss``'s generator)."""
        return ((self.name == "simclr-attn" and self.attention_weights == "permuted")
                or (self.name == "simsiam-multi" and self.bank_rows == "shuffled")
                or (self.name == "rewire" and self.rewire_partners == "random"))


def build_model(method: str, encoder: torch.nn.Module, proj_dim: int = 128, siam_dim: int = 2048
                ) -> ContrastiveModel:
    """SimCLR heads (projector to ``proj_dim``) or SimSiam heads (3-layer projector and predictor of ``siam_dim``)."""
    require(method in METHODS, "method", method, f"one of {', '.join(METHODS)}")
    c = int(getattr(encoder, "out_dim"))
    if method in SIAMESE:
        return ContrastiveModel(encoder, simsiam_projector(c, siam_dim), simsiam_predictor(siam_dim))
    return ContrastiveModel(encoder, simclr_projector(c, proj_dim))


@second_order("exact")
class _AllReduceSum(torch.autograd.Function):
    """``sum_p x_p`` over processes; the sum is its own adjoint, so the backward is this Function again and
    every derivative order is exact."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        out = x.contiguous().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _AllReduceSum.apply(grad)


@second_order("exact")
class _GatherRows(torch.autograd.Function):
    """All-gather of equal-sized row blocks whose backward is a reduce-scatter: every process's loss sends
    gradients to every process's rows, so each block receives their sum (all-reduce, then its own slice),
    written with :class:`_AllReduceSum` so that a graph through the backward is exact."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _AllReduceSum.apply(grad)[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``x`` in rank order, differentiably (``x`` itself with one process).

    The backward sums the gradients that every process's loss sends to each process's rows (the official
    code uses diffdist for the same). Each process then computes the loss of the global batch; its rows
    receive ``world_size`` times their gradient, and DDP's averaging over processes turns that into the
    single-process gradient of the global batch. Every process must pass the same number of rows.

    Not ``torch.distributed.nn.functional.all_gather``: deprecated, and its gloo backward (an all-to-all)
    aborted a process at exit in about one run of six here.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherRows.apply(x.contiguous())


def method_loss(cfg: MethodConfig, model: ContrastiveModel, x1: torch.Tensor, x2: torch.Tensor,
                index: torch.Tensor | None = None, epoch: int = 0, bank: MultiStageBank | None = None,
                negatives: MemoryBank | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, h1)`` for two views ``x1, x2`` of the same samples; ``epoch`` counts from 0.

    Under several processes (``torch.distributed`` initialised) the InfoNCE methods gather ``z`` from
    every process (:func:`gather_rows`), so negatives span the global batch as in the official code;
    SimSiam has no negatives and stays per process. SimSiam-Multi needs ``index`` and ``bank``: it stages ``sg(z2)`` every step and mixes the bank into
    the targets once ``epoch > cfg.mix_after``; the caller commits the bank at epoch ends.
    ``negatives`` (InfoNCE methods): a :class:`~tenfold.contrastive.bank.MemoryBank` read as extra
    negatives, then given this step's (global) normalised rows of both views.
    ``generator``: the random draws of a control (``cfg.control``; see :class:`MethodConfig`), the global RNG
    when None; under several processes pass one seeded alike on every process.
    """
    b = x1.shape[0]
    h, z, p = model(torch.cat([x1, x2]))
    if cfg.name in SIAMESE:
        p1, p2, z1, z2 = p[:b], p[b:], z[:b], z[b:]
        if cfg.name == "simsiam":
            return simsiam_loss(p1, p2, z1, z2), h[:b]
        require(bank is not None and index is not None, "bank", None, "a MultiStageBank and sample indices")
        memory, filled = bank.lookup(index)
        if cfg.bank_rows == "shuffled":  # control: another sample's earlier stage, its filled flag with it
            other = random_derangement(len(index), generator, memory.device)
            memory, filled = memory[other], filled[other]
        beta = cfg.beta if epoch > cfg.mix_after else 0.0  # official: vanilla while epoch_counter <= 50
        loss = simsiam_multi_loss(p1, p2, z1, z2, memory.to(z.device), beta, filled.to(z.device))
        bank.stage(index, z2)
        return loss, h[:b]
    # negatives from every process: the global [view 1; view 2] (each gathered in rank order)
    zg = torch.cat([gather_rows(z[:b]), gather_rows(z[b:])])
    positives = pair_positives(zg.shape[0], z.device)
    neg = negatives.negatives() if negatives is not None else None
    if cfg.name == "simclr":
        loss = mp_infonce(zg, positives, cfg.tau, multi_positive=cfg.multi_positive, negatives=neg)
    elif cfg.name == "simclr-attn":
        hg = torch.cat([gather_rows(h[:b].detach()), gather_rows(h[b:].detach())])  # weights are detached
        loss = simclr_attn_loss(zg, hg, positives, cfg.tau, negatives=neg, weights=cfg.attention_weights,
                                generator=generator)
    else:
        loss = rewired_infonce(zg, positives, cfg.tau, cfg.knn_k, cfg.rewire_beta,
                               multi_positive=cfg.multi_positive, negatives=neg, partners=cfg.rewire_partners,
                               generator=generator)
    if negatives is not None:
        negatives.enqueue(zg)  # every process holds the same queue: the rows are the global batch
    return loss, h[:b]
