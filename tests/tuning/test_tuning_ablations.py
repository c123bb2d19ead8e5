"""The tuning claims' ablations remove only the mechanism, and breaking VPT's mechanism fails a test.

- ``freeze_new`` removes VPT's prompts (length 0), not freezes them at random init; for VPT, the
  zero-initialised adapters/LoRA and BitFit it is then the linear probe by identity (same accuracy exactly);
- ``freeze_full`` trains full fine-tuning's head on the linear probe's lr grid;
- the claims declare their arms, so the report can say "ablation = baseline".
"""

from __future__ import annotations

import pytest
import torch

import tenfold.tuning as tt
from tenfold.reporting.claims import PaperClaim, ablation_is_baseline
from tenfold.tuning.foundation import build_vit
from tenfold.tuning.prompts import VisualPrompts


def assert_prompts_learn(model, x, y) -> None:
    """VPT's mechanism: the prompts are trainable, change the output, get gradient and move under AdamW."""
    prompts = model.vpt.prompts
    assert prompts.requires_grad, "prompts are frozen"
    before = prompts.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert prompts.grad is not None and all(prompts.grad[i].abs().sum() > 0 for i in range(len(prompts))), \
        "prompts get no gradient"
    opt.step()
    assert not torch.equal(prompts.detach(), before), "prompts did not move"


def vpt(length: int = 2):
    vit = build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2)
    return tt.apply(vit, "vpt-deep", length=length)


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 8, 8, generator=g), torch.randint(3, (6,), generator=g)


def test_vpt_prompts_learn():
    assert_prompts_learn(vpt(), *batch())


@pytest.mark.parametrize("break_it", ["requires_grad", "detach"])
def test_vpt_prompts_without_gradient_are_caught(break_it, monkeypatch):
    model = vpt()
    if break_it == "requires_grad":
        model.vpt.prompts.requires_grad_(False)
    else:
        insert = VisualPrompts.insert

        def detached(self, x, layer):  # the prompt tokens enter the sequence without their graph
            if self.length == 0:
                return x
            p = self.prompts[layer].detach().to(x.dtype).expand(x.shape[0], -1, -1)
            rest = x[:, self.start:] if layer == 0 else x[:, self.start + self.length:]
            return torch.cat([x[:, :self.start], p, rest], dim=1)

        assert torch.equal(detached(model.vpt, torch.ones(1, 17, 16), 0), insert(model.vpt, torch.ones(1, 17, 16), 0))
        monkeypatch.setattr(VisualPrompts, "insert", detached)
    with pytest.raises(AssertionError):
        assert_prompts_learn(model, *batch())


@pytest.fixture
def tiny_task():
    from tenfold.tuning.tasks import make_task

    task = make_task("digits-5-9", 0, 4)
    task.x_test, task.y_test = task.x_test[:40], task.y_test[:40]
    return task


def test_freeze_new_removes_vpt_prompts_and_equals_the_linear_probe(tiny_task):
    from tenfold.tuning.protocol import StudentShape, tune_on_task

    base = build_vit(num_classes=5)
    common = dict(epochs=1, batch_size=10, lr=1e-2, weight_decay=1e-4, seed=0, student=StudentShape())
    linear = tune_on_task("linear", base, tiny_task, options={}, **common)
    for method in ("vpt-deep", "vpt-shallow"):
        ablated = tune_on_task(method, base, tiny_task, options={"length": 4}, freeze_new=True, **common)
        assert ablated.model.vpt.length == 0  # removed, not frozen at random init
        assert ablated.trainable == linear.trainable  # the head only
        assert ablated.accuracy == linear.accuracy
    for method in ("bitfit", "lora-qv"):
        assert tune_on_task(method, base, tiny_task, options={}, freeze_new=True, **common).accuracy == linear.accuracy


def test_every_paper_claim_declares_its_arms_and_identical_arms_read_as_baseline():
    from tenfold.papers.tuning.experiments import CLAIMS

    papers = [c for c in CLAIMS if isinstance(c, PaperClaim)]
    assert papers and all(c.arms is not None for c in papers)
    record = {"arms": list(papers[0].arms)}
    same = {papers[0].arms[0]: [0.5, 0.6], papers[0].arms[1]: [0.5, 0.6]}
    assert ablation_is_baseline(record, {"samples": [0.01, -0.01]}, same)
    assert not ablation_is_baseline(record, {"samples": [0.01, -0.01]}, {**same, papers[0].arms[0]: [0.51, 0.6]})


def test_freeze_full_searches_the_linear_probes_lr_grid():
    from tenfold.papers.tuning.experiments import MiniVTABConfig, _base_lr

    cfg = MiniVTABConfig()
    assert _base_lr(cfg, "full") == cfg.full_lr and _base_lr(cfg, "linear") == cfg.lr
    ablated = cfg.model_copy(update={"freeze_full": True})
    assert _base_lr(ablated, "full") == _base_lr(ablated, "linear") == cfg.lr
