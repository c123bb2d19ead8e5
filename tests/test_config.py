"""Configs: overrides with type coercion, presets, YAML files, and one-line errors naming the field."""

import pytest
from pydantic import Field

from tenfold.config import Config, apply_overrides, build, load_yaml, resolve
from tenfold.errors import ConfigError


class Inner(Config):
    width: int = Field(8, ge=1)


class Demo(Config):
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0)
    name: str = "a"
    flags: list[int] = [1, 2]
    model: Inner = Inner()


def test_overrides_are_coerced_like_yaml():
    data = apply_overrides({}, ["epochs=5", "lr=1e-2", "name=b", "flags=[3, 4]", "model.width=16"])
    cfg = build(Demo, data)
    assert (cfg.epochs, cfg.lr, cfg.name, cfg.flags, cfg.model.width) == (5, 0.01, "b", [3, 4], 16)


def test_overrides_do_not_mutate_input():
    base = {"model": {"width": 2}}
    apply_overrides(base, ["model.width=3"])
    assert base == {"model": {"width": 2}}


def test_preset_file_and_user_file_layering(tmp_path, monkeypatch):
    import tenfold.config as config

    monkeypatch.setattr(config, "PRESET_ROOT", tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "paper.yaml").write_text("epochs: 90\nlr: 0.1\n")
    user = tmp_path / "user.yaml"
    user.write_text("lr: 0.05\n")
    cfg = resolve(Demo, "demo", "paper", ["epochs=7"], config_file=user)
    assert (cfg.epochs, cfg.lr) == (7, 0.05)
    assert config.available_presets("demo") == ["paper", "quick"]


BAD = [
    (["epochs=x"], "epochs"),
    (["epochs=0"], "epochs"),
    (["lr=-1"], "lr"),
    (["unknown=3"], "unknown"),
    (["model.width=0"], "model.width"),
    (["model.depth=2"], "model.depth"),
    (["flags=notalist"], "flags"),
]


@pytest.mark.parametrize("overrides,field", BAD)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        build(Demo, apply_overrides({}, overrides))
    message = str(info.value)
    assert field in message and "\n" not in message


@pytest.mark.parametrize("item", ["epochs", "=3", "a..b=1", "model.=1"])
def test_malformed_overrides(item):
    with pytest.raises(ConfigError, match="override"):
        apply_overrides({}, [item])


def test_override_into_a_non_group():
    with pytest.raises(ConfigError, match="not a group"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="choose one of quick"):
        resolve(Demo, "no-such-experiment", "paper")


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(lst)
