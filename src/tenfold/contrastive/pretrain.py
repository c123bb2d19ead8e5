"""Contrastive pre-training with the engine's resumable loop: SimCLR, SimCLR-Attn, SimSiam, SimSiam-Multi and
graph rewiring (:mod:`tenfold.contrastive.methods`) on images held in one tensor, with momentum SGD or LARS,
per-step warm-up + cosine, an optional memory bank of negatives and an online probe / kNN monitor.

Shared by the MPCL paper's experiments (``mpcl-shapes``, ``mpcl-cifar``) and usable on a user's own encoder::

    from tenfold.contrastive.pretrain import TrainConfig, pretrain
    model, last = pretrain("simclr", my_encoder, my_images, TrainConfig(epochs=5), ctx)
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tenfold.contrastive.augment import AugmentConfig, augment
from tenfold.contrastive.bank import MemoryBank
from tenfold.contrastive.config import TrainConfig  # noqa: F401  (its home is torch-free; imported from here too)
from tenfold.contrastive.lars import LARS, lars_param_groups, warmup_cosine
from tenfold.contrastive.methods import SIAMESE, MethodConfig, build_model, method_loss
from tenfold.contrastive.multistage import MultiStageBank
from tenfold.contrastive.probe import OnlineProbe, extract_features, knn_accuracy, linear_probe_accuracy
from tenfold.data import ArrayDataset
from tenfold.engine import RunContext, fit

class SampleIndices(Dataset):
    """Items are sample indices only: the step gathers images from a tensor already on the device, which
    keeps collation cheap and gives the SimSiam-Multi bank its row addresses."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _method_config(method: str, t: TrainConfig) -> MethodConfig:
    if method == "simclr-attn" and not t.attention:
        method = "simclr"  # uniform anchor weights: SimCLR-Attn without its attention is SimCLR
    if method == "rewire" and t.rewire_beta == 0:
        method = "simclr"  # A~ = A: the rewired graph is the augmentation graph (no zero-weight extra columns)
    return MethodConfig(method, tau=t.tau, beta=t.beta, mix_after=t.mix_after, knn_k=t.knn_k,
                        rewire_beta=t.rewire_beta, multi_positive=t.multi_positive,
                        attention_weights=t.attention_weights, bank_rows=t.bank_rows,
                        rewire_partners=t.rewire_partners)


class PretrainNet(torch.nn.Module):
    """Model and online probe behind one ``forward``, so that a DDP wrapper sees every parameter.

    Under several processes the InfoNCE methods gather negatives from every process with gradients
    (:func:`tenfold.contrastive.methods.gather_rows`); BatchNorm statistics and the SimSiam-Multi bank
    stay per process (the bank holds only the rows that process saw). The memory bank of negatives
    (``negatives``) receives the gathered rows, so it is the same on every process."""

    def __init__(self, cfg: MethodConfig, model: torch.nn.Module, probe: OnlineProbe,
                 bank: MultiStageBank | None, negatives: MemoryBank | None = None) -> None:
        super().__init__()
        self.cfg, self.model, self.probe, self.bank, self.negatives = cfg, model, probe, bank, negatives

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor, y: torch.Tensor, epoch: int,
                generator: torch.Generator | None = None):
        loss, h = method_loss(self.cfg, self.model, x1, x2, index, epoch, self.bank, self.negatives, generator)
        probe_loss, probe_acc = self.probe(h, y)
        return loss, probe_loss, probe_acc


def make_optimizer(net: PretrainNet, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD over every parameter (weight decay on all), or LARS (:mod:`tenfold.contrastive.lars`): the
    model's weights adapted and decayed, its biases and norm parameters plain momentum SGD without decay,
    and the online probe (a monitor on detached features) plain momentum SGD without decay at ``probe_lr``."""
    probe_lr = t.probe_lr or lr
    if t.optimizer == "sgd":
        groups = [{"params": list(net.model.parameters())}, {"params": list(net.probe.parameters()), "lr": probe_lr}]
        return torch.optim.SGD(groups, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay)
    groups = lars_param_groups(net.model.named_parameters(), t.weight_decay)
    groups.append({"params": list(net.probe.parameters()), "lr": probe_lr, "weight_decay": 0.0,
                   "layer_adaptation": False})
    return LARS(groups, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay, eta=t.lars_eta, trust=t.lars_trust)


def pretrain(method: str, encoder: torch.nn.Module, train: ArrayDataset, t: TrainConfig, ctx: RunContext,
             stage: str, data_key: str | None = None, monitor: ArrayDataset | None = None
             ) -> tuple[torch.nn.Module, dict[str, float]]:
    """Pre-train ``encoder`` with ``method`` and an online linear probe; returns the model and last epoch's metrics.

    With ``monitor`` (a labelled split) and ``t.knn_monitor``, every epoch ends with the weighted kNN
    accuracy of ``monitor`` on the frozen features of ``train`` (``knn_acc`` in the epoch's row); it runs
    in eval mode without gradients or randomness, so training is the same with or without it.

    Batch order and views are seeded per ``data_key`` (default: ``stage``; the engine's shuffling and
    ``ctx.generator("views", ...)``): methods that share a ``data_key`` see the same batches and views."""
    data_key = data_key or stage
    mcfg = _method_config(method, t)
    model = build_model(method, encoder, t.proj_dim, t.siam_dim)
    probe = OnlineProbe(int(encoder.out_dim), train.num_classes)
    lr = t.siam_lr if method in SIAMESE else t.lr
    bank = MultiStageBank(len(train), t.siam_dim, device=ctx.device) if method == "simsiam-multi" else None
    if bank is not None:
        bank.check_dataset(len(train))
    negatives = MemoryBank(t.bank_size, t.proj_dim, device=ctx.device) if t.bank_size and method not in SIAMESE \
        else None
    net = PretrainNet(mcfg, model, probe, bank, negatives)
    opt = make_optimizer(net, t, lr)
    net, opt = ctx.setup(net, opt)
    steps = (len(train) // t.batch_size) * t.epochs  # drop_last batches
    if t.lr_schedule == "warmup-cosine":
        sched, interval = warmup_cosine(opt, steps, t.warmup), "step"
    else:
        sched, interval = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs), "epoch"
    aug = AugmentConfig(crop_scale=(t.crop_low, 1.0), flip=t.flip, strength=t.jitter, p_gray=t.p_gray,
                        noise=t.noise)
    images, labels = train.x.to(ctx.device), train.y.to(ctx.device)

    def step(index, state):
        x, y = images[index], labels[index]
        gen = ctx.generator("views", data_key, state.step)
        x2 = x
        if t.positives == "scrambled":  # the second view of a random other sample: wrong positive pairs
            x2 = x[torch.randperm(len(x), generator=ctx.generator("scramble", data_key, state.step)).to(x.device)]
        # a control's random draws: seeded per step like the views (same on every process, resumable)
        control = ctx.generator("control", data_key, state.step) if mcfg.control else None
        loss, probe_loss, probe_acc = net(augment(x, aug, gen), augment(x2, aug, gen), index, y, state.epoch, control)
        opt.zero_grad(set_to_none=True)
        ctx.backward(loss + probe_loss)
        opt.step()
        return {"loss": loss.detach(), "online_acc": probe_acc}

    def end_epoch(s):
        if bank is not None:
            bank.commit()
        if monitor is None or not t.knn_monitor or (s.epoch % t.knn_every and s.epoch != t.epochs):
            return None
        feats = extract_features(model.encoder, train.x)
        return {"knn_acc": knn_accuracy(feats, train.y, extract_features(model.encoder, monitor.x), monitor.y,
                                        t.knn_monitor_k, t.knn_monitor_t, train.num_classes)}

    state = fit(model=net, step=step, dataset=SampleIndices(len(train)), epochs=t.epochs, batch_size=t.batch_size,
                ctx=ctx, optimizer=opt, scheduler=sched, stage=stage, drop_last=True, order_key=data_key,
                scheduler_interval=interval,
                on_epoch_end=end_epoch,
                extra_state=(lambda: bank.state_dict()) if bank is not None else
                (lambda: {"negatives": negatives.state_dict()}) if negatives is not None else None,
                load_extra_state=(lambda s: bank.load_state_dict(s)) if bank is not None else
                (lambda s: negatives.load_state_dict(s["negatives"])) if negatives is not None else None)
    return model, state.history[-1]


def probe_accuracy(encoder: torch.nn.Module, train: ArrayDataset, test: ArrayDataset, c: float) -> float:
    return linear_probe_accuracy(extract_features(encoder, train.x), train.y, extract_features(encoder, test.x),
                                 test.y, c=c)
