"""SLTT experiments (Meng et al., ICCV 2023): BPTT vs SLTT vs SLTT-K on digits, simulated events, CIFAR.

Every experiment trains each rule from the same initialization and data order, for ``seeds`` seeds,
and declares its statements in :data:`CLAIMS` (thresholds in ``cfg.thresholds``, fixed before the run):

- paper claims: SLTT's test accuracy within a band of BPTT's (per-seed differences); SLTT's activation
  memory a fraction of BPTT's (ablation: ``online=false``, the same gradient from one backward after all
  steps); SLTT-K faster than BPTT (ablation: ``timed_k`` = T); SLTT's gradient nearly parallel to BPTT's
  (ablation: a slower leak, ``tau=4``). The accuracy parity's ablation ``spatial_grad=false`` removes
  what SLTT keeps, the spatial gradient through the neurons (only the readout learns).
- checks (hold by construction): T x SLTT/BPTT saved bytes = 1 (one step's graph vs T), identical
  forward outputs of all rules, every rule trains.

- ``sltt-digits`` (quick): spiking MLP 64-128-128-10, T=6, tau=1.1.
- ``sltt-events`` (quick): a small spiking VGG on DVS-like event streams simulated from digits; its
  gradient cosine (conv + BN, event input) is lower than the MLP's.
- ``sltt-cifar`` (paper preset, GPU): pre-activation spiking ResNet-18, T=6, local CIFAR-10 pickles.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from tenfold.data import digits
from tenfold.errors import ConfigError
from tenfold.engine import RunContext, Stage
from tenfold.engine.loop import batches
from tenfold.experiments.registry import register
from tenfold.papers.sltt.configs import SLTTCifarConfig, SLTTCommon, SLTTDigitsConfig, SLTTEventsConfig
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import new_figure
from tenfold.snn.networks import SpikingMLP, SpikingPreActResNet18, SpikingVGG
from tenfold.benchmarks.common import interleaved_samples, median_spread
from tenfold.snn.loss import per_step_loss
from tenfold.snn.neurons import is_spiking_neuron
from tenfold.snn.profile import peak_saved_bytes
from tenfold.snn.train import SNNTrainer, grad_cosines, parameter_grads, parse_rule


PAPER_ACC = ("CIFAR-10, ResNet-18, T=6: SLTT 94.59% vs BPTT 94.60%; CIFAR-100 74.67 vs 73.80 (Table 2)")
CLAIMS = [
    PaperClaim("SLTT test accuracy within the band of BPTT's (SLTT - BPTT)", metric="acc_sltt_minus_bptt",
               at_least="thresholds.min_acc_gap", ablation=["sltt_grad=first_layer_dropped"], paper=PAPER_ACC,
               arms=("test_acc_sltt", "test_acc_bptt")),
    PaperClaim("SLTT-K test accuracy within the band of BPTT's (SLTT-K - BPTT, K = timed_k)",
               metric="acc_sltt_k_minus_bptt", at_least="thresholds.min_acc_gap",
               ablation=["sltt_grad=first_layer_dropped"], arms=("test_acc_sltt_k", "test_acc_bptt"),
               paper="ImageNet, NF-ResNet-34, T=6: SLTT-1 66.17% vs BPTT 66.47%; DVS-CIFAR10 (VGG-11, T=10) is "
                     "trained with SLTT-2 at 77.30% vs BPTT 73.60% (Table 2-3)"),
    PaperClaim("SLTT-K / BPTT time per training iteration (per-repeat ratios of interleaved timings)",
               metric="time_ratio_sltt_k_over_bptt", at_most="thresholds.max_time_ratio", ablation=["timed_k=6"],
               seeds=5, paper="ImageNet, NF-ResNet-34, T=6: SLTT-1 32.03 h vs BPTT 73.8 h (0.43)"),
    PaperClaim("SLTT / BPTT peak live saved activation bytes", metric="saved_ratio_sltt_over_bptt",
               at_most="thresholds.max_memory_ratio", ablation=["online=false"], seeds=1,
               why_one_run="a count of the bytes autograd holds, deterministic given the shapes",
               paper="CIFAR-10, ResNet-18, T=6: 1.09 vs 3.00 GB (0.36); DVS-CIFAR10, VGG-11, T=10: 1.07 vs 3.70 GB"),
    PaperClaim("per-layer cosine of SLTT's to BPTT's gradient (trained BPTT net, first batch)",
               metric="grad_cosine_min", at_least="thresholds.min_grad_cosine", ablation=["tau=4.0"],
               paper="Sec. 4.1: with tau=1.1 the temporal terms lambda(1 - V_th sigma') are small, so SLTT's gradient "
                     "keeps BPTT's direction (the paper's cosine figure: setting as in its Sec. 4.1)"),
    Check("max |forward output difference| across rules", metric="forward_max_abs_diff",
          at_most="thresholds.max_forward_diff"),
    Check("lowest test accuracy over rules and seeds", metric="min_test_acc", at_least="thresholds.min_accuracy"),
]


# On the conv/event network the temporal terms are larger (BN, pooled event input): its cosine is reported
# beside the MLP's, not held to the MLP's threshold.
EVENT_CLAIMS = [c for c in CLAIMS if c.metric != "grad_cosine_min"]


def _optimizer(cfg: SLTTCommon, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _trainer(cfg: SLTTCommon, model, name: str, static: bool, **kw) -> SNNTrainer:
    rule, k = parse_rule(name)
    if rule != "bptt" and cfg.sltt_grad == "unscaled":  # the trainer divides by T: undo it
        kw["loss"] = lambda o, y: cfg.T * per_step_loss(o.float() if o.dtype in (torch.float16, torch.bfloat16) else o,
                                                        y, cfg.lam_l, cfg.mse_target)
    return SNNTrainer(model, cfg.T, rule, k, lam_l=cfg.lam_l, mse_target=cfg.mse_target, static=static,
                      online=cfg.online, **kw)


def _drop_first_surrogate(model: torch.nn.Module) -> None:
    """The ``sltt_grad=first_layer_dropped`` ablation: the first spiking layer's input current is detached,
    as if its surrogate gradient were zero, so the layers before it get no gradient (the weights stay put)
    while every later layer learns as usual. The forward is unchanged."""
    first = next(m for m in model.modules() if is_spiking_neuron(m))
    first.register_forward_pre_hook(lambda module, args: (args[0].detach(), *args[1:]))


def _readout_only(model: torch.nn.Module) -> None:
    """The ``spatial_grad=false`` ablation: only the readout (``head``) learns."""
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("head."))


def arms(cfg: SLTTCommon) -> list[str]:
    """The trained rules: ``rules`` and the timed SLTT-K arm (``sltt-{timed_k}``)."""
    return list(dict.fromkeys([*cfg.rules, f"sltt-{cfg.timed_k}"]))


def train_rules(cfg: SLTTCommon, ctx: RunContext, make_model: Callable[[], torch.nn.Module], train, test,
                static: bool, seed_index: int) -> dict[str, dict]:
    """Train one model per rule from the same initialization and data order (seed ``ctx.seed + i``)."""
    if cfg.precision != "32" and ctx.precision != "32-true":  # two autocasts and two loss scalers
        raise ConfigError(f"precision={cfg.precision!r} and --precision {ctx.precision} both ask for mixed "
                          "precision: use one (--precision goes through Fabric, the field through the SLTT trainer)")
    torch.manual_seed(ctx.seed + seed_index)
    init = make_model().state_dict()
    out: dict[str, dict] = {}
    for name in arms(cfg):
        model = make_model()
        model.load_state_dict(init)
        if name != "bptt" and not cfg.spatial_grad:
            _readout_only(model)
        if name != "bptt" and cfg.sltt_grad == "first_layer_dropped":
            _drop_first_surrogate(model)
        optimizer = _optimizer(cfg, model)
        model, optimizer = ctx.setup(model, optimizer)
        device = next(model.parameters()).device
        no_sync = (lambda m=model: ctx.fabric.no_backward_sync(m)) if ctx.world_size > 1 else None
        trainer = _trainer(cfg, model, name, static, optimizer=optimizer, backward=ctx.backward,
                           generator=ctx.generator("sltt-k", name, seed_index), precision=cfg.precision,
                           no_sync=no_sync)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs) if cfg.cosine_schedule
                    else None)
        extra = {"sltt_k_draws": trainer.generator} | ({"grad_scaler": trainer.scaler} if trainer.scaler else {})
        stage = Stage(ctx, f"{name}-seed{seed_index}", model=model, optimizer=optimizer, scheduler=schedule,
                      state=extra)
        t0 = time.perf_counter()
        for epoch in stage.epochs(cfg.epochs):
            losses = []
            order = ctx.generator("data-order", seed_index, epoch)  # the same order for every rule: paired runs
            for x, y in batches(train, cfg.batch_size, shuffle=True, generator=order, rank=ctx.rank,
                                world_size=ctx.world_size):
                losses.append(trainer.step(x.to(device), y.to(device)).loss)
            if schedule is not None:
                schedule.step()
            stage.log(seed=seed_index, rule=name, loss=sum(losses) / len(losses))
        history = stage.history
        out[name] = {"history": history, "seconds": time.perf_counter() - t0,
                     "test_acc": trainer.accuracy(test, device=device), "model": model}
    return out


def probe_rules(cfg: SLTTCommon, make_model: Callable[[], torch.nn.Module], data, static: bool,
                seed: int) -> dict[str, float | dict]:
    """Deterministic properties on the first batch at the initial weights: peak live saved bytes per rule,
    forward outputs of every rule, and the SLTT-K / BPTT time per iteration (interleaved medians, on the
    first ``time_batch`` samples)."""
    x, y = next(iter(batches(data, cfg.batch_size, shuffle=False)))
    tx, ty = next(iter(batches(data, min(cfg.time_batch, len(data)), shuffle=False)))
    torch.manual_seed(seed)
    init = make_model().state_dict()
    saved, outputs, trainers = {}, {}, {}
    for name in dict.fromkeys([*cfg.rules, f"sltt-{cfg.timed_k}"]):
        model = make_model()
        model.load_state_dict(init)
        trainers[name] = _trainer(cfg, model, name, static, generator=torch.Generator().manual_seed(seed))
        saved[name] = peak_saved_bytes(trainers[name], x, y)
    for name, trainer in trainers.items():
        model = make_model()
        model.load_state_dict(init)
        outputs[name] = _trainer(cfg, model, name, static, generator=torch.Generator().manual_seed(seed)
                                 ).gradients(x, y).logits_sum
    # BPTT timed in the one-step layout of SLTT-K (as the paper's code: the rule's effect at equal layout) and
    # in our default multi-step layout (reported beside it)
    model = make_model()
    model.load_state_dict(init)
    one_step = _trainer(cfg, model, "bptt", static)
    one_step.multistep = False
    timed = {"bptt_one_step": one_step, "bptt": trainers["bptt"], "sltt_k": trainers[f"sltt-{cfg.timed_k}"]}
    samples = interleaved_samples({k: (lambda tr=tr: (tr.model.zero_grad(set_to_none=True), tr.gradients(tx, ty)))
                                   for k, tr in timed.items()}, repeats=cfg.time_repeats, warmup=1)
    ratios = [k / b for k, b in zip(samples["sltt_k"], samples["bptt_one_step"])]
    diff = max(float((o - outputs["bptt"]).abs().max()) for o in outputs.values())
    return {"saved": saved, "forward_max_abs_diff": diff, "time_ratios": ratios,
            "time_ratio_vs_multistep": median_spread([k / b for k, b in zip(samples["sltt_k"], samples["bptt"])]),
            "ms": {k: 1000 * median_spread(v)["median"] for k, v in samples.items()}}


def grad_cosines_at(cfg: SLTTCommon, make_model: Callable[[], torch.nn.Module], state: dict, data,
                    static: bool) -> dict[str, float]:
    """Per-layer cosine between SLTT's and BPTT's gradient at the weights ``state``, on the first batch."""
    x, y = next(iter(batches(data, cfg.batch_size, shuffle=False)))
    grads = {}
    for rule in ("bptt", "sltt"):
        model = make_model()
        model.load_state_dict(state)
        SNNTrainer(model, cfg.T, rule, lam_l=cfg.lam_l, mse_target=cfg.mse_target, static=static).gradients(x, y)
        grads[rule] = parameter_grads(model)
    return {n: c for n, c in grad_cosines(grads["bptt"], grads["sltt"]).items() if n.endswith("weight")}


def run_comparison(cfg: SLTTCommon, ctx: RunContext, make_model: Callable[[], torch.nn.Module], train, test,
                   static: bool, title: str, setting: str, notes: str) -> Result:
    """Seeds x rules training, the probes, the figure, metrics and per-seed samples for :data:`CLAIMS`."""
    runs = [train_rules(cfg, ctx, make_model, train, test, static, i) for i in range(cfg.seeds)]
    probe = probe_rules(cfg, make_model, train, static, ctx.seed)
    cosines = []
    for i, results in enumerate(runs):
        # on the trained BPTT network (unwrapped from DDP/Fabric: the state dict keys of a plain model)
        bptt = results["bptt"]["model"]
        state = getattr(bptt, "module", bptt).state_dict()
        cosines.append(min(grad_cosines_at(cfg, make_model, state, train, static).values()))
    names = arms(cfg)
    acc = {n: [r[n]["test_acc"] for r in runs] for n in names}
    saved = probe["saved"]
    ratio = saved["sltt"] / saved["bptt"]

    fig, ax = new_figure(2)
    for n in names:
        h = runs[0][n]["history"]
        ax[0].plot([r["epoch"] for r in h], [r["loss"] for r in h], label=n)
    ax[0].set(xlabel="epoch", ylabel="training loss (seed 0)", yscale="log", title=title)
    ax[0].legend()
    ax[1].bar(names, [saved[n] / 1e6 for n in names])
    ax[1].set(ylabel="peak live saved activations (MB)", title=f"activation memory, T={cfg.T}")
    figure = ctx.save_figure(fig, "training")

    mean = lambda v: sum(v) / len(v)  # noqa: E731
    rows = [{"rule": n, "test acc (mean)": f"{mean(acc[n]):.4f}", "per seed": ", ".join(f"{a:.4f}" for a in acc[n]),
             "train s (seed 0)": f"{runs[0][n]['seconds']:.1f}", "peak saved MB": f"{saved[n] / 1e6:.3f}"}
            for n in names]
    gaps = [s - b for s, b in zip(acc["sltt"], acc["bptt"])]
    k_arm = f"sltt-{cfg.timed_k}"
    k_gaps = [s - b for s, b in zip(acc[k_arm], acc["bptt"])]
    time_spread = median_spread(probe["time_ratios"])
    metrics: dict[str, float] = {f"test_acc_{n.replace('-', '_')}": mean(acc[n]) for n in names}
    metrics |= {f"saved_mb_{n.replace('-', '_')}": saved[n] / 1e6 for n in saved}
    metrics |= {"acc_sltt_minus_bptt": mean(gaps), "acc_sltt_k_minus_bptt": mean(k_gaps),
                "saved_ratio_sltt_over_bptt": ratio, "memory_ratio_times_T": ratio * cfg.T,
                "time_ratio_sltt_k_over_bptt": mean(probe["time_ratios"]),
                "time_ratio_sltt_k_over_bptt_median": time_spread["median"],
                "time_ratio_sltt_k_over_bptt_q1": time_spread["q1"], "time_ratio_sltt_k_over_bptt_q3": time_spread["q3"],
                "time_ratio_sltt_k_over_multistep_bptt_median": probe["time_ratio_vs_multistep"]["median"],
                "ms_bptt": probe["ms"]["bptt"], "ms_bptt_one_step": probe["ms"]["bptt_one_step"],
                f"ms_sltt_{cfg.timed_k}": probe["ms"]["sltt_k"],
                "forward_max_abs_diff": probe["forward_max_abs_diff"], "grad_cosine_min": mean(cosines),
                "min_test_acc": min(min(v) for v in acc.values())}
    return Result(metrics=metrics, samples={"acc_sltt_minus_bptt": gaps, "acc_sltt_k_minus_bptt": k_gaps,
                                            "time_ratio_sltt_k_over_bptt": probe["time_ratios"],
                                            "test_acc_sltt": acc["sltt"], "test_acc_bptt": acc["bptt"],
                                            "test_acc_sltt_k": acc[k_arm],
                                            "grad_cosine_min": cosines},
                  figures=[figure], key_metric="acc_sltt_minus_bptt", tables={"rules": markdown_table(rows)},
                  notes=(f"{notes} Gradient cosine setting: {setting}, tau={cfg.tau}, T={cfg.T}, per-layer minimum "
                         f"over weights, on the first training batch at each seed's trained BPTT weights. Times: "
                         f"{cfg.time_repeats} interleaved repeats of one iteration on a batch of {cfg.time_batch} "
                         f"(threads pinned by the runner); SLTT-{cfg.timed_k} / BPTT per repeat, both in the one-step "
                         f"layout: median {time_spread['median']:.3f} (IQR {time_spread['q1']:.3f}-{time_spread['q3']:.3f}); "
                         f"against our multi-step BPTT: median {probe['time_ratio_vs_multistep']['median']:.3f}."))


# --- sltt-digits ---------------------------------------------------------------------------------


@register("sltt-digits", processes=True, paper="sltt", config=SLTTDigitsConfig, claims=CLAIMS, order=50, threads=1, description="Spiking MLP on digits trained by BPTT, SLTT, SLTT-1 and SLTT-2")
def run_digits(cfg: SLTTDigitsConfig, ctx: RunContext) -> Result:
    train, test = (digits(s, seed=cfg.split_seed, flatten=True, fractions=(0.75, 0.0, 0.25))
                   for s in ("train", "test"))

    def make_model() -> torch.nn.Module:
        return SpikingMLP(64, cfg.hidden, 10, **cfg.neuron())

    return run_comparison(cfg, ctx, make_model, train, test, True, "spiking MLP on digits",
                          f"spiking MLP 64-{'-'.join(map(str, cfg.hidden))}-10 on digits (static input)",
                          f"MLP 64-{'-'.join(map(str, cfg.hidden))}-10, T={cfg.T}, tau={cfg.tau}, {cfg.epochs} epochs "
                          f"of {cfg.optimizer} lr={cfg.lr}, {cfg.seeds} seeds; {len(train)} train / {len(test)} test "
                          "digits (75/25).")


# --- sltt-events ---------------------------------------------------------------------------------


@register("sltt-events", processes=True, paper="sltt", config=SLTTEventsConfig, claims=EVENT_CLAIMS, order=51, threads=1, description="Small spiking VGG on simulated DVS event streams, BPTT vs SLTT vs SLTT-K")
def run_events(cfg: SLTTEventsConfig, ctx: RunContext) -> Result:
    from tenfold.data.events import event_dataset, simulated_events

    if cfg.root is not None:
        data = {s: event_dataset(cfg.root, cfg.layout, s, cfg.T, cfg.sensor, cfg.size) for s in ("train", "test")}
    else:
        data = {s: simulated_events(s, T=cfg.T, seed=cfg.split_seed, source=cfg.source,
                                    num_classes=cfg.num_classes, size=cfg.size, per_class=cfg.per_class,
                                    threshold=cfg.threshold) for s in ("train", "test")}
    classes = data["train"].num_classes

    def make_model() -> torch.nn.Module:
        return SpikingVGG(2, classes, width=1.0, plan=tuple(cfg.plan), dropout=cfg.dropout, pool_to=cfg.pool_to,
                          generator=ctx.generator("dropout"), **cfg.neuron())

    return run_comparison(cfg, ctx, make_model, data["train"], data["test"], False, "spiking VGG on simulated events",
                          f"conv-BN VGG {cfg.plan} on {cfg.size}x{cfg.size} simulated event frames",
                          (f"event files under {cfg.root} ({classes} classes, {cfg.sensor}x{cfg.sensor} sensor "
                           f"resized to {cfg.size}x{cfg.size}, T={cfg.T} bins)" if cfg.root is not None else
                           f"{cfg.source} images ({classes} classes) as event streams (saccade-simulated DVS, "
                           f"T={cfg.T} bins, 2 polarities)") + f", VGG plan {cfg.plan}, {cfg.epochs} epochs, "
                          f"{cfg.seeds} seeds. Paper "
                          "(DVS-CIFAR10, VGG-11, T=10): BPTT 73.60% / 3.70 GB vs SLTT 77.30% / 1.07 GB.")


# --- sltt-cifar (paper preset; needs local CIFAR-10 and a GPU) --------------------------------


@register("sltt-cifar", processes=True, paper="sltt", config=SLTTCifarConfig, claims=CLAIMS, order=52, quick=False,
          description="Pre-activation spiking ResNet-18 on CIFAR-10, BPTT vs SLTT (GPU; local CIFAR pickles)")
def run_cifar(cfg: SLTTCifarConfig, ctx: RunContext) -> Result:
    from tenfold.data.base import ArrayDataset
    from tenfold.data.augment import augment_image
    from tenfold.data.real import cifar

    train, test = cifar(cfg.root, train=True), cifar(cfg.root, train=False)
    if cfg.train_limit is not None:
        train = train.subset(torch.arange(min(cfg.train_limit, len(train))))
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    test = ArrayDataset((test.x - mean) / std, test.y, test.class_names)
    gen = ctx.generator("augment")
    train = ArrayDataset((train.x - mean) / std, train.y, train.class_names,
                         transform=(lambda img: augment_image(img, gen, cfg.cutout)) if cfg.augment else None)

    def make_model() -> torch.nn.Module:
        return SpikingPreActResNet18(3, 10, cfg.width, cfg.dropout, **cfg.neuron())

    return run_comparison(cfg, ctx, make_model, train, test, True, "spiking ResNet-18 on CIFAR-10",
                          "pre-activation spiking ResNet-18 on CIFAR-10",
                          f"{len(train)} training images, {cfg.epochs} epochs, {cfg.seeds} seeds. Paper (ResNet-18, "
                          "T=6): BPTT 94.60% / 3.00 GB vs SLTT 94.59% / 1.09 GB.")
