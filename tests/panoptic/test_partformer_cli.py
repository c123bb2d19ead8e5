"""The user path of partformer-scenes: a tiny run through the CLI writes predictions that the
evaluator reads, a figure, and results.json; bad settings fail before any work."""

import json

import pytest

from tenfold.cli import cli_main

TINY = ["--set", "steps=3", "--set", "train_scenes=8", "--set", "val_scenes=4", "--set", "batch_size=4",
        "--set", "num_points=64", "--set", "variants=[full,shared-features]"]


@pytest.mark.slow
def test_tiny_run_writes_predictions_figures_and_results(tmp_path, capsys):
    assert cli_main(["run", "partformer-scenes", "--out", str(tmp_path)] + TINY) == 0
    (folder,) = (tmp_path / "partformer-scenes").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert data["status"] == "ok" and len(data["claims"]) == 2
    assert {"PartPQ", "PQ", "PWQ_provisional", "PartPQ_untrained", "PartPQ_shared-features"} <= set(data["metrics"])
    assert len(list((folder / "predictions" / "full").glob("*.png"))) == 4
    assert (folder / "predictions.png").is_file() and (folder / "eval_parts.json").is_file()
    # the saved PNGs give the same PartPQ through the folder evaluator as the in-memory evaluation
    assert data["metrics"]["PartPQ_folder_eval"] == pytest.approx(data["metrics"]["PartPQ"], abs=1e-12)
    code = cli_main(["eval-parts", "--gt", str(folder / "scenes" / "val" / "labels"),
                     "--pred", str(folder / "predictions" / "full"),
                     "--eval-spec", str(folder / "scenes" / "val" / "eval_spec.yaml"),
                     "--out", str(tmp_path / "eval.json")])
    assert code == 0
    assert json.loads((tmp_path / "eval.json").read_text())["PartPQ"] == pytest.approx(
        data["metrics"]["PartPQ_folder_eval"], abs=1e-12)


@pytest.mark.parametrize("override,message", [
    ("variants=[full,bogus]", "field 'variants'"),
    ("data_root=/nowhere", "data_root needs eval_spec"),
    ("num_part_queries=-1", "field 'num_part_queries'"),
    ("steps=0", "field 'steps'"),
])
def test_bad_settings_fail_before_any_work(override, message, tmp_path, capsys):
    assert cli_main(["run", "partformer-scenes", "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "partformer-scenes").exists()


@pytest.mark.slow
def test_part_query_count_must_match_the_spec(tmp_path, capsys):
    code = cli_main(["run", "partformer-scenes", "--out", str(tmp_path), "--set", "num_part_queries=5"] + TINY)
    assert code == 2 and "num_part_queries=5 is invalid" in capsys.readouterr().err
