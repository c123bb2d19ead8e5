"""The ten papers (and the foundation), keyed as experiments name them in ``register(paper=...)``."""

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
    Paper("foundation", "Tenfold foundation: the path from config to report", "", "getting-started.md", "Foundation"),
    Paper("visual-tuning", "Visual Tuning (survey)", "2305.06061", "tuning.md", "Visual tuning"),
    Paper("lion", "LION: Implicit Vision Prompt Tuning", "2303.09992", "lion.md", "LION"),
    Paper("mpcl", "A Message Passing Perspective on Learning Dynamics of Contrastive Learning", "2303.04435",
          "contrastive.md", "MPCL"),
    Paper("papal", "PAPAL: particle primal-dual method for mixed Nash equilibria", "2303.00970", "papal.md", "PAPAL"),
    Paper("sltt", "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural Networks",
          "2302.14311", "snn.md", "SLTT"),
    Paper("nc-fscil", "Neural Collapse Inspired Feature-Classifier Alignment for Few-Shot Class-Incremental "
          "Learning", "2302.03004", "fscil.md", "NC-FSCIL"),
    Paper("spide", "SPIDE: A Purely Spike-based Method for Training Feedback Spiking Neural Networks",
          "2302.00232", "spide.md", "SPIDE"),
    Paper("panoptic-partformer", "PanopticPartFormer++: A Unified and Decoupled View for Panoptic Part "
          "Segmentation", "2301.00954", "panoptic.md", "PanopticPartFormer++"),
    Paper("pl-lower-bound", "On the Lower Bound of Minimizing Polyak-Lojasiewicz Functions", "2212.13551", "pl.md", "PL lower bound"),
    Paper("nio", "Towards Theoretically Inspired Neural Initialization Optimization", "2210.05956", "nio.md", "NIO"),
]}


def paper(key: str) -> Paper:
    """The paper ``key``, or a placeholder carrying the key as its title."""
    return PAPERS.get(key, Paper(key, key, "", ""))
