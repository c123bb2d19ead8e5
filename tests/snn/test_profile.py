"""Live saved-activation accounting (snn/profile.py): views count their own bytes, inputs and parameters
are excluded, freed graphs stop counting; BPTT grows linearly in T, SLTT is flat."""

import torch

from tenfold.snn.networks import SpikingMLP, SpikingVGG
from tenfold.snn.profile import LiveSaved, peak_live_saved, peak_saved_bytes, view_bytes
from tenfold.snn.train import SNNTrainer


def test_view_bytes_is_the_views_own_memory():
    big = torch.zeros(1000, 64)
    assert view_bytes(big[:10]) == 10 * 64 * 4
    assert view_bytes(big[:, :2]) == 1000 * 2 * 4
    assert view_bytes(torch.zeros(5).expand(100, 5)) == 5 * 4  # stride 0: the addressed memory once


def test_a_saved_slice_of_a_big_tensor_counts_only_its_bytes_and_frees():
    w = torch.randn(64, 8, requires_grad=True)
    data = torch.randn(10_000, 64)
    counter = LiveSaved(exclude=[w])
    with counter.hooks():
        h = (data[:16].clone() @ w).tanh()   # tanh saves its 16x8 output; matmul saves the 16x64 clone
        assert counter.live == 16 * 8 * 4 + 16 * 64 * 4
        h.sum().backward()
    assert counter.live == 0 and counter.peak == 16 * 8 * 4 + 16 * 64 * 4


def test_inputs_and_parameters_are_not_counted():
    w = torch.randn(64, 8, requires_grad=True)
    x = torch.randn(32, 5, 64)
    assert peak_live_saved(lambda: (x[:, 2] @ w).sum().backward(), [w, x]) == 0


def test_bptt_over_sltt_on_event_input_and_flat_sltt():
    """Event input (B, T, C, H, W): the frames x[:, t] are the input's own memory and are not charged,
    so SLTT is flat in T and BPTT's growth is exactly linear."""
    saved, multi = {}, {}
    for T in (2, 4, 8):
        x, y = torch.rand(8, T, 2, 8, 8), torch.zeros(8, dtype=torch.long)
        for rule in ("bptt", "sltt"):
            torch.manual_seed(0)
            model = SpikingVGG(2, 3, plan=(8, "M", 8), pool_to=1)
            trainer = SNNTrainer(model, T, rule, static=False)
            trainer.multistep = False  # the one-step loop: BPTT holds exactly T one-step graphs
            saved[rule, T] = peak_saved_bytes(trainer, x, y)
        torch.manual_seed(0)
        multi[T] = peak_saved_bytes(SNNTrainer(SpikingVGG(2, 3, plan=(8, "M", 8), pool_to=1), T, "bptt",
                                               static=False), x, y)
        # the multi-step layout also holds the time-major copy of the input frames that the first conv saves
        assert saved["bptt", T] <= multi[T] <= saved["bptt", T] + x.nbytes + 1e-3 * saved["bptt", T]
    assert saved["sltt", 2] == saved["sltt", 4] == saved["sltt", 8] > 0
    step = saved["bptt", 4] - saved["bptt", 2]
    assert step > 0 and saved["bptt", 8] - saved["bptt", 4] == 2 * step
    # BPTT holds T steps' graphs, SLTT one (up to a few bytes of loss scalars shared between steps)
    assert abs(saved["bptt", 2] - 2 * saved["sltt", 2]) <= 1e-3 * saved["bptt", 2]


def test_a_batch_sliced_from_a_dataset_is_not_charged_for_the_dataset():
    data = torch.rand(5000, 64)
    y = torch.zeros(64, dtype=torch.long)
    torch.manual_seed(0)
    a = peak_saved_bytes(SNNTrainer(SpikingMLP(64, (32,), 10), 4, "sltt"), data[:64], y)
    torch.manual_seed(0)
    b = peak_saved_bytes(SNNTrainer(SpikingMLP(64, (32,), 10), 4, "sltt"), data[:64].clone(), y)
    assert a == b < data.nbytes / 10
