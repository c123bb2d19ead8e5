"""The public entry point of ``tenfold.panoptic``: a small documented ``__all__``, the old names still
importable (with a warning naming their submodule), and ``PartPQEvaluator`` (detectron2's
reset/process/evaluate protocol) giving exactly the numbers of ``evaluate_arrays`` and ``evaluate_folders``."""

import ast
import doctest
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import tenfold.panoptic as panoptic
from tenfold.data.panoptic_scenes import generate_scenes, write_scenes
from tenfold.errors import ConfigError, DataError
from tenfold.panoptic import EvalSpec, PartPQEvaluator, evaluate_arrays, evaluate_folders
from tenfold.panoptic.corrupt import drop_instances, shift_instances, split_instances, swap_parts
from tenfold.panoptic.format import write_prediction
from tenfold.panoptic.merge import gt_part_flat, gt_to_prediction

from panoptic_helpers import specs

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"PartPQEvaluator", "evaluate_arrays", "evaluate_folders", "EvalSpec", "decode_uids", "encode_ids",
          "merge_to_pps", "to_coco_panoptic", "from_coco_panoptic", "PartFormerConfig", "PartWholeFormer", "predict", "InferenceConfig",
          "PartsFolderDataset", "collate"}


def test_the_package_exports_a_small_documented_api():
    assert set(panoptic.__all__) == PUBLIC
    for name in panoptic.__all__:
        obj = getattr(panoptic, name)
        assert name in panoptic.__doc__, f"{name} is not listed in the package docstring"
        assert obj.__doc__ and not obj.__doc__.startswith(f"{name}("), f"{name} has no docstring of its own"


@pytest.mark.parametrize("name", sorted(panoptic._MOVED))
def test_old_names_still_import_with_a_warning_naming_their_submodule(name):
    module = importlib.import_module(f"tenfold.panoptic.{panoptic._MOVED[name]}")
    with pytest.warns(DeprecationWarning, match=f"tenfold.panoptic.{panoptic._MOVED[name]}"):
        assert getattr(panoptic, name) is getattr(module, name)
    with pytest.raises(AttributeError):
        panoptic.no_such_name  # noqa: B018


def test_no_code_of_ours_imports_a_removed_name_from_the_package():
    bad = []
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tenfold.panoptic":
                bad += [(str(path.relative_to(ROOT)), a.name) for a in node.names
                        if a.name not in PUBLIC and importlib.util.find_spec(f"tenfold.panoptic.{a.name}") is None]
    assert not bad


def _images(spec, n=5, seed=3):
    """Procedural scenes with every corner case, each prediction corrupted differently."""
    rng = np.random.default_rng(seed)
    corruptions = [swap_parts, split_instances, drop_instances, shift_instances, lambda p, s, f, r: p]
    out = []
    for k, scene in enumerate(generate_scenes(n, seed=seed, height=48, width=64)):
        pred = corruptions[k % len(corruptions)](gt_to_prediction(scene.uids, spec), spec, 0.5, rng)
        out.append((scene.uids, pred))
    return out


@pytest.mark.parametrize("include_bg,combiner", [(True, "geometric"), (False, "harmonic")])
def test_evaluator_equals_evaluate_arrays(tmp_path, include_bg, combiner):
    spec, _, _, _ = specs(tmp_path)
    pairs = _images(spec)
    expected = evaluate_arrays(pairs, spec, include_bg=include_bg, combiner=combiner)
    assert 0 < expected["PartPQ"] < 1 and expected["images"] == len(pairs)

    ev = PartPQEvaluator(spec, include_bg=include_bg, combiner=combiner)
    ev.process(pairs[0][0], pairs[0][1])          # a stale image, dropped by reset()
    ev.reset()
    for gt, pred in pairs:                         # one image at a time
        ev.process(gt, pred)
    assert ev.evaluate() == expected
    assert ev.evaluate() == expected               # evaluate does not consume the state

    ev.reset()                                     # a batch: stacked arrays, and torch tensors
    ev.process(np.stack([g for g, _ in pairs[:3]]), np.stack([p for _, p in pairs[:3]]))
    ev.process([torch.from_numpy(g) for g, _ in pairs[3:]], [torch.from_numpy(p) for _, p in pairs[3:]])
    assert ev.evaluate() == expected


def test_evaluator_takes_part_maps_and_predict_pairs(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    pairs = _images(spec, n=3)
    flats = [np.roll(gt_part_flat(g, spec), 3, axis=1) for g, _ in pairs]  # a separate (shifted) part map
    expected = evaluate_arrays([(g, p, f) for (g, p), f in zip(pairs, flats)], spec)
    assert expected != evaluate_arrays(pairs, spec)
    ev = PartPQEvaluator(spec)
    ev.process(pairs[0][0], pairs[0][1], flats[0])
    ev.process([g for g, _ in pairs[1:]], [(p, f) for (_, p), f in zip(pairs[1:], flats[1:])])  # predict()'s output
    assert ev.evaluate() == expected


def test_evaluator_equals_evaluate_folders(tmp_path):
    paths = write_scenes(tmp_path / "data", generate_scenes(4, seed=5, height=48, width=64))
    spec = EvalSpec.load(paths["eval_spec"])
    pairs = []
    rng = np.random.default_rng(0)
    for f, scene in zip(sorted(paths["labels"].glob("*.tif")), generate_scenes(4, seed=5, height=48, width=64)):
        p = split_instances(gt_to_prediction(scene.uids, spec), spec, 0.5, rng)
        write_prediction(tmp_path / "pred" / f"{f.stem}.png", p[..., 0], p[..., 1], p[..., 2])
        pairs.append((scene.uids, p))
    from_folders = evaluate_folders(paths["labels"], tmp_path / "pred", paths["eval_spec"])
    ev = PartPQEvaluator(paths["eval_spec"])  # a spec path works too
    for gt, pred in pairs:
        ev.process(gt, pred)
    res = ev.evaluate()
    assert res == {k: v for k, v in from_folders.items() if k not in ("eval_spec", "gt", "pred")}
    assert 0 < res["PQ"] < 1


def test_evaluator_errors_are_one_line(tmp_path):
    spec, _, _, _ = specs(tmp_path)
    with pytest.raises(ConfigError, match="combiner='median'"):
        PartPQEvaluator(spec, combiner="median")
    ev = PartPQEvaluator(spec)
    gt, pred = _images(spec, n=1)[0]
    with pytest.raises(DataError, match="2 ground-truth images has 1 predictions"):
        ev.process(np.stack([gt, gt]), [pred])
    with pytest.raises(DataError, match="image 0"):
        ev.process(gt, pred[:-1])
    with pytest.raises(DataError, match=r"expected \(H, W\) uids"):
        ev.process(gt[None, None], pred)


def test_evaluator_docstring_example_runs():
    from tenfold.panoptic import evaluator

    result = doctest.testmod(evaluator, verbose=False)
    assert result.attempted > 0 and result.failed == 0
