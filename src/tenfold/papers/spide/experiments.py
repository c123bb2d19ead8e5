"""SPIDE experiments: ``spide-digits`` (the claims at CPU scale) and the paper presets.

Xiao et al., "SPIDE: a purely spike-based method for training feedback SNNs" (Neural Networks 2023).

``spide-digits``: IF networks 64 -> 128 trained by the spike backward, feedforward and with feedback,
plus the feedforward net trained by the exact float implicit gradient. Claims: spike-backward test
accuracy >= 0.95 for both, and within 2 points of the exact float gradient on the feedforward net.
``spide-events``: one recurrent IF layer on event frames simulated from the digits (one step per frame).
``spide-mnist-lenet`` / ``spide-cifar`` (not quick): the paper's recipes on data from a local root.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from tenfold.engine import RunContext, evaluate, fit
from tenfold.errors import ConfigError
from tenfold.experiments.registry import register
from tenfold.papers.spide.configs import (
    SpideCifarConfig, SpideCommon, SpideDigitsConfig, SpideEventsConfig, SpideMnistConfig)
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import new_figure
from tenfold.snn.spide_models import SpideClassifier, alexnet_f, cifarnet_f, feature_count, lenet5, mlp_f
from tenfold.snn.spide_reference import clamp_equilibrium, constant_input_rates


SPIDE_DIGITS_CLAIMS = [
    PaperClaim("feedback SNN: spike-backward test accuracy - exact-implicit-gradient accuracy (same init and data)",
               metric="acc_feedback_spike_minus_exact", at_least="thresholds.min_spike_minus_exact",
               ablation=["scale=1.0"], arms=("test_acc_spike", "test_acc_exact"),
               paper="Sec. 5 (Tables 2-4): feedback SNNs trained with spikes alone reach competitive accuracy "
                     "(about 99.3% MNIST, 90-92% CIFAR-10, unverified) at T=30, T_b=100-250"),
    PaperClaim("modified reset - soft reset: test accuracy of the spike-trained feedback SNN",
               metric="acc_modified_minus_soft", at_least="thresholds.min_reset_acc_gain", ablation=["reset=soft"],
               arms=("test_acc_spike", "test_acc_spike_soft"),
               paper="Sec. 3.2: the modified reset (u_rest = -V_th) makes the rate error zero-mean and at most "
                     "1/(2T), which the paper credits for accurate training at T=30"),
    PaperClaim("soft-reset / modified-reset mean rate error to the equilibrium (3-layer IF net at init)",
               metric="rate_error_soft_over_modified", at_least="thresholds.min_rate_error_ratio",
               ablation=["reset=soft"],
               paper="Sec. 3.2: rate error at most 1/(2T) and zero-mean (modified) vs 1/T and biased low (soft)"),
    Check("spike backward vs exact implicit gradient, feedback network (cosine)",
          metric="grad_cosine_strong_feedback", at_least="thresholds.min_grad_cosine"),
    Check("single IF neuron: max rate error x 2T (modified reset)", metric="rate_error_times_2T",
          at_most="thresholds.max_rate_error_2T"),
    Check("feedback Frobenius norm / cap after training", metric="feedback_norm_over_cap",
          at_most="thresholds.max_feedback_norm_ratio"),
    Check("feedback, spike backward: test accuracy", metric="test_acc_feedback_spike",
          at_least="thresholds.min_accuracy"),
]


def _train(name: str, model: SpideClassifier, train, val, cfg: SpideCommon, ctx: RunContext,
           events: bool = False, order_key: str | None = None) -> dict:
    """SGD with momentum on SPIDE gradients; feedback norm capped after every step."""
    # Under DDP: the spike adjoint is not linear in dL/da, so the network must know the process count
    # (SpideNetwork.world_size) to give DDP's average the one-process gradient (tests/snn/test_ddp.py);
    # forward_with_state is marked as a forward method so it runs through DDP's forward. The feedback-norm
    # cap then acts on identical weights on every process. Dropout masks are drawn per local batch, so
    # they would differ from one process's: refused.
    snn = model.snn
    if ctx.world_size > 1:
        if any(p > 0 for p in snn.dropout):
            raise ConfigError(f"dropout={cfg.dropout} is not supported with devices={ctx.world_size}: "
                              "expected dropout=0 (its masks are drawn per process)")
        snn.world_size = ctx.world_size
    model = ctx.setup(model)
    if ctx.world_size > 1:
        model.mark_forward_method("forward_with_state")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, 0.1) if cfg.milestones else None
    gen = ctx.generator("spide-dropout", name)
    norms: list[float] = []

    warmup = getattr(cfg, "warmup_iters", 0)

    def step(batch, state):
        x, y = batch
        if state.step < warmup:  # linear warm-up (paper: 400 iterations on CIFAR)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (state.step + 1) / warmup
        optimizer.zero_grad(set_to_none=True)
        logits, sim = model.forward_with_state(x, events=events, generator=gen)
        loss = F.cross_entropy(logits, y)
        ctx.backward(loss)
        optimizer.step()
        norm = snn.cap_feedback_norm_()
        if norm is not None:
            norms.append(norm)
        return {"loss": loss.detach(), "max_abs_beta": sim.stats.get("max_abs_beta", 0.0),
                "forward_rate": float(sum(a.sum() for a in sim.rates) / sum(a.numel() for a in sim.rates))}

    fwd = (lambda m, x: m(x, events=True)) if events else None
    history = fit(model=model, step=step, dataset=train, epochs=cfg.epochs, batch_size=cfg.batch_size, ctx=ctx,
                  optimizer=optimizer, scheduler=scheduler, stage=name, order_key=order_key,
                  on_epoch_end=lambda s: {"val_acc": evaluate(model, val, ctx, forward=fwd)},
                  extra_state=lambda: {"dropout_rng": gen.get_state()},
                  load_extra_state=lambda extra: gen.set_state(extra["dropout_rng"])).history
    return {"model": model, "history": history, "max_feedback_norm": max(norms) if norms else float("nan"),
            "forward": fwd}


def _gradient_check(model: SpideClassifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """On one batch: cosine between the spike-backward and the exact implicit gradient of the SNN's
    parameters, and max |beta*| of the exact adjoint of ``s_f dL/da_N`` (above 1 the spikes saturate)."""
    snn = model.snn
    grads = {}
    for mode in ("spike", "exact"):
        model.zero_grad(set_to_none=True)
        snn.backward_mode = mode
        logits, state = model.forward_with_state(x)
        F.cross_entropy(logits, y).backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in snn.parameters()])
    snn.backward_mode = "spike"
    model.zero_grad(set_to_none=True)
    beta_max = max(float(b.abs().max()) for b in state.betas) * snn.scale
    return {"cosine": float(F.cosine_similarity(grads["spike"], grads["exact"], 0)), "max_abs_beta_exact": beta_max}


def strong_feedback_cosine(cfg: "SpideDigitsConfig", seed: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Cosine of the spike-backward gradient to the exact implicit gradient on a feedback network whose
    feedback is rescaled to Frobenius norm ``check_feedback_norm`` (the feedback then changes the
    adjoint: the feedback-blind one is reported beside it)."""
    torch.manual_seed(seed)
    snn = mlp_f(64, (cfg.hidden,), feedback=True, **_net_kwargs(cfg, "spike"))
    with torch.no_grad():
        snn.feedback.weight.mul_(cfg.check_feedback_norm / snn.feedback.weight.norm())
    model = SpideClassifier(snn, cfg.hidden, 10)
    out = _gradient_check(model, x, y)
    wanted = snn.adjoint_feedback
    snn.adjoint_feedback = False
    blind = _gradient_check(model, x, y)["cosine"]
    snn.adjoint_feedback = wanted
    return {"cosine": out["cosine"], "blind": blind, "beta": out["max_abs_beta_exact"]}


def rate_error_times_2T(cfg: SpideCommon) -> float:
    """``max_c |a(c) - clamp(c / 2, 0, 1)| * 2T`` of one IF neuron with SPIDE's reset (<= 1 in theory)."""
    c = torch.linspace(-0.5, 2.5, 3001, dtype=torch.float64)
    rates = constant_input_rates(c, cfg.time_steps, v_th=cfg.v_th, u_rest=-cfg.v_th)
    return float((rates - torch.clamp(c / (2 * cfg.v_th), 0, 1)).abs().max()) * 2 * cfg.time_steps


def _reset_figure(ctx: RunContext, cfg: SpideCommon) -> str:
    """Rate error of one IF neuron vs its input for the two resets (spec 2.4 check 1)."""
    c = torch.linspace(-0.5, 2.5, 601, dtype=torch.float64)
    fig, ax = new_figure(1)
    for u_rest, label in ((-cfg.v_th, "SPIDE reset (u_rest = -V_th)"), (0.0, "soft reset (u_rest = 0)")):
        rates = constant_input_rates(c, cfg.time_steps, v_th=cfg.v_th, u_rest=u_rest)
        ax.plot(c, rates - torch.clamp(c / (cfg.v_th - u_rest), 0, 1), label=label, lw=0.8)
    ax.axhline(1 / (2 * cfg.time_steps), ls="--", c="gray")
    ax.axhline(-1 / (2 * cfg.time_steps), ls="--", c="gray", label="+-1/(2T)")
    ax.set(xlabel="input current c", ylabel="rate - equilibrium", title=f"IF rate error, T={cfg.time_steps}")
    ax.legend(fontsize=7)
    return ctx.save_figure(fig, "reset_error")


def _net_kwargs(cfg: SpideCommon, backward: str) -> dict:
    return dict(time_steps=cfg.time_steps, time_steps_back=cfg.time_steps_back, scale=cfg.scale, v_th=cfg.v_th,
                backward=backward, dropout=cfg.dropout, feedback_norm_cap=cfg.feedback_norm_cap,
                adjoint_feedback=cfg.adjoint_feedback, u_rest=-cfg.v_th if cfg.reset == "modified" else 0.0)


def rate_error_ratio(cfg: SpideDigitsConfig, seed: int, x: torch.Tensor) -> float:
    """Mean |a - a*| of the soft reset over that of ``cfg.reset``, on a three-layer feedforward IF net
    (64-h-h-h, the seed's initial weights, no dropout) and the batch ``x``; a* the clamp equilibrium of each
    net (V = 2 for the modified reset, 1 for the soft one). Feedforward, so that a* is one exact sweep."""
    errors = {}
    for reset in dict.fromkeys([cfg.reset, "soft"]):
        torch.manual_seed(seed)
        kwargs = _net_kwargs(cfg.model_copy(update={"reset": reset, "dropout": 0.0}), "spike")
        snn = mlp_f(64, (cfg.hidden,) * 3, feedback=False, **kwargs).eval()
        rates = snn.simulate(x).rates
        star = clamp_equilibrium(snn, x)
        errors[reset] = float(sum((a - b).abs().sum() for a, b in zip(rates, star)) / sum(a.numel() for a in rates))
    return errors["soft"] / errors[cfg.reset]


@register("spide-digits", paper="spide", config=SpideDigitsConfig, claims=SPIDE_DIGITS_CLAIMS, order=70, threads=1,
          processes=True,
          description="SPIDE on digits: a feedback SNN trained by spikes vs the exact implicit gradient, modified vs soft reset")
def run_digits(cfg: SpideDigitsConfig, ctx: RunContext) -> Result:
    from tenfold.data import digits

    train, val, test = (digits(s, seed=cfg.split_seed, flatten=True) for s in ("train", "val", "test"))
    check_x, check_y = train.x[:cfg.batch_size], train.y[:cfg.batch_size]
    strong = [strong_feedback_cosine(cfg, ctx.seed + i, check_x, check_y) for i in range(cfg.seeds)]
    rate_ratios = [rate_error_ratio(cfg, ctx.seed + i, check_x) for i in range(cfg.seeds)]
    # per seed, one initialization and one data order for all arms; with reset=soft the third arm is the first
    arms = {"spike": ("spike", cfg.reset), "exact": ("exact", cfg.reset), "spike-soft": ("spike", "soft")}
    rows, acc, curves, norms = [], {}, {}, []
    for i in range(cfg.seeds):
        trained: dict[tuple[str, str], float] = {}
        for arm, (mode, reset) in arms.items():
            if (mode, reset) in trained:
                acc.setdefault(arm, []).append(trained[mode, reset])
                continue
            torch.manual_seed(ctx.seed + i)
            snn = mlp_f(64, (cfg.hidden,), feedback=True,
                        **_net_kwargs(cfg.model_copy(update={"reset": reset}), mode))
            model = SpideClassifier(snn, cfg.hidden, 10)
            out = _train(f"feedback-{arm}-seed{i}", model, train, val, cfg, ctx, order_key=f"seed{i}")
            trained[mode, reset] = evaluate(out["model"], test, ctx)
            acc.setdefault(arm, []).append(trained[mode, reset])
            norms.append(out["max_feedback_norm"])
            if i == 0:
                curves[arm] = [h["val_acc"] for h in out["history"]]
            rows.append({"backward": mode, "reset": reset, "seed": i, "test acc": trained[mode, reset],
                         "max feedback norm": out["max_feedback_norm"]})
    fig, ax = new_figure(1)
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name)
    ax.axhline(cfg.thresholds.min_accuracy, ls="--", c="gray", label=f"check: {cfg.thresholds.min_accuracy:g}")
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="SPIDE feedback net on digits (seed 0)", ylim=(0.5, 1.0))
    ax.legend(fontsize=7)
    figures = [ctx.save_figure(fig, "accuracy"), _reset_figure(ctx, cfg)]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    spike_minus_exact = [a - b for a, b in zip(acc["spike"], acc["exact"])]
    modified_minus_soft = [a - b for a, b in zip(acc["spike"], acc["spike-soft"])]
    metrics = {"test_acc_feedback_spike": mean(acc["spike"]), "test_acc_feedback_exact": mean(acc["exact"]),
               "test_acc_feedback_spike_soft": mean(acc["spike-soft"]),
               "acc_feedback_spike_minus_exact": mean(spike_minus_exact),
               "acc_modified_minus_soft": mean(modified_minus_soft),
               "rate_error_soft_over_modified": mean(rate_ratios),
               "grad_cosine_strong_feedback": mean([r["cosine"] for r in strong]),
               "grad_cosine_strong_feedback_blind": mean([r["blind"] for r in strong]),
               "max_abs_beta_exact_strong_feedback": max(r["beta"] for r in strong),
               "rate_error_times_2T": rate_error_times_2T(cfg),
               "feedback_norm_over_cap": max(norms) / cfg.feedback_norm_cap}
    return Result(metrics=metrics, figures=figures,
                  samples={"acc_feedback_spike_minus_exact": spike_minus_exact,
                           "acc_modified_minus_soft": modified_minus_soft,
                           "rate_error_soft_over_modified": rate_ratios, "test_acc_spike": acc["spike"],
                           "test_acc_exact": acc["exact"], "test_acc_spike_soft": acc["spike-soft"],
                           "grad_cosine_strong_feedback": [r["cosine"] for r in strong]},
                  tables={"SPIDE on digits": markdown_table(rows)}, key_metric="acc_feedback_spike_minus_exact",
                  notes=(f"IF network 64-{cfg.hidden} with a recurrent {cfg.hidden}x{cfg.hidden} feedback (Frobenius "
                         f"norm capped at {cfg.feedback_norm_cap:g}), T={cfg.time_steps}, T_b={cfg.time_steps_back}, "
                         f"s_f={cfg.scale:g}, {cfg.epochs} epochs of SGD (lr {cfg.lr:g}, momentum {cfg.momentum:g}) "
                         f"on {len(train)} digits, {cfg.seeds} seeds; per seed the spike backward, the exact implicit "
                         "gradient (a float64 linear solve) and the spike backward with the soft reset train from one "
                         "initialization and data order. Rate error: a 64-h-h-h feedforward net at each seed's "
                         "initial weights, mean |a - a*| over units and a batch. The gradient check is measured on one "
                         f"batch at initialisation with the feedback rescaled to norm {cfg.check_feedback_norm:g}, "
                         "where a feedback-blind adjoint is measurably wrong (its cosine is reported beside it)."))


# --- spide-events ----------------------------------------------------------------------------------------------


SPIDE_EVENTS_CLAIMS = [
    Check("spike backward on events: test accuracy", metric="test_acc", at_least="thresholds.min_accuracy"),
    Check("feedback Frobenius norm / cap after training", metric="feedback_norm_over_cap",
          at_most="thresholds.max_feedback_norm_ratio"),
]


@register("spide-events", paper="spide", config=SpideEventsConfig, claims=SPIDE_EVENTS_CLAIMS, order=71, threads=1,
          description="SPIDE on simulated event-camera data: event input per step, recurrent feedback layer")
def run_events(cfg: SpideEventsConfig, ctx: RunContext) -> Result:
    from tenfold.data.events import event_dataset, simulated_events

    if cfg.root is not None:
        train, test = (event_dataset(cfg.root, cfg.layout, s, cfg.bins, cfg.sensor, cfg.size) for s in ("train", "test"))
    else:
        train, test = (simulated_events(s, T=cfg.bins, seed=cfg.seed_data, source=cfg.source)
                       for s in ("train", "test"))
    torch.manual_seed(ctx.seed)
    inputs = train.x[0, 0].numel()
    snn = mlp_f(inputs, (cfg.hidden,), feedback=True, **_net_kwargs(cfg, "spike"))
    snn.input_op = torch.nn.Sequential(torch.nn.Flatten(), snn.input_op)  # one (2, H, W) frame per step
    model = SpideClassifier(snn, cfg.hidden, train.num_classes)
    out = _train("events-spike", model, train, test, cfg, ctx, events=True)
    acc = evaluate(out["model"], test, ctx, forward=out["forward"])
    chance = 1.0 / train.num_classes
    fig, ax = new_figure(1)
    curve = [h["val_acc"] for h in out["history"]]
    ax.plot(range(1, len(curve) + 1), curve, label="spike backward")
    ax.axhline(chance, ls=":", c="gray", label="chance")
    where = f"event files ({cfg.root})" if cfg.root is not None else f"simulated events ({cfg.source})"
    ax.set(xlabel="epoch", ylabel="test accuracy", title=f"SPIDE on {where}", ylim=(0, 1))
    ax.legend(fontsize=7)
    return Result(
        metrics={"test_acc": acc, "max_feedback_norm": out["max_feedback_norm"],
                 "feedback_norm_over_cap": out["max_feedback_norm"] / cfg.feedback_norm_cap,
                 "train_loss": out["history"][-1]["loss"], "forward_rate": out["history"][-1]["forward_rate"]},
        figures=[ctx.save_figure(fig, "accuracy")], key_metric="test_acc",
        notes=((f"Event files under {cfg.root} ({cfg.sensor}x{cfg.sensor} sensor, area-resized to {cfg.size}x{cfg.size})"
                if cfg.root is not None else f"Events simulated from {cfg.source} images")
               + f" ({len(train)} train, {len(test)} test, {cfg.bins} bins of "
               f"(2, H, W) counts); IF layer of {cfg.hidden} with recurrent feedback, T = bins, T_b = "
               f"{cfg.time_steps_back}, s_f = {cfg.scale:g}; F's gradient uses the time-mean input. The paper's "
               "CIFAR10-DVS result (about 60%) needs the real recordings and a GPU."))


# --- paper recipes on local data ---------------------------------------------------------------------------------


@register("spide-mnist-lenet", paper="spide", config=SpideMnistConfig, order=72, quick=False,
          claims=[Check("LeNet-5 MNIST test accuracy (paper: about 99.3%)", metric="test_acc",
                        at_least="min_accuracy")],
          description="SPIDE paper recipe: LeNet-5 on MNIST from a local root (no feedback)")
def run_mnist(cfg: SpideMnistConfig, ctx: RunContext) -> Result:
    from tenfold.data.real import mnist

    train, test = mnist(cfg.root, True), mnist(cfg.root, False)
    if cfg.limit:
        train = train.subset(torch.arange(min(cfg.limit, len(train))))
    torch.manual_seed(ctx.seed)
    kwargs = _net_kwargs(cfg, "spike")
    kwargs["dropout"] = [0.0, 0.0, 0.0, 0.0, cfg.fc_dropout, 0.0]
    snn = lenet5(1, 28, cfg.width, **kwargs)
    model = SpideClassifier(snn, feature_count(snn, train.x[:1]), 10)
    out = _train("lenet-spike", model, train, test, cfg, ctx)
    acc = evaluate(out["model"], test, ctx)
    return Result(metrics={"test_acc": acc}, key_metric="test_acc",
                  notes=f"{cfg.epochs} epochs, width {cfg.width:g}, {len(train)} training images.")


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@register("spide-cifar", paper="spide", config=SpideCifarConfig, order=73, quick=False,
          claims=[Check("CIFAR test accuracy (paper, unverified: 90-92% CIFAR-10, 65-72% CIFAR-100)", metric="test_acc",
                        at_least="min_accuracy"),
                  Check("feedback Frobenius norm / cap after training", metric="feedback_norm_over_cap",
                        at_most="max_feedback_norm_ratio")],
          description="SPIDE paper recipe: AlexNet-F / CIFARNet-F on CIFAR-10/100 from a local root")
def run_cifar(cfg: SpideCifarConfig, ctx: RunContext) -> Result:
    from tenfold.data import ArrayDataset
    from tenfold.data.augment import crop_flip_batch
    from tenfold.data.real import cifar

    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    train, test = (cifar(cfg.root, split, cfg.num_classes) for split in (True, False))
    if cfg.limit:
        train = train.subset(torch.arange(min(cfg.limit, len(train))))
    train, test = (ArrayDataset((d.x - mean) / std, d.y, d.class_names) for d in (train, test))
    torch.manual_seed(ctx.seed)
    build = alexnet_f if cfg.arch == "alexnet-f" else cifarnet_f
    snn = build(3, cfg.width, **_net_kwargs(cfg, "spike"))
    model = SpideClassifier(snn, feature_count(snn, train.x[:1]), cfg.num_classes)
    if cfg.augment:
        gen = ctx.generator("spide-augment")
        train = ArrayDataset(train.x, train.y, train.class_names,
                             transform=lambda img: crop_flip_batch(img.unsqueeze(0), gen)[0])
    out = _train(f"{cfg.arch}-spike", model, train, test, cfg, ctx)
    acc = evaluate(out["model"], test, ctx)
    return Result(metrics={"test_acc": acc, "max_feedback_norm": out["max_feedback_norm"],
                           "feedback_norm_over_cap": out["max_feedback_norm"] / cfg.feedback_norm_cap},
                  key_metric="test_acc",
                  notes=f"{cfg.epochs} epochs, width {cfg.width:g}, {len(train)} training images.")
