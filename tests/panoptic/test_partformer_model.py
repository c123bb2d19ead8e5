"""The part-whole query model: shapes, matching, losses, masked attention, inference and merge rules."""

import itertools

import numpy as np
import pytest
import torch

from tenfold.data.panoptic_scenes import generate_scenes, write_scenes
from tenfold.errors import ConfigError, DataError
from tenfold.panoptic.dataset import PanopticPartsDataset, collate
from tenfold.panoptic.format import EvalSpec
from tenfold.panoptic.inference import InferenceConfig, part_map, whole_segments
from tenfold.panoptic.losses import PartWholeCriterion
from tenfold.panoptic.matching import cost_matrix, match, pixel_points
from tenfold.panoptic.merge import merge_to_pps
from tenfold.panoptic.model import PartFormerConfig, PartWholeFormer, attention_mask
from tenfold.panoptic.targets import Targets, make_targets


@pytest.fixture(scope="module")
def scene_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    paths = write_scenes(root, generate_scenes(6, seed=3), prefix="s")
    spec = EvalSpec.load(paths["eval_spec"])
    return spec, PanopticPartsDataset.from_folder(paths["images"], paths["labels"], spec), paths


def _cfg(spec, **kw):
    index = {s: k for k, s in enumerate(spec.eval_sids)}
    return PartFormerConfig(num_classes=len(spec.eval_sids), num_parts=spec.num_flat,
                            parts_classes=tuple(index[s] for s in spec.parts_sids), **kw)


@pytest.mark.parametrize("switches", [{}, {"decoupled": False}, {"part_whole_attention": False}])
def test_every_head_has_the_right_shape(scene_data, switches):
    spec, data, _ = scene_data
    torch.manual_seed(0)
    model = PartWholeFormer(_cfg(spec, num_layers=2, **switches))
    out = model(torch.rand(2, 3, 64, 64))
    assert len(out["layers"]) == 3  # the prediction before the first layer plus one per layer
    for layer in out["layers"]:
        assert layer["class_logits"].shape == (2, 16, len(spec.eval_sids) + 1)
        assert layer["mask_logits"].shape == (2, 16, 16, 16)
        assert layer["part_logits"].shape == (2, spec.num_flat)
        assert layer["part_masks"].shape == (2, spec.num_flat, 16, 16)


@pytest.mark.parametrize("switch", ["decoupled", "part_whole_attention"])
def test_each_ablation_keeps_every_parameter_and_removes_only_its_mechanism(scene_data, switch):
    spec, _, _ = scene_data
    torch.manual_seed(0)
    full = PartWholeFormer(_cfg(spec, num_layers=2))
    torch.manual_seed(0)
    ablated = PartWholeFormer(_cfg(spec, num_layers=2, **{switch: False}))
    shapes = {k: v.shape for k, v in full.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ablated.state_dict().items()}   # same names, same sizes
    ablated.load_state_dict(full.state_dict())
    images = torch.rand(2, 3, 64, 64)
    a, b = full(images)["layers"][-1], ablated(images)["layers"][-1]
    assert not torch.allclose(a["part_masks"], b["part_masks"])   # the switch changes the computation
    if switch == "decoupled":   # decoupled: parts read their own feature map; shared: the whole one
        seen = {}
        for name, model in (("full", full), ("ablated", ablated)):
            heads = model._heads
            model._heads = lambda w, p, fw, fp, heads=heads, name=name: seen.setdefault(name, (fw, fp)) and heads(
                w, p, fw, fp)
            model(images)
        assert not torch.allclose(*seen["full"]) and torch.equal(*seen["ablated"])


@pytest.mark.parametrize("switches", [{}, {"decoupled": False}, {"part_whole_attention": False}])
def test_every_variant_runs_in_float64_and_on_the_meta_device(scene_data, switches):
    spec, _, _ = scene_data
    cfg = _cfg(spec, num_layers=2, **switches)
    out = PartWholeFormer(cfg).double()(torch.rand(2, 3, 64, 64, dtype=torch.float64))["layers"][-1]
    assert all(out[k].dtype == torch.float64 for k in ("class_logits", "mask_logits", "part_masks"))
    with torch.device("meta"):
        model = PartWholeFormer(cfg)
    out = model(torch.rand(2, 3, 64, 64, device="meta"))["layers"][-1]
    assert out["part_masks"].device.type == "meta" and out["part_masks"].shape == (2, spec.num_flat, 16, 16)


def test_bad_model_configs():
    with pytest.raises(ConfigError, match="parts_classes"):
        PartFormerConfig(num_classes=3, num_parts=2, parts_classes=(5,))
    with pytest.raises(ConfigError, match="hidden=30"):
        PartFormerConfig(num_classes=3, num_parts=2, parts_classes=(), hidden=30, heads=4)


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matching_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    q, n = 5, 3
    class_logits = torch.randn(q, 4, generator=g)
    masks = torch.randn(q, 8, 8, generator=g)
    gt = (torch.rand(n, 8, 8, generator=g) > 0.5).float()
    classes = torch.randint(0, 3, (n,), generator=g)
    rows, cols = match(class_logits, masks, classes, gt, num_points=64, generator=torch.Generator().manual_seed(9))
    points = pixel_points(1, 64, (8, 8), torch.Generator().manual_seed(9))
    cost = cost_matrix(class_logits, masks, classes, gt, points)
    best = min(sum(float(cost[p[j], j]) for j in range(n)) for p in itertools.permutations(range(q), n))
    assert sum(float(cost[r, c]) for r, c in zip(rows, cols)) == pytest.approx(best, abs=1e-5)
    assert sorted(cols.tolist()) == list(range(n))


def _perfect_outputs(targets: Targets, num_queries: int, num_classes: int) -> dict:
    n, h, w = targets.masks.shape
    cls = torch.full((num_queries, num_classes + 1), -50.0)
    cls[:, -1] = 50.0
    masks = torch.full((num_queries, h, w), -50.0)
    for i in range(n):
        cls[i] = -50.0
        cls[i, targets.classes[i]] = 50.0
        masks[i] = 50.0 * (2 * targets.masks[i] - 1)
    present = targets.part_masks.flatten(1).amax(1) > 0
    return {"class_logits": cls[None], "mask_logits": masks[None],
            "part_logits": (100.0 * present.float() - 50.0)[None], "part_masks": (50.0 * (2 * targets.part_masks - 1))[None]}


def test_losses_vanish_for_a_perfect_prediction_and_are_positive_otherwise(scene_data):
    spec, data, _ = scene_data
    _, t = data[0]
    crit = PartWholeCriterion(len(spec.eval_sids), num_points=256)
    perfect = _perfect_outputs(t, 16, len(spec.eval_sids))
    terms = crit({"layers": [perfect]}, [t], torch.Generator().manual_seed(0))
    assert float(terms["loss"]) < 1e-6
    assert set(terms) >= {"class", "bce", "dice", "presence", "part_bce", "part_dice"}
    for key, change in [("class_logits", lambda x: x.flip(-1)), ("mask_logits", lambda x: -x),
                        ("part_masks", lambda x: -x), ("part_logits", lambda x: -x)]:
        broken = dict(perfect, **{key: change(perfect[key])})
        assert float(crit({"layers": [broken]}, [t], torch.Generator().manual_seed(0))["loss"]) > 0.1, key


def test_deep_supervision_sums_layers(scene_data):
    """The loss of all layers is the sum of the per-layer losses (up to the point sampling, which
    draws new points per call: with 4x the pixels as points the difference is small)."""
    spec, data, _ = scene_data
    torch.manual_seed(0)
    model = PartWholeFormer(_cfg(spec, num_layers=2))
    images, targets = collate([data[0], data[1]])
    crit = PartWholeCriterion(len(spec.eval_sids), num_points=16384)
    with torch.no_grad():
        out = model(images)
        total = crit(out, targets, torch.Generator().manual_seed(1))["loss"]
        per_layer = [crit({"layers": [layer]}, targets, torch.Generator().manual_seed(2))["loss"]
                     for layer in out["layers"]]
    assert len(per_layer) == 3 and min(float(v) for v in per_layer) > 0
    assert float(total) == pytest.approx(float(sum(per_layer)), rel=0.03)


def test_empty_attention_mask_falls_back_to_attending_everywhere():
    allowed = torch.tensor([[[True, False, False], [False, False, False]]])
    mask = attention_mask(allowed, heads=2)
    assert mask.shape == (2, 2, 3)
    assert mask[0, 0].tolist() == [False, True, True] and mask[0, 1].tolist() == [False, False, False]
    attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    q, kv = torch.randn(1, 2, 4), torch.randn(1, 3, 4)
    masked, _ = attn(q, kv, kv, attn_mask=mask)
    free, _ = attn(q, kv, kv)
    assert torch.allclose(masked[0, 1], free[0, 1], atol=1e-6)
    assert not torch.allclose(masked[0, 0], free[0, 0], atol=1e-4)


def test_part_whole_attention_is_restricted_to_whole_regions_with_parts(scene_data):
    spec, _, _ = scene_data
    model = PartWholeFormer(_cfg(spec, num_layers=1))
    q, p = 16, spec.num_flat
    pred = {"class_logits": torch.zeros(1, q, len(spec.eval_sids) + 1), "mask_logits": torch.full((1, q, 4, 4), -9.0),
            "part_masks": torch.full((1, p, 4, 4), 9.0), "part_logits": torch.zeros(1, p)}
    car = spec.eval_sids.index(spec.parts_sids[0])
    pred["class_logits"][0, 0, car] = 5.0            # query 0 predicts a class with parts ...
    pred["mask_logits"][0, 0, :2, :2] = 9.0          # ... on the top-left quarter
    _, mask_p = model._masks(pred, (4, 4))
    allowed = ~mask_p[0].reshape(p, 4, 4)
    assert allowed[:, :2, :2].all() and not allowed[:, 2:, :].any()
    model_plain = PartWholeFormer(_cfg(spec, num_layers=1, part_whole_attention=False))
    _, mask_plain = model_plain._masks(pred, (4, 4))
    assert not mask_plain.any()  # own masks cover everything: no restriction without part-whole attention


def test_inference_rules_and_merge(scene_data):
    spec, _, _ = scene_data
    c = len(spec.eval_sids)
    sky, car = spec.eval_sids.index(1), spec.eval_sids.index(3)
    logits = torch.full((3, c + 1), -9.0)
    logits[0, sky] = 9.0
    logits[1, car] = 9.0
    logits[2, -1] = 9.0                              # no-object: dropped
    masks = torch.full((3, 8, 8), -9.0)
    masks[0, :4] = 9.0
    masks[1, 4:, :4] = 9.0
    masks[2] = 9.0
    sid, iid = whole_segments(logits, masks, spec, InferenceConfig())
    assert (sid[:4] == 1).all() and (sid[4:, :4] == 3).all() and (sid[4:, 4:] == 255).all()
    assert (iid[4:, :4] == 1).all()
    flat = np.zeros((8, 8), np.int32)
    flat[4:6, :2] = 1        # a car part inside the car
    flat[6:, :2] = 4         # a person part inside the car -> unknown part 255
    flat[:2, :2] = 2         # a car part inside the sky -> ignored (sky has no parts: pid 1)
    pps = merge_to_pps(sid, iid, flat, spec)
    assert (pps[4:6, :2, 2] == 1).all() and (pps[6:, :2, 2] == 255).all()
    assert (pps[:4, :, 2] == 1).all()                 # class without parts: pid 1
    assert (pps[4:, 4:] == [255, 0, 0]).all()         # unpredicted
    presence = torch.tensor([9.0, -9.0])
    pm = torch.full((2, 4, 4), -9.0)
    pm[0, :2] = 9.0
    pm[1, 2:] = 9.0                                   # absent part: presence too low
    assert part_map(presence, pm).tolist() == [[1] * 4] * 2 + [[0] * 4] * 2


def test_a_few_training_steps_lower_the_loss(scene_data):
    spec, data, _ = scene_data
    torch.manual_seed(0)
    model = PartWholeFormer(_cfg(spec, num_layers=2))
    crit = PartWholeCriterion(len(spec.eval_sids), num_points=256)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    images, targets = collate([data[i] for i in range(4)])
    losses = []
    for step in range(25):
        loss = crit(model(images), targets, torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_targets_and_dataset_errors(scene_data, tmp_path):
    spec, data, paths = scene_data
    _, t = data[0]
    assert t.masks.shape[0] == len(t.classes) and t.part_masks.shape[0] == spec.num_flat
    assert not t.valid[torch.from_numpy(data.labels[0] == 0)].any()      # void is ignored
    bad = data.labels[0].copy()
    bad[0, 0] = 42                                                         # sid 42 is not in the dataset spec
    with pytest.raises(DataError, match="bad.tif: uid 42 has semantic id 42"):
        make_targets(bad, spec, "bad.tif")
    with pytest.raises(DataError, match="differs from its label size"):
        PanopticPartsDataset([np.zeros((8, 8, 3), np.float32)], [np.ones((8, 9), np.int32)], spec, ["x"])
    with pytest.raises(DataError, match="has no image named"):
        PanopticPartsDataset.from_folder(tmp_path, paths["labels"], spec)


def test_worker_memory_benchmark_measures_each_worker_and_the_in_memory_dataset():
    """The on-demand dataset's workers are measured (2 workers seen); the in-memory dataset's bytes are
    grow with the number of images (the contrast the benchmark's target is about)."""
    from tenfold.papers.partformer.bench import worker_memory

    out = worker_memory((4, 12), size=48, workers=2, crop=32)
    small, large = out["rows"]
    assert small["workers_seen"] == large["workers_seen"] == 2
    assert small["worker_peak_rss_mib"] > 50   # the interpreter and torch at least
    assert out["in_memory_large_over_small"] > 2.0   # 3x the images (dense masks per segment: not exactly 3x)
