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

The names are loaded on first use (PEP 562), so the torch-free :mod:`tenfold.contrastive.config` (the
pre-training settings, read by ``tenfold config``) can be imported without torch.
"""

import importlib

_EXPORTS = {
    "attention": ["attention_weights", "simclr_attn_loss"],
    "bank": ["MemoryBank"],
    "losses": ["affinity_matrix", "dense_positive_matrix", "infonce_parts", "message_passing_gradients",
               "mp_infonce", "nt_xent", "pair_positives", "positive_graph", "positives_from_indexes",
               "view_positives"],
    "multistage": ["MultiStageBank", "simsiam_loss", "simsiam_multi_loss"],
    "rewiring": ["knn_positives", "rewired_infonce", "rewired_positives"],
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"tenfold.contrastive.{_HOME[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'tenfold.contrastive' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
