"""The benchmark runs and its non-timing results hold (timings are reported, never asserted)."""

from tenfold.papers.mpcl import bench as mpcl


def test_bench_quick_reports_agreement_and_saved_memory():
    out = mpcl.run(quick=True)
    assert [r["n"] for r in out["rows"] if r["device"] == "cpu"] == [256, 1024]
    for n, diffs in out["agreement"].items():
        assert max(diffs.values()) < 1e-10, n
    # memory saved for backward is deterministic: Z and a vector against several N x N matrices
    big = [r for r in out["rows"] if r["n"] == 1024 and r["device"] == "cpu"][0]
    assert big["saved_bytes_mp_infonce"] < 1024 * 1024 * 4 < big["saved_bytes_nt_xent"]
    assert {t["name"] for t in out["targets"]} >= {"N=256: loss and gradient agree with NT-Xent (float64)"}
