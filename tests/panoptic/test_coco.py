"""COCO panoptic export (``tenfold export-coco``, ``tenfold.panoptic.coco``) and import (``merge-parts``
without part maps): the id codec, ours -> COCO -> ours round trips, PQ of the exported files by
panopticapi's rules equal to ours (and panopticapi's own ``pq_compute`` where it is importable), the CLI
and its one-line errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tenfold.data.panoptic_scenes import BALL, CAR, GROUND, PERSON, SKY, generate_scenes, write_scenes
from tenfold.errors import DataError
from tenfold.panoptic import EvalSpec, evaluate_arrays, evaluate_folders
from tenfold.panoptic.coco import (coco_categories, export_folders, from_coco_panoptic, gt_to_coco_panoptic,
                                   part_flat_map, to_coco_panoptic)
from tenfold.panoptic.corrupt import drop_instances, split_instances, swap_parts
from tenfold.panoptic.evaluator import pair_files
from tenfold.panoptic.format import id2rgb, read_gt, read_prediction, rgb2id, write_gt, write_prediction
from tenfold.panoptic.merge import gt_to_prediction
from tenfold.panoptic.metrics import PartStats, image_stats

from panoptic_helpers import SHIPPED_EVAL_SPECS, car_grid, random_gt, specs


def _all_specs(tmp_path):
    return [("procedural", specs(tmp_path)[0])] + [(n, EvalSpec.load(n)) for n in SHIPPED_EVAL_SPECS]


def _noisy_prediction(gt, spec, rng):
    pred = gt_to_prediction(gt, spec)
    pred = np.roll(pred, int(rng.integers(0, 2)), axis=1)
    pred = split_instances(pred, spec, 0.3, rng)
    pred = swap_parts(pred, spec, 0.3, rng)
    return drop_instances(pred, spec, 0.2, rng).astype(np.uint8)


def _round_trip(pred, spec):
    ids, segments = to_coco_panoptic(pred, spec)
    rng = np.random.default_rng(0)
    rgb = id2rgb(ids)
    assert np.array_equal(rgb2id(rgb), ids)
    # a reader sees the PNG and the JSON only; the order of segments_info is the export's
    return from_coco_panoptic(rgb, json.loads(json.dumps(segments)), spec, part_flat_map(pred, spec)), rng


def _canonical(pred, spec):
    """What the round trip must give: unevaluated sids -> no prediction, each class's iids ranked 1..n,
    pids the merge can express (evaluated pid of a parts class, else 255; 1 on classes without parts)."""
    sid, iid, pid = (pred[..., k].astype(np.int64) for k in range(3))
    keep = np.isin(sid, spec.eval_sids)
    out_iid = np.zeros_like(iid)
    for s in np.unique(sid[keep]):
        sel = sid == s
        out_iid[sel] = np.unique(iid[sel], return_inverse=True)[1].reshape(-1) + 1
    known = np.zeros((256, 256), bool)
    for s, pids in spec.sid2pids.items():
        known[s, pids] = True
    out_pid = np.where(np.isin(sid, spec.parts_sids), np.where(known[sid, pid], pid, 255), 1)
    out = np.stack([np.where(keep, sid, 255), np.where(keep, out_iid, 0), np.where(keep, out_pid, 0)], -1)
    return out.astype(np.uint8)


def test_coco_id_codec_is_panopticapis():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 2 ** 24 - 1, 123456]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[1, 3].tolist() == [123456 % 256, 123456 // 256 % 256, 123456 // 65536]
    assert np.array_equal(rgb2id(rgb), ids)    # R + 256 G + 256^2 B, in int64 (uint8 sums would overflow)
    with pytest.raises(DataError, match="segment id 16777216 is invalid"):
        id2rgb(np.array([[2 ** 24]]))


def test_segments_info_areas_boxes_and_categories(tmp_path):
    spec = specs(tmp_path)[0]
    pred = np.full((6, 8, 3), (255, 0, 0), np.uint8)
    pred[1:3, 2:7] = (CAR, 4, 2)
    pred[4, 0] = (CAR, 9, 1)
    pred[5, :] = (SKY, 0, 1)
    pred[0, 0] = (0, 0, 0)           # UNLABELED: a dataset class the spec does not evaluate -> void
    ids, segments = to_coco_panoptic(pred, spec)
    assert ids[0, 0] == 0 and ids[0, 1] == 0 and ids[2, 3] == CAR * 256 + 4
    assert sorted(segments, key=lambda s: s["id"]) == sorted([
        {"id": SKY * 256, "category_id": SKY, "area": 8, "bbox": [0, 5, 8, 1], "iscrowd": 0},
        {"id": CAR * 256 + 4, "category_id": CAR, "area": 10, "bbox": [2, 1, 5, 2], "iscrowd": 0},
        {"id": CAR * 256 + 9, "category_id": CAR, "area": 1, "bbox": [0, 4, 1, 1], "iscrowd": 0},
    ], key=lambda s: s["id"])
    assert [s["id"] for s in segments] == sorted(s["id"] for s in segments)     # (sid, iid) order
    cats = {c["id"]: c for c in coco_categories(spec)}
    assert set(cats) == set(spec.eval_sids) and cats[CAR] == {"id": CAR, "name": "car", "isthing": 1}
    assert cats[SKY]["isthing"] == 0
    # torch input (any device) gives the same
    tids, tsegments = to_coco_panoptic(torch.as_tensor(pred), spec)
    assert np.array_equal(tids, ids) and tsegments == segments


def test_ground_truth_export_has_void_crowd_and_one_segment_per_stuff_class(tmp_path):
    spec = specs(tmp_path)[0]
    gt = car_grid(2)
    gt[0, :3] = 0                       # void
    gt[1, :3] = CAR                     # a crowd region of a things class
    gt[2, :2] = GROUND                  # more ground: one segment with the rest
    ids, segments = gt_to_coco_panoptic(gt, spec)
    by_id = {s["id"]: s for s in segments}
    assert ids[0, 0] == 0
    assert by_id[int(ids[1, 0])]["iscrowd"] == 1 and by_id[int(ids[1, 0])]["category_id"] == CAR
    assert sum(s["category_id"] == GROUND for s in segments) == 1
    cars = [s for s in segments if s["category_id"] == CAR and not s["iscrowd"]]
    assert len(cars) == 2 and sum(s["area"] for s in segments) == int((ids > 0).sum())
    with pytest.raises(DataError, match="uid 42 has semantic id 42"):
        gt_to_coco_panoptic(np.full((2, 2), 42), spec, "gt.tif")


def test_round_trip_through_coco_with_every_spec(tmp_path):
    """ours -> COCO PNG + JSON (+ flat part map) -> ours: sid and segments unchanged, each class's iids
    ranked (identity where they are 1..n), pids restored; the evaluator gives exactly the same results."""
    rng = np.random.default_rng(4)
    for name, spec in _all_specs(tmp_path):
        for _ in range(2):
            gt = random_gt(spec, rng)
            pred = _noisy_prediction(gt, spec, rng)
            pred[:4, :4] = (0, 0, 0)     # an unevaluated dataset class: void in COCO, no prediction back
            back, _ = _round_trip(pred, spec)
            expected = _canonical(pred, spec)
            assert np.array_equal(back, expected), name
            assert np.array_equal(_round_trip(expected, spec)[0], expected), name   # identity on canonical ones
            assert evaluate_arrays([(gt, back)], spec) == evaluate_arrays([(gt, pred)], spec), name
            # without the part map: the panoptic part survives, every part of a parts class is unknown
            ids, segments = to_coco_panoptic(pred, spec)
            bare = from_coco_panoptic(id2rgb(ids), segments, spec)
            assert np.array_equal(bare[..., :2], expected[..., :2]), name
            parts = np.isin(bare[..., 0], spec.parts_sids)
            assert (bare[..., 2][parts] == 255).all(), name
            a, b = evaluate_arrays([(gt, bare)], spec), evaluate_arrays([(gt, pred)], spec)
            assert (a["PQ"], a["PartPQ_noparts"]) == (b["PQ"], b["PartPQ_noparts"]), name


def test_bad_predictions_are_one_line_errors(tmp_path):
    spec = specs(tmp_path)[0]
    pred = gt_to_prediction(car_grid(2), spec).astype(np.uint8)
    bad = pred.copy()
    bad[0, 0] = (40, 1, 1)
    with pytest.raises(DataError, match=r"^p\.png: pixel \(sid, iid\) = \(40, 1\) has semantic id 40, .*0\.\.5"):
        to_coco_panoptic(bad, spec, "p.png")
    bad = pred.copy()
    bad[0, 0] = (CAR, 1, 7)
    with pytest.raises(DataError, match=r"part id 7 on class .*car"):
        part_flat_map(bad, spec)
    with pytest.raises(DataError, match=r"shape \(20, 36\) is invalid: expected \(H, W, 3\)"):
        to_coco_panoptic(pred[..., 0], spec)
    with pytest.raises(DataError, match="category_id 40 is not a class of dataset spec"):
        from_coco_panoptic(np.zeros((2, 2), np.int64), [{"id": 1, "category_id": 40}], spec)


# ---------------------------------------------------------------------------------------------
# PQ of the exported files
# ---------------------------------------------------------------------------------------------
def _png_ids(path):
    return rgb2id(np.array(Image.open(path)))


def _pq_by_coco_rules(gt_json, pred_json):
    """PQ per category from COCO panoptic files by panopticapi's published rules, segment by segment: void
    = id 0, crowd = iscrowd segments, match iff same category and IoU > 0.5 with the prediction's void
    pixels left out of the union, FP unless more than half of it is void or same-category crowd."""
    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    gt_dir, pred_dir = gt_json.with_suffix(""), pred_json.with_suffix("")
    cats = {c["id"]: c for c in gt["categories"]}
    stats = {c: [0, 0, 0, 0.0] for c in cats}           # TP, FP, FN, sum of IoU
    preds = {a["image_id"]: a for a in pred["annotations"]}
    for ga in gt["annotations"]:
        pa = preds[ga["image_id"]]
        g, p = _png_ids(gt_dir / ga["file_name"]), _png_ids(pred_dir / pa["file_name"])
        gsegs = {s["id"]: s for s in ga["segments_info"]}
        psegs = {s["id"]: s for s in pa["segments_info"]}
        assert set(np.unique(p).tolist()) - {0} == set(psegs)      # panopticapi's PNG/JSON sanity check
        assert set(np.unique(g).tolist()) - {0} == set(gsegs)
        for s in [*psegs.values(), *gsegs.values()]:
            assert s["category_id"] in cats
            assert s["area"] == int(((p if s in psegs.values() else g) == s["id"]).sum())
        void = g == 0
        crowd = {s["category_id"]: g == i for i, s in gsegs.items() if s["iscrowd"]}
        matched = set()
        for i, gs in gsegs.items():
            if gs["iscrowd"]:
                continue
            gm = g == i
            hit = False
            for j, ps in psegs.items():
                if ps["category_id"] != gs["category_id"]:
                    continue
                pm = p == j
                inter = int((gm & pm).sum())
                iou = inter / (int(gm.sum()) + int(pm.sum()) - inter - int((pm & void).sum()))
                if iou > 0.5:
                    stats[gs["category_id"]][0] += 1
                    stats[gs["category_id"]][3] += iou
                    matched.add(j)
                    hit = True
            if not hit:
                stats[gs["category_id"]][2] += 1
        for j, ps in psegs.items():
            if j in matched:
                continue
            pm = p == j
            ignored = int((pm & void).sum()) + int((pm & crowd.get(ps["category_id"], False)).sum())
            if ignored / int(pm.sum()) <= 0.5:
                stats[ps["category_id"]][1] += 1
    return stats


def _case(tmp_path, which):
    """GT labels and PPS predictions in folders: procedural scenes (crowd, void blobs, occlusion) or random
    blocks of the Cityscapes-Panoptic-Parts spec with predictions of classes it does not evaluate."""
    rng = np.random.default_rng(11)
    if which == "procedural":
        paths = write_scenes(tmp_path / "data", generate_scenes(3, seed=2, height=48, width=64))
        spec_path, gt_dir = paths["eval_spec"], paths["labels"]
        spec = EvalSpec.load(spec_path)
    else:
        spec_path, gt_dir = "ppq_cpp_19_23_cvpr21_default", tmp_path / "gt"
        spec = EvalSpec.load(spec_path)
        for k in range(3):
            write_gt(gt_dir / f"img{k}_gtFinePanopticParts.tif", random_gt(spec, rng))
    pred_dir = tmp_path / "pred"
    for f in sorted(gt_dir.glob("*.tif")):
        pred = _noisy_prediction(read_gt(f), spec, rng)
        if which != "procedural":
            pred[:8, :16] = (3, 0, 1)        # a Cityscapes void class
            pred[8:16, :8] = (29, 1, 1)      # caravan: has instances, not evaluated
        write_prediction(pred_dir / f"{f.stem.removesuffix('_gtFinePanopticParts')}.png", *np.moveaxis(pred, -1, 0))
    ours = evaluate_folders(gt_dir, pred_dir, spec_path)
    # PQ's own counts (the JSON's per-class TP/FP/FN are PartPQ's)
    stats = PartStats()
    for _, g, p in pair_files(gt_dir, pred_dir):
        stats += image_stats(read_gt(g), read_prediction(p), spec)
    return spec_path, gt_dir, pred_dir, ours, stats.pq


@pytest.mark.parametrize("which", ["procedural", "cpp"])
def test_pq_of_the_exported_files_by_coco_rules_equals_ours(tmp_path, which):
    spec_path, gt_dir, pred_dir, ours, counts = _case(tmp_path, which)
    paths = export_folders(spec_path, pred_dir, tmp_path / "coco", gt_dir=gt_dir)
    assert paths["images"] == 3
    stats = _pq_by_coco_rules(paths["gt_json"], paths["pred_json"])
    pqs = []
    for c, (tp, fp, fn, iou) in stats.items():
        mine = ours["per_class"][str(c)]
        assert (counts.tp[c], counts.fp[c], counts.fn[c]) == (tp, fp, fn), c
        if tp + fp + fn:
            pqs.append(iou / (tp + fp / 2 + fn / 2))
            assert mine["PQ"] == pytest.approx(pqs[-1], abs=1e-12), c
    assert ours["PQ"] == pytest.approx(sum(pqs) / len(pqs), abs=1e-12)
    tp, fp, fn = (sum(s[k] for s in stats.values()) for k in range(3))
    assert 0.3 < ours["PQ"] < 0.95 and tp >= 8 and fp > 0 and fn > 0, (tp, fp, fn)


@pytest.mark.parametrize("which", ["procedural", "cpp"])
def test_panopticapi_pq_compute_on_the_exported_files_equals_ours(tmp_path, which, monkeypatch):
    """panopticapi is not on PyPI: this runs where it is importable (e.g. a checkout on PYTHONPATH)."""
    evaluation = pytest.importorskip("panopticapi.evaluation")
    import multiprocessing

    spec_path, gt_dir, pred_dir, ours, counts = _case(tmp_path, which)
    paths = export_folders(spec_path, pred_dir, tmp_path / "coco", gt_dir=gt_dir)
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 1)     # one worker process is enough here
    ref = evaluation.pq_compute(str(paths["gt_json"]), str(paths["pred_json"]))
    for name, key in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        assert ours[f"PQ{key}"] == pytest.approx(ref[name]["pq"], abs=1e-12), name
    assert ours["SQ"] == pytest.approx(ref["All"]["sq"], abs=1e-12)
    assert ours["RQ"] == pytest.approx(ref["All"]["rq"], abs=1e-12)
    for c, r in ref["per_class"].items():
        mine = ours["per_class"][str(c)]
        if mine["TP"] + mine["FP"] + mine["FN"]:
            assert (mine["PQ"], mine["SQ"], mine["RQ"]) == pytest.approx((r["pq"], r["sq"], r["rq"]), abs=1e-12), c


# ---------------------------------------------------------------------------------------------
# the user path
# ---------------------------------------------------------------------------------------------
def test_cli_export_coco_then_merge_parts_back(tmp_path, tenfold_cli):
    """``export-coco`` -> ``merge-parts`` (with the exported part maps, and without any) -> ``eval-parts``:
    the same PQ and PartPQ as the original predictions; bad inputs are one-line errors (exit 2)."""
    spec_path, gt_dir, pred_dir, ours, _ = _case(tmp_path, "procedural")
    coco = tmp_path / "coco"
    code, out, err = tenfold_cli("export-coco", "--eval-spec", spec_path, "--pred", pred_dir, "--gt", gt_dir,
                             "--out", coco)
    assert code == 0, err
    assert "wrote 3 COCO panoptic predictions" in out and "wrote the ground truth" in out
    data = json.loads((coco / "predictions.json").read_text())
    assert {c["id"] for c in data["categories"]} == set(EvalSpec.load(spec_path).eval_sids)
    assert [a["file_name"] for a in data["annotations"]] == [f"scene_{k:05d}.png" for k in range(3)]
    assert sorted(p.name for p in (coco / "parts").iterdir()) == [f"scene_{k:05d}.png" for k in range(3)]
    for parts, name in ((coco / "parts", "back"), (None, "bare")):
        args = ["--parts-dir", parts] if parts else []
        code, out, err = tenfold_cli("merge-parts", "--eval-spec", spec_path, "--panoptic-json", coco / "predictions.json",
                                 "--panoptic-dir", coco / "predictions", *args, "--out", tmp_path / name)
        assert code == 0, err
        res = evaluate_folders(gt_dir, tmp_path / name, spec_path)
        assert res["PQ"] == ours["PQ"] and res["per_class"][str(BALL)] == ours["per_class"][str(BALL)]
        if parts:
            assert res == {**ours, "pred": str(tmp_path / name)}
        else:
            assert res["PartPQ_parts"] < ours["PartPQ_parts"] / 2
    # without --gt: predictions only, ids from the file names
    code, out, err = tenfold_cli("export-coco", "--eval-spec", spec_path, "--pred", pred_dir, "--out", tmp_path / "c2")
    assert code == 0 and not (tmp_path / "c2" / "gt.json").exists(), err
    assert json.loads((tmp_path / "c2" / "predictions.json").read_text())["annotations"] == data["annotations"]

    # bad inputs: one line, exit 2, naming the file and the value
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(bad / "grey.png")
    code, _, err = tenfold_cli("export-coco", "--eval-spec", spec_path, "--pred", bad, "--out", tmp_path / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "grey.png holds a uint8 array of shape (4, 4)" in err and "(sid, iid, pid)" in err
    (bad / "grey.png").unlink()
    pred = np.full((4, 4, 3), (PERSON, 1, 1), np.uint8)
    pred[0, 0] = (77, 0, 1)
    write_prediction(bad / "outside.png", *np.moveaxis(pred, -1, 0))
    code, _, err = tenfold_cli("export-coco", "--eval-spec", spec_path, "--pred", bad, "--out", tmp_path / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "outside.png" in err and "semantic id 77" in err
    code, _, err = tenfold_cli("export-coco", "--eval-spec", spec_path, "--pred", tmp_path / "nope", "--out", tmp_path / "x")
    assert code == 2 and "--pred folder" in err and "does not exist" in err
