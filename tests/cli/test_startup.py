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
