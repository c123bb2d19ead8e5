"""The benchmark's user path: `tenfold bench papal --quick` writes JSON with its targets (timings are not
asserted; only that both gradient paths compute the same numbers)."""

import json

import pytest

from tenfold.cli import cli_main


@pytest.mark.slow
def test_bench_papal_quick_writes_json(tmp_path):
    out = tmp_path / "papal.json"
    assert cli_main(["bench", "papal", "--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["gradient_paths_max_abs_difference"] < 1e-10
    assert {t["name"].split(":")[0] for t in data["targets"]} >= {"slope of log time vs log M (low-rank path)"}
    assert data["low_rank_run"]["float64_cpu_s"] > 0 and len(data["growth"]["M"]) == 2
