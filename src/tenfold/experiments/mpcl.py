"""MPCL experiments (Wang et al., "A Message Passing Perspective on Learning Dynamics of Contrastive
Learning", ICLR 2023).

- ``mpcl-graph``: free features on a 3-block stochastic block model trained with the population
  losses. Alignment alone is message passing on the augmentation graph and over-smooths (all features
  collapse); adding uniformity prevents it (spec 1.6 check 3).
- ``mpcl-shapes``: SimCLR, SimCLR-Attn, SimSiam and SimSiam-Multi on a small image set (digits by
  default, procedural shapes as an option), offline linear probe over seeds against a random encoder.
- ``mpcl-cifar``: the paper's recipe with ResNet-18 on CIFAR-10/100 from a local root (not quick).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from tenfold.config import Config
from tenfold.contrastive import population as pop
from tenfold.contrastive.augment import AugmentConfig, augment
from tenfold.contrastive.methods import METHODS, SIAMESE, MethodConfig, build_model, method_loss
from tenfold.contrastive.models import mlp_encoder, resnet18_cifar, small_cnn
from tenfold.contrastive.multistage import MultiStageBank
from tenfold.contrastive.probe import OnlineProbe, extract_features, linear_probe_accuracy
from tenfold.data import ArrayDataset, digits, shapes, stratified_split
from tenfold.engine import RunContext, fit
from tenfold.errors import ConfigError, DataError
from tenfold.experiments.registry import register
from tenfold.reporting import Claim, Result, markdown_table
from tenfold.reporting.figures import new_figure

PAPER = "mpcl"  # key in tenfold.reporting.papers (arXiv:2303.04435)
# Linear-probe top-1 of the official README (spec 1.5), ResNet-18.
ANCHORS = {"simclr": {"c10": 84.5, "c100": 56.1}, "simclr-attn": {"c10": 85.4, "c100": 56.9},
           "simsiam": {"c10": 83.8, "c100": 56.3}, "simsiam-multi": {"c10": 84.8, "c100": 58.9}}


# ==================================================================================================
# mpcl-graph
# ==================================================================================================
class GraphConfig(Config):
    block_size: int = Field(20, ge=2, description="nodes per block (3 blocks)")
    p_in: float = Field(0.5, gt=0, le=1, description="edge probability inside a block")
    p_out: float = Field(0.05, ge=0, le=1, description="edge probability between blocks")
    dim: int = Field(8, ge=2, description="feature dimension k")
    tau: float = Field(0.2, gt=0)
    steps: int = Field(3000, ge=1, description="gradient-descent steps")
    lr: float = Field(5.0, gt=0)
    log_every: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _p_out_below_p_in(self) -> "GraphConfig":
        if self.p_out > self.p_in:
            raise ValueError(f"p_out={self.p_out} must not exceed p_in={self.p_in}")
        return self


def _graph_stats(f: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    f = F.normalize(f, dim=1)
    cos = f @ f.T
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(f), dtype=torch.bool)
    centroids = torch.stack([f[labels == b].mean(0) for b in labels.unique()])
    return {"intra_cos": float(cos[same & off].mean()), "inter_cos": float(cos[~same].mean()),
            "effective_rank": pop.effective_rank(f),
            "centroid_acc": float(((f @ centroids.T).argmax(1) == labels).double().mean())}


def train_free_features(cfg: GraphConfig, a: torch.Tensor, labels: torch.Tensor, uniformity: bool,
                        generator: torch.Generator, ctx: RunContext, name: str) -> list[dict[str, float]]:
    """Gradient descent on free features ``f = u/||u||`` under L_align (+ L_unif); stats every ``log_every``."""
    u = torch.randn(len(labels), cfg.dim, generator=generator, dtype=torch.float64)
    history = [{"step": 0, **_graph_stats(u, labels)}]
    for step in ctx.track(range(1, cfg.steps + 1), f"mpcl-graph: {name}"):
        norm = u.norm(dim=1, keepdim=True)
        f = u / norm
        # closed-form message-passing gradients (tested against autograd), projected through f = u/||u||
        g = pop.population_gradient(f, a, cfg.tau) if uniformity else pop.alignment_gradient(f, a, cfg.tau)
        u = u - cfg.lr * (g - (g * f).sum(1, keepdim=True) * f) / norm
        if step % cfg.log_every == 0 or step == cfg.steps:
            loss = pop.alignment_loss(f, a, cfg.tau) + (pop.uniformity_loss(f, a, cfg.tau) if uniformity else 0.0)
            row = {"step": step, "loss": float(loss), **_graph_stats(u, labels)}
            history.append(row)
            ctx.log_metrics(stage=name, **row)
    return history


@register("mpcl-graph", paper=PAPER, config=GraphConfig, order=30,
          description="Free features on a 3-block SBM: alignment alone collapses, with uniformity it does not")
def run_graph(cfg: GraphConfig, ctx: RunContext) -> Result:
    a, labels = pop.stochastic_block_graph([cfg.block_size] * 3, cfg.p_in, cfg.p_out, ctx.generator("sbm"))
    pop.check_augmentation_graph(a)
    runs = {name: train_free_features(cfg, a, labels, unif, ctx.generator("features"), ctx, name)
            for name, unif in (("alignment", False), ("alignment+uniformity", True))}
    fig, ax = new_figure(2)
    for name, hist in runs.items():
        steps = [h["step"] for h in hist]
        ls = "--" if name == "alignment" else "-"
        ax[0].plot(steps, [h["intra_cos"] for h in hist], ls, c="C0", label=f"intra-block ({name})")
        ax[0].plot(steps, [h["inter_cos"] for h in hist], ls, c="C1", label=f"inter-block ({name})")
        ax[1].plot(steps, [h["effective_rank"] for h in hist], ls, c="C2", label=name)
    ax[0].set(xlabel="step", ylabel="mean cosine", title="feature cosines on a 3-block SBM")
    ax[0].legend(fontsize=7)
    ax[1].set(xlabel="step", ylabel="effective rank", title=f"effective rank (k = {cfg.dim})")
    ax[1].legend(fontsize=8)
    figure = ctx.save_figure(fig, "sbm_dynamics")
    al, au = runs["alignment"][-1], runs["alignment+uniformity"][-1]
    rows = [{"objective": name, **{k: v for k, v in hist[-1].items() if k not in ("step", "loss")}}
            for name, hist in runs.items()]
    metrics = {f"{prefix}_{k}": v for prefix, row in (("align", al), ("unif", au)) for k, v in row.items()
               if k not in ("step", "loss")}
    return Result(
        metrics=metrics,
        claims=[Claim.at_most("alignment only: effective rank (collapse)", al["effective_rank"], 1.1),
                Claim.at_most("alignment + uniformity: inter-block cosine", au["inter_cos"], 0.5),
                Claim.at_least("alignment + uniformity: effective rank", au["effective_rank"], 2.0),
                Claim.at_least("alignment + uniformity: nearest-centroid block accuracy", au["centroid_acc"], 0.9)],
        figures=[figure], tables={"final features": markdown_table(rows)}, key_metric="unif_effective_rank",
        notes=(f"{3 * cfg.block_size} nodes, SBM p_in={cfg.p_in}, p_out={cfg.p_out}; unit-norm free features in "
               f"R^{cfg.dim}, tau={cfg.tau}, {cfg.steps} GD steps of lr {cfg.lr} on the population losses. "
               "Alignment is message passing on the augmentation graph and over-smooths every connected "
               "component to one direction; the uniformity term (repulsion on the affinity graph) keeps the "
               "blocks apart. Spec prototype: alignment only 1.00/1.00/rank 1.0; with uniformity intra 0.94, "
               "inter 0.17, rank 5.8 (its graph differed; only the qualitative split is asserted)."),
    )


# ==================================================================================================
# pre-training shared by mpcl-shapes and mpcl-cifar
# ==================================================================================================
class SampleIndices(Dataset):
    """Items are sample indices only: the step gathers images from a tensor already on the device, which
    keeps collation cheap and gives the SimSiam-Multi bank its row addresses."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class TrainConfig(Config):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = Field(0.1, gt=0, description="SGD lr for SimCLR-type methods")
    siam_lr: float = Field(0.2, gt=0, description="SGD lr for SimSiam-type methods")
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    tau: float = Field(0.5, gt=0, description="InfoNCE temperature")
    beta: float = Field(0.5, ge=0, le=1, description="SimSiam-Multi memory weight")
    mix_after: int = Field(4, ge=-1, description="SimSiam-Multi: plain SimSiam while the epoch (from 0) is <= this "
                           "(official: epoch_counter <= 50), mixing after it")
    knn_k: int = Field(1, ge=1, description="rewiring: neighbours per anchor")
    rewire_beta: float = Field(0.2, ge=0, le=1, description="rewiring: weight of neighbour positives")
    proj_dim: int = Field(64, ge=2, description="SimCLR projector output")
    siam_dim: int = Field(64, ge=4, description="SimSiam projector/predictor width")
    crop_low: float = Field(0.5, gt=0, le=1, description="smallest crop area fraction")
    flip: bool = False
    jitter: float = Field(0.4, ge=0, description="colour-jitter strength s")
    p_gray: float = Field(0.0, ge=0, le=1)
    noise: float = Field(0.1, ge=0, description="Gaussian noise std added to views")
    probe_c: float = Field(1.0, gt=0, description="inverse L2 strength of the offline logistic probe")


def _method_config(method: str, t: TrainConfig) -> MethodConfig:
    return MethodConfig(method, tau=t.tau, beta=t.beta, mix_after=t.mix_after, knn_k=t.knn_k,
                        rewire_beta=t.rewire_beta)


class PretrainNet(torch.nn.Module):
    """Model and online probe behind one ``forward``, so that a DDP wrapper sees every parameter.

    Under several processes each computes its loss on its own shard (negatives are not gathered
    across processes) and the SimSiam-Multi bank holds only the rows that process saw."""

    def __init__(self, cfg: MethodConfig, model: torch.nn.Module, probe: OnlineProbe,
                 bank: MultiStageBank | None) -> None:
        super().__init__()
        self.cfg, self.model, self.probe, self.bank = cfg, model, probe, bank

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor, y: torch.Tensor, epoch: int):
        loss, h = method_loss(self.cfg, self.model, x1, x2, index, epoch, self.bank)
        probe_loss, probe_acc = self.probe(h, y)
        return loss, probe_loss, probe_acc


def pretrain(method: str, encoder: torch.nn.Module, train: ArrayDataset, t: TrainConfig, ctx: RunContext,
             stage: str) -> tuple[torch.nn.Module, dict[str, float]]:
    """Pre-train ``encoder`` with ``method`` and an online linear probe; returns the model and last epoch's metrics.

    Batch order and views are seeded per ``stage`` (the engine's shuffling, ``ctx.generator("views", ...)``)."""
    mcfg = _method_config(method, t)
    model = build_model(method, encoder, t.proj_dim, t.siam_dim)
    probe = OnlineProbe(int(encoder.out_dim), train.num_classes)
    lr = t.siam_lr if method in SIAMESE else t.lr
    bank = MultiStageBank(len(train), t.siam_dim, device=ctx.device) if method == "simsiam-multi" else None
    if bank is not None:
        bank.check_dataset(len(train))
    net = PretrainNet(mcfg, model, probe, bank)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=t.momentum, weight_decay=t.weight_decay)
    net, opt = ctx.setup(net, opt)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs)
    aug = AugmentConfig(crop_scale=(t.crop_low, 1.0), flip=t.flip, strength=t.jitter, p_gray=t.p_gray,
                        noise=t.noise)
    images, labels = train.x.to(ctx.device), train.y.to(ctx.device)

    def step(index, state):
        x, y = images[index], labels[index]
        gen = ctx.generator("views", stage, state.step)
        loss, probe_loss, probe_acc = net(augment(x, aug, gen), augment(x, aug, gen), index, y, state.epoch)
        opt.zero_grad(set_to_none=True)
        ctx.backward(loss + probe_loss)
        opt.step()
        return {"loss": loss.detach(), "online_acc": probe_acc}

    state = fit(model=net, step=step, dataset=SampleIndices(len(train)), epochs=t.epochs, batch_size=t.batch_size,
                ctx=ctx, optimizer=opt, scheduler=sched, stage=stage, drop_last=True,
                on_epoch_end=(lambda s: bank.commit()) if bank is not None else None,
                extra_state=(lambda: bank.state_dict()) if bank is not None else None,
                load_extra_state=(lambda s: bank.load_state_dict(s)) if bank is not None else None)
    return model, state.history[-1]


def probe_accuracy(encoder: torch.nn.Module, train: ArrayDataset, test: ArrayDataset, c: float) -> float:
    return linear_probe_accuracy(extract_features(encoder, train.x), train.y, extract_features(encoder, test.x),
                                 test.y, c=c)


# ==================================================================================================
# mpcl-shapes
# ==================================================================================================
class ShapesConfig(TrainConfig):
    dataset: Literal["digits", "shapes"] = Field("digits", description="digits (8x8) or procedural shapes")
    methods: list[str] = Field(default_factory=lambda: ["simclr", "simclr-attn", "simsiam", "simsiam-multi"])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    hidden: int = Field(128, ge=1, description="MLP encoder hidden width")
    feature_dim: int = Field(16, ge=1, description="encoder output h (what the probe sees)")
    shapes_size: int = Field(12, ge=8, le=64, description="image size for dataset=shapes")
    shapes_per_class: int = Field(25, ge=2, description="images per (shape, colour) class for dataset=shapes")
    min_gain: float = Field(0.01, description="claim: probe accuracy above the random encoder by at least this")

    @model_validator(mode="after")
    def _known_methods(self) -> "ShapesConfig":
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods={bad or self.methods} invalid: expected a non-empty list from "
                             f"{', '.join(METHODS)}")
        return self


def shapes_by_form(size: int, per_class: int, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """Procedural shapes labelled by form only (10 classes); solid texture, colour is a nuisance."""
    data = shapes(classes=[20 * s + k for s in range(10) for k in range(4)], size=size, per_class=per_class, seed=seed)
    data = ArrayDataset(data.x, data.y // 4, [n.split(" ")[-1] for n in data.class_names[::4]])
    train_idx, test_idx = stratified_split(data.y, (0.7, 0.3), seed)
    return data.subset(train_idx), data.subset(test_idx)


def _small_image_data(cfg: ShapesConfig) -> tuple[ArrayDataset, ArrayDataset]:
    if cfg.dataset == "digits":
        return digits("train", seed=0), digits("test", seed=0)
    return shapes_by_form(cfg.shapes_size, cfg.shapes_per_class, seed=0)


@register("mpcl-shapes", paper=PAPER, config=ShapesConfig, order=31,
          description="SimCLR, SimCLR-Attn, SimSiam, SimSiam-Multi: linear probe vs a random encoder over seeds")
def run_shapes(cfg: ShapesConfig, ctx: RunContext) -> Result:
    train, test = _small_image_data(cfg)
    in_dim = int(train.x[0].numel())
    results: dict[str, list[float]] = {m: [] for m in cfg.methods}
    online: dict[str, list[float]] = {m: [] for m in cfg.methods}
    random_acc: list[float] = []
    for seed in cfg.seeds:
        torch.manual_seed(ctx.seed * 1000 + seed)  # the same initial encoder for every method of this seed
        init = mlp_encoder(in_dim, cfg.hidden, cfg.feature_dim).to(ctx.device)
        random_acc.append(probe_accuracy(init, train, test, cfg.probe_c))
        for method in cfg.methods:
            encoder = mlp_encoder(in_dim, cfg.hidden, cfg.feature_dim)
            encoder.load_state_dict(init.state_dict())
            torch.manual_seed(ctx.seed * 1000 + seed + 1)  # heads
            model, last = pretrain(method, encoder, train, cfg, ctx, stage=f"{method}-seed{seed}")
            acc = probe_accuracy(model.encoder, train, test, cfg.probe_c)
            results[method].append(acc)
            online[method].append(last["online_acc"])
            ctx.log_metrics(stage="probe", method=method, seed=seed, probe_acc=acc, random_probe_acc=random_acc[-1])

    def mean(v: list[float]) -> float:
        return statistics.fmean(v)

    def std(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    rows, claims, metrics = [], [], {"random_probe_acc": mean(random_acc)}
    for m in cfg.methods:
        gains = [a - r for a, r in zip(results[m], random_acc)]
        rows.append({"method": m, "probe acc (mean)": mean(results[m]), "std": std(results[m]),
                     "worst-seed gain over random": min(gains), "online probe (train)": mean(online[m]),
                     "paper CIFAR-10 R18 (%)": ANCHORS.get(m, {}).get("c10", "n/a")})
        metrics[f"{m}_probe_acc"] = mean(results[m])
        claims.append(Claim.at_least(f"{m}: probe gain over the random encoder (worst of {len(cfg.seeds)} seeds)",
                                     min(gains), cfg.min_gain))
    rows.append({"method": "random encoder", "probe acc (mean)": mean(random_acc), "std": std(random_acc)})
    diffs = []
    for base, variant in (("simclr", "simclr-attn"), ("simsiam", "simsiam-multi"), ("simclr", "rewire")):
        if base in results and variant in results:
            d = [v - b for v, b in zip(results[variant], results[base])]
            metrics[f"{variant}_minus_{base}"] = mean(d)
            paper = (f"paper on CIFAR-10 R18: {ANCHORS[variant]['c10'] - ANCHORS[base]['c10']:+.1f} points"
                     if variant in ANCHORS else "no paper number")
            diffs.append(f"{variant} - {base}: {mean(d):+.4f} (per seed {', '.join(f'{x:+.3f}' for x in d)}; {paper})")

    fig, ax = new_figure(1)
    xs = range(len(cfg.methods))
    for i, m in enumerate(cfg.methods):
        ax.scatter([i] * len(results[m]), results[m], c=f"C{i}")
        ax.errorbar([i], [mean(results[m])], yerr=[std(results[m])], fmt="_", c="k", capsize=6)
    ax.axhline(mean(random_acc), ls="--", c="gray", label="random encoder (mean)")
    ax.set_xticks(list(xs), cfg.methods, rotation=15)
    ax.set(ylabel="linear-probe accuracy", title=f"{cfg.dataset}: frozen {cfg.feature_dim}-d encoder features")
    ax.legend()
    figure = ctx.save_figure(fig, "probe_accuracy")
    return Result(
        metrics=metrics, claims=claims, figures=[figure],
        tables={"linear probe (test split)": markdown_table(rows)}, key_metric="simclr-attn_probe_acc"
        if "simclr-attn" in cfg.methods else f"{cfg.methods[0]}_probe_acc",
        notes=(f"MLP encoder {in_dim}-{cfg.hidden}-{cfg.feature_dim} on {cfg.dataset} ({len(train)} train / "
               f"{len(test)} test), {cfg.epochs} epochs of SGD per method and seed from the same initial "
               "encoder; logistic-regression probe on frozen h. Differences between variants at this scale "
               "(not asserted): " + ("; ".join(diffs) or "n/a") + ". The paper's gains (+0.7 to +2.6 points "
               "on CIFAR/ImageNet-100 with ResNets) are not expected to show here."),
    )


# ==================================================================================================
# mpcl-cifar (paper preset, GPU)
# ==================================================================================================
class CifarConfig(TrainConfig):
    """Defaults: a 20-epoch GPU run of SimCLR-Attn; ``--preset paper`` (200 epochs, batch 512) and
    ``--preset paper-simsiam-multi`` are the paper's recipes with SGD in place of LARS."""

    root: str | None = Field(None, description="folder holding cifar-10-batches-py or cifar-100-python")
    num_classes: Literal[10, 100] = 10
    method: str = "simclr-attn"
    encoder: Literal["resnet18", "small_cnn"] = "resnet18"
    train_subset: int | None = Field(None, ge=100, description="use only this many training images (smoke runs)")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=4)
    lr: float = Field(0.5, gt=0)
    siam_lr: float = Field(0.5, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    tau: float = Field(0.5, gt=0)
    mix_after: int = Field(4, ge=-1)
    proj_dim: int = Field(128, ge=2)
    siam_dim: int = Field(2048, ge=4)
    crop_low: float = Field(0.08, gt=0, le=1, description="RandomResizedCrop scale low (official scale_lower 0.08)")
    flip: bool = True
    jitter: float = Field(0.5, ge=0)
    p_gray: float = Field(0.2, ge=0, le=1)
    noise: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _known_method(self) -> "CifarConfig":
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} invalid: expected one of {', '.join(METHODS)}")
        return self


@register("mpcl-cifar", paper=PAPER, config=CifarConfig, order=32, quick=False,
          description="Paper recipe: ResNet-18 on CIFAR-10/100 from a local root, linear probe")
def run_cifar(cfg: CifarConfig, ctx: RunContext) -> Result:
    from tenfold.data.real import cifar

    if cfg.root is None:
        raise ConfigError("root=None is invalid: expected --set root=DIR, the folder holding the CIFAR python "
                          "pickles (cifar-10-batches-py or cifar-100-python)")
    if not Path(cfg.root).is_dir():
        raise DataError(f"root={cfg.root!r} is not a folder: expected the folder holding the CIFAR pickles")
    train, test = cifar(cfg.root, True, cfg.num_classes), cifar(cfg.root, False, cfg.num_classes)
    if cfg.train_subset is not None:
        train = train.subset(stratified_split(train.y, (cfg.train_subset / len(train),
                                                        1 - cfg.train_subset / len(train)), ctx.seed)[0])
    torch.manual_seed(ctx.seed)
    encoder = resnet18_cifar() if cfg.encoder == "resnet18" else small_cnn(3, 32, 128)
    random_acc = probe_accuracy(encoder.to(ctx.device), train, test, cfg.probe_c)
    model, last = pretrain(cfg.method, encoder, train, cfg, ctx, stage=cfg.method)
    acc = probe_accuracy(model.encoder, train, test, cfg.probe_c)
    anchor = ANCHORS.get(cfg.method, {}).get("c10" if cfg.num_classes == 10 else "c100")
    claims = [Claim.at_least("probe accuracy above the random encoder", acc - random_acc, 0.0)]
    if anchor is not None and cfg.encoder == "resnet18" and cfg.train_subset is None and cfg.epochs >= 200:
        claims.append(Claim.at_least(f"probe accuracy within 2 points of the paper's {anchor}", 100 * acc,
                                     anchor - 2.0))
    return Result(
        metrics={"probe_acc": acc, "random_probe_acc": random_acc, "online_acc": last["online_acc"]},
        claims=claims, key_metric="probe_acc",
        notes=(f"{cfg.method} with {cfg.encoder} on CIFAR-{cfg.num_classes} ({len(train)} train images), "
               f"{cfg.epochs} epochs, batch {cfg.batch_size}. SGD with cosine decay replaces the official LARS; "
               f"paper anchor (R18 linear probe): {anchor}."),
    )
