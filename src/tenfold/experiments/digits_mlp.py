"""``digits-mlp``: the foundation's end-to-end check, an MLP on scikit-learn's digits.

Claim: test accuracy >= 0.95 (a two-layer MLP reaches about 0.97 on this split).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from tenfold.config import Config
from tenfold.data import digits
from tenfold.engine import RunContext, evaluate, fit
from tenfold.engine.checkpoint import save_weights
from tenfold.experiments.registry import register
from tenfold.reporting import Claim, Result
from tenfold.reporting.figures import new_figure


class DigitsMLPConfig(Config):
    hidden: int = Field(128, ge=1, description="hidden units")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    split_seed: int = Field(0, ge=0, description="seed of the stratified train/val/test split")


def make_mlp(hidden: int, inputs: int = 64, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))


@register("digits-mlp", paper="foundation", config=DigitsMLPConfig, order=0,
          description="MLP on scikit-learn digits: the whole path from config to report")
def run(cfg: DigitsMLPConfig, ctx: RunContext) -> Result:
    train, val, test = (digits(s, seed=cfg.split_seed) for s in ("train", "val", "test"))
    torch.manual_seed(ctx.seed)
    model = make_mlp(cfg.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = ctx.setup(model, optimizer)
    loss_fn = nn.CrossEntropyLoss()

    def step(batch, state):
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        ctx.backward(loss)
        optimizer.step()
        return {"loss": loss.detach()}

    state = fit(model=model, step=step, dataset=train, epochs=cfg.epochs, batch_size=cfg.batch_size, ctx=ctx,
                optimizer=optimizer, on_epoch_end=lambda s: {"val_acc": evaluate(model, val, ctx)})
    test_acc = evaluate(model, test, ctx)

    fig, ax = new_figure(2)
    epochs = range(1, len(state.history) + 1)
    ax[0].plot(epochs, [h["loss"] for h in state.history])
    ax[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax[1].plot(epochs, [h["val_acc"] for h in state.history])
    ax[1].axhline(0.95, ls="--", c="gray", label="claim: 0.95")
    ax[1].set(xlabel="epoch", ylabel="validation accuracy", title="accuracy")
    ax[1].legend()
    figure = ctx.save_figure(fig, "training")
    params = sum(p.numel() for p in model.parameters())
    if ctx.is_main:
        save_weights(model, ctx.path("model.safetensors"))
    return Result(
        metrics={"test_acc": test_acc, "val_acc": state.history[-1]["val_acc"], "final_loss": state.history[-1]["loss"],
                 "parameters": params},
        claims=[Claim.at_least("test accuracy", test_acc, 0.95)],
        figures=[figure], key_metric="test_acc",
        notes=f"{cfg.hidden}-unit MLP, {cfg.epochs} epochs of AdamW on {len(train)} training digits.",
    )
