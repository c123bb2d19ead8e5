"""LARS and the warm-up + cosine schedule of the official SimCLR-Attn recipe (tenfold.contrastive.lars)."""

import math

import pytest
import torch

from tenfold.contrastive.lars import LARS, WarmupCosine, lars_param_groups, warmup_cosine
from tenfold.data import ArrayDataset
from tenfold.engine import RunContext, fit


def _params():
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))
    grads = [(torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64))
             for _ in range(2)]
    return w, b, grads


@pytest.mark.parametrize("trust", ["official", "paper"])
def test_two_lars_steps_equal_the_hand_computation(trust):
    lr, mom, wd, eta = 0.7, 0.9, 1e-2, 1e-3
    w, b, grads = _params()
    w0, b0 = w.detach().clone(), b.detach().clone()
    opt = LARS(lars_param_groups([("fc.weight", w), ("fc.bias", b)], wd), lr=lr, momentum=mom, weight_decay=wd,
               eta=eta, trust=trust)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    # by hand, float64: adapted weight, then the bias with plain momentum SGD (no decay)
    hw, hb, buf_w, buf_b = w0.clone(), b0.clone(), None, None
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        d = gw + wd * hw
        if trust == "official":
            ratio = eta * hw.norm() / d.norm()
        else:
            ratio = eta * hw.norm() / (gw.norm() + wd * hw.norm() + 1e-8)
        d = ratio * d
        buf_w = d if buf_w is None else mom * buf_w + d
        hw = hw - lr * buf_w
        buf_b = gb if buf_b is None else mom * buf_b + gb
        hb = hb - lr * buf_b
        assert torch.allclose(w.detach(), hw, atol=1e-15, rtol=0)
        assert torch.allclose(b.detach(), hb, atol=1e-15, rtol=0)


def test_excluded_parameters_get_plain_momentum_sgd():
    """Biases and BatchNorm weights: the same trajectory as torch SGD(momentum) without weight decay."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1, bias=False))
    ref = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1, bias=False))
    ref.load_state_dict(net.state_dict())
    groups = lars_param_groups(net.named_parameters(), 0.1)
    assert {id(p) for p in groups[1]["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    assert groups[1]["weight_decay"] == 0 and not groups[1]["layer_adaptation"]
    opt = LARS(groups, lr=0.3, momentum=0.9, weight_decay=0.1)
    sgd = torch.optim.SGD([ref[0].bias, ref[1].weight, ref[1].bias], lr=0.3, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # the same gradients for both (each update depends on its own gradient and state only)
        for p, q in zip(net.parameters(), ref.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        sgd.step()
    for a, r in ((net[0].bias, ref[0].bias), (net[1].weight, ref[1].weight), (net[1].bias, ref[1].bias)):
        assert torch.equal(a, r)
    assert not torch.allclose(net[0].weight, ref[0].weight)  # adapted (and decayed), unlike SGD's untouched copy


def test_zero_weight_or_gradient_leaves_the_ratio_at_one():
    w = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    w.grad = torch.ones(2, 2, dtype=torch.float64)
    LARS([w], lr=0.5, momentum=0.0).step()
    assert torch.allclose(w.detach(), torch.full((2, 2), -0.5, dtype=torch.float64))


def test_warmup_cosine_values_at_warmup_end_half_way_and_end():
    total, frac = 200, 0.01
    f = WarmupCosine(total, frac)
    assert f.warm == 2
    assert f(0) == pytest.approx(1 / 3) and f(1) == pytest.approx(2 / 3)
    assert f(2) == pytest.approx(1.0)                      # warm-up end
    assert f(2 + 99) == pytest.approx(0.5)                 # half way through the cosine
    assert f(total) == pytest.approx(0.0, abs=1e-15)       # end
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_cosine(opt, total, frac)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(total):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen[2] == pytest.approx(1.0) and seen[101] == pytest.approx(0.5) and seen[200] == pytest.approx(0.0)
    t = 150
    assert seen[t] == pytest.approx(0.5 * (1 + math.cos(math.pi * (t - 2) / 198)))


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    return ArrayDataset(x, (x[:, 0] > 0).long())


def _train(ctx, epochs=4, **kw):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = LARS(lars_param_groups(model.named_parameters(), 1e-4), lr=1.0, momentum=0.9, weight_decay=1e-4)
    sched = warmup_cosine(opt, epochs * 4, 0.25)

    def step(batch, state):
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        ctx.backward(loss)
        opt.step()
        return {"loss": loss, "lr": opt.param_groups[0]["lr"]}

    state = fit(model=model, step=step, dataset=_toy(), epochs=epochs, batch_size=16, ctx=ctx, optimizer=opt,
                scheduler=sched, scheduler_interval="step", **kw)
    return model, opt, sched, state


def test_lars_and_its_per_step_schedule_resume_exactly_through_the_stage(tmp_path):
    full, opt_a, sched_a, state_a = _train(RunContext(out_dir=tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        _train(RunContext(out_dir=tmp_path / "b"), stop_after_epochs=2)
    resumed, opt_b, sched_b, state_b = _train(RunContext(out_dir=tmp_path / "b", resume=True))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert sched_a.last_epoch == sched_b.last_epoch == 16  # stepped per iteration, restored from the checkpoint
    bufs_a = [opt_a.state[p]["momentum_buffer"] for p in full.parameters()]
    bufs_b = [opt_b.state[p]["momentum_buffer"] for p in resumed.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(bufs_a, bufs_b))
    assert [r["lr"] for r in state_a.history] == [r["lr"] for r in state_b.history]


def test_the_cifar_paper_preset_is_the_official_lars_recipe_and_sgd_stays_selectable():
    from tenfold.config import resolve
    from tenfold.contrastive.methods import MethodConfig, build_model
    from tenfold.contrastive.models import small_cnn
    from tenfold.contrastive.probe import OnlineProbe
    from tenfold.contrastive.pretrain import PretrainNet, make_optimizer
    from tenfold.papers.mpcl.experiments import CifarConfig

    cfg = resolve(CifarConfig, "mpcl-cifar", "paper")
    assert (cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.warmup, cfg.lars_eta) == ("lars", 1.0, "warmup-cosine", 0.01,
                                                                                  0.001)
    assert (cfg.weight_decay, cfg.batch_size, cfg.tau) == (1e-6, 512, 0.7)
    encoder = small_cnn(3, 4, 8)
    net = PretrainNet(MethodConfig("simclr"), build_model("simclr", encoder, 8), OnlineProbe(8, 10), None)
    opt = make_optimizer(net, cfg, cfg.lr)
    assert isinstance(opt, LARS)
    adapted, excluded, probe = opt.param_groups
    assert adapted["layer_adaptation"] and adapted["weight_decay"] == 1e-6
    assert all(p.ndim > 1 for p in adapted["params"]) and all(p.ndim == 1 for p in excluded["params"])
    assert not excluded["layer_adaptation"] and excluded["weight_decay"] == 0
    assert not probe["layer_adaptation"] and probe["lr"] == 0.1 and probe["weight_decay"] == 0
    sgd = make_optimizer(net, resolve(CifarConfig, "mpcl-cifar", "paper", ["optimizer=sgd"]), 0.5)
    assert type(sgd) is torch.optim.SGD
    assert sum(len(g["params"]) for g in sgd.param_groups) == len(list(net.parameters()))
