"""The user path: `tenfold run papal-game / papal-dimension` write results; bad values exit with code 2."""

import json

import pytest

from tenfold.cli import cli_main


def _results(root, name):
    (folder,) = (root / name).iterdir()
    return folder, json.loads((folder / "results.json").read_text())


def test_papal_game_small(tmp_path):
    code = cli_main(["run", "papal-game", "--out", str(tmp_path), "--set", "particles=60", "--set", "outer_steps=4",
                     "--set", "inner_steps=20", "--set", "grid_points=301", "--set", "mfl_steps=40",
                     "--set", "wfr_steps=20", "--set", "gda_steps=20", "--set", "torus_particles=30",
                     "--set", "torus_outer_steps=2", "--set", "torus_inner_steps=10", "--set", "ni_every=2"])
    assert code == 0
    folder, data = _results(tmp_path, "papal-game")
    claims = {c["name"]: c for c in data["claims"]}
    assert claims["grid: gap at t=80"]["holds"]  # the exact loop does not depend on the particle settings
    assert claims["torus: pure GDA keeps NI = 2"]["holds"]
    assert (folder / "papal_game.png").is_file()
    assert "PAPAL" in (folder / "metrics.csv").read_text()


def test_papal_dimension_small(tmp_path):
    code = cli_main(["run", "papal-dimension", "--out", str(tmp_path), "--set", "dims=[1,4]", "--set", "particles=[8]",
                     "--set", "outer_steps=2", "--set", "inner_steps=5", "--set", "mfl_steps=10",
                     "--set", "wfr_steps=10"])
    assert code == 0
    folder, data = _results(tmp_path, "papal-dimension")
    assert len(data["claims"]) == 3 and (folder / "papal_dimension.png").is_file()
    assert "| d | M | PAPAL |" in next(iter(data["tables"].values()))


@pytest.mark.parametrize("name,override,field", [
    ("papal-game", "lam2=0", "lam2"), ("papal-game", "lam1=-1", "lam1"), ("papal-game", "step=0", "step"),
    ("papal-game", "particles=0", "particles"), ("papal-game", "sampler=hmc", "sampler"),
    ("papal-dimension", "dims=[0,2]", "dims"), ("papal-dimension", "particles=[0]", "particles"),
])
def test_bad_values_exit_2(tmp_path, capsys, name, override, field):
    assert cli_main(["run", name, "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1
