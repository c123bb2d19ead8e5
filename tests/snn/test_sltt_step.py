"""SLTT's entry points: the trainer and the functional step ``sltt_step`` exported from tenfold.snn, SPIDE
exported too; states reset by the step, and a user's loop that forgets the reset gets a one-line error."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import TenfoldError

D = torch.float64


def _model(seed=0, temporal="bptt"):
    from tenfold.snn import LIFNeuron

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), LIFNeuron(tau=1.5, temporal=temporal), nn.Linear(12, 3)).double()


def _batch(seed=1, B=5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 6, generator=g, dtype=D) * 2, torch.randint(0, 3, (B,), generator=g)


def test_exports():
    import tenfold.snn as snn
    from tenfold.snn import SNNTrainer, SpideClassifier, SpideNetwork, mlp_f, sltt_step  # noqa: F401

    assert {"SNNTrainer", "sltt_step", "SpideNetwork", "SpideClassifier", "BatchResult"} <= set(snn.__all__)


@pytest.mark.parametrize("rule,k", [("bptt", None), ("sltt", None), ("sltt-k", 2)])
def test_step_equals_the_trainer(rule, k):
    from tenfold.snn import SNNTrainer, sltt_step

    x, y = _batch()
    a, b = _model(), _model()
    ra = sltt_step(a, x, y, T=4, rule=rule, k=k, generator=torch.Generator().manual_seed(3))
    rb = SNNTrainer(b, 4, rule, k, generator=torch.Generator().manual_seed(3)).gradients(x, y)
    assert ra.grad_steps == rb.grad_steps and ra.loss == rb.loss
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_step_in_a_loop_resets_states_and_takes_optimizer_steps():
    from tenfold.snn import LIFNeuron, sltt_step

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for seed in (1, 2, 3):  # no reset in the loop: the step owns the sequence
        x, y = _batch(seed)
        result = sltt_step(model, x, y, opt, T=3, rule="bptt", loss=F.cross_entropy)
        assert result.backward_calls == 1
    assert all(m.u is None for m in model.modules() if isinstance(m, LIFNeuron))
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_sequence_input_and_sltt_k_draws_follow_the_global_seed():
    from tenfold.snn import sltt_step

    model = _model(temporal="sltt")
    x = torch.rand(4, 6, 6, dtype=D)  # (B, T, features): T = 6 frames
    y = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(7)
    draws = [sltt_step(model, x, y, rule="sltt-2").grad_steps for _ in range(4)]
    torch.manual_seed(7)
    assert [sltt_step(model, x, y, rule="sltt-2").grad_steps for _ in range(4)] == draws
    assert len({tuple(d) for d in draws}) > 1 and all(len(d) == 2 for d in draws)


def test_user_loop_that_forgets_the_reset_gets_a_one_line_error_naming_reset():
    model = _model()
    for seed in (1, 2):
        x, y = _batch(seed)
        if seed == 2:
            with pytest.raises(TenfoldError, match="reset_states") as info:
                sum(F.cross_entropy(model(x), y) for _ in range(3)).backward()
            assert "\n" not in str(info.value)
        else:
            sum(F.cross_entropy(model(x), y) for _ in range(3)).backward()


def test_retained_graph_and_reset_loops_still_work():
    from tenfold.snn import reset_states

    model = _model()
    x, y = _batch()
    for _ in range(2):  # online BPTT with retain_graph: the state's graph is alive, no error
        F.cross_entropy(model(x), y).backward(retain_graph=True)
    for seed in (1, 2):
        reset_states(model)
        x, y = _batch(seed)
        sum(F.cross_entropy(model(x), y) for _ in range(3)).backward()


def test_bad_sequence_without_T_is_one_line():
    from tenfold.snn import sltt_step

    with pytest.raises(TenfoldError, match="^x=.*sequence"):
        sltt_step(_model(), torch.rand(5, dtype=D), torch.tensor([0]))


def _sltt_epoch(model, opt, batches, reset):
    """A user's SLTT loop in SpikingJelly's style: a backward per step, one optimizer step per batch."""
    from tenfold.snn import reset_states

    for x, y in batches:
        for _ in range(3):
            (F.cross_entropy(model(x), y) / 3).backward()
        opt.step()
        opt.zero_grad()
        if reset:
            reset_states(model)


def test_sltt_loop_that_forgets_the_reset_gets_a_one_line_error_not_a_continued_membrane():
    """Under SLTT the state holds no graph, so PyTorch would not notice: the membrane of the previous
    batch would silently start the next one. The optimizer step between batches gives it away."""
    batches = [_batch(1), _batch(2)]
    model = _model(temporal="sltt")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TenfoldError, match="reset_states") as info:
        _sltt_epoch(model, opt, batches, reset=False)
    assert "\n" not in str(info.value) and "optimizer step" in str(info.value)
    # the same loop with the reset runs, and equals sltt_step (which resets for you)
    from tenfold.snn import sltt_step

    a, b = _model(temporal="sltt"), _model(temporal="sltt")
    _sltt_epoch(a, torch.optim.SGD(a.parameters(), lr=0.1), batches, reset=True)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    for x, y in batches:
        sltt_step(b, x, y, opt_b, T=3, rule="sltt", loss=F.cross_entropy)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-14)


def test_updates_inside_a_sequence_are_allowed_when_asked():
    from tenfold.snn import LIFNeuron

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), LIFNeuron(tau=1.5, temporal="sltt", updates_in_sequence=True),
                          nn.Linear(12, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batch()
    for _ in range(3):  # online learning: a weight update at every step of one sequence
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert "updates_in_sequence=True" in repr(model)


def test_evaluation_after_a_trained_batch_does_not_continue_its_membrane():
    x, y = _batch(1)
    model = _model()
    sum(F.cross_entropy(model(x), y) for _ in range(3)).backward()  # a BPTT batch, no reset afterwards
    with torch.no_grad(), pytest.raises(TenfoldError, match="reset_states"):  # no_grad alone: the freed graph
        model(x)
    model.eval()  # a change of mode starts a new sequence: the state is reset, no error
    with torch.no_grad():
        out = model(x)
    fresh = _model().eval()
    with torch.no_grad():
        assert torch.equal(out, fresh(x))
    u = model[1].u
    model.eval()  # no change of mode: the state (one evaluation step) is kept
    assert model[1].u is u


def test_step_dropout_redraws_its_mask_after_a_mode_change():
    from tenfold.snn.networks import StepDropout

    drop = StepDropout(0.5, generator=torch.Generator().manual_seed(0))
    drop(torch.ones(4, 8))
    mask = drop.mask
    drop.eval()
    drop.train()
    assert drop.mask is None
    drop(torch.ones(4, 8))
    assert not torch.equal(drop.mask, mask)
