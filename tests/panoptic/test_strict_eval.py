"""The evaluator is strict: every spec violation in the ground truth, the predictions, their shapes or the
eval spec itself is a one-line DataError naming the file or image, the id and what was expected (on the
code before this file each of these was scored silently), and 2 processes give exactly the numbers of 1."""

import json
import sys

import numpy as np
import pytest
import yaml

from tenfold.data.panoptic_scenes import BALL, CAR, SKY, dataset_spec_dict, eval_spec_dict, generate_scenes
from tenfold.errors import DataError
from tenfold.panoptic import PartPQEvaluator
from tenfold.panoptic.corrupt import split_instances, swap_parts
from tenfold.panoptic.evaluator import evaluate_folders
from tenfold.panoptic.format import EvalSpec, write_gt, write_prediction
from tenfold.panoptic.merge import gt_part_flat, gt_to_prediction
from tenfold.panoptic.metrics import image_stats

from panoptic_helpers import car_grid, specs


def _pair(tmp_path):
    spec = specs(tmp_path)[0]
    gt = car_grid(2)
    gt[:2, :2] = SKY
    gt[-2:, -2:] = BALL * 1000 + 1
    return spec, gt, gt_to_prediction(gt, spec)


# (name, edit of the GT uids, message fragments): every GT value here was scored silently before
GT_CASES = [
    ("sid outside the dataset spec", lambda g: g.__setitem__((0, 5), 42),
     ["uid 42 has semantic id 42", "not a class of dataset spec", "expected a sid in 0..5"]),
    ("instance id on a stuff class", lambda g: g.__setitem__((0, 5), SKY * 1000 + 3),
     [f"uid {SKY * 1000 + 3} gives instance id 3 to stuff class {SKY} (sky)", "expected a semantic-only uid"]),
    ("part id on a class without parts", lambda g: g.__setitem__((0, 5), BALL * 100_000 + 101),
     [f"uid {BALL * 100_000 + 101} has part id 1", f"class {BALL} (ball) has no parts"]),
    ("part id outside the class's parts", lambda g: g.__setitem__((5, 5), CAR * 100_000 + 104),
     [f"uid {CAR * 100_000 + 104} has part id 4", f"class {CAR} (car) has parts 1..3 (window, wheel, body)"]),
]


@pytest.mark.parametrize("name,edit,fragments", GT_CASES, ids=[c[0] for c in GT_CASES])
def test_ground_truth_outside_the_spec_is_named(tmp_path, name, edit, fragments):
    spec, gt, pred = _pair(tmp_path)
    image_stats(gt, pred, spec)                                       # the valid pair passes
    bad = gt.copy()
    edit(bad)
    with pytest.raises(DataError) as exc:
        image_stats(bad, pred, spec, where="pred.png", gt_where="gt.tif")
    line = str(exc.value)
    assert "\n" not in line and line.startswith("gt.tif: ")
    for f in fragments:
        assert f in line, line


def test_ground_truth_sid_the_eval_spec_does_not_map(tmp_path):
    """Without a DEFAULT, a sid missing from dataset_sid2eval_sid is not silently void."""
    spec, gt, pred = _pair(tmp_path)
    ev = eval_spec_dict(str(spec.dataset.path))
    del ev["dataset_sid2eval_sid"][0]
    path = tmp_path / "no_void.yaml"
    path.write_text(yaml.safe_dump(ev))
    strict = EvalSpec.load(path)
    bad = gt.copy()
    bad[0, 5] = 0
    image_stats(bad, pred, spec)                                      # sid 0 is void in the full spec
    with pytest.raises(DataError, match=r"uid 0 has semantic id 0, which eval spec .* does not map: expected a sid "
                                        r"listed in dataset_sid2eval_sid \[1, 2, 3, 4, 5\]"):
        image_stats(bad, pred, strict)


def test_countable_part_outside_the_groupings_names_the_uid():
    spec = EvalSpec.load("ppq_ppp_59_57_cvpr21_default")
    aeroplane = spec.dataset.scene_classes.index("aeroplane")
    gt = np.full((4, 4), aeroplane * 100_000 + 101, np.int32)
    gt[0, 0] = aeroplane * 100_000 + 199                              # pid 99: neither a part nor countable
    pred = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(DataError, match=rf"uid {aeroplane * 100_000 + 199} has part id 99, but class {aeroplane} "
                                        r"\(aeroplane\) has parts 1\.\..* countable part ids"):
        image_stats(gt, pred, spec, where="x.png")


PRED_CASES = [
    ("sid outside the dataset spec", (0, 0, 0), 42, "semantic id 42, which is not a class of dataset spec"),
    ("part id outside a parts class's pids", (5, 5, 2), 7,
     f"(sid, iid, pid) = ({CAR}, 1, 7) has part id 7 on class {CAR} (car): expected one of its evaluated pids [1, 2, 3]"),
    ("part id on a class without parts", (0, 0, 2), 9,
     f"({SKY}, 0, 9) has part id 9 on class {SKY} (sky): expected 1 (the dummy pid"),
]


@pytest.mark.parametrize("name,pixel,value,fragment", PRED_CASES, ids=[c[0] for c in PRED_CASES])
def test_prediction_outside_the_spec_is_named(tmp_path, name, pixel, value, fragment):
    spec, gt, pred = _pair(tmp_path)
    bad = pred.copy()
    bad[pixel] = value
    with pytest.raises(DataError) as exc:
        image_stats(gt, bad, spec, where="pred.png", gt_where="gt.tif")
    line = str(exc.value)
    assert "\n" not in line and line.startswith("pred.png: ") and fragment in line, line


def test_shapes_and_dtypes(tmp_path):
    spec, gt, pred = _pair(tmp_path)
    flat = gt_part_flat(gt, spec)
    assert gt.shape[0] != gt.shape[1]
    # a transposed part map has the right number of pixels: it used to be read in the wrong order
    with pytest.raises(DataError, match=r"p.png: part-semantic prediction of shape \(.*\) does not match"):
        image_stats(gt, pred, spec, pred_flat=np.ascontiguousarray(flat.T), where="p.png")
    # float labels used to be truncated to ids
    with pytest.raises(DataError, match="g.tif: ground truth has dtype float64: expected integer labels"):
        image_stats(gt.astype(np.float64) + 0.5, pred, spec, gt_where="g.tif")
    with pytest.raises(DataError, match="p.png: prediction has dtype float32"):
        image_stats(gt, pred.astype(np.float32), spec, where="p.png")
    with pytest.raises(DataError, match="channels|expected \\(H, W, 3\\)"):
        image_stats(gt, pred[..., :2], spec)
    with pytest.raises(DataError, match="does not match the ground truth"):
        image_stats(gt, pred[:, :-1], spec)


def _spec_variant(tmp_path, edit):
    ds = tmp_path / "ds.yaml"
    ds.write_text(yaml.safe_dump(dataset_spec_dict(), sort_keys=False))
    ev = eval_spec_dict(str(ds))
    edit(ev)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(ev, sort_keys=False))
    return path


SPEC_CASES = [
    ("thing without instances in the dataset",
     lambda e: (e["eval_sid_things"].append(SKY), e["eval_sid_stuff"].remove(SKY)),
     f"eval_sid_things lists sid {SKY} (sky), which has no instances"),
    ("sid both thing and stuff", lambda e: e["eval_sid_stuff"].append(CAR),
     f"sid {CAR} is listed in eval_sid_things and in its complement"),
    # dataset sid 0 (void in the GT) evaluated as sky: the evaluator read GT sids as eval sids and scored it as void
    ("non-identity sid map", lambda e: e["dataset_sid2eval_sid"].update({0: SKY}),
     f"dataset_sid2eval_sid[0]={SKY} is not supported"),
]


@pytest.mark.parametrize("name,edit,fragment", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_eval_spec_categories_agree_with_the_dataset(tmp_path, name, edit, fragment):
    path = _spec_variant(tmp_path, edit)
    with pytest.raises(DataError) as exc:
        EvalSpec.load(path)
    assert "variant.yaml" in str(exc.value) and fragment in str(exc.value), str(exc.value)


def test_cli_ground_truth_outside_the_eval_spec_exits_2(tmp_path, monkeypatch, capsys):
    """The issue's report: `tenfold eval-parts` accepted such a GT and exited 0."""
    from tenfold.cli import main

    spec, gt, pred = _pair(tmp_path)
    gt[0, 5] = 42
    write_gt(tmp_path / "gt" / "a.tif", gt)
    write_prediction(tmp_path / "pred" / "a.png", pred[..., 0], pred[..., 1], pred[..., 2])
    monkeypatch.setattr(sys, "argv", ["tenfold", "eval-parts", "--gt", str(tmp_path / "gt"), "--pred",
                                      str(tmp_path / "pred"), "--eval-spec", str(spec.path)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "ground truth" in err and "a.tif: uid 42 has semantic id 42" in err


def _scored_folders(tmp_path, n=6):
    """GT and corrupted predictions (split instances, swapped parts) so every class has FPs/FNs/partial scores."""
    spec = specs(tmp_path)[0]
    rng = np.random.default_rng(3)
    for i, scene in enumerate(generate_scenes(n, seed=11, height=40, width=56)):
        pred = split_instances(swap_parts(gt_to_prediction(scene.uids, spec), spec, 0.5, rng), spec, 0.3, rng)
        write_gt(tmp_path / "gt" / f"im{i}.tif", scene.uids)
        write_prediction(tmp_path / "pred" / f"im{i}.png", pred[..., 0], pred[..., 1], pred[..., 2])
    return spec


def test_two_processes_equal_one_exactly(tmp_path):
    spec = _scored_folders(tmp_path)
    one = evaluate_folders(tmp_path / "gt", tmp_path / "pred", spec.path, workers=1)
    two = evaluate_folders(tmp_path / "gt", tmp_path / "pred", spec.path, workers=2)
    assert one["images"] == 6 and 0 < one["PartPQ"] < 1
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)   # every float bit-equal


def test_library_evaluators_merge_to_one_exactly(tmp_path):
    """Per-process evaluators (e.g. one per distributed rank) merge to exactly the one-process result, in
    any order: the TP scores are summed with a correctly rounded sum."""
    spec = specs(tmp_path)[0]
    rng = np.random.default_rng(5)
    pairs = []
    for scene in generate_scenes(7, seed=2, height=40, width=56):
        pred = split_instances(swap_parts(gt_to_prediction(scene.uids, spec), spec, 0.5, rng), spec, 0.3, rng)
        pairs.append((scene.uids, pred))
    whole = PartPQEvaluator(spec)
    for g, p in pairs:
        whole.process(g, p)
    parts = [PartPQEvaluator(spec) for _ in range(3)]
    for k, (g, p) in enumerate(pairs):
        parts[(k * 5) % 3].process(g, p)
    merged = PartPQEvaluator(spec)
    merged.merge(*parts[::-1])
    assert json.dumps(merged.evaluate(), sort_keys=True) == json.dumps(whole.evaluate(), sort_keys=True)
    with pytest.raises(DataError, match="eval spec"):
        merged.merge(PartPQEvaluator(specs(tmp_path / "other")[1]))


def _swap_ratio(spec, gts, include_bg=True, key="PartPQ", scored_with=None):
    """(1 - PartPQ) / (1 - part mIoU) with two parts of every parts segment swapped (partformer-metrics),
    scored with ``scored_with`` (default ``spec``)."""
    from tenfold.panoptic.metrics import evaluate_arrays

    rng = np.random.default_rng(0)
    res = evaluate_arrays([(g, swap_parts(gt_to_prediction(g, spec), spec, 1.0, rng)) for g in gts],
                          scored_with or spec, include_bg=include_bg)
    return (1 - res[key]) / (1 - res["part_mIoU"]), res


def test_bias_claim_fails_for_a_wrong_partpq(tmp_path):
    """partformer-metrics' paper claim (PartPQ biases to PQ: ratio in [0.30, 0.40]) holds for the published
    PartPQ and fails for a wrong one: background counted differently, or the parts of only one class scored;
    the definitions' check follows each variant (it tests the implementation, not the paper)."""
    from tenfold.papers.partformer.configs import MetricsThresholds
    from tenfold.papers.partformer.experiments_metrics import definitions_ratio

    th = MetricsThresholds()
    spec = specs(tmp_path)[0]
    gts = [s.uids for s in generate_scenes(12, seed=3, height=96, width=128, things=(3, 6))]
    inside = lambda r: th.min_bias_ratio <= r <= th.max_bias_ratio  # noqa: E731
    ratio, res = _swap_ratio(spec, gts)
    assert inside(ratio)
    assert abs(ratio - definitions_ratio(spec, res["n_classes"], True)) <= th.bias_tolerance
    no_bg, res = _swap_ratio(spec, gts, include_bg=False)                 # background not counted
    assert not inside(no_bg)
    assert abs(no_bg - definitions_ratio(spec, res["n_classes"], False)) <= th.bias_tolerance
    one_class = EvalSpec(**{**spec.__dict__, "sid2pids": {CAR: spec.sid2pids[CAR]}})   # person's parts unscored
    one, _ = _swap_ratio(spec, gts, scored_with=one_class)
    assert not inside(one) and one < th.min_bias_ratio
