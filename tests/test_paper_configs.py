"""Each paper's configs live in a torch-free ``tenfold/papers/<paper>/configs.py`` that ``tenfold config`` imports
alone (tests/cli/test_startup.py checks it loads no torch): every experiment's config is found there from the
source, and the names copied into it from the method families (which import torch) agree with theirs."""

import importlib

import pytest

from tenfold.experiments import discover
from tenfold.experiments.index import find_entry, scan_module

EXPERIMENTS = sorted(discover())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_config_is_found_in_its_papers_configs_module(name):
    """The source index names the registered config class and its paper's configs module (a config defined in
    the experiments module would send `tenfold config` through the full import of torch)."""
    exp = discover()[name]
    entry = find_entry(name)
    paper = exp.run.__module__.split(".")[2]
    assert entry is not None and entry.get("config_module") == f"tenfold.papers.{paper}.configs", entry
    assert getattr(importlib.import_module(entry["config_module"]), entry["config"]) is exp.config
    assert entry["description"] == exp.description


DEMO = '''from tenfold.papers.demo.configs import DemoConfig as Renamed
from tenfold.config import Config


class Local(Config):
    pass


@register("demo-a", paper="demo", config=Renamed)
def a(cfg, ctx):
    """First."""


@register("demo-b", paper="demo", config=Local)
def b(cfg, ctx):
    """Second."""
'''


def test_the_index_reads_the_config_class_and_the_configs_module_it_is_imported_from(tmp_path):
    source = tmp_path / "experiments.py"
    source.write_text(DEMO)
    a, b = scan_module(source, "tenfold.papers.demo.experiments")
    assert (a["config_module"], a["config"], a["description"]) == ("tenfold.papers.demo.configs", "DemoConfig",
                                                                   "First.")
    assert "config_module" not in b  # defined beside the experiment: `tenfold config` imports the experiment


def test_sltt_copies_agree_with_the_snn_family():
    from tenfold.papers.sltt import configs
    from tenfold.snn.surrogate import SURROGATES
    from tenfold.snn.train import parse_rule

    assert configs.SURROGATES == tuple(SURROGATES)
    assert configs.parse_rule is parse_rule  # one function: tenfold.snn.rules, torch-free


def test_the_snn_package_loads_its_torch_modules_on_first_use():
    import subprocess
    import sys

    code = ("import sys, tenfold.snn.rules, tenfold.papers.sltt.configs; assert 'torch' not in sys.modules\n"
            "import tenfold.snn as s; assert s.SNNTrainer.__name__ == 'SNNTrainer' and 'torch' in sys.modules\n"
            "assert sorted(s.__all__) == sorted(n for n in dir(s) if n in s.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]


def test_tuning_task_names_agree_with_the_tuning_family():
    from tenfold.papers.tuning import configs
    from tenfold.tuning.tasks import TASKS
    from tenfold.tuning.vtab import VTAB_TASKS

    assert configs.MINI_TASKS == tuple(TASKS) and configs.VTAB_TASKS == tuple(VTAB_TASKS)


def test_the_contrastive_method_names_have_one_home():
    from tenfold.contrastive import config, methods, pretrain

    assert methods.METHODS is config.METHODS and methods.SIAMESE is config.SIAMESE
    assert pretrain.TrainConfig is config.TrainConfig


def _config_subclasses():
    """(child, parent) for every config class of every paper's configs module that subclasses another config."""
    import inspect
    import pkgutil

    import tenfold.papers
    from tenfold.config import Config

    pairs = []
    for info in pkgutil.iter_modules(tenfold.papers.__path__):
        try:
            module = importlib.import_module(f"tenfold.papers.{info.name}.configs")
        except ModuleNotFoundError:
            continue
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, Config) and cls.__module__ == module.__name__:
                parent = next((p for p in cls.__mro__[1:] if issubclass(p, Config)), Config)
                if parent is not Config:
                    pairs.append(pytest.param(cls, parent, id=f"{info.name}.{cls.__name__}"))
    return pairs


@pytest.mark.parametrize("child, parent", _config_subclasses())
def test_a_subclass_changes_only_the_nested_fields_it_names(child, parent):
    """A subclass's nested group (e.g. ``incremental``) may differ from its parent's only in fields it names:
    ``IncrementalConfig(steps=60)`` in fscil-shapes reset the parent's class-balanced DR to the class default
    (unbalanced) without a word. Deriving the group from the parent's value keeps the other fields."""
    from tenfold.config import Config

    for group, field in child.model_fields.items():
        mine, theirs = field.default, getattr(parent.model_fields.get(group), "default", None)
        if not (isinstance(mine, Config) and type(mine) is type(theirs)):
            continue
        silent = {name: (getattr(theirs, name), getattr(mine, name)) for name in type(mine).model_fields
                  if getattr(mine, name) != getattr(theirs, name) and name not in mine.model_fields_set}
        assert not silent, f"{child.__name__}.{group} silently changes {parent.__name__}'s {silent}"


def test_fscil_shapes_fine_tunes_with_the_class_balanced_dr_of_the_official_code_and_digits():
    from tenfold.papers.fscil.configs import FSCILConfig, ShapesFSCILConfig

    assert FSCILConfig().incremental.balanced and ShapesFSCILConfig().incremental.balanced
    assert ShapesFSCILConfig().incremental.steps == 60
