"""``tenfold --help``, ``tenfold list`` and an unknown experiment name answer without importing torch (what
made them take seconds); the start-up time itself is a benchmark figure, not a test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _imported(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tenfold.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    names = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return names, done


@pytest.mark.parametrize("args", [["--help"], ["list"], ["run", "nosuch"], ["config", "nosuch"]])
def test_light_commands_do_not_import_torch(args):
    names, done = _imported(*args)
    assert "tenfold" in names, done.stderr[-500:]  # (run as __main__, so tenfold.cli itself is not listed)
    heavy = sorted(n for n in names if n.split(".")[0] in {"torch", "lightning", "timm", "sklearn", "matplotlib"})
    assert not heavy, heavy[:5]


def test_list_shows_every_experiment_without_importing_them():
    names, done = _imported("list")
    assert done.returncode == 0
    assert "digits-mlp" in done.stdout and "partformer-scenes" in done.stdout
    assert not any(n.startswith("tenfold.papers.digits_mlp") for n in names)


def test_config_imports_only_the_module_that_registers_the_experiment():
    # sys.modules, not -X importtime: the experiment's module is imported by importlib, which importtime skips
    code = ("import contextlib, io, json, sys\nfrom tenfold.cli import cli_main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as text:\n    code = cli_main(['config', 'digits-mlp'])\n"
            "print(json.dumps({'code': code, 'out': text.getvalue(), 'modules': sorted(sys.modules)}))")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    data = json.loads(done.stdout.splitlines()[-1])
    assert data["code"] == 0 and "hidden: 128" in data["out"]
    papers = [n for n in data["modules"] if n.startswith("tenfold.papers.") and n.count(".") == 3]
    assert papers and all(n.startswith("tenfold.papers.digits_mlp.") for n in papers), papers
    # nor what only running or reporting needs (matplotlib is imported on the first figure)
    heavy = [n for n in data["modules"] if n.split(".")[0] in {"matplotlib", "lightning", "sklearn", "torchmetrics"}]
    assert not heavy, heavy[:5]


# One interpreter imports every paper's configs module, then answers `tenfold config NAME --preset P` for every
# experiment and preset, recording the heavy modules each step loaded (a fresh interpreter each costs seconds).
_CONFIG_ALL = """
import contextlib, importlib, io, json, sys
from pathlib import Path
import tenfold
from tenfold.cli import cli_main
from tenfold.config import available_presets
from tenfold.experiments.index import experiment_index

HEAVY = ("torch", "lightning", "timm", "sklearn", "matplotlib", "torchvision", "scipy")
heavy = lambda: sorted(n for n in sys.modules if n.split(".")[0] in HEAVY)
papers = Path(tenfold.__file__).parent / "papers"
for path in sorted(papers.glob("*/configs.py")):
    importlib.import_module(f"tenfold.papers.{path.parent.name}.configs")
out = {"configs_modules": heavy(), "experiments": {}}
for entry in experiment_index():
    before, texts = set(heavy()), {}
    for preset in available_presets(entry["name"]):
        with contextlib.redirect_stdout(io.StringIO()) as text:
            code = cli_main(["config", entry["name"], "--preset", preset])
        texts[preset] = [code, text.getvalue()]
    out["experiments"][entry["name"]] = {"texts": texts, "heavy": sorted(set(heavy()) - before)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def configs_without_torch() -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", _CONFIG_ALL], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_papers_configs_modules_import_no_torch(configs_without_torch):
    assert configs_without_torch["configs_modules"] == []


def _experiments() -> list[str]:
    from tenfold.experiments.index import experiment_index

    return [e["name"] for e in experiment_index()]


@pytest.mark.parametrize("name", _experiments())
def test_config_answers_without_torch_and_prints_what_the_registry_gives(name, configs_without_torch):
    """`tenfold config NAME` imports only the paper's configs module; its YAML for every preset is the one the
    imported experiment's config class gives."""
    from tenfold.config import resolve, to_yaml
    from tenfold.experiments import discover

    got = configs_without_torch["experiments"][name]
    assert got["heavy"] == [], got["heavy"][:5]
    exp = discover()[name]
    for preset, (code, text) in got["texts"].items():
        assert code == 0, (preset, text[-300:])
        assert text == f"# {name} ({preset}): {exp.description}\n" + to_yaml(resolve(exp.config, name, preset))
