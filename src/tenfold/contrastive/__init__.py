"""Contrastive learning as message passing (Wang et al., "A Message Passing Perspective on Learning
Dynamics of Contrastive Learning", ICLR 2023): the memory-lean InfoNCE with its alignment/uniformity
message-passing gradients, the population form, and the variants SimCLR-Attn, SimSiam-Multi and
(experimental) graph rewiring.

Losses (each docstring has a runnable example): :func:`mp_infonce` (InfoNCE over any positive graph:
pairs, multi-view, multi-positive SupCon L_out / L_in, extra ``negatives``), :func:`nt_xent` (the plain
reference), :func:`simclr_attn_loss` (SimCLR-Attn), :func:`simsiam_loss` and :func:`simsiam_multi_loss`
with its per-sample :class:`MultiStageBank` (SimSiam-Multi), :func:`rewired_infonce` (experimental).
Positive graphs: :func:`pair_positives`, :func:`view_positives`, :func:`positives_from_indexes`.
Negatives from earlier batches: :class:`MemoryBank`.
"""

from tenfold.contrastive.attention import attention_weights, simclr_attn_loss
from tenfold.contrastive.bank import MemoryBank
from tenfold.contrastive.losses import (
    affinity_matrix, dense_positive_matrix, infonce_parts, message_passing_gradients, mp_infonce, nt_xent,
    pair_positives, positive_graph, positives_from_indexes, view_positives,
)
from tenfold.contrastive.multistage import MultiStageBank, simsiam_loss, simsiam_multi_loss
from tenfold.contrastive.rewiring import knn_positives, rewired_infonce, rewired_positives

__all__ = [
    "attention_weights", "simclr_attn_loss", "affinity_matrix", "dense_positive_matrix", "infonce_parts",
    "message_passing_gradients", "mp_infonce", "nt_xent", "pair_positives", "positive_graph",
    "positives_from_indexes", "view_positives", "MultiStageBank", "simsiam_loss", "simsiam_multi_loss",
    "knn_positives", "rewired_infonce", "rewired_positives", "MemoryBank",
]
