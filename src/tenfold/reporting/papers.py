"""The ten papers (and the digits-mlp example), keyed as experiments name them in ``register(paper=...)``.

One name per paper: the key is the experiments' prefix, the folder ``tenfold/papers/<key with _>/`` and the
docs page ``docs/<key>.md`` (digits-mlp, the smallest example, is documented in getting-started.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    arxiv: str
    docs: str  # page under docs/
    short: str = ""  # name for narrow tables


PAPERS: dict[str, Paper] = {p.key: p for p in [
    Paper("digits-mlp", "Tenfold's smallest experiment: the path from config to report", "", "getting-started.md",
          "digits-mlp"),
    Paper("tuning", "Visual Tuning (survey)", "2305.06061", "tuning.md", "Visual tuning"),
    Paper("lion", "LION: Implicit Vision Prompt Tuning", "2303.09992", "lion.md", "LION"),
    Paper("mpcl", "A Message Passing Perspective on Learning Dynamics of Contrastive Learning", "2303.04435",
          "mpcl.md", "MPCL"),
    Paper("papal", "PAPAL: particle primal-dual method for mixed Nash equilibria", "2303.00970", "papal.md", "PAPAL"),
    Paper("sltt", "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural Networks",
          "2302.14311", "sltt.md", "SLTT"),
    Paper("fscil", "Neural Collapse Inspired Feature-Classifier Alignment for Few-Shot Class-Incremental "
          "Learning", "2302.03004", "fscil.md", "NC-FSCIL"),
    Paper("spide", "SPIDE: A Purely Spike-based Method for Training Feedback Spiking Neural Networks",
          "2302.00232", "spide.md", "SPIDE"),
    Paper("partformer", "PanopticPartFormer++: A Unified and Decoupled View for Panoptic Part "
          "Segmentation", "2301.00954", "partformer.md", "PanopticPartFormer++"),
    Paper("pl-lower-bound", "On the Lower Bound of Minimizing Polyak-Lojasiewicz Functions", "2212.13551", "pl-lower-bound.md", "PL lower bound"),
    Paper("nio", "Towards Theoretically Inspired Neural Initialization Optimization", "2210.05956", "nio.md", "NIO"),
]}


def paper(key: str) -> Paper:
    """The paper ``key``, or a placeholder carrying the key as its title."""
    return PAPERS.get(key, Paper(key, key, "", ""))
