"""The lion benchmark runs (quick) and its targets are computed from its own measurements."""

import pytest

from tenfold.papers.lion import bench as lion


@pytest.mark.slow
def test_quick_benchmark_reports_flat_ift_memory_and_solver_steps():
    out = lion.run(quick=True)
    mem = out["saved_bytes"]
    assert out["ift_memory_ratio_50_vs_10"] == mem["ift"][50] / mem["ift"][10] <= 1.05
    assert mem["unrolled"][50] > 4 * mem["unrolled"][10]
    for problem in out["solver_steps"].values():
        assert all(r["converged"] for r in problem.values())
    for t in out["targets"]:
        assert set(t) == {"name", "value", "threshold", "holds"}
