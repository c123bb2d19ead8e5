"""The user path: ``tenfold eval-parts`` on folders in the panoptic_parts layout, and ``tenfold run partformer-metrics``."""

import json

import numpy as np
import pytest

from tenfold.data.panoptic_scenes import CAR, generate_scenes, write_scenes
from tenfold.panoptic.corrupt import drop_instances
from tenfold.panoptic.evaluator import evaluate_folders, format_table
from tenfold.panoptic.format import EvalSpec, read_gt, write_gt, write_prediction
from tenfold.panoptic.merge import gt_to_prediction


@pytest.fixture
def dataset(tmp_path):
    paths = write_scenes(tmp_path / "data", generate_scenes(4, seed=5, height=48, width=64))
    spec = EvalSpec.load(paths["eval_spec"])
    pred_dir = tmp_path / "pred"
    for f in sorted(paths["labels"].glob("*.tif")):
        p = gt_to_prediction(read_gt(f), spec)
        if f.stem.endswith("0"):
            p = drop_instances(p, spec, 1.0, np.random.default_rng(0))
        write_prediction(pred_dir / f"{f.stem}.png", p[..., 0], p[..., 1], p[..., 2])
    return paths, pred_dir


def test_evaluate_folders_json_and_table(dataset):
    paths, pred_dir = dataset
    res = evaluate_folders(paths["labels"], pred_dir, paths["eval_spec"], images_json=paths["images_json"])
    assert res["images"] == 4 and 0 < res["PQ"] < 1 and 0 < res["PartPQ"] < 1
    json.dumps(res)
    table = format_table(res)
    for label in ("PQ", "PartPQ with parts", "PartPQ without parts", "part mIoU", "PWQ (provisional)"):
        assert label in table
    two = evaluate_folders(paths["labels"], pred_dir, paths["eval_spec"], workers=2)
    assert {k: v for k, v in two.items() if k != "per_part"} == {k: v for k, v in res.items() if k != "per_part"}


def test_cli_writes_json(dataset, tmp_path, tenfold_cli):
    paths, pred_dir = dataset
    out = tmp_path / "res.json"
    r = tenfold_cli("eval-parts", "--gt", paths["labels"], "--pred", pred_dir, "--eval-spec", paths["eval_spec"],
                 "--images-json", paths["images_json"], "--out", out)
    assert r.returncode == 0, r.stderr
    assert "PWQ (provisional)" in r.stdout
    data = json.loads(out.read_text())
    assert data["images"] == 4 and "PWQ (provisional)" in data and data["PWQ_terms"]["combiner"] == "geometric"
    # one JSON with per-class PQ/SQ/RQ, PartPQ/PartSQ/PartRQ and the class's part IoUs
    car = data["per_class"][str(CAR)]
    for key in ("PQ", "SQ", "RQ", "PartPQ", "PartSQ", "PartRQ", "TP", "FP", "FN", "part_mIoU"):
        assert car[key] is not None, key
    assert set(car["part_IoU"]) == {"car-window", "car-wheel", "car-body"}
    assert car["part_mIoU"] == sum(car["part_IoU"].values()) / 3
    assert data["per_class"]["1"]["part_mIoU"] is None and data["per_class"]["1"]["part_IoU"] == {}


def test_cli_bad_inputs_are_one_line_errors(dataset, tmp_path, tenfold_cli):
    paths, pred_dir = dataset
    first = sorted(paths["labels"].glob("*.tif"))[0]
    args = ["eval-parts", "--gt", paths["labels"], "--pred", pred_dir, "--eval-spec", paths["eval_spec"]]

    def err(*extra, gt=None, pred=None, spec=None):
        a = list(args)
        if gt:
            a[2] = gt
        if pred:
            a[4] = pred
        if spec:
            a[6] = spec
        r = tenfold_cli(*a, *extra)
        assert r.returncode == 2, r.stderr
        lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
        assert len(lines) == 1, r.stderr
        return lines[0]

    # missing prediction file
    missing = tmp_path / "pred_missing"
    missing.mkdir()
    assert "no prediction .png file for image id" in err(pred=missing)
    # malformed spec
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("ignore_label: 255\n")
    assert "bad.yaml: missing field" in err(spec=bad_spec)
    # 3-digit uid in a GT file
    gt_dir = tmp_path / "gt3"
    uids = read_gt(first)
    uids[0, 0] = 555
    import tifffile
    gt_dir.mkdir()
    tifffile.imwrite(gt_dir / first.name, uids)
    line = err(gt=gt_dir)
    assert "uid 555" in line and first.name in line
    # size mismatch
    spec = EvalSpec.load(paths["eval_spec"])
    small = tmp_path / "small"
    p = gt_to_prediction(read_gt(first), spec)
    write_prediction(small / f"{first.stem}.png", p[:10, :10, 0], p[:10, :10, 1], p[:10, :10, 2])
    gt_one = tmp_path / "gt_one"
    write_gt(gt_one / first.name, read_gt(first))
    assert "does not match the ground truth" in err(gt=gt_one, pred=small)
    # a dataset sid the spec does not evaluate (e.g. a Cityscapes void id) is ignored, as in the reference
    void = tmp_path / "void"
    p[0, 0, 0] = 0
    write_prediction(void / f"{first.stem}.png", p[..., 0], p[..., 1], p[..., 2])
    r = tenfold_cli("eval-parts", "--gt", gt_one, "--pred", void, "--eval-spec", paths["eval_spec"])
    assert r.returncode == 0, r.stderr
    # a sid outside the dataset spec (e.g. contiguous train ids) is an error naming the file (was ignored)
    wrong = tmp_path / "wrong"
    p[0, 0, 0] = 42
    write_prediction(wrong / f"{first.stem}.png", p[..., 0], p[..., 1], p[..., 2])
    line = err(gt=gt_one, pred=wrong)
    assert "semantic id 42" in line and f"{first.stem}.png" in line and "expected a dataset sid (0..5)" in line


@pytest.mark.slow
def test_run_panoptic_metrics_quick(tmp_path, tenfold_cli):
    r = tenfold_cli("run", "partformer-metrics", "--out", tmp_path, "--set", "images=8", "--set", "levels=[0,1]")
    assert r.returncode == 0, r.stderr
    results = json.loads(next(tmp_path.glob("partformer-metrics/*/results.json")).read_text())
    claims = {c["name"]: c for c in results["claims"]}
    assert all(c["holds"] for c in claims.values()), [c["name"] for c in claims.values() if not c["holds"]]
    bias = [c for c in claims.values() if c["kind"] == "paper"]
    assert len(bias) == 1 and bias[0]["n"] == 3 and 0.3 < bias[0]["value"] < 0.4
    assert sum(c["kind"] == "check" for c in claims.values()) == 9
    assert next(tmp_path.glob("partformer-metrics/*/metric_response.png")).stat().st_size > 1000
    # the ablation (PartPQ over classes with parts, without the background term) removes the bias
    r = tenfold_cli("run", "partformer-metrics", "--out", tmp_path / "ab", "--set", "images=4", "--set", "levels=[0,1]",
                 "--set", "include_bg=false", "--set", "partpq_classes=parts")
    results = json.loads(next((tmp_path / "ab").glob("partformer-metrics/*/results.json")).read_text())
    assert not [c for c in results["claims"] if c["kind"] == "paper"][0]["holds"]
    bad = tenfold_cli("run", "partformer-metrics", "--out", tmp_path, "--set", "combiner=median")
    assert bad.returncode == 2 and "combiner" in bad.stderr
    assert CAR == 3


def test_cityscapes_layout_pairing_and_errors(tmp_path):
    from tenfold.errors import DataError
    from tenfold.panoptic.evaluator import pair_files

    gt = tmp_path / "gtFinePanopticParts" / "val"
    uids = np.full((4, 4), 23, np.int32)
    for city, ids in (("frankfurt", ["frankfurt_000000_000294", "frankfurt_000000_000576"]), ("lindau", ["lindau_000001_000019"])):
        for i in ids:
            write_gt(gt / city / f"{i}_gtFinePanopticParts.tif", uids)
    pred = tmp_path / "pred"
    for i in ("frankfurt_000000_000294", "frankfurt_000000_000576", "lindau_000001_000019"):
        write_prediction(pred / f"{i}_gtFine_leftImg8bit.png", np.full((4, 4), 23), np.zeros((4, 4)), np.ones((4, 4)))
    pairs = pair_files(gt, pred)
    assert [p[0] for p in pairs] == ["frankfurt_000000_000294", "frankfurt_000000_000576", "lindau_000001_000019"]
    assert all(p[1].parent.name in ("frankfurt", "lindau") and p[0] in p[2].name for p in pairs)
    images = tmp_path / "images.json"
    images.write_text(json.dumps({"images": [{"id": "lindau_000001_000019", "file_name": "x.png"}]}))
    assert len(pair_files(gt, pred, images)) == 1
    images.write_text(json.dumps({"images": [{"id": "frankfurt_000000"}]}))
    with pytest.raises(DataError, match="matches several"):
        pair_files(gt, pred, images)
    images.write_text("[1, 2]")
    with pytest.raises(DataError, match="images json .* is malformed"):
        pair_files(gt, pred, images)
    with pytest.raises(DataError, match="--pred folder"):
        pair_files(gt, tmp_path / "nope")
