"""``digits-mlp``: the end-to-end check of the whole path, an MLP on scikit-learn's digits, and the smallest
example of a paper folder (docs/getting-started.md, "Write an experiment"): ``configs.py`` (the config),
``claims.py`` (the statements), ``figures.py`` (figure and table), this module (the protocol only).

Protocol: per seed, a stratified split; the MLP and the linear model each trained with AdamW at every lr of the
grid, each picking its own lr on the validation loss; the test losses compared. The claim's ablation
(``activation=identity``) keeps the MLP's parameters, optimizer, lr grid and data order and removes only the
nonlinearity.
"""

from __future__ import annotations

import torch
from torch import nn

from tenfold.data import digits
from tenfold.engine import RunContext, evaluate, fit
from tenfold.engine.checkpoint import save_weights
from tenfold.experiments.registry import register
from tenfold.papers.digits_mlp.claims import CLAIMS
from tenfold.papers.digits_mlp.configs import DigitsMLPConfig
from tenfold.papers.digits_mlp.figures import comparison_table, training_figure
from tenfold.reporting import Result


def make_mlp(hidden: int, inputs: int = 64, classes: int = 10, activation: str = "relu") -> nn.Module:
    """``hidden`` units between input and classes (ReLU, or identity: a linear map with the MLP's parameters);
    ``hidden=0`` is the linear model."""
    if hidden == 0:
        return nn.Sequential(nn.Flatten(), nn.Linear(inputs, classes))
    act = nn.ReLU() if activation == "relu" else nn.Identity()
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), act, nn.Linear(hidden, classes))


def _train(cfg: DigitsMLPConfig, ctx: RunContext, role: str, hidden: int, lr: float, seed: int, train, val):
    """One model trained with AdamW; returns it and its per-epoch history (a resumable stage)."""
    torch.manual_seed(seed)
    model = make_mlp(hidden, activation=cfg.activation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
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
                optimizer=optimizer, stage=f"seed{seed}-{role}-lr{lr:g}",
                on_epoch_end=lambda s: {"val_acc": evaluate(model, val, ctx)} if s.epoch == cfg.epochs else None)
    return model, state


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> float:
    return float(nn.functional.cross_entropy(out, y))


def _tuned(cfg, ctx, role, hidden, seed, train, val, test) -> dict:
    """The learning rate with the lowest final validation loss; that model's test accuracy and loss."""
    best = None
    for lr in cfg.lrs:
        model, state = _train(cfg, ctx, role, hidden, lr, seed, train, val)
        val_loss = evaluate(model, val, ctx, metric=_cross_entropy)
        if best is None or val_loss < best["val_loss"]:
            best = {"lr": lr, "val_loss": val_loss, "test_acc": evaluate(model, test, ctx),
                    "test_loss": evaluate(model, test, ctx, metric=_cross_entropy), "model": model,
                    "history": state.history}
    return best


@register("digits-mlp", processes=True, paper="digits-mlp", config=DigitsMLPConfig, claims=CLAIMS, order=0,
          description="MLP on scikit-learn digits against a linear model tuned alike: the whole path from config "
                      "to report")
def run(cfg: DigitsMLPConfig, ctx: RunContext) -> Result:
    rows, ratios = [], []
    for k in range(cfg.seeds):
        seed = ctx.seed + k
        train, val, test = (digits(s, seed=cfg.split_seed + k) for s in ("train", "val", "test"))
        mlp = _tuned(cfg, ctx, "mlp", cfg.hidden, seed, train, val, test)
        linear = _tuned(cfg, ctx, "linear", 0, seed, train, val, test)
        ratio = mlp["test_loss"] / linear["test_loss"]
        ratios.append(ratio)
        rows.append({"seed": seed, "MLP lr": mlp["lr"], "MLP test acc": mlp["test_acc"],
                     "MLP test loss": mlp["test_loss"], "linear lr": linear["lr"],
                     "linear test acc": linear["test_acc"], "linear test loss": linear["test_loss"],
                     "loss ratio": ratio, "error ratio": (1 - mlp["test_acc"]) / max(1 - linear["test_acc"], 1e-12)})
        if k == 0:
            first = mlp

    fig = training_figure(first["history"], ratios, [r["seed"] for r in rows], cfg.thresholds.max_loss_ratio,
                          first["lr"])
    figure = ctx.save_figure(fig, "training")
    if ctx.is_main:
        save_weights(first["model"], ctx.path("model.safetensors"))
    test_accs = [r["MLP test acc"] for r in rows]
    return Result(
        metrics={"test_acc": sum(test_accs) / len(test_accs),
                 "linear_test_acc": sum(r["linear test acc"] for r in rows) / len(rows),
                 "final_loss": first["history"][-1]["loss"],
                 "parameters": sum(p.numel() for p in first["model"].parameters())},
        samples={"loss_ratio": ratios, "error_ratio": [r["error ratio"] for r in rows], "test_acc": test_accs,
                 "mlp_test_loss": [r["MLP test loss"] for r in rows],
                 "linear_test_loss": [r["linear test loss"] for r in rows]},
        tables=comparison_table(rows),
        figures=[figure], key_metric="test_acc",
        notes=f"{cfg.hidden}-unit MLP ({cfg.activation}) and a linear model, {cfg.epochs} epochs of AdamW each, "
              f"the learning rate of each picked from {cfg.lrs} on the validation loss, {cfg.seeds} seeds on as "
              f"many splits, {len(train)} training digits each.",
    )
