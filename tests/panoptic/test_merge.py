"""merge_to_pps with every shipped spec (the grouped CPP spec shares flat part ids across classes), the
``merge-parts`` file path against the panoptic_parts 2.0rc6 merge, predictions of unknown categories,
and Mask2Former's keep rule."""

import json

import numpy as np
import pytest
import torch

from tenfold.data.panoptic_scenes import CAR, PERSON
from tenfold.errors import DataError
from tenfold.panoptic import EvalSpec, evaluate_arrays, merge_to_pps
from tenfold.panoptic.format import builtin_spec
from tenfold.panoptic.merge import flat_to_pid_table, gt_part_flat, gt_to_prediction
from tenfold.panoptic.inference import InferenceConfig, whole_segments
from tenfold.panoptic.merge import merge_folders

from panoptic_helpers import SHIPPED_EVAL_SPECS, random_gt, shipped_spec_for_reference, specs


def _all_specs(tmp_path):
    procedural, _, _, _ = specs(tmp_path)
    return [("procedural", procedural)] + [(n, EvalSpec.load(n)) for n in SHIPPED_EVAL_SPECS]


def _perfect_merge(gt, spec):
    pan = gt_to_prediction(gt, spec)
    return merge_to_pps(pan[..., 0], pan[..., 1], gt_part_flat(gt, spec), spec).astype(np.int32)


def test_perfect_panoptic_and_part_maps_score_one_with_every_spec(tmp_path):
    rng = np.random.default_rng(0)
    for name, spec in _all_specs(tmp_path):
        gts = [random_gt(spec, rng) for _ in range(3)]
        res = evaluate_arrays([(g, _perfect_merge(g, spec)) for g in gts], spec)
        assert res["n_parts_classes"] >= 2, name
        for key in ("PQ", "PartPQ", "PartPQ_parts", "PartPQ_noparts", "part_mIoU"):
            assert res[key] == pytest.approx(1.0, abs=1e-12), (name, key)
        # the merged map equals the direct perfect prediction (GT pids), pixel by pixel
        for g in gts:
            assert np.array_equal(_perfect_merge(g, spec), gt_to_prediction(g, spec)), name


def test_grouped_spec_decodes_flat_ids_per_class():
    spec = EvalSpec.load("ppq_cpp_19_23_cvpr21_grouped")
    table = flat_to_pid_table(spec)
    # flat 1..4 = human torso/head/arms/legs for person (24) AND rider (25); 5..9 vehicle parts for 26, 27, 28
    assert table[24, 1:5].tolist() == [1, 2, 3, 4] and table[25, 1:5].tolist() == [1, 2, 3, 4]
    assert table[27, 5:10].tolist() == [1, 2, 3, 4, 5] and table[24, 5:10].tolist() == [255] * 5
    sid = np.array([[24, 25, 27, 28, 23, 255]])
    out = merge_to_pps(sid, np.ones_like(sid), np.array([[2, 2, 6, 1, 3, 4]]), spec)
    assert out[..., 2].tolist() == [[2, 2, 2, 255, 1, 0]]
    tout = merge_to_pps(torch.as_tensor(sid), torch.ones(1, 6, dtype=torch.long), torch.tensor([[2, 2, 6, 1, 3, 4]]),
                        spec)
    assert np.array_equal(tout.numpy(), out)


def test_builtin_spec_accepts_short_names():
    full = builtin_spec("ppq_cpp_19_23_cvpr21_default_evalspec.yaml")
    assert builtin_spec("ppq_cpp_19_23_cvpr21_default") == full
    assert builtin_spec("cpp").name == "cpp_datasetspec.yaml"
    assert EvalSpec.load("ppq_ppp_59_57_cvpr21_default").num_flat == 57
    with pytest.raises(DataError, match="'nope' is not shipped"):
        builtin_spec("nope")


def test_unknown_predicted_categories_are_ignored_or_refused(tmp_path):
    """Cityscapes void ids (0-6), dataset sids the spec does not evaluate, belong to no predicted segment;
    a sid that is not a class of the dataset at all is an error (it was silently ignored before)."""
    spec = EvalSpec.load("ppq_cpp_19_23_cvpr21_default")
    rng = np.random.default_rng(1)
    gt = random_gt(spec, rng)
    pred = gt_to_prediction(gt, spec)
    pred[:8, :16] = (3, 0, 1)       # a Cityscapes void class
    pred[8:16, :8] = (29, 1, 1)     # caravan: a dataset class with instances, not evaluated
    blank = pred.copy()
    blank[:16, :16] = np.where(((pred[:16, :16, 0] == 3) | (pred[:16, :16, 0] == 29))[..., None], (255, 0, 0),
                               pred[:16, :16])
    a, b = evaluate_arrays([(gt, pred)], spec), evaluate_arrays([(gt, blank)], spec)
    assert a["PartPQ"] == b["PartPQ"] and a["PQ"] == b["PQ"] and a["PartPQ"] < 1
    pred[8:16, :8] = (40, 1, 1)     # not a class of the dataset at all
    with pytest.raises(DataError, match=r"image 0: pixel \(sid, iid\) = \(40, 1\) has semantic id 40, .*0\.\.34"):
        evaluate_arrays([(gt, pred)], spec)


def test_keep_rule_counts_the_argmax_area_and_thresholds_only_when_pasting(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    c = len(spec.eval_sids)
    logits = torch.full((2, c + 1), -10.0)
    logits[0, spec.eval_sids.index(CAR)] = 10.0
    logits[1, spec.eval_sids.index(PERSON)] = 10.0
    # query 0 wins 10 pixels but only 4 of them with sigmoid >= 0.5; it has 5 pixels >= 0.5 in all
    m0 = torch.full((1, 20), -8.0)
    m0[0, :4] = 4.0
    m0[0, 4:10] = -0.5
    m0[0, 19] = 4.0
    m1 = torch.full((1, 20), -9.0)
    m1[0, 19] = 6.0
    sid, iid = whole_segments(logits, torch.stack([m0, m1]), spec, InferenceConfig(overlap_threshold=0.8))
    # query 0 wins pixels 0-18 (argmax area 19) and has 5 pixels >= 0.5; it pastes only pixels 0-3
    assert (sid[0, :4] == CAR).all() and (sid[0, 4:10] == 255).all() and sid[0, 19] == PERSON
    sid, _ = whole_segments(logits, torch.stack([m0, m1]), spec, InferenceConfig(overlap_threshold=0.9))
    assert (sid[0, :4] == CAR).all()   # 19 / 5 >= 0.9 as Mask2Former; (argmax & mask) / mask = 4 / 5 would drop it


def _write_coco(tmp_path, spec, gts, rng):
    """COCO panoptic PNGs + JSON and flat part PNGs from GT (with noise in the part maps)."""
    from PIL import Image

    pan_dir, part_dir = tmp_path / "pan", tmp_path / "parts"
    pan_dir.mkdir()
    part_dir.mkdir()
    anns, images = [], []
    for k, gt in enumerate(gts):
        pred = gt_to_prediction(gt, spec)
        seg = pred[..., 0].astype(np.int64) * 256 + pred[..., 1]
        ids = np.zeros(seg.shape, np.int64)
        infos = []
        for j, v in enumerate(np.unique(seg[pred[..., 0] != 255])):
            ids[seg == v] = 1000 + 7 * j
            infos.append({"id": int(1000 + 7 * j), "category_id": int(v // 256), "iscrowd": 0})
        rng.shuffle(infos)
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(pan_dir / f"img{k}.png")
        flat = gt_part_flat(gt, spec)
        noise = rng.random(flat.shape) < 0.2
        flat = np.where(noise, rng.integers(0, spec.num_flat + 1, flat.shape), flat)
        flat = np.where(rng.random(flat.shape) < 0.02, 255, flat)       # out-of-range ids: unknown parts
        Image.fromarray(flat.astype(np.uint8)).save(part_dir / f"img{k}_parts.png")
        anns.append({"image_id": f"img{k}", "file_name": f"img{k}.png", "segments_info": infos})
        images.append({"id": f"img{k}", "file_name": f"img{k}.png", "height": gt.shape[0], "width": gt.shape[1]})
    (tmp_path / "pan.json").write_text(json.dumps({"annotations": anns}))
    (tmp_path / "images.json").write_text(json.dumps({"images": images}))
    return pan_dir, part_dir


@pytest.mark.oracle
@pytest.mark.parametrize("name", SHIPPED_EVAL_SPECS)
def test_merge_parts_equals_the_reference_merge(tmp_path, name):
    import platform
    from unittest import mock

    from PIL import Image

    try:
        with mock.patch.object(platform, "python_version", lambda: "3.9.0"):
            from panoptic_parts.merging.merge_to_pps import merge as reference_merge
    except ImportError as exc:
        pytest.fail(f"the panoptic_parts oracle is not installed (pip install -e .[oracle]): {exc}")
    path = shipped_spec_for_reference(name, tmp_path)
    spec = EvalSpec.load(path)
    rng = np.random.default_rng(7)
    gts = [random_gt(spec, rng) for _ in range(2)]
    pan_dir, part_dir = _write_coco(tmp_path, spec, gts, rng)
    import types

    import panoptic_parts.merging.merge_to_pps as ref_module

    # the reference computes R + 256 G on uint8 arrays, which overflows on numpy >= 2: hand it int64 arrays
    shim = types.SimpleNamespace(open=lambda f: np.array(Image.open(f)).astype(np.int64), fromarray=Image.fromarray)
    with mock.patch.object(ref_module, "Image", shim):
        reference_merge(str(path), str(pan_dir), str(tmp_path / "pan.json"), str(part_dir),
                        str(tmp_path / "images.json"), str(tmp_path / "ref"))
    ours = merge_folders(path, tmp_path / "pan.json", pan_dir, part_dir, tmp_path / "ours", tmp_path / "images.json")
    assert len(ours) == 2
    parts_pixels = 0
    for f in ours:
        a, b = np.array(Image.open(f)), np.array(Image.open(tmp_path / "ref" / f.name))
        assert np.array_equal(a, b), (name, f.name)
        parts_pixels += int(np.isin(a[..., 0], spec.parts_sids).sum())
    assert parts_pixels > 500


def test_cli_merge_parts_and_show_parts(tmp_path, capsys, monkeypatch):
    """The user path: ``tenfold merge-parts`` then ``tenfold eval-parts`` (perfect inputs score 1) and
    ``tenfold show-parts`` on labels and predictions; bad inputs are one-line errors."""
    import sys

    from PIL import Image

    from tenfold.cli import main
    from tenfold.panoptic.format import write_gt

    def tenfold(*args):
        monkeypatch.setattr(sys, "argv", ["tenfold", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    spec = EvalSpec.load("ppq_cpp_19_23_cvpr21_grouped")
    rng = np.random.default_rng(3)
    gts = [random_gt(spec, rng) for _ in range(2)]
    gt_dir = tmp_path / "gt"
    for k, g in enumerate(gts):
        write_gt(gt_dir / f"img{k}_gtFinePanopticParts.tif", g)
    pan_dir, part_dir = _write_coco(tmp_path, spec, gts, np.random.default_rng(0))
    for k, g in enumerate(gts):   # perfect part maps this time
        Image.fromarray(gt_part_flat(g, spec).astype(np.uint8)).save(part_dir / f"img{k}_parts.png")
    code, out, err = tenfold("merge-parts", "--eval-spec", "ppq_cpp_19_23_cvpr21_grouped", "--panoptic-json",
                             tmp_path / "pan.json", "--panoptic-dir", pan_dir, "--parts-dir", part_dir,
                             "--out", tmp_path / "pps")
    assert code == 0, err
    assert "wrote 2 PPS predictions" in out
    res = tmp_path / "res.json"
    code, out, err = tenfold("eval-parts", "--gt", gt_dir, "--pred", tmp_path / "pps", "--eval-spec",
                             "ppq_cpp_19_23_cvpr21_grouped", "--out", res)
    assert code == 0, err
    data = json.loads(res.read_text())
    assert data["PartPQ"] == pytest.approx(1.0) and data["PartPQ_parts"] == pytest.approx(1.0)
    code, out, err = tenfold("show-parts", gt_dir, "--eval-spec", "ppq_cpp_19_23_cvpr21_grouped", "--out",
                             tmp_path / "colour")
    assert code == 0, err
    code, out, err = tenfold("show-parts", tmp_path / "pps" / "img0.png", "--eval-spec",
                             "ppq_cpp_19_23_cvpr21_grouped", "--out", tmp_path / "colour")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "colour").iterdir())
    assert names == ["img0_colour.png", "img0_gtFinePanopticParts_colour.png", "img1_gtFinePanopticParts_colour.png"]
    a = np.array(Image.open(tmp_path / "colour" / "img0_colour.png"))
    b = np.array(Image.open(tmp_path / "colour" / "img0_gtFinePanopticParts_colour.png"))
    assert a.shape == (64, 64, 3) and np.array_equal(a.sum(-1) == 0, b.sum(-1) == 0)   # same unlabelled pixels
    assert len({tuple(c) for c in a.reshape(-1, 3)}) >= 8       # classes, instances and parts differ
    code, _, err = tenfold("merge-parts", "--eval-spec", "nope", "--panoptic-json", tmp_path / "pan.json",
                           "--panoptic-dir", pan_dir, "--parts-dir", part_dir, "--out", tmp_path / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err
    code, _, err = tenfold("merge-parts", "--eval-spec", "ppq_cpp_19_23_cvpr21_grouped", "--panoptic-json",
                           tmp_path / "missing.json", "--panoptic-dir", pan_dir, "--parts-dir", part_dir,
                           "--out", tmp_path / "x")
    assert code == 2 and "missing.json does not exist" in err
    code, _, err = tenfold("show-parts", tmp_path / "nothing", "--eval-spec", "cpp_x", "--out", tmp_path / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1
