"""The user path (issue 30): every registered tuning method on a user's own timm model (ViT, DeiT, Swin,
ConvNeXt; tiny, pretrained=False, no downloads) is safe to use as a timm model.

Parametrized over ``tt.method_names()`` x the families, so a new method is tested automatically. Each test
is a problem that the landed main (c4932a4) had:
- whole-model ``torch.save``/``torch.load`` (before and after ``merge``) gives the same outputs;
- timm's APIs (forward_features, forward_head, forward_intermediates, features_only through timm's feature
  wrapper, grad checkpointing, dynamic image size) give the plain model's shapes and agree with forward,
  or refuse in one line naming the API;
- a second method keeps the first trainable and both are saved and restored, or is refused in one line;
- ``load_tuned(is_trainable=...)`` gives a model ready to train or to infer; ``save_tuned(m, "x.safetensors")``
  writes that file, any other path a folder;
- typed options: one dataclass per method (the only place for defaults), dicts and keywords converted.
"""

import copy
import dataclasses
import functools
import inspect
import io
import warnings

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError, DataError, TenfoldError

FAMILIES = ("vit", "deit", "swin", "convnext")
SIZE = 32


def build(family: str, **extra):
    """A fresh copy of the tiny ``family`` model (built once per set of arguments)."""
    return copy.deepcopy(_built(family, tuple(sorted(extra.items()))))


@functools.lru_cache(maxsize=None)
def _built(family: str, extra: tuple):
    import timm

    extra = dict(extra)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if family == "vit":
            model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIZE, patch_size=8,
                                      embed_dim=32, depth=2, num_heads=2, num_classes=3, **extra)
        elif family == "deit":
            model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=SIZE,
                                      patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3, **extra)
        elif family == "swin":
            model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=SIZE, patch_size=2,
                                      embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, num_classes=3,
                                      **extra)
        else:
            model = timm.create_model("convnext_atto", pretrained=False, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16),
                                      num_classes=3, **extra)
    return model.eval()


@pytest.fixture(scope="module")
def bases():
    return {family: build(family) for family in FAMILIES}


def images(size: int = SIZE) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def options_for(method: str, base) -> dict:
    """Options a user must give: a teacher for the remapping methods that need one."""
    return {"teacher": copy.deepcopy(base)} if "teacher" in tt.get_method(method).defaults else {}


def tune(method: str, base):
    """The tuned copy of ``base``, or None when the method refuses the model (in one line naming it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tt.apply(copy.deepcopy(base), method, **options_for(method, base))
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and method in text, text
        return None


def perturb(model, seed: int = 3):
    """Move every trainable tensor off its (often zero) initial value, so the method changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=g).to(p))
    return model


def quiet_train(model):
    """Train mode without dropout noise or BatchNorm updates (LION's solver tapes f(z*) only in training)."""
    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.BatchNorm2d)):
            m.eval()
    return model


def shapes(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    return [shapes(v) for v in value]


METHODS = tt.method_names()
CASES = [(m, f) for f in FAMILIES for m in METHODS]


@pytest.mark.parametrize("method,family", CASES)
def test_whole_model_torch_save_round_trip_before_and_after_merge(method, family, bases, tmp_path):
    model = tune(method, bases[family])
    if model is None:
        pytest.skip(f"{method} refuses {family}")
    model = perturb(model).eval()
    x = images()
    with torch.no_grad():
        before = model(x)
    for stage in ("tuned", "merged"):
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        again = torch.load(buf, weights_only=False).eval()
        with torch.no_grad():
            assert torch.allclose(again(x), before, atol=1e-5), (method, family, stage)
        if stage == "tuned":
            model = tt.merge(model).eval()


@pytest.mark.parametrize("method,family", CASES)
def test_timm_apis_on_a_tuned_model(method, family, bases):
    base = bases[family]
    model = tune(method, base)
    if model is None:
        pytest.skip(f"{method} refuses {family}")
    model = perturb(model).eval()
    x = images()
    with torch.no_grad():
        out = model(x)
        assert out.shape == base(x).shape
        features = model.forward_features(x)
        assert features.shape == base.forward_features(x).shape
        try:
            head = model.forward_head(features)
        except TenfoldError as err:  # LION: its output prompt reads the image too
            assert "forward_head" in str(err) and "\n" not in str(err)
        else:
            assert torch.allclose(head, out, atol=1e-5)
        inter = model.forward_intermediates(x, intermediates_only=True)
        assert shapes(inter) == shapes(base.forward_intermediates(x, intermediates_only=True)), (method, family)
        final, inter2 = model.forward_intermediates(x)
        assert torch.allclose(final, features, atol=1e-5)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(inter, inter2))
        if family in ("vit", "deit"):
            nlc = model.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True)
            assert shapes(nlc) == shapes(base.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True,
                                                                    intermediates_only=True))
    # gradient checkpointing: same outputs (eval: timm's Swin itself differs in train mode with checkpointing),
    # and in training the gradients reach every trainable tensor
    plain = model(x)
    model.set_grad_checkpointing(True)
    assert torch.allclose(model(x), plain, atol=1e-5)
    quiet_train(model)(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("method,family", CASES)
def test_features_only(method, family, bases):
    """A user's two ways to get feature maps: timm's features_only model, then the method (refused in one
    line: it has no classifier), or the method, then timm's feature wrapper (the plain model's shapes)."""
    from timm.models._features import FeatureGetterNet

    base = bases[family]
    model = tune(method, base)
    if model is None:
        pytest.skip(f"{method} refuses {family}")
    wrapped = FeatureGetterNet(perturb(model).eval(), out_indices=(0, 1))
    reference = FeatureGetterNet(copy.deepcopy(base), out_indices=(0, 1))
    with torch.no_grad():
        assert shapes(wrapped(images())) == shapes(reference(images())), (method, family)
    features_only = build(family, features_only=True, out_indices=(0, 1))
    with pytest.raises(ConfigError, match="features_only") as err:
        tt.apply(features_only, method, **options_for(method, base))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", ["vit", "deit"])
def test_dynamic_image_size(method, family):
    base = build(family, dynamic_img_size=True)
    model = tune(method, base)
    if model is None:
        pytest.skip(f"{method} refuses a dynamic image size on {family}")
    model = perturb(model).eval()
    x = images(48)
    with torch.no_grad():
        assert model(x).shape == base(x).shape
        assert shapes(model.forward_intermediates(x, intermediates_only=True)) == \
            shapes(base.forward_intermediates(x, intermediates_only=True))


# --- composition ----------------------------------------------------------------------------------------
PAIRS = [(m, "lora-qv") for m in METHODS] + [("vpt-deep", m) for m in METHODS]


@pytest.mark.parametrize("first,second", PAIRS)
def test_a_second_method_keeps_the_first_trainable_and_saved(first, second, tuning_vit, tmp_path):
    base = tuning_vit()
    teacher = {"teacher": tuning_vit(seed=1)}
    model = tt.apply(copy.deepcopy(base), first, **{k: v for k, v in teacher.items()
                                                    if k in tt.get_method(first).defaults})
    perturb(model)
    first_trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        model = tt.apply(model, second, **{k: v for k, v in teacher.items() if k in tt.get_method(second).defaults})
    except ConfigError as err:
        assert "\n" not in str(err) and second in str(err)
        return
    perturb(model, seed=4)
    assert all(p.requires_grad for p in first_trainable), f"{first} frozen by {second}"
    assert [e["method"] for e in model.tenfold_tuning["stack"]] == [first, second]
    path = tt.save_tuned(model, tmp_path / "both.safetensors")
    from safetensors.torch import load_file

    saved = load_file(str(path))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names <= set(saved)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    reloaded = tt.load_tuned(copy.deepcopy(base), path, **{k: v for k, v in teacher.items()
                                                           if k in tt.get_method(second).defaults})
    with torch.no_grad():
        assert torch.allclose(reloaded(x), model.eval()(x), atol=1e-5)


def test_composition_refusals_are_one_line(tuning_vit):
    model = tt.apply(tuning_vit(), "lora-qv")
    with pytest.raises(ConfigError, match="'lora-qv' is already applied"):
        tt.apply(model, "lora-qv")
    merged = tt.merge(tt.apply(tuning_vit(), "lora-qv"))
    with pytest.raises(ConfigError, match="merged.*before tenfold.tuning.merge"):
        tt.apply(merged, "vpt-deep")
    kd = tt.apply(tuning_vit(), "kd", teacher=tuning_vit(seed=1))
    with pytest.raises(ConfigError, match="'kd' must be the last"):
        tt.apply(kd, "bitfit")
    with pytest.raises(ConfigError, match="Convpass"):
        tt.apply(tt.apply(tuning_vit(), "convpass"), "vpt-deep")


# --- save_tuned / load_tuned ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("where", ["file", "folder"])
def test_load_tuned_is_ready_to_train_or_to_infer(method, where, tuning_vit, tmp_path):
    teacher = {"teacher": tuning_vit(seed=1)} if "teacher" in tt.get_method(method).defaults else {}
    model = perturb(tt.apply(tuning_vit(), method, **teacher)).eval()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    target = tmp_path / ("tuned.safetensors" if where == "file" else "tuned")
    path = tt.save_tuned(model, target)
    assert path == target and (path.is_file() if where == "file" else path.is_dir())
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    load_options = {"teacher": teacher["teacher"]} if method == "kd" else {}
    ready = tt.load_tuned(tuning_vit(), path, is_trainable=True, **load_options)
    assert ready.training
    assert {n for n, p in ready.named_parameters() if p.requires_grad} == trainable
    frozen = tt.load_tuned(tuning_vit(), path, is_trainable=False, **load_options)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    with torch.no_grad():
        assert torch.allclose(frozen(x), expected, atol=1e-5)


def test_save_tuned_paths_and_their_errors(tuning_vit, tmp_path):
    model = tt.apply(tuning_vit(), "lora", rank=2)  # peft: a file on request, peft's folder otherwise
    assert tt.save_tuned(model, tmp_path / "a.safetensors").is_file()
    assert (tt.save_tuned(model, tmp_path / "peft") / "adapter_config.json").is_file()
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(DataError, match="is a folder: a path ending in .safetensors is written as one file"):
        tt.save_tuned(model, tmp_path / "dir.safetensors")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(DataError, match="is a file: a path not ending in .safetensors is written as a folder"):
        tt.save_tuned(model, tmp_path / "plain")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is not a saved tuned model"):
        tt.load_tuned(tuning_vit(), tmp_path / "empty")
    with pytest.raises(ConfigError, match="is_trainable"):
        tt.load_tuned(tuning_vit(), tmp_path / "a.safetensors", is_trainable="yes")
    with pytest.raises(ConfigError, match="option 'teachr' of load_tuned is unknown"):
        tt.load_tuned(tuning_vit(), tmp_path / "a.safetensors", teachr=1)


# --- typed options --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_one_options_dataclass(method, tuning_vit):
    cls = tt.options_class(method)
    assert dataclasses.is_dataclass(cls) and issubclass(cls, tt.MethodOptions)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert tt.get_method(method).defaults == defaults
    # defaults written once: the apply function has none of its own
    params = list(inspect.signature(tt.get_method(method).apply_fn).parameters.values())[1:]
    assert sorted(p.name for p in params) == sorted(defaults)
    assert all(p.default is inspect.Parameter.empty for p in params), method
    teacher = {"teacher": tuning_vit(seed=1)} if "teacher" in defaults else {}
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = [tt.apply(tuning_vit(), method, cls(**teacher)), tt.apply(tuning_vit(), method, dict(teacher)),
            tt.apply(tuning_vit(), method, **teacher)]
    with torch.no_grad():
        ref = outs[0].eval()(x)
        assert all(torch.equal(m.eval()(x), ref) for m in outs[1:])
    assert all(m.tenfold_tuning["options"] == outs[0].tenfold_tuning["options"] for m in outs)
    with pytest.raises(ConfigError, match=f"option 'nope' of method '{method}' is unknown"):
        tt.apply(tuning_vit(), method, {"nope": 1})
    other = tt.LinearOptions() if method != "linear" else tt.FullOptions()
    with pytest.raises(ConfigError, match=f"invalid for method '{method}'"):
        tt.apply(tuning_vit(), method, other)
    for f in dataclasses.fields(cls):  # a value of the wrong type is refused, naming the field
        if isinstance(f.default, (bool, int, float, str)) and f.default is not None:
            bad = "x" if not isinstance(f.default, str) else 3
            with pytest.raises(ConfigError) as err:
                cls(**{f.name: bad})
            assert str(err.value).startswith(f"{f.name}=") and "\n" not in str(err.value)


def test_options_dataclass_validates_values_and_dicts_name_the_config_path():
    with pytest.raises(ConfigError, match=r"^rank=0 is invalid: expected an integer >= 1"):
        tt.LoraQVOptions(rank=0)
    with pytest.raises(ConfigError, match=r"^options\.lora-qv\.rank=2\.5 is invalid"):
        tt.make_options("lora-qv", {"rank": 2.5}, where="options")
    with pytest.raises(ConfigError, match=r"^gamma=1\.0 is invalid"):
        tt.LionOptions(gamma=1.0)
    opts = tt.make_options("lora-qv", tt.LoraQVOptions(rank=2), alpha=4.0)
    assert opts == tt.LoraQVOptions(rank=2, alpha=4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.rank = 0
