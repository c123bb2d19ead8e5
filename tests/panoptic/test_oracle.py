"""Our PartPQ equals the panoptic_parts 2.0rc6 reference (``pip install panoptic_parts==2.0rc6`` + scikit-learn)."""

import numpy as np
import pytest

from tenfold.data.panoptic_scenes import generate_scenes
from tenfold.panoptic.corrupt import CORRUPTIONS
from tenfold.panoptic.merge import gt_to_prediction
from tenfold.panoptic.metrics import PartStats, image_stats

from panoptic_helpers import specs

pytestmark = pytest.mark.oracle


def _random_prediction(gt, spec, rng):
    pred = gt_to_prediction(gt, spec)
    for name, fn in CORRUPTIONS.items():
        pred = fn(pred, spec, float(rng.uniform(0, 0.5)), rng)
    r = rng.random(pred.shape[:2])
    with_parts = np.isin(pred[..., 0], spec.parts_sids)  # part noise on classes with parts, pid 0 too (a part
    noisy = (r < 0.05) & with_parts                         # id on a class without parts is refused: test_strict_eval)
    pred[..., 2] = np.where(noisy, rng.integers(0, 2, pred.shape[:2]), pred[..., 2])   # pid 1 exists in every class
    pred[..., 2] = np.where(r > 0.98, 255, pred[..., 2])                                   # unknown parts
    pred[..., 1] = np.where(rng.random(pred.shape[:2]) < 0.01, 9, pred[..., 1])            # stray segments
    unknown = rng.random(pred.shape[:2]) < 0.01                                          # unevaluated classes and no prediction (ids outside the spec are refused: test_strict_eval)
    pred[..., 0] = np.where(unknown, rng.choice([0, 255]), pred[..., 0])
    pred = np.roll(pred, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
    return pred


@pytest.mark.slow
def test_partpq_equals_reference_on_random_sets(tmp_path):
    from tenfold.panoptic.oracle import import_reference, reference_per_class

    try:  # a plain importorskip fails: the package raises OSError on Python >= 3.10 unless patched
        import_reference()
    except ImportError as exc:
        pytest.fail(f"panoptic_parts reference not installed (pip install -e .[oracle]): {exc}")

    spec, spec_np, ev, ev_np = specs(tmp_path)
    rng = np.random.default_rng(123)
    checked = 0
    for trial in range(20):
        scenes = generate_scenes(3, seed=1000 + trial, height=48, width=64, things=(2, 7))
        pairs = [(s.uids, _random_prediction(s.uids, spec, rng)) for s in scenes]
        for path, sp in ((ev, spec), (ev_np, spec_np)) if trial % 4 == 0 else ((ev, spec),):
            ref = reference_per_class(path, pairs)
            ours = PartStats()
            for gt, pred in pairs:
                ours += image_stats(gt, pred, sp)
            for sid, (tp, fp, fn, iou) in ref.items():
                got = ours.part_pq
                assert (got.tp[sid], got.fp[sid], got.fn[sid]) == (tp, fp, fn), (trial, sid)
                assert abs(got.score[sid] - iou) <= 1e-12, (trial, sid)
                checked += tp
    assert checked > 100  # the comparison covered many matched segments


def _ppp_like_gt(spec, rng, size=64, block=8):
    """Random blocks of PASCAL-Panoptic-Parts uids: void, stuff, crowd and part instances whose pids include
    countable part instances (folded by the dataset spec) and sid-only pixels of grouped classes."""
    lut = spec.dataset.sid_pid_file2sid_pid
    things = spec.things
    stuff = spec.stuff
    uids = np.zeros((size, size), np.int32)
    for y in range(0, size, block):
        for x in range(0, size, block):
            kind = rng.random()
            if kind < 0.1:
                continue                                       # void (uid 0)
            if kind < 0.3:
                uids[y:y + block, x:x + block] = int(rng.choice(stuff))
                continue
            sid = int(rng.choice(things[:6]))                  # a few classes, so instances repeat
            if kind < 0.35:
                uids[y:y + block, x:x + block] = sid           # crowd / sid-only
                continue
            iid = int(rng.integers(1, 3))
            pids = [sp % 100 for sp in np.flatnonzero(lut >= 0) if sp // 100 == sid and sp >= 100]
            for yy in range(y, y + block, 4):
                pid = int(rng.choice(pids)) if pids and rng.random() < 0.85 else 0
                uids[yy:yy + 4, x:x + block] = sid * 100_000 + iid * 100 + pid if pid else sid * 1000 + iid
    return uids


@pytest.mark.slow
def test_partpq_equals_reference_with_pascal_spec(tmp_path):
    from tenfold.panoptic.format import EvalSpec, builtin_spec
    from tenfold.panoptic.oracle import import_reference, reference_per_class

    try:
        import_reference()
    except ImportError as exc:
        pytest.fail(f"panoptic_parts reference not installed (pip install -e .[oracle]): {exc}")
    src = builtin_spec("ppq_ppp_59_57_cvpr21_default_evalspec.yaml")
    path = tmp_path / "ppp_evalspec.yaml"  # absolute dataset spec path: the reference resolves it from cwd
    path.write_text(src.read_text().replace("dataset_spec_path: ppp_datasetspec.yaml",
                                            f"dataset_spec_path: {builtin_spec('ppp_datasetspec.yaml')}"))
    spec = EvalSpec.load(path)
    rng = np.random.default_rng(5)
    parts_tp = 0
    for trial in range(2):
        gts = [_ppp_like_gt(spec, rng) for _ in range(2)]
        pairs = [(g, _random_prediction(g, spec, rng)) for g in gts]
        ref = reference_per_class(path, pairs)
        ours = PartStats()
        for gt, pred in pairs:
            ours += image_stats(gt, pred, spec)
        for sid, (tp, fp, fn, iou) in ref.items():
            got = ours.part_pq
            assert (got.tp[sid], got.fp[sid], got.fn[sid]) == (tp, fp, fn), (trial, sid)
            assert abs(got.score[sid] - iou) <= 1e-12, (trial, sid)
        parts_tp += sum(v[0] for s, v in ref.items() if spec.has_parts(s))
    assert parts_tp >= 5  # matched segments of classes with parts were compared


@pytest.mark.slow
def test_partpq_equals_reference_at_cityscapes_size(tmp_path):
    """One 1024x2048 image (17 things + 2 stuff, random part noise, stray segments, unevaluated and unknown
    ids): the sizes the benchmark times, where the numpy path reads labels as run starts and 16-bit
    (sid, iid) values and counts int32 joint keys."""
    from tenfold.panoptic.oracle import import_reference, reference_per_class

    try:
        import_reference()
    except ImportError as exc:
        pytest.fail(f"panoptic_parts reference not installed (pip install -e .[oracle]): {exc}")
    spec, _, ev, _ = specs(tmp_path)
    rng = np.random.default_rng(2048)
    scene = generate_scenes(1, seed=77, height=1024, width=2048, things=(17, 17))[0]
    pairs = [(scene.uids, _random_prediction(scene.uids, spec, rng))]
    ref = reference_per_class(ev, pairs)
    ours = image_stats(*pairs[0], spec)
    for sid, (tp, fp, fn, iou) in ref.items():
        got = ours.part_pq
        assert (got.tp[sid], got.fp[sid], got.fn[sid]) == (tp, fp, fn), sid
        assert abs(got.score[sid] - iou) <= 1e-12, sid
    assert sum(v[0] for s, v in ref.items() if spec.has_parts(s)) >= 5


def test_eval_parts_benchmark_reports_each_ratio_with_its_target():
    """The benchmark's path on one tiny image: equality with the reference is asserted, and every size
    reports its files and arrays speed-ups on both clocks, each as a target row with the declared bar."""
    from tenfold.panoptic.oracle import import_reference
    from tenfold.papers.partformer import bench_eval_parts as bench

    try:
        import_reference()
    except ImportError as exc:
        pytest.fail(f"panoptic_parts reference not installed (pip install -e .[oracle]): {exc}")
    assert (1024, 2048) in [s[:2] for s in bench.QUICK_SIZES]   # Cityscapes size in the quick run too
    out = bench.run(sizes=((32, 64, 1), (48, 64, 1)))
    assert len(out["sizes"]) == 2 and len(out["targets"]) == 8
    for row in out["sizes"]:
        assert row["max_abs_difference_vs_reference"] == 0.0
        for kind in ("files", "arrays"):
            for clock in ("wall", "cpu"):
                value = row[f"speedup_{kind}_{clock}"]
                rows = [t for t in out["targets"] if t["value"] == value]
                assert rows and rows[0]["threshold"] == ">= 25" and rows[0]["holds"] == (value >= 25)
