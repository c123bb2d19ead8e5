"""Exact values of PQ / PartPQ / part mIoU / PWQ (panoptic_parts.md section 5) and their decoupling."""

import math

import numpy as np
import pytest

from tenfold.data.panoptic_scenes import BALL, CAR, GROUND, PERSON, generate_scenes
from tenfold.errors import ConfigError, DataError
from tenfold.panoptic.corrupt import split_instances, swap_parts
from tenfold.panoptic.merge import gt_part_flat, gt_to_prediction, merge_to_pps
from tenfold.panoptic.metrics import combine, evaluate_arrays, image_stats

from panoptic_helpers import car_grid, specs


def _car_result(res):
    return res["per_class"][str(CAR)]["PartPQ"]


def test_perfect_prediction_scores_one(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gts = [s.uids for s in generate_scenes(6, seed=3, height=64, width=96)]
    res = evaluate_arrays([(g, gt_to_prediction(g, spec)) for g in gts], spec)
    for key in ("PQ", "SQ", "RQ", "PartPQ", "PartSQ", "PartRQ", "PartPQ_parts", "PartPQ_noparts", "part_mIoU",
                "PWQ (provisional)"):
        assert res[key] == pytest.approx(1.0, abs=1e-15), key
    assert res["n_parts_classes"] == 2


@pytest.mark.parametrize("include_bg, expected", [(True, 0.9375), (False, (7 + 1 / 3) / 8)])
def test_part_swap_in_one_of_eight_segments(tmp_path, include_bg, expected):
    spec, _, _, _ = specs(tmp_path)
    gt = car_grid(8)
    pred = gt_to_prediction(gt, spec)
    seg = (pred[..., 0] == CAR) & (pred[..., 1] == 1)
    pid = pred[..., 2]
    pred[..., 2] = np.where(seg & (pid == 1), 2, np.where(seg & (pid == 2), 1, pid))
    res = evaluate_arrays([(gt, pred)], spec, include_bg=include_bg)
    assert _car_result(res) == pytest.approx(expected, abs=1e-15)
    assert res["PQ"] == 1.0  # PQ does not see part errors


def test_unknown_part_channel(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gt = car_grid(8)
    pred = gt_to_prediction(gt, spec)
    pred[..., 2][(pred[..., 0] == CAR) & (pred[..., 1] == 5)] = 255
    assert _car_result(evaluate_arrays([(gt, pred)], spec)) == pytest.approx(0.90625, abs=1e-15)


def test_dropped_instance(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gt = car_grid(8)
    pred = gt_to_prediction(gt, spec)
    pred[(pred[..., 0] == CAR) & (pred[..., 1] == 8)] = (255, 0, 0)
    res = evaluate_arrays([(gt, pred)], spec)
    assert _car_result(res) == pytest.approx(7 / 7.5, abs=1e-15)
    assert res["per_class"][str(CAR)]["FN"] == 1


def _naive_panopticapi_pq(gt_uids, pred, things, stuff):
    """PQ by panopticapi's rules written out segment by segment (void = uid 0, crowd = things without iid)."""
    sid = np.where(gt_uids <= 99, gt_uids, np.where(gt_uids <= 99_999, gt_uids // 1000, gt_uids // 100_000))
    seg = np.where(gt_uids <= 99, gt_uids, np.where(gt_uids <= 99_999, gt_uids, gt_uids // 100))
    void = gt_uids == 0
    per = {c: [0, 0, 0, 0.0] for c in things + stuff}
    pkey = pred[..., 0] * 256 + pred[..., 1]
    for c in per:
        crowd = (sid == c) & (gt_uids <= 99) & (c in things)
        gsegs = [s for s in np.unique(seg[(sid == c) & ~crowd])]
        psegs = [k for k in np.unique(pkey[pred[..., 0] == c])]
        matched = set()
        for g in gsegs:
            gm = (seg == g) & (sid == c) & ~crowd
            for k in psegs:
                pm = pkey == k
                inter = (gm & pm).sum()
                union = pm.sum() + gm.sum() - inter - (pm & void).sum()
                if inter / union > 0.5:
                    matched.add(k)
                    per[c][0] += 1
                    per[c][3] += inter / union
        per[c][2] = len(gsegs) - per[c][0]
        for k in psegs:
            if k not in matched:
                pm = pkey == k
                if ((pm & void).sum() + (pm & crowd).sum()) / pm.sum() <= 0.5:
                    per[c][1] += 1
    return per


def test_pq_equals_panopticapi_rules_and_noparts_partpq(tmp_path):
    spec, spec_np, _, _ = specs(tmp_path)
    rng = np.random.default_rng(0)
    for seed in range(3):
        gt = generate_scenes(1, seed=seed, height=64, width=80)[0].uids
        pred = gt_to_prediction(gt, spec)
        pred = np.roll(pred, int(rng.integers(1, 4)), axis=0)
        pred = split_instances(pred, spec, 0.3, rng)
        stats = image_stats(gt, pred, spec)
        stats_np = image_stats(gt, pred, spec_np)
        naive = _naive_panopticapi_pq(gt, pred, spec.things, spec.stuff)
        for c, (tp, fp, fn, iou) in naive.items():
            assert (stats.pq.tp[c], stats.pq.fp[c], stats.pq.fn[c]) == (tp, fp, fn)
            assert stats.pq.score[c] == pytest.approx(iou, abs=1e-12)
            # with every class evaluated without parts, PartPQ is exactly PQ
            assert (stats_np.part_pq.tp[c], stats_np.part_pq.fp[c], stats_np.part_pq.fn[c]) == (tp, fp, fn)
            assert stats_np.part_pq.score[c] == stats.pq.score[c]


def test_pwq_decouples_part_and_whole_errors(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gts = [s.uids for s in generate_scenes(5, seed=1, height=64, width=96)]
    perfect = [gt_to_prediction(g, spec) for g in gts]
    rng = np.random.default_rng(0)
    swapped = evaluate_arrays([(g, swap_parts(p, spec, 1.0, rng)) for g, p in zip(gts, perfect)], spec)
    split = evaluate_arrays([(g, split_instances(p, spec, 1.0, rng)) for g, p in zip(gts, perfect)], spec)
    assert swapped["PWQ_terms"]["PQ_w"] == 1.0 and swapped["part_mIoU"] < 0.8
    assert split["PWQ_terms"]["mIoU_p"] == 1.0 and split["PQ"] < 0.8
    for res in (swapped, split):
        assert res["PWQ (provisional)"] == pytest.approx(math.sqrt(res["PQ"] * res["part_mIoU"]), abs=1e-15)


def test_part_miou_from_a_separate_part_map(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gt = car_grid(4)
    pred = gt_to_prediction(gt, spec)
    flat = gt_part_flat(gt, spec)
    res = evaluate_arrays([(gt, pred, flat)], spec)
    assert res["part_mIoU"] == 1.0
    wrong = np.where(flat == 1, 2, flat)  # window predicted as wheel
    res = evaluate_arrays([(gt, pred, wrong)], spec)
    # background 1, window 0, wheel 1/2, body 1 -> (1 + 0 + 0.5 + 1) / 4
    assert res["part_mIoU"] == pytest.approx(2.5 / 4, abs=1e-15)
    assert res["PartPQ"] == 1.0  # the PPS prediction itself is unchanged


def test_combiners():
    assert combine(0.64, 0.81) == pytest.approx(0.72)
    assert combine(0.5, 1.0, "harmonic") == pytest.approx(2 / 3)
    assert combine(0.5, 1.0, "arithmetic") == pytest.approx(0.75)
    assert combine(None, 1.0) is None
    with pytest.raises(ConfigError, match="combiner='median'"):
        combine(0.5, 0.5, "median")


def test_merge_rule(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    sid = np.array([[CAR, CAR, PERSON, BALL, 255]])
    iid = np.array([[1, 1, 2, 1, 0]])
    flat = np.array([[2, 4, 5, 1, 3]])  # car-wheel, person-head (not a car part), person-torso, ...
    out = merge_to_pps(sid, iid, flat, spec)
    assert out.tolist() == [[[CAR, 1, 2], [CAR, 1, 255], [PERSON, 2, 2], [BALL, 1, 1], [255, 0, 0]]]
    import torch
    tout = merge_to_pps(torch.as_tensor(sid), torch.as_tensor(iid), torch.as_tensor(flat), spec)
    assert (tout.numpy() == out).all()
    with pytest.raises(DataError, match="0..255"):
        merge_to_pps(sid, iid * 300, flat, spec)


def test_bad_predictions_are_named(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    gt = car_grid(2)
    pred = gt_to_prediction(gt, spec)
    with pytest.raises(DataError, match="size 5x5 does not match"):
        image_stats(gt, pred[:5, :5], spec, where="p.png")
    bad = pred.copy()
    bad[0, 0, 0] = 0   # a dataset class the spec does not evaluate: ignored as in the reference (test_merge.py)
    assert image_stats(gt, bad, spec).part_pq.tp.sum() == image_stats(gt, pred, spec).part_pq.tp.sum()
    bad[0, 0, 0] = 7   # not a class of the dataset: refused
    with pytest.raises(DataError, match="p.png: .* semantic id 7"):
        image_stats(gt, bad, spec, where="p.png")
    many = np.full((4, 300), CAR * 1000, np.int32) + np.arange(300, dtype=np.int32)[None, :] + 1
    with pytest.raises(DataError, match="300 instances of class 3"):
        gt_to_prediction(many, spec)
    assert GROUND == 2 and PERSON == 4


def test_torch_tensors_give_the_numpy_numbers(tmp_path):
    import torch

    spec, _, _, _ = specs(tmp_path)
    rng = np.random.default_rng(4)
    for scene in generate_scenes(3, seed=9, height=48, width=64):
        pred = split_instances(swap_parts(gt_to_prediction(scene.uids, spec), spec, 0.5, rng), spec, 0.5, rng)
        flat = gt_part_flat(scene.uids, spec)
        a = image_stats(scene.uids, pred, spec, pred_flat=flat)
        b = image_stats(torch.as_tensor(scene.uids), torch.as_tensor(pred.astype(np.uint8)), spec,
                        pred_flat=torch.as_tensor(flat))
        for x, y in ((a.pq, b.pq), (a.part_pq, b.part_pq)):
            assert (x.tp == y.tp).all() and (x.fp == y.fp).all() and (x.fn == y.fn).all()
            assert np.array_equal(x.score, y.score)
        assert np.array_equal(a.part_confusion, b.part_confusion)
        assert a.part_confusion.sum() > 0
