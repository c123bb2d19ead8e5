"""Exact properties of every tuning method (spec visual_tuning.md sec. 6, items 2-7, 11-12)."""

import copy

import pytest
import torch

import tenfold.tuning as tt

EFFICIENT = ["vpt-shallow", "vpt-deep", "houlsby", "pfeiffer", "adaptformer", "convpass", "lora", "lora-qv",
             "bitfit", "ssf"]
ZERO_INIT = ["houlsby", "pfeiffer", "adaptformer", "convpass", "lora", "lora-qv"]


def test_registry_lists_every_method_with_family_and_defaults():
    expected = {"linear", "full", "vpt-shallow", "vpt-deep", "houlsby", "pfeiffer", "adaptformer", "convpass",
                "lora", "lora-qv", "bitfit", "ssf", "kd", "weight-selection", "net2net"}
    assert expected <= set(tt.METHODS)
    assert tt.get_method("vpt-deep").family == "prompt" and tt.get_method("ssf").family == "parameter"
    assert tt.get_method("lora-qv").defaults["rank"] == 8
    assert set(tt.method_names("adapter")) >= {"houlsby", "pfeiffer", "adaptformer", "convpass"}


@pytest.mark.parametrize("method", ZERO_INIT)
def test_zero_init_methods_equal_the_base_model(method, tuning_vit, tuning_batch):
    base = tuning_vit()
    x, _ = tuning_batch
    with torch.no_grad():
        ref = base(x)
        out = tt.apply(copy.deepcopy(base), method).eval()(x)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("deep", [False, True])
def test_vpt_with_zero_prompts_equals_the_base(deep, tuning_vit, tuning_batch):
    base = tuning_vit()
    x, _ = tuning_batch
    tuned = tt.apply(copy.deepcopy(base), "vpt-deep" if deep else "vpt-shallow", length=0)
    with torch.no_grad():
        assert torch.allclose(tuned(x), base(x), atol=1e-6)


@pytest.mark.parametrize("method", EFFICIENT + ["linear"])
def test_frozen_backbone_is_bit_identical_after_adamw_with_weight_decay(method, tuning_vit, tuning_steps):
    model = tt.apply(tuning_vit(), method)
    frozen = [(n, p.detach().clone()) for n, p in model.named_parameters() if not p.requires_grad]
    trained = [(n, p.detach().clone()) for n, p in model.named_parameters() if p.requires_grad]
    assert frozen and trained
    tuning_steps(model, steps=3)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before) for n, before in frozen)
    assert any(not torch.equal(params[n], before) for n, before in trained)


@pytest.mark.parametrize("method", EFFICIENT)
def test_no_dead_parameters_after_one_step(method, tuning_vit, tuning_batch, tuning_steps):
    """After one step every trainable tensor gets a non-zero gradient (no double-zero-init adapter or LoRA)."""
    model = tuning_steps(tt.apply(tuning_vit(), method), steps=1)
    x, y = tuning_batch
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert dead == []


def test_double_zero_adapter_would_be_caught(tuning_vit, tuning_batch, tuning_steps):
    """The reference-code bug (W_down = W_up = 0) leaves W_down without gradient forever: the check sees it."""
    model = tt.apply(tuning_vit(), "adaptformer")
    for block in model.blocks:
        torch.nn.init.zeros_(block.adapter_mlp.adapter.down.weight)
    tuning_steps(model, steps=2)
    x, y = tuning_batch
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert model.blocks[0].adapter_mlp.adapter.down.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("method", ["lora", "lora-qv", "ssf"])
def test_merge_equals_the_unmerged_model(method, tuning_vit, tuning_batch, tuning_steps):
    model = tuning_steps(tt.apply(tuning_vit(), method), steps=2)
    x, _ = tuning_batch
    with torch.no_grad():
        before = model(x)
        merged = tt.merge(model)
        after = merged(x)
    from timm.models.vision_transformer import VisionTransformer

    assert isinstance(merged, VisionTransformer)
    names = [n for n, _ in merged.named_parameters()]
    assert names == [n for n, _ in tuning_vit().named_parameters()]  # plain timm modules again
    assert torch.allclose(after, before, atol=1e-5)
    assert not torch.allclose(before, tuning_vit()(x), atol=1e-4)  # training changed something


def test_lora_qv_adapts_only_q_and_v(tuning_vit, tuning_batch, tuning_steps):
    model = tuning_steps(tt.apply(tuning_vit(), "lora-qv", rank=2), steps=2)
    qkv = model.blocks[0].attn.qkv
    x = torch.randn(5, qkv.in_features)
    delta = qkv(x) - torch.nn.functional.linear(x, qkv.weight, qkv.bias)
    d = qkv.out_features // 3
    assert delta[:, d:2 * d].abs().max() == 0
    assert delta[:, :d].abs().max() > 0 and delta[:, 2 * d:].abs().max() > 0


def test_lora_qv_scale_is_alpha_over_rank(tuning_vit):
    model = tt.apply(tuning_vit(), "lora-qv", rank=4, alpha=2.0)
    assert model.blocks[1].attn.qkv.lora_scale == 0.5


def _block_inputs(model, x):
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone())) for b in model.blocks]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("method", ["vpt-shallow", "vpt-deep"])
def test_vpt_sequence_length_is_one_plus_p_plus_n_in_every_block(method, tuning_vit, tuning_batch):
    model = tt.apply(tuning_vit(), method, length=3)
    x, _ = tuning_batch
    # pre-hooks registered after VPT's see the block inputs after prompt insertion
    lengths = [t.shape[1] for t in _block_inputs(model, x)]
    assert lengths == [1 + 3 + 16] * len(model.blocks)


def test_vpt_deep_replaces_rather_than_accumulates(tuning_vit, tuning_batch):
    model = tt.apply(tuning_vit(), "vpt-deep", length=3)
    x, _ = tuning_batch
    inputs = _block_inputs(model, x)
    for i, t in enumerate(inputs):
        assert torch.equal(t[:, 1:4], model.vpt.prompts[i].detach().expand(len(x), -1, -1))
    assert model.vpt.prompts.shape == (len(model.blocks), 3, 32)


def test_vpt_deep_prompts_of_every_layer_get_gradient(tuning_vit, tuning_batch):
    model = tt.apply(tuning_vit(), "vpt-deep", length=2)
    x, y = tuning_batch
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(model.vpt.prompts.grad[i].abs().sum() > 0 for i in range(len(model.blocks)))


def test_vpt_init_bound_and_avg_pool_skip_prompts(tuning_vit, tuning_batch):
    import timm

    vitb = timm.models.vision_transformer.VisionTransformer(depth=1, embed_dim=768, num_heads=12)
    assert tt.prompts.prompt_init_bound(vitb) == pytest.approx(0.0625)
    model = tt.apply(tuning_vit(global_pool="avg"), "vpt-shallow", length=5)
    assert model.vpt.prompts.abs().max() <= tt.prompts.prompt_init_bound(model)
    x, _ = tuning_batch
    feats = model.forward_features(x)  # prompt outputs are dropped after the last block
    assert feats.shape[1] == 1 + 16
    assert torch.allclose(model.forward_head(feats, pre_logits=True), model.fc_norm(feats[:, 1:].mean(1)))


def test_adaptformer_reads_the_unnormed_residual_stream(tuning_vit):
    model = tt.apply(tuning_vit(), "adaptformer", scale=0.5, dropout=0.0)
    block = model.blocks[0]
    torch.nn.init.normal_(block.adapter_mlp.adapter.up.weight, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 17, 32)
    xp = x + block.attn(block.norm1(x))
    expected = xp + block.mlp(block.norm2(xp)) + 0.5 * block.adapter_mlp.adapter(xp)
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_convpass_conv_starts_as_identity_and_uses_the_grid(tuning_vit):
    model = tt.apply(tuning_vit(), "convpass", hidden=4)
    cv = model.blocks[0].adapter_attn.adapter
    z = torch.randn(2, 4, 4, 4)
    assert torch.allclose(cv.conv(z), z) and cv.grid == (4, 4) and cv.prefix == 1


def test_bitfit_trains_every_bias_including_layernorm(tuning_vit):
    model = tt.apply(tuning_vit(), "bitfit")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "blocks.0.norm1.bias" in trainable and "patch_embed.proj.bias" in trainable and "norm.bias" in trainable
    assert "blocks.0.norm1.weight" not in trainable and "head.weight" in trainable


def test_ssf_init_statistics_and_seed(tuning_vit):
    a = tt.apply(tuning_vit(), "ssf", seed=3)
    b = tt.apply(tuning_vit(), "ssf", seed=3)
    gammas = torch.cat([m.ssf_scale.detach() for m in a.modules() if hasattr(m, "ssf_scale")])
    assert abs(gammas.mean().item() - 1) < 0.01 and 0.01 < gammas.std().item() < 0.03
    assert torch.equal(a.blocks[0].mlp.fc1.ssf_scale, b.blocks[0].mlp.fc1.ssf_scale)


@pytest.mark.parametrize("method", ["linear", "vpt-deep", "houlsby", "adaptformer", "convpass", "lora-qv", "bitfit",
                                    "ssf", "net2net"])
def test_save_and_load_reproduce_the_logits(method, tuning_vit, tuning_batch, tuning_steps, tmp_path):
    from safetensors.torch import load_file

    model = tuning_steps(tt.apply(tuning_vit(), method), steps=2).eval()
    path = tt.save_tuned(model, tmp_path / "tuned.safetensors")
    assert set(load_file(str(path))) == {n for n, p in model.named_parameters() if p.requires_grad}
    reloaded = tt.load_tuned(tuning_vit(), path).eval()
    x, _ = tuning_batch
    with torch.no_grad():
        assert torch.allclose(reloaded(x), model(x), atol=1e-6)


def test_save_and_load_peft_lora_uses_peft_format(tuning_vit, tuning_batch, tuning_steps, tmp_path):
    model = tuning_steps(tt.apply(tuning_vit(), "lora", rank=2), steps=2).eval()
    folder = tt.save_tuned(model, tmp_path / "lora")
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    base = tuning_vit()
    base.reset_classifier(7)  # load_tuned restores the saved 3-class head
    reloaded = tt.load_tuned(base, folder).eval()
    x, _ = tuning_batch
    with torch.no_grad():
        assert torch.allclose(reloaded(x), model(x), atol=1e-6)


def test_count_parameters_groups(tuning_vit):
    counts = tt.count_parameters(tt.apply(tuning_vit(), "vpt-shallow", length=4))
    assert counts["by_group"] == {"vpt": 4 * 32, "head": 32 * 3 + 3}
    assert counts["head"] == 99 and counts["trainable_without_head"] == 128
    assert counts["total"] == sum(p.numel() for p in tuning_vit().parameters()) + 128


# --- remapping ---------------------------------------------------------------------------------------
def test_kd_with_alpha_zero_is_cross_entropy_and_kl_vanishes_for_equal_models():
    from tenfold.tuning.remapping import distillation_loss

    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randint(5, (8,), generator=g)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, alpha=0.0), ce)
    assert torch.allclose(distillation_loss(s, s, y, temperature=4.0, alpha=1.0), torch.tensor(0.0), atol=1e-6)
    # a known value: T^2 KL at alpha = 1
    T = 2.0
    p = torch.softmax(t / T, -1)
    kl = (p * (torch.log(p) - torch.log_softmax(s / T, -1))).sum(-1).mean()
    assert torch.allclose(distillation_loss(s, t, y, temperature=T, alpha=1.0), T * T * kl, atol=1e-6)


def test_kd_trains_the_student_only(tuning_vit, tuning_steps):
    teacher = tuning_vit(seed=1)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = tt.apply(tuning_vit(embed_dim=16, num_heads=2), "kd", teacher=teacher)
    counts = tt.count_parameters(model)
    assert counts["trainable"] == sum(p.numel() for p in model.student.parameters())
    tuning_steps(model.train(), steps=2)
    assert not model.teacher.training
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())


def test_weight_selection_takes_consistent_teacher_slices(tuning_vit):
    teacher = tuning_vit(seed=1, embed_dim=32, num_heads=4, depth=3)
    student = tt.apply(tuning_vit(seed=2, embed_dim=16, num_heads=2, depth=2), "weight-selection", teacher=teacher,
                       layers="even")
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["pos_embed"], t["pos_embed"][..., :16])
    assert torch.equal(s["blocks.1.mlp.fc1.weight"], t["blocks.2.mlp.fc1.weight"][:32, :16])  # even: 0, 2
    # qkv rows: (3, heads, head_dim) -> first 2 heads, first 8 channels of each
    tq = t["blocks.0.attn.qkv.weight"].reshape(3, 4, 8, 32)[:, :2, :8, :16].reshape(48, 16)
    assert torch.equal(s["blocks.0.attn.qkv.weight"], tq)
    tp = t["blocks.0.attn.proj.weight"].reshape(32, 4, 8)[:16, :2, :8].reshape(16, 16)
    assert torch.equal(s["blocks.0.attn.proj.weight"], tp)
    assert not torch.equal(s["head.weight"], t["head.weight"][:, :16])  # head left alone by default
    assert all(p.requires_grad for p in student.parameters())


def test_weight_selection_of_the_same_shape_is_the_teacher(tuning_vit, tuning_batch):
    teacher = tuning_vit(seed=1)
    student = tt.apply(tuning_vit(seed=2), "weight-selection", teacher=teacher, copy_head=True)
    x, _ = tuning_batch
    with torch.no_grad():
        assert torch.equal(student(x), teacher(x))


def test_net2net_widening_preserves_the_function(tuning_vit, tuning_batch):
    base = tuning_vit()
    wide = tt.apply(copy.deepcopy(base), "net2net", mlp_hidden=100, seed=4)
    assert wide.blocks[0].mlp.fc1.out_features == 100 and wide.blocks[1].mlp.fc2.in_features == 100
    x, _ = tuning_batch
    with torch.no_grad():
        assert torch.allclose(wide(x), base(x), atol=1e-5)
