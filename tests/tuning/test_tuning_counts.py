"""Trainable-parameter counts equal the closed-form formulas (spec sec. 1 and sec. 6 item 1)."""

import copy

import pytest

import tenfold.tuning as tt


def _formulas(d: int, depth: int, hidden: int, p: int = 4, k: int = 8, r: int = 4) -> dict:
    per_block_ssf = d + 3 * d + d + d + hidden + d                 # LN1, qkv, proj, LN2, fc1, fc2
    return {
        ("linear", ()): 0,
        ("vpt-shallow", (("length", p),)): p * d,
        ("vpt-deep", (("length", p),)): depth * p * d,
        ("houlsby", (("hidden", k),)): 2 * depth * (2 * d * k + k + d),
        ("pfeiffer", (("hidden", k),)): depth * (2 * d * k + k + d),
        ("adaptformer", (("hidden", k),)): depth * (2 * d * k + k + d),
        ("convpass", (("hidden", k),)): 2 * depth * (2 * d * k + d + 9 * k * k + 2 * k),
        ("lora", (("rank", r),)): depth * 4 * d * r,
        ("lora-qv", (("rank", r),)): depth * 4 * d * r,
        ("bitfit", ()): d + depth * (3 * d + d + hidden + d + 2 * d) + d,   # patch, qkv, proj, fc1, fc2, 2 LN; final LN
        ("ssf", ()): 2 * (d + depth * per_block_ssf + d),
    }


def test_small_vit_counts_equal_the_formulas(tuning_vit):
    base = tuning_vit()
    for (method, opts), expected in _formulas(32, 2, 64).items():
        counts = tt.count_parameters(tt.apply(copy.deepcopy(base), method, **dict(opts)))
        assert counts["trainable_without_head"] == expected, method
        assert counts["head"] == 32 * 3 + 3


def test_full_counts_everything(tuning_vit):
    model = tuning_vit()
    counts = tt.count_parameters(tt.apply(model, "full"))
    assert counts["trainable"] == counts["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_vit_b16_counts_equal_the_published_formulas():
    """ViT-B/16 (pretrained=False): BitFit 102,912, SSF 205,824, VPT-deep p=50 460,800, AdaptFormer k=8 156,768,
    LoRA-qv r=8 294,912, Convpass 327,552, Houlsby 313,536, VPT-shallow p=100 76,800, full 85,798,656."""
    import timm

    base = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10)
    expected = {("bitfit", ()): 102_912, ("ssf", ()): 205_824, ("vpt-deep", (("length", 50),)): 460_800,
                ("vpt-shallow", (("length", 100),)): 76_800, ("adaptformer", (("hidden", 8),)): 156_768,
                ("pfeiffer", (("hidden", 8),)): 156_768, ("houlsby", (("hidden", 8),)): 313_536,
                ("lora-qv", (("rank", 8),)): 294_912, ("lora", (("rank", 8),)): 294_912,
                ("convpass", (("hidden", 8),)): 327_552, ("full", ()): 85_798_656}
    got = {}
    for (method, opts), n in expected.items():
        model = copy.deepcopy(base)
        got[method] = tt.count_parameters(tt.apply(model, method, **dict(opts)))["trainable_without_head"]
        del model
    assert got == {m: n for (m, _), n in expected.items()}
