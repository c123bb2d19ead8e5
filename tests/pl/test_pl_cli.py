"""The user path: `tenfold run pl-lower-bound` writes results and figures; bad values exit with code 2."""

import json

import pytest

from tenfold.cli import cli_main


def test_run_small_grid(tmp_path):
    code = cli_main(["run", "pl-lower-bound", "--out", str(tmp_path), "--set", "blocks=[2,4]", "--set", "eps=[0.01]",
                     "--set", "quadratic_dim=300", "--set", "adam_lrs=[0.03]"])
    assert code == 0
    (folder,) = (tmp_path / "pl-lower-bound").iterdir()
    data = json.loads((folder / "results.json").read_text())
    claims = {c["name"]: c for c in data["claims"]}
    assert claims["every count / (T t/2)"]["holds"] and claims["every count / (T t/2)"]["value"] >= 1
    assert claims["zero-chain: after k queries no coordinate beyond k moved (all methods, all steps)"]["holds"]
    assert (folder / "pl_counts.png").is_file() and (folder / "metrics.csv").is_file()
    assert "| T | eps | t | Tt/2 |" in next(iter(data["tables"].values()))


@pytest.mark.parametrize("override,field", [("eps=[1.5]", "eps"), ("blocks=[0,2]", "blocks"),
                                            ("smoothness=-1", "smoothness"), ("adam_lrs=[0]", "adam_lrs")])
def test_bad_values_exit_2(tmp_path, capsys, override, field):
    assert cli_main(["run", "pl-lower-bound", "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1
