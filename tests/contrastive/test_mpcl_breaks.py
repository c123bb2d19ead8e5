"""Acceptance: each MPCL mechanism, broken on purpose in the code, makes a guard of this file fail.

Every guard below is a plain test on the unbroken code (it must hold) and, in ``test_a_break_trips_its_guard``,
runs again with one mechanism broken by monkeypatching (it must then fail): SimCLR-Attn's anchor weights made
uniform, SimSiam-Multi's bank never committed. mpcl-graph's impostor repulsions are config fields and fail
its paper claim in ``test_mpcl_experiments.py::test_mpcl_graph_claim_fails_under_every_impostor_repulsion``.
"""

import pytest
import torch

from tenfold.contrastive import attention, multistage
from tenfold.contrastive.losses import pair_positives
from tenfold.contrastive.methods import MethodConfig, build_model, method_loss
from tenfold.contrastive.models import mlp_encoder
from tenfold.contrastive.pretrain import TrainConfig, pretrain
from tenfold.data import ArrayDataset
from tenfold.engine import RunContext


def guard_attention_weighs_anchors(tmp_path) -> None:
    """SimCLR-Attn in the training path: its loss differs from SimCLR's on the same model and views, and
    equals InfoNCE with the anchors weighted by softmax_i cos(h_i, h_p(i)) (the detached attention)."""
    torch.manual_seed(0)
    model = build_model("simclr-attn", mlp_encoder(16, 12, 6), proj_dim=8)
    x1, x2 = torch.rand(8, 1, 4, 4), torch.rand(8, 1, 4, 4)
    model.train()
    attn, _ = method_loss(MethodConfig("simclr-attn", tau=0.5), model, x1, x2)
    plain, _ = method_loss(MethodConfig("simclr", tau=0.5), model, x1, x2)
    h, z, _ = model(torch.cat([x1, x2]))
    hn = torch.nn.functional.normalize(h.detach(), dim=1)
    pos = pair_positives(16)
    a = torch.softmax((hn * hn[pos]).sum(1), dim=0)
    zn = torch.nn.functional.normalize(z, dim=1)
    s = (zn @ zn.T / 0.5).masked_fill(torch.eye(16, dtype=torch.bool), float("-inf"))
    expected = -(a * torch.log_softmax(s, dim=1)[torch.arange(16), pos]).sum()
    assert abs(attn.item() - plain.item()) > 1e-4, "SimCLR-Attn equals SimCLR: the anchor weights are uniform"
    assert abs(attn.item() - expected.item()) < 1e-5


def guard_multi_mixes_the_committed_bank(tmp_path) -> None:
    """SimSiam-Multi through pretrain: identical to SimSiam while the epoch is <= mix_after (its bank unused),
    different after it (the bank, committed at each epoch end, enters the targets)."""
    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(torch.rand(32, 1, 4, 4, generator=g), torch.arange(32) % 4)

    def trained(method, epochs, name):
        torch.manual_seed(0)
        t = TrainConfig(epochs=epochs, batch_size=8, siam_dim=8, mix_after=0, beta=0.5, knn_monitor=False)
        model, _ = pretrain(method, mlp_encoder(16, 12, 6), train, t, RunContext(out_dir=tmp_path / name),
                            stage="pre", data_key="same")
        return torch.cat([p.detach().flatten() for p in model.encoder.parameters()])

    assert torch.equal(trained("simsiam", 1, "s1"), trained("simsiam-multi", 1, "m1"))  # epoch 0 <= mix_after
    diff = (trained("simsiam", 2, "s2") - trained("simsiam-multi", 2, "m2")).abs().max().item()
    assert diff > 1e-6, "SimSiam-Multi equals SimSiam after mix_after: the bank never reaches the targets"


GUARDS = {"attention": guard_attention_weighs_anchors, "bank": guard_multi_mixes_the_committed_bank}


def _uniform_weights(h, positives, edge_weights=None):
    return torch.full((h.shape[0],), 1.0 / h.shape[0], dtype=h.dtype, device=h.device)


BREAKS = {  # name -> (guard, object, attribute, replacement)
    "attention weights constant": ("attention", attention, "attention_weights", _uniform_weights),
    "bank never committed": ("bank", multistage.MultiStageBank, "commit", lambda self: None),
}


@pytest.mark.parametrize("name", sorted(GUARDS))
def test_guard_holds_on_the_code(name, tmp_path):
    GUARDS[name](tmp_path)


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_break_trips_its_guard(name, tmp_path, monkeypatch):
    guard, obj, attr, replacement = BREAKS[name]
    monkeypatch.setattr(obj, attr, replacement)
    with pytest.raises(AssertionError):
        GUARDS[guard](tmp_path)
