"""SimCLR-Attn, SimSiam-Multi and rewiring (spec 1.3, 1.6 checks 4-5)."""

import pytest
import torch

from tenfold.contrastive import (
    MultiStageBank, attention_weights, mp_infonce, pair_positives, rewired_infonce, rewired_positives,
    simclr_attn_loss, simsiam_loss, simsiam_multi_loss,
)
from tenfold.contrastive.losses import infonce_parts
from tenfold.errors import ConfigError


def _t(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_attention_with_constant_features_equals_plain_infonce():
    z = _t(10, 4).requires_grad_()
    h = torch.ones(10, 7, dtype=torch.float64)
    pos = pair_positives(10)
    a = simclr_attn_loss(z, h, pos, 0.5)
    b = mp_infonce(z, pos, 0.5)
    assert abs(a.item() - b.item()) < 1e-14
    assert torch.allclose(attention_weights(h, pos), torch.full((10,), 0.1, dtype=torch.float64), atol=1e-15)


def test_attention_passes_no_gradient_to_features_and_matches_weighted_dense_loss():
    z = _t(8, 3, seed=1).requires_grad_()
    h = _t(8, 5, seed=2).requires_grad_()
    pos = pair_positives(8)
    loss = simclr_attn_loss(z, h, pos, 0.4)
    gz, gh = torch.autograd.grad(loss, (z, h), allow_unused=True)
    assert gh is None or gh.abs().max() == 0
    w = attention_weights(h, pos)
    zn = torch.nn.functional.normalize(z, dim=1)
    align, unif = infonce_parts(zn, pos, 0.4, anchor_weights=w)
    assert abs(loss.item() - (align + unif).item()) < 1e-12
    assert abs(w.sum().item() - 1) < 1e-14 and w.std() > 0


def test_attention_down_weights_disagreeing_pairs_and_ignores_a_constant_shift():
    h = _t(6, 4, seed=3)
    pos = pair_positives(6)
    h[3] = -h[0]  # pair (0, 3) disagrees completely
    w = attention_weights(h, pos)
    assert w[0] == w.min() and w[3] == w.min()
    # a_i = softmax(1 + cos): shifting every cosine by a constant changes nothing
    cos = torch.nn.functional.cosine_similarity(h, h[pos], dim=1)
    assert torch.allclose(torch.softmax(cos + 5.0, 0), w, atol=1e-15)


def test_simsiam_multi_with_beta_zero_is_simsiam():
    p1, p2, z1, z2, m = (_t(5, 6, seed=s).requires_grad_() for s in range(5))
    a = simsiam_multi_loss(p1, p2, z1, z2, m.detach(), 0.0)
    b = simsiam_loss(p1, p2, z1, z2)
    assert abs(a.item() - b.item()) < 1e-15
    ga = torch.autograd.grad(a, (p1, p2))
    gb = torch.autograd.grad(b, (p1, p2))
    assert all(torch.allclose(x, y, atol=1e-15) for x, y in zip(ga, gb))
    # and beta > 0 changes the targets
    assert abs(simsiam_multi_loss(p1, p2, z1, z2, m.detach(), 0.5).item() - b.item()) > 1e-6


def test_simsiam_multi_mixes_memory_into_stop_gradient_targets():
    p1, p2, z1, z2, m = (_t(4, 3, seed=s) for s in range(5))
    loss = simsiam_multi_loss(p1, p2, z1, z2, m, 0.5)
    expected = simsiam_loss(p1, p2, 0.5 * z1 + 0.5 * m, 0.5 * z2 + 0.5 * m)
    assert abs(loss.item() - expected.item()) < 1e-15
    unfilled = simsiam_multi_loss(p1, p2, z1, z2, m, 0.5, filled=torch.zeros(4, dtype=torch.bool))
    assert abs(unfilled.item() - simsiam_loss(p1, p2, z1, z2).item()) < 1e-15


def test_bank_changes_only_at_epoch_ends():
    bank = MultiStageBank(6, 3, dtype=torch.float64)
    bank.check_dataset(6)
    idx = torch.tensor([1, 4])
    bank.stage(idx, _t(2, 3, seed=7))
    memory, filled = bank.lookup(idx)
    assert memory.abs().max() == 0 and not filled.any()
    bank.commit()
    memory, filled = bank.lookup(idx)
    assert torch.equal(memory, _t(2, 3, seed=7)) and filled.all()
    assert not bank.lookup(torch.tensor([0]))[1].any()
    bank.stage(idx, _t(2, 3, seed=8))  # staged again: M keeps the last epoch's value until commit
    assert torch.equal(bank.lookup(idx)[0], _t(2, 3, seed=7))


def test_bank_size_and_index_errors():
    bank = MultiStageBank(6, 3)
    with pytest.raises(ConfigError, match="^bank size=6"):
        bank.check_dataset(7)
    with pytest.raises(ConfigError, match="^index=6"):
        bank.stage(torch.tensor([6]), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="^beta="):
        simsiam_multi_loss(*(torch.zeros(2, 3) for _ in range(5)), beta=1.5)


def test_rewiring_with_beta_zero_equals_base_loss_and_neighbours_change_it():
    z = _t(12, 5, seed=9).requires_grad_()
    pos = pair_positives(12)
    base = mp_infonce(z, pos, 0.5)
    rew0 = rewired_infonce(z, pos, 0.5, k=2, beta=0.0)
    assert abs(base.item() - rew0.item()) < 1e-14
    g0 = torch.autograd.grad(rew0, z)[0]
    gb = torch.autograd.grad(base, z)[0]
    assert torch.allclose(g0, gb, atol=1e-14)
    assert abs(rewired_infonce(z, pos, 0.5, k=2, beta=0.5).item() - base.item()) > 1e-6


def test_rewired_graph_is_row_stochastic_and_excludes_self_and_own_positive():
    feats = _t(10, 4, seed=10)
    idx, w = rewired_positives(pair_positives(10), feats, k=3, beta=0.3)
    assert idx.shape == (10, 4)
    assert torch.allclose(w.sum(1), torch.ones(10, dtype=w.dtype), atol=1e-6)
    rows = torch.arange(10)
    assert not (idx[:, 1:] == rows[:, None]).any()
    assert not (idx[:, 1:] == pair_positives(10)[:, None]).any()
    with pytest.raises(ConfigError, match="^k="):
        rewired_positives(pair_positives(10), feats, k=9, beta=0.3)


def test_rewiring_with_padded_positives_can_pick_row_0_as_a_neighbour():
    """Padding (-1) in the positives must not exclude row 0 from the neighbour search."""
    feats = torch.tensor([[1.0, 0.0], [0.99, 0.1], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-0.9, 0.3]],
                         dtype=torch.float64)
    # row 1's only positive is row 3 (padded to K = 2); its nearest other row is row 0
    pos = torch.tensor([[2, -1], [3, -1], [0, -1], [1, -1], [5, -1], [4, -1]])
    idx, w = rewired_positives(pos, feats, k=1, beta=0.5)
    assert int(idx[1, -1]) == 0
    assert float(w[1, -1]) == 0.5
    # a listed positive is still excluded: row 2's positive is row 0, so row 0 is not its neighbour
    assert int(idx[2, -1]) != 0
    assert torch.allclose(w.sum(1), torch.ones(6, dtype=torch.float64))


# -- the variants' controls (the ablations of the variant claims): each changes the loss and its gradient and
# -- is neither the method nor its base ---------------------------------------------------------------------
def _grad_and_loss(cfg, model, x1, x2, bank=None, seed=1):
    from tenfold.contrastive.methods import method_loss

    model.zero_grad()
    loss, _ = method_loss(cfg, model, x1, x2, torch.arange(len(x1)), epoch=1, bank=bank,
                          generator=torch.Generator().manual_seed(seed))
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("method, base, option", [
    ("simclr-attn", "simclr", {"attention_weights": "permuted"}),
    ("simsiam-multi", "simsiam", {"bank_rows": "shuffled"}),
    ("rewire", "simclr", {"rewire_partners": "random"}),
])
def test_each_control_changes_loss_and_gradient_and_is_not_the_base(method, base, option):
    from tenfold.contrastive.methods import MethodConfig, build_model
    from tenfold.contrastive.models import mlp_encoder

    torch.manual_seed(0)
    model = build_model(method, mlp_encoder(16, 12, 6), proj_dim=8, siam_dim=8).double()
    x1, x2 = _t(12, 1, 4, 4, seed=11), _t(12, 1, 4, 4, seed=12)
    bank = MultiStageBank(12, 8, dtype=torch.float64)
    bank.stage(torch.arange(12), _t(12, 8, seed=13))
    bank.commit()
    common = {"beta": 0.5, "mix_after": 0, "knn_k": 2, "rewire_beta": 0.5}
    cfg = MethodConfig(method, **common)
    control = MethodConfig(method, **common, **option)
    assert control.control and not cfg.control
    lm, gm = _grad_and_loss(cfg, model, x1, x2, bank)
    lc, gc = _grad_and_loss(control, model, x1, x2, bank)
    lb, gb = _grad_and_loss(MethodConfig(base, **common), model, x1, x2, bank)
    assert abs(lc - lm) > 1e-6 and (gc - gm).abs().max() > 1e-6, "the control is the method"
    assert abs(lc - lb) > 1e-6 and (gc - gb).abs().max() > 1e-6, "the control is the base method"
    # the draws come from the generator: the same seed gives the same control, another seed another one
    assert _grad_and_loss(control, model, x1, x2, bank)[0] == lc
    assert _grad_and_loss(control, model, x1, x2, bank, seed=2)[0] != lc


def test_permuted_attention_keeps_the_weights_and_moves_them_off_their_anchors():
    from tenfold.contrastive.losses import random_derangement

    for n in (2, 3, 10, 64):
        pi = random_derangement(n, torch.Generator().manual_seed(n))
        assert sorted(pi.tolist()) == list(range(n)) and not (pi == torch.arange(n)).any()
    z, h, pos = _t(10, 4, seed=14).requires_grad_(), _t(10, 6, seed=15), pair_positives(10)
    w = attention_weights(h, pos)
    pi = random_derangement(10, torch.Generator().manual_seed(3))
    got = simclr_attn_loss(z, h, pos, 0.5, weights="permuted", generator=torch.Generator().manual_seed(3))
    expected = mp_infonce(z, pos, 0.5, anchor_weights=w[pi])
    assert abs(got.item() - expected.item()) < 1e-14
    (gz,) = torch.autograd.grad(got, z)
    assert torch.isfinite(gz).all()
    with pytest.raises(ConfigError, match="^attention_weights='random' is invalid"):
        simclr_attn_loss(z, h, pos, 0.5, weights="random")


def test_random_partners_skip_self_and_positives_and_keep_the_weights():
    feats = _t(10, 4, seed=16)
    knn_idx, knn_w = rewired_positives(pair_positives(10), feats, k=3, beta=0.3)
    idx, w = rewired_positives(pair_positives(10), feats, k=3, beta=0.3, partners="random",
                               generator=torch.Generator().manual_seed(0))
    assert torch.equal(w, knn_w) and torch.equal(idx[:, 0], knn_idx[:, 0])
    rows = torch.arange(10)
    assert not (idx[:, 1:] == rows[:, None]).any() and not (idx[:, 1:] == pair_positives(10)[:, None]).any()
    assert all(len(set(r)) == 3 for r in idx[:, 1:].tolist())
    assert not torch.equal(idx, knn_idx)
    with pytest.raises(ConfigError, match="^rewire_partners='nearest' is invalid"):
        rewired_positives(pair_positives(10), feats, k=3, beta=0.3, partners="nearest")


@pytest.mark.parametrize("field, value", [("attention_weights", "uniform"), ("bank_rows", "nn"),
                                          ("rewire_partners", "all")])
def test_method_config_refuses_an_unknown_control_in_one_line(field, value):
    from tenfold.contrastive.methods import MethodConfig

    with pytest.raises(ConfigError, match=f"^{field}='{value}' is invalid: expected one of") as info:
        MethodConfig("simclr", **{field: value})
    assert "\n" not in str(info.value)
