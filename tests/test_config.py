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

    monkeypatch.setattr(config, "PAPERS_ROOT", tmp_path)
    (tmp_path / "demo_paper" / "presets" / "demo").mkdir(parents=True)
    (tmp_path / "demo_paper" / "presets" / "demo" / "paper.yaml").write_text("epochs: 90\nlr: 0.1\n")
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


# -- deep merge over the experiment's own defaults ------------------------------------------------------

class Outer(Config):
    """An experiment config whose group default differs from the group class's defaults."""

    model: Inner = Inner(width=32)
    epochs: int = Field(3, ge=1)


class Wide(Config):
    width: int = Field(8, ge=1)
    depth: int = Field(2, ge=1)


class Grouped(Config):
    model: Wide = Wide(width=64, depth=5)


def test_an_override_of_one_group_field_keeps_the_experiments_other_values(tmp_path, monkeypatch):
    import tenfold.config as config

    monkeypatch.setattr(config, "PAPERS_ROOT", tmp_path)
    cfg = resolve(Grouped, "demo", "quick", ["model.depth=7"])
    assert (cfg.model.width, cfg.model.depth) == (64, 7)
    (tmp_path / "demo_paper" / "presets" / "demo").mkdir(parents=True)
    (tmp_path / "demo_paper" / "presets" / "demo" / "paper.yaml").write_text("model:\n  depth: 9\n")
    cfg = resolve(Grouped, "demo", "paper")
    assert (cfg.model.width, cfg.model.depth) == (64, 9)


def test_fscil_shapes_base_lr_override_keeps_base_epochs():
    from tenfold.experiments.registry import get

    exp = get("fscil-shapes")
    default = resolve(exp.config, "fscil-shapes", "quick")
    cfg = resolve(exp.config, "fscil-shapes", "quick", ["base.lr=0.2"])
    assert cfg.base.lr == 0.2 and cfg.base.epochs == default.base.epochs == 12
    assert cfg.incremental == default.incremental


def test_fscil_shapes_paper_preset_keeps_the_experiments_base_lr():
    """The preset lists base.epochs only; base.lr stays the experiment's 0.1 (not the class default)."""
    from tenfold.experiments.registry import get

    exp = get("fscil-shapes")
    paper = resolve(exp.config, "fscil-shapes", "paper")
    assert paper.base.epochs == 40
    assert paper.base.lr == resolve(exp.config, "fscil-shapes", "quick").base.lr == 0.1
    assert type(paper.base)().lr != 0.1  # the class default differs, so this test could fail


def test_tuning_lora_rank_override_keeps_every_other_methods_options():
    from tenfold.experiments.registry import get

    exp = get("tuning-minivtab")
    default = resolve(exp.config, "tuning-minivtab", "quick")
    cfg = resolve(exp.config, "tuning-minivtab", "quick", ["options.lora.rank=8"])
    assert set(cfg.options) == set(default.options) and len(default.options) > 1
    assert cfg.options["lora"]["rank"] == 8 and default.options["lora"].get("rank") != 8
    assert {k: v for k, v in cfg.options.items() if k != "lora"} == \
        {k: v for k, v in default.options.items() if k != "lora"}


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf", "nan"])
def test_non_finite_floats_are_refused(value):
    with pytest.raises(ConfigError, match=r"field 'lr'"):
        build(Demo, apply_overrides({}, [f"lr={value}"]))


def test_a_field_may_allow_non_finite_floats():
    class Bound(Config):
        cap: float = Field(float("inf"), allow_inf_nan=True)

    assert build(Bound, {"cap": float("inf")}).cap == float("inf")


def test_every_experiment_config_prints_as_yaml_that_reads_back_equal():
    import yaml

    from tenfold.config import available_presets, to_yaml
    from tenfold.experiments import discover

    for name, exp in discover().items():
        for preset in available_presets(name):
            cfg = resolve(exp.config, name, preset)
            assert build(exp.config, yaml.safe_load(to_yaml(cfg))) == cfg, (name, preset)


def test_cli_config_prints_the_resolved_yaml_with_descriptions(capsys):
    import yaml

    from tenfold.cli import cli_main

    assert cli_main(["config", "fscil-shapes", "--preset", "paper", "--set", "base.lr=0.2"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["base"]["lr"] == 0.2 and data["base"]["epochs"] == 40 and data["seeds"] == [0, 1, 2, 3, 4]
    assert "# base-session epochs" in text
    assert cli_main(["config", "fscil-shapes", "--set", "base.nosuch=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "base.nosuch" in err[0]
