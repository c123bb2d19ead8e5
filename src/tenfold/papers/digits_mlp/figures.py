"""digits-mlp's figure and table, drawn from the results and the declared claim (its threshold included)."""

from __future__ import annotations

from tenfold.reporting.figures import new_figure
from tenfold.reporting.results import markdown_table


def training_figure(history: list[dict], ratios: list[float], seeds: list[int], bar: float, lr: float):
    """Training loss of the first seed's MLP, and the per-seed loss ratios against the claim's bar."""
    fig, ax = new_figure(2)
    ax[0].plot(range(1, len(history) + 1), [h["loss"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title=f"loss (seed {seeds[0]}, lr {lr:g})")
    ax[1].bar(range(len(ratios)), ratios, tick_label=[str(s) for s in seeds])
    ax[1].axhline(bar, ls="--", c="gray", label=f"claim: <= {bar:g}")
    ax[1].set(xlabel="seed", ylabel="test cross-entropy, MLP / linear", title="loss ratio")
    ax[1].legend()
    return fig


def comparison_table(rows: list[dict]) -> dict[str, str]:
    return {"MLP against the linear model, each tuned on validation": markdown_table(rows)}
