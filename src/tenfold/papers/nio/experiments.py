"""NIO experiments: accuracy after training from NIO's initialization against the default one and against
a norm-matched uniform rescale, and GradCosine at the same gradient norm.

- ``nio-digits``: the spec's MLP 64-64-64-64-10 without BatchNorm on digits, D = 4, r = 0.2.
- ``nio-shapes``: a small CNN with BatchNorm on 10 procedural shape classes, D = 2, r = 0.

Per seed (``seeds``, each its own initialization and NIO batches) four initializations are trained with
the same data order and optimizer, each at the learning rate of ``train_lrs`` that is best on the
validation split: the default one (Kaiming, the paper's baseline), NIO's, the default one with every tensor NIO
rescales multiplied by ONE factor chosen so that its held-out gradient norm equals NIO's ("uniform":
NIO's gradient norm without its GradCosine), and GradInit's (:mod:`tenfold.init.gradinit`, the same
tensors rescaled to minimise the loss after one SGD step, the paper's learned-init baseline). Paper
claims: NIO's held-out GC above the uniform rescale's at the same gradient norm (the claim that isolates
GradCosine), and NIO's test accuracy above Kaiming's and GradInit's by more than five test images; their
ablation ``gc_weight=0`` removes GradCosine from NIO's objective (only the norm term is left; GradInit
does not depend on it). NIO's accuracy against the uniform rescale is reported (``acc_nio_minus_uniform``). Checks (by construction): the gradient norm from the first
constraint step on stays near gamma; every scale stays at or above its lower bound.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.data import digits, shapes
from tenfold.data.base import ArrayDataset, stratified_split
from tenfold.engine import RunContext
from tenfold.engine.seed import derive_seed
from tenfold.experiments.registry import register
from tenfold.papers.nio.configs import NIOConfig, ShapesNIOConfig, CifarNIOConfig
from tenfold.init import gradcosine, gradinit, nio, uniform_rescale
from tenfold.init.nio import NIOHistory
from tenfold.init.models import kaiming_init_, shapes_cnn
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import new_figure

PAPER = "nio"  # key in tenfold.reporting.papers (arXiv:2210.05956)


CLAIMS = [
    PaperClaim("held-out GradCosine at matched gradient norm: NIO - the init rescaled by one factor to NIO's norm",
               metric="gc_nio_minus_uniform", at_least="thresholds.min_gc_gain", ablation=["gc_weight=0"],
               paper="Sec. 4, Alg. 1: maximise GC subject to ||g|| <= gamma (official R50 log, gamma = 10, D = 4, "
                     "r = 0.2: GC 0.237 -> 0.234 while the norm rose 4.7 -> 8.0)"),
    PaperClaim("test accuracy after training (tuned lr each): NIO init - Kaiming init", metric="acc_nio_minus_default",
               at_least="thresholds.min_acc_gain", ablation=["gc_weight=0"],
               paper="CIFAR-10/100 tables (ResNet-110, DenseNet-100, WRN, VGG): gains of a few tenths of a point over "
                     "Kaiming [unverified]; ImageNet R50 76.65% top-1 after 100 epochs"),
    PaperClaim("test accuracy after training (tuned lr each): NIO init - GradInit init", metric="acc_nio_minus_gradinit",
               at_least="thresholds.min_acc_gain", ablation=["gc_weight=0"],
               paper="CIFAR-10/100 tables (with and without BN): NIO above GradInit (Zhu et al., NeurIPS 2021) by a "
                     "few tenths of a point [unverified]"),
    Check("mean training-batch gradient norm from the first constraint step on / gamma",
          metric="norm_over_gamma", at_most="thresholds.max_norm_over_gamma"),
    Check("min over scales and iterations of alpha - alpha_min", metric="min_alpha_minus_bound",
          at_least="thresholds.min_alpha_gap"),
]


def digits_mlp(width: int) -> nn.Module:
    """The spec's MLP: 64-w-w-w-10 with ReLU, no BatchNorm."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def _stream(data: ArrayDataset, batch: int, generator: torch.Generator):
    while True:
        idx = torch.randperm(len(data), generator=generator)[:batch]
        yield data.x[idx], data.y[idx]


def _accuracy(model: nn.Module, data: ArrayDataset, ctx: RunContext) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(data.x[i:i + 512].to(ctx.device)).argmax(1).cpu() for i in range(0, len(data), 512)])
    return float((pred == data.y).float().mean())


def _train(model: nn.Module, train: ArrayDataset, evals: tuple[ArrayDataset, ...], cfg: NIOConfig, seed: int,
           tag: str, ctx: RunContext, lr: float) -> tuple[float, ...]:
    """SGD (momentum 0.9) or AdamW at ``lr`` for ``train_epochs`` with a fixed seed, optional linear warm-up
    then cosine decay per step; returns the accuracy on each of ``evals`` (a diverged run scores 0)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    per_epoch = -(-len(train) // cfg.batch_size)
    total, warm = cfg.train_epochs * per_epoch, cfg.warmup_epochs * per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor) if cfg.train_epochs > 1 or warm else None
    g = torch.Generator().manual_seed(seed)
    # a resumable stage: a checkpoint after every epoch (weights, optimizer, schedule and the data-order
    # generator), so ``--resume`` continues an interrupted training run with the same final weights
    stage = ctx.stage(f"train-{tag}", model=model, optimizer=opt, scheduler=sched, state={"order": g})
    model.train()
    for _ in stage.epochs(cfg.train_epochs):
        order = torch.randperm(len(train), generator=g)
        running = 0.0
        for s in range(0, len(train), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            x, y = train.x[idx].to(ctx.device), train.y[idx].to(ctx.device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            running += float(loss.detach()) * len(idx)
        stage.log(loss=running / len(train))
    return tuple(_accuracy(model, data, ctx) for data in evals)


def _tuned(model: nn.Module, train: ArrayDataset, val: ArrayDataset, test: ArrayDataset, cfg: NIOConfig, seed: int,
           tag: str, ctx: RunContext) -> tuple[float, float, int]:
    """Train a copy of ``model`` at every lr of ``train_lrs`` (same data order); the best validation accuracy
    picks the lr. Returns (test accuracy, chosen lr, index of the chosen lr in the grid)."""
    scores = [_train(copy.deepcopy(model), train, (val, test), cfg, seed, f"{tag}-lr{lr:g}", ctx, lr)
              for lr in cfg.train_lrs]
    best = max(range(len(scores)), key=lambda i: (scores[i][0], -i))  # ties: the smaller lr
    return scores[best][1], cfg.train_lrs[best], best


def _init_phase(cfg: NIOConfig, ctx: RunContext, model: nn.Module, train: ArrayDataset,
                heldout: tuple[torch.Tensor, torch.Tensor], k: int, tuned: nn.Module, uniform: nn.Module,
                learned: nn.Module) -> tuple[dict, NIOHistory]:
    """Seed ``k``'s initializations, written in place into ``tuned`` (NIO), ``uniform`` (the norm-matched
    uniform rescale) and ``learned`` (GradInit), each starting from ``model``'s weights; returns the
    held-out statistics row and NIO's history."""
    before = gradcosine(model, heldout, D=cfg.D, overlap=cfg.overlap)
    tuned.load_state_dict(model.state_dict())
    stream = ((x.to(ctx.device), y.to(ctx.device)) for x, y in _stream(train, cfg.nio_batch, ctx.generator("nio", k)))
    with ctx.bar(f"NIO iterations (seed {k})", cfg.iterations) as bar:
        def on_iteration(it, gc, norm, constraint):
            ctx.log_metrics(stage=f"nio-seed{k}", step=it, gc=gc, norm=norm, constraint=int(constraint))
            bar.advance()

        _, history = nio(tuned, stream, gamma=cfg.gamma, iterations=cfg.iterations, lr=cfg.lr, D=cfg.D,
                         overlap=cfg.overlap, norm_weight=cfg.norm_weight, on_iteration=on_iteration,
                         gc_weight=cfg.gc_weight, objective=cfg.objective)
    after = gradcosine(tuned, heldout, D=cfg.D, overlap=cfg.overlap)
    uniform.load_state_dict(model.state_dict())
    _, c = uniform_rescale(uniform, float(after.norm), heldout, D=cfg.D, overlap=cfg.overlap, steps=cfg.uniform_steps)
    flat = gradcosine(uniform, heldout, D=cfg.D, overlap=cfg.overlap)
    first_constraint = next((i for i, c_ in enumerate(history.constraint) if c_), None)
    after_phase = history.norm[first_constraint:] if first_constraint is not None else history.norm
    row = {"seed": k, "gc_default": float(before.gc), "gc_nio": float(after.gc), "gc_uniform": float(flat.gc),
           "norm_default": float(before.norm), "norm_nio": float(after.norm), "norm_uniform": float(flat.norm),
           "uniform_factor": c, "norm_over_gamma": sum(after_phase) / len(after_phase) / cfg.gamma,
           "constraint_steps": sum(history.constraint),
           "min_alpha_minus_bound": min(a - (0.01 if "weight" in name else 0.0)
                                        for r in history.alphas for name, a in r.items())}
    learned.load_state_dict(model.state_dict())
    half = max(1, cfg.batch_size // 2)  # the official GradInit loader: half the training batch
    g_stream = ((x.to(ctx.device), y.to(ctx.device)) for x, y in _stream(train, half, ctx.generator("gradinit", k)))
    with ctx.bar(f"GradInit iterations (seed {k})", cfg.gradinit_iterations) as bar:
        def on_gradinit(it, norm, constraint):
            ctx.log_metrics(stage=f"gradinit-seed{k}", step=it, norm=norm, constraint=int(constraint))
            bar.advance()

        _, g_hist = gradinit(learned, g_stream, gamma=cfg.gradinit_gamma, iterations=cfg.gradinit_iterations,
                             lr=cfg.gradinit_lr, eta=cfg.gradinit_eta, on_iteration=on_gradinit)
    g_after = gradcosine(learned, heldout, D=cfg.D, overlap=cfg.overlap)
    row |= {"gc_gradinit": float(g_after.gc), "norm_gradinit": float(g_after.norm),
            "gradinit_constraint_steps": sum(g_hist.constraint)}
    return row, history


def _nio_seed(cfg: NIOConfig, ctx: RunContext, model: nn.Module, train: ArrayDataset, held: ArrayDataset,
              test: ArrayDataset, k: int) -> dict:
    """One seed: NIO, the norm-matched uniform rescale, GradInit, statistics on the held-out batch, then
    the trainings from each init.

    The init phase is a one-epoch resumable stage (``init-seed<k>``): its checkpoint holds the three
    initialized networks, the statistics row and NIO's history, so ``--resume`` restores them instead of
    recomputing them (a GradInit of 390 ResNet iterations is not cheap, and on a GPU not bit-reproducible).
    ``model`` (the default init) needs no checkpoint: it is rebuilt from the seed and never modified."""
    model = model.to(ctx.device)
    pick = torch.randperm(len(held), generator=ctx.generator("heldout", k))[:cfg.heldout]  # mixed classes
    heldout = (held.x[pick].to(ctx.device), held.y[pick].to(ctx.device))
    tuned, uniform, learned = (copy.deepcopy(model) for _ in range(3))  # filled by the phase or its checkpoint
    row: dict = {}
    saved_history: dict = {}
    stage = ctx.stage(f"init-seed{k}", model=[tuned, uniform, learned],
                      state={"row": row, "history": saved_history})
    for _ in stage.epochs(1, progress=False):
        computed, history = _init_phase(cfg, ctx, model, train, heldout, k, tuned, uniform, learned)
        row.update(computed)
        saved_history.update(dataclasses.asdict(history))
    history = NIOHistory(**saved_history)
    seed = derive_seed(ctx.seed, "train", k)
    edge = 0
    for tag, net in (("default", model), ("nio", tuned), ("uniform", uniform), ("gradinit", learned)):
        acc, lr, at = _tuned(net, train, held, test, cfg, seed, f"{tag}-seed{k}", ctx)  # 0 epochs: untrained
        row[f"acc_{tag}"], row[f"lr_{tag}"] = acc, lr
        edge += len(cfg.train_lrs) > 1 and at in (0, len(cfg.train_lrs) - 1)
    row["lr_on_grid_edge"] = edge
    return {"row": row, "history": history}


def _run(cfg: NIOConfig, ctx: RunContext, make_model, train: ArrayDataset, held: ArrayDataset,
         test: ArrayDataset, arch: str) -> Result:
    seeds = []
    for k in range(cfg.seeds):
        torch.manual_seed(derive_seed(ctx.seed, "init", k))
        model = make_model()
        if cfg.init == "kaiming":
            kaiming_init_(model)
        seeds.append(_nio_seed(cfg, ctx, model, train, held, test, k))
    rows = [s["row"] for s in seeds]
    samples = {"gc_nio_minus_uniform": [r["gc_nio"] - r["gc_uniform"] for r in rows],
               "gc_nio_minus_default": [r["gc_nio"] - r["gc_default"] for r in rows]}
    samples |= {"acc_nio_minus_default": [r["acc_nio"] - r["acc_default"] for r in rows],
                "acc_nio_minus_uniform": [r["acc_nio"] - r["acc_uniform"] for r in rows],
                "acc_nio_minus_gradinit": [r["acc_nio"] - r["acc_gradinit"] for r in rows]}
    metrics = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0] if key != "seed"}
    metrics["norm_over_gamma"] = max(r["norm_over_gamma"] for r in rows)
    metrics["min_alpha_minus_bound"] = min(r["min_alpha_minus_bound"] for r in rows)
    metrics["lr_on_grid_edge"] = sum(r["lr_on_grid_edge"] for r in rows)  # (seed, init) pairs; 0 = bracketed

    history = seeds[0]["history"]
    fig, ax = new_figure(2)
    its = range(1, len(history.gc) + 1)
    ax[0].plot(its, history.gc)
    ax[0].set(xlabel="NIO iteration", ylabel="GradCosine (training batch)", title="GC (seed 0)")
    ax[1].plot(its, history.norm, label="mean ||G_i||")
    ax[1].axhline(cfg.gamma, ls="--", c="gray", label=f"gamma = {cfg.gamma:g}")
    ax[1].set(xlabel="NIO iteration", ylabel="gradient norm", title="norm (seed 0)", yscale="log")
    ax[1].legend()
    figure = ctx.save_figure(fig, "nio")
    return Result(metrics=metrics, samples=samples, figures=[figure],
                  tables={"per seed: held-out statistics and test accuracy after training": markdown_table(rows)},
                  key_metric="acc_nio_minus_default",
                  notes=(f"{arch}; {cfg.seeds} seeds. NIO: gamma={cfg.gamma:g}, {cfg.iterations} iterations, lr "
                         f"{cfg.lr:g}, D={cfg.D}, r={cfg.overlap:g}, lambda={cfg.norm_weight:g}, GC weight "
                         f"{cfg.gc_weight:g}. Uniform: the default init with every rescaled tensor times one factor "
                         f"(mean {metrics['uniform_factor']:.3g}) matching NIO's held-out gradient norm. GradInit: SGD lookahead "
                         f"eta={cfg.gradinit_eta:g}, gamma={cfg.gradinit_gamma:g}, {cfg.gradinit_iterations} iterations, "
                         f"lr {cfg.gradinit_lr:g}, half-batches of {max(1, cfg.batch_size // 2)}. Training: "
                         f"{cfg.train_epochs} epochs of {cfg.optimizer}, lr tuned on the validation split over "
                         f"{cfg.train_lrs} per seed and init ({metrics['lr_on_grid_edge']} picks on the grid edge), "
                         f"the same order per seed. Init: {cfg.init}; objective {cfg.objective}."))


@register("nio-digits", paper=PAPER, config=NIOConfig, claims=CLAIMS, order=100, threads=1,
          description="NIO on an MLP 64-64-64-64-10 (no BN) on digits: accuracy and GC against the default init, "
                      "a norm-matched uniform rescale and GradInit, 3 seeds")
def run_digits(cfg: NIOConfig, ctx: RunContext) -> Result:
    train, held, test = (digits(s, seed=0, flatten=True) for s in ("train", "val", "test"))
    return _run(cfg, ctx, lambda: digits_mlp(cfg.width), train, held, test, f"MLP 64-{cfg.width}-{cfg.width}-{cfg.width}-10")


@register("nio-shapes", paper=PAPER, config=ShapesNIOConfig, claims=CLAIMS, order=101, threads=1,
          description="NIO on a BatchNorm CNN on 10 procedural shape classes: accuracy and GC against the default "
                      "init, a norm-matched uniform rescale and GradInit, 3 seeds")
def run_shapes(cfg: ShapesNIOConfig, ctx: RunContext) -> Result:
    data = shapes(num_classes=cfg.num_classes, size=cfg.size, per_class=cfg.per_class, seed=0)
    parts = stratified_split(data.y, (0.6, 0.2, 0.2), seed=0)
    train, held, test = (data.subset(p) for p in parts)
    return _run(cfg, ctx, lambda: shapes_cnn(cfg.width, cfg.num_classes, cfg.batchnorm), train, held, test,
                f"2-block CNN {'with' if cfg.batchnorm else 'without'} BatchNorm (width {cfg.width})")


def cifar_model(name: str, classes: int) -> nn.Module:
    """A timm ResNet-18, or a Swin-T for 32 px inputs (patch 2, window 4), randomly initialized."""
    import timm

    if name == "swin_tiny":
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=classes, img_size=32,
                                 patch_size=2, window_size=4)
    return timm.create_model("resnet18", pretrained=False, num_classes=classes)


@register("nio-cifar", paper=PAPER, config=CifarNIOConfig, claims=CLAIMS, order=102, quick=False,
          description="NIO on CIFAR from a local root: timm ResNet-18 or Swin-T (without warm-up), default vs NIO vs GradInit init")
def run_cifar(cfg: CifarNIOConfig, ctx: RunContext) -> Result:
    from tenfold.data.real import cifar

    train_all = cifar(cfg.root, train=True, num_classes=cfg.num_classes)
    test = cifar(cfg.root, train=False, num_classes=cfg.num_classes)
    train_idx, held_idx = stratified_split(train_all.y, (0.98, 0.02), seed=0)
    return _run(cfg, ctx, lambda: cifar_model(cfg.model, cfg.num_classes), train_all.subset(train_idx), train_all.subset(held_idx), test,
                f"timm {cfg.model} on CIFAR-{cfg.num_classes}")
