"""Bad input: one-line errors naming the field and what was expected, raised before any work."""

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError, DataError


def test_unknown_method_lists_the_valid_names(tuning_vit):
    with pytest.raises(ConfigError) as err:
        tt.apply(tuning_vit(), "vtp-deep")
    msg = str(err.value)
    assert "vtp-deep" in msg and "vpt-deep" in msg and "lora-qv" in msg and "\n" not in msg


def test_unknown_option_is_named(tuning_vit):
    with pytest.raises(ConfigError, match="option 'rnak' of method 'lora-qv' is unknown.*rank"):
        tt.apply(tuning_vit(), "lora-qv", rnak=4)


@pytest.mark.parametrize("method", ["lora", "lora-qv", "ssf"])
def test_target_pattern_that_matches_nothing_shows_module_names(method, tuning_vit):
    with pytest.raises(ConfigError, match=r"target_modules='.*nothing.*' matches no module.*blocks\.0"):
        tt.apply(tuning_vit(), method, target_modules=r".*nothing.*")


@pytest.mark.parametrize("method", ["vpt-shallow", "vpt-deep", "houlsby", "pfeiffer", "adaptformer", "convpass",
                                    "net2net"])
def test_vit_only_methods_reject_other_models(method):
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    cnn.head = torch.nn.Linear(4, 2)
    with pytest.raises(ConfigError, match="model='Sequential' is invalid: expected a timm VisionTransformer"):
        tt.apply(cnn, method)


def test_any_module_works_with_bitfit_ssf_and_linear():
    model = torch.nn.Sequential()
    model.body = torch.nn.Linear(4, 8)
    model.head = torch.nn.Linear(8, 2)
    tuned = tt.apply(model, "ssf", target_modules="body")
    assert tt.count_parameters(tuned)["trainable_without_head"] == 16


@pytest.mark.parametrize("method,options,field", [
    ("vpt-shallow", {"length": -1}, "length"), ("vpt-deep", {"length": -3}, "length"),
    ("lora", {"rank": 0}, "rank"), ("lora-qv", {"rank": 0}, "rank"), ("lora-qv", {"alpha": 0.0}, "alpha"),
    ("adaptformer", {"scale": 0.0}, "scale"), ("convpass", {"scale": -1.0}, "scale"),
    ("houlsby", {"hidden": 0}, "hidden"), ("houlsby", {"activation": "tanh"}, "activation"),
    ("ssf", {"seed": -1}, "seed"), ("kd", {}, "teacher"), ("weight-selection", {}, "teacher"),
    ("net2net", {"mlp_hidden": 8}, "mlp_hidden"),
])
def test_bad_options_name_the_field(method, options, field, tuning_vit):
    with pytest.raises(ConfigError) as err:
        tt.apply(tuning_vit(), method, **options)
    assert str(err.value).startswith(f"{field}=") and "expected" in str(err.value)


def test_kd_rejects_bad_temperature_and_alpha(tuning_vit):
    with pytest.raises(ConfigError, match="temperature"):
        tt.apply(tuning_vit(), "kd", teacher=tuning_vit(), temperature=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        tt.apply(tuning_vit(), "kd", teacher=tuning_vit(), alpha=1.5)


def test_weight_selection_rejects_a_larger_student(tuning_vit):
    with pytest.raises(ConfigError, match="student"):
        tt.apply(tuning_vit(embed_dim=64, num_heads=2), "weight-selection", teacher=tuning_vit())


def test_applying_vpt_twice_is_an_error(tuning_vit):
    model = tt.apply(tuning_vit(), "vpt-deep")
    with pytest.raises(ConfigError, match="apply VPT once"):
        tt.apply(model, "vpt-shallow")


def test_load_of_a_missing_or_foreign_file(tuning_vit, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        tt.load_tuned(tuning_vit(), tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(DataError, match="no tenfold_tuning metadata"):
        tt.load_tuned(tuning_vit(), tmp_path / "plain.safetensors")


def test_load_into_a_different_architecture_is_an_error(tuning_vit, tmp_path):
    path = tt.save_tuned(tt.apply(tuning_vit(), "lora-qv", rank=2), tmp_path / "t.safetensors")
    with pytest.raises(ConfigError, match="does not match method 'lora-qv'"):
        tt.load_tuned(tuning_vit(depth=3), path)


def test_register_method_rejects_an_unknown_family():
    with pytest.raises(ConfigError, match="family='magic'"):
        tt.register_method("x", lambda m: m, family="magic", description="", defaults={})
