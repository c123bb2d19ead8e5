"""Every tuning method on timm models that are not plain ViTs: it works (every new tensor is reached by the
forward pass) or it refuses with one line naming the model and the method. Plus dtype/device of new tensors
(float64 and meta), heads found through get_classifier(), and VPT with a dynamic image size.

Models are built with pretrained=False at tiny sizes (no downloads)."""

import copy
import warnings

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError

METHODS = ["linear", "full", "vpt-shallow", "vpt-deep", "houlsby", "pfeiffer", "adaptformer", "convpass",
           "lora", "lora-qv", "bitfit", "ssf", "lion"]
SIZES = {"vit": 32, "deit-distilled": 32, "eva02": 28, "swin": 32, "resnet": 32}
R = "refused"
# The table of the closing note: which method works on which model (the rest refuse with one line).
EXPECTED = {
    "vit": dict.fromkeys(METHODS, "works"),
    "deit-distilled": {**dict.fromkeys(METHODS, "works"), "lion": R},
    "eva02": {**dict.fromkeys(METHODS, "works"), "houlsby": R, "pfeiffer": R, "adaptformer": R, "convpass": R},
    "swin": {**dict.fromkeys(METHODS, "works"), "vpt-shallow": R, "vpt-deep": R, "houlsby": R, "pfeiffer": R,
             "adaptformer": R, "convpass": R},
    "resnet": {**dict.fromkeys(METHODS, R), "linear": "works", "full": "works", "bitfit": "works", "lion": "works"},
}


def build(name: str):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name == "vit":
            return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                     depth=2, num_heads=2, num_classes=3).eval()
        if name == "deit-distilled":
            return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                     embed_dim=32, depth=2, num_heads=2, num_classes=3).eval()
        if name == "eva02":
            return timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=28, patch_size=7,
                                     embed_dim=32, depth=2, num_heads=2, num_classes=3).eval()
        if name == "swin":
            return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, patch_size=2,
                                     embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4,
                                     num_classes=3).eval()
        from timm.models.resnet import BasicBlock, ResNet

        return ResNet(BasicBlock, [1, 1, 1, 1], channels=(8, 8, 16, 16), stem_width=8, num_classes=3).eval()


@pytest.fixture(scope="module")
def timm_models():
    return {name: build(name) for name in SIZES}


def images(name: str, dtype=torch.float32, device="cpu"):
    size = SIZES[name]
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1)).to(dtype=dtype, device=device)


def new_tensors(model, base):
    """Trainable tensors that are not the heads (the method's own, or unfrozen backbone tensors)."""
    heads = {id(p) for h in tt.common.classifiers(model) for p in h.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in heads and p.numel()}


@pytest.mark.parametrize("model_name", list(SIZES))
def test_every_method_works_or_refuses_in_one_line(model_name, timm_models):
    outcome = {}
    for method in METHODS:
        model = copy.deepcopy(timm_models[model_name])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tuned = tt.apply(model, method)
        except ConfigError as err:
            text = str(err)
            assert "\n" not in text and method in text, text
            assert any(n in text for n in (type(model).__name__, "VisionTransformer", "Eva", "Swin", "ResNet")), text
            outcome[method] = R
            continue
        tuned.train()  # LION's solver puts f(z*) on the tape only in training mode
        for m in tuned.modules():  # no dropout noise, no BatchNorm statistics: same as the probe
            if isinstance(m, (torch.nn.Dropout, torch.nn.BatchNorm2d)):
                m.eval()
        out = tuned(images(model_name))
        out.sum().backward()
        tensors = new_tensors(tuned, model)
        dead = [n for n, p in tensors.items() if p.grad is None]
        assert not dead, f"{model_name}/{method}: dead tensors {dead}"
        head = tt.count_parameters(tuned)["head"]
        assert head == sum(p.numel() for h in tt.common.classifiers(tuned) for p in h.parameters() if p.requires_grad) > 0
        outcome[method] = "works"
    assert outcome == EXPECTED[model_name]


@pytest.mark.parametrize("dtype,device", [(torch.float64, "cpu"), (torch.float32, "meta")])
@pytest.mark.parametrize("model_name", ["vit", "eva02", "swin", "deit-distilled"])
def test_new_tensors_follow_the_model_dtype_and_device(model_name, dtype, device, timm_models):
    for method in METHODS:
        if EXPECTED[model_name][method] == R:
            continue
        model = copy.deepcopy(timm_models[model_name]).to(dtype=dtype, device=device)
        tuned = tt.apply(model, method)
        wrong = [(n, p.dtype, p.device) for n, p in tuned.named_parameters()
                 if p.dtype != dtype or p.device.type != device]
        assert not wrong, f"{model_name}/{method}: {wrong[:3]}"
        if dtype == torch.float64 and method != "lion":
            assert tuned.eval()(images(model_name, dtype)).dtype == torch.float64


def test_float64_vit_trains_with_every_adapter(tuning_vit, tuning_steps):
    for method in ("houlsby", "pfeiffer", "adaptformer", "convpass", "vpt-deep", "ssf", "lora-qv"):
        model = tt.apply(tuning_vit().double(), method)
        x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
        assert model(x).dtype == torch.float64


def test_count_parameters_finds_the_head_of_any_timm_model(timm_models):
    resnet = tt.apply(copy.deepcopy(timm_models["resnet"]), "linear")
    assert tt.count_parameters(resnet)["head"] == 16 * 3 + 3 and tt.count_parameters(resnet)["trainable_without_head"] == 0
    deit = tt.apply(copy.deepcopy(timm_models["deit-distilled"]), "linear")
    assert tt.count_parameters(deit)["head"] == 2 * (32 * 3 + 3)
    lora = tt.apply(copy.deepcopy(timm_models["deit-distilled"]), "lora", rank=2)
    assert tt.count_parameters(lora)["head"] == 2 * (32 * 3 + 3)


def test_vpt_with_dynamic_image_size_runs_at_a_new_size():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2, num_classes=3, dynamic_img_size=True).eval()
    base = copy.deepcopy(model)
    tuned = tt.apply(model, "vpt-deep", length=0)
    x = torch.randn(2, 3, 48, 48)
    assert torch.allclose(tuned(x), base(x), atol=1e-6)
    tuned = tt.apply(copy.deepcopy(base), "vpt-deep", length=3)
    assert tuned(x).shape == (2, 3)
    with pytest.raises(ConfigError, match="convpass"):
        tt.apply(copy.deepcopy(base), "convpass")


def test_eva_lora_and_ssf_merge_equal_unmerged(timm_models):
    x = images("eva02")
    for method in ("lora-qv", "ssf"):
        model = tt.apply(copy.deepcopy(timm_models["eva02"]), method)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_b" in n or "ssf" in n:
                    p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        before = model(x)
        merged = tt.merge(model)
        assert torch.allclose(merged(x), before, atol=1e-5), method
        change = (merged.forward_features(x) - timm_models["eva02"].forward_features(x)).abs().max()
        assert change > 1e-4, method  # the update is reached (a dead one would leave it at exactly 0)


def test_vpt_on_eva_keeps_rotary_embedding_off_the_prompts(timm_models):
    base = timm_models["eva02"]
    model = tt.apply(copy.deepcopy(base), "vpt-deep", length=0)
    x = images("eva02")
    assert torch.allclose(model(x), base(x), atol=1e-6)
    model = tt.apply(copy.deepcopy(base), "vpt-deep", length=2)
    assert all(b.attn.num_prefix_tokens == base.num_prefix_tokens + 2 for b in model.blocks)
    assert model.num_prefix_tokens == base.num_prefix_tokens


@pytest.mark.parametrize("variant", [{"use_dora": True}, {"use_rslora": True}])
def test_peft_lora_variants_unmerge_and_several_adapters(variant, tuning_vit, tuning_batch):
    """DoRA and rsLoRA through peft's LoraConfig; merge then unmerge restores the adapter's outputs;
    a second adapter on the same backbone is switched with set_adapter."""
    from peft import LoraConfig

    x, _ = tuning_batch
    model = tt.apply(tuning_vit(), "lora", rank=2, alpha=4.0, **variant)
    layer = model.base_model.model.blocks[0].attn.qkv
    assert layer.use_dora["default"] == bool(variant.get("use_dora"))
    expected_scale = 4.0 / (2 ** 0.5) if variant.get("use_rslora") else 4.0 / 2
    assert layer.scaling["default"] == pytest.approx(expected_scale)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(generator=torch.Generator().manual_seed(0))
    model.eval()
    tuned = model(x)
    model.merge_adapter()
    assert torch.allclose(model(x), tuned, atol=1e-5)
    model.unmerge_adapter()
    assert torch.allclose(model(x), tuned, atol=1e-5)
    model.add_adapter("second", LoraConfig(r=2, lora_alpha=2, target_modules=tt.parameters.QKV_PATTERN))
    model.set_adapter("second")  # zero-initialised B: the base model's function (head aside)
    with model.disable_adapter():
        base = model(x)
    assert torch.allclose(model(x), base, atol=1e-6)
    model.set_adapter("default")
    assert torch.allclose(model(x), tuned, atol=1e-5)
