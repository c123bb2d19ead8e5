import numpy as np
import pytest

from tenfold.data.panoptic_scenes import BALL, CAR, PERSON, generate_scene, generate_scenes, write_scenes
from tenfold.errors import ConfigError
from tenfold.panoptic.format import EvalSpec, decode_uids, read_gt


def test_scenes_are_deterministic_and_hold_every_corner_case():
    a = generate_scenes(12, seed=7, height=64, width=64)
    b = generate_scenes(12, seed=7, height=64, width=64)
    assert all((x.uids == y.uids).all() and (x.image == y.image).all() for x, y in zip(a, b))
    uids = np.stack([s.uids for s in a])
    sid, iid, pid = decode_uids(uids)
    assert (uids == 0).any()                                            # void
    assert (np.isin(sid, [CAR, PERSON, BALL]) & (iid < 0)).any()         # crowd
    assert ((sid == CAR) & (pid > 0)).any() and ((sid == PERSON) & (pid > 0)).any()
    assert (np.isin(sid, [CAR, PERSON]) & (iid >= 0) & (pid == 0)).any()  # unlabelled part pixels
    partless = 0
    for s in a:
        si, ii, pi = decode_uids(s.uids)
        for c in (CAR, PERSON):
            for i in np.unique(ii[(si == c) & (ii >= 0)]):
                partless += int((pi[(si == c) & (ii == i)] == 0).all())
    assert partless >= 1                                                # a part object without part labels
    assert 0.0 <= uids.min() and a[0].image.dtype == np.float32 and a[0].image.shape == (64, 64, 3)


def test_write_scenes_layout(tmp_path):
    paths = write_scenes(tmp_path, generate_scenes(2, seed=0, height=32, width=48))
    assert len(list(paths["labels"].glob("*.tif"))) == 2 and len(list(paths["images"].glob("*.png"))) == 2
    spec = EvalSpec.load(paths["eval_spec"])
    assert spec.parts_sids == [CAR, PERSON] and spec.num_flat == 6
    assert read_gt(next(paths["labels"].glob("*.tif"))).shape == (32, 48)
    assert EvalSpec.load(paths["eval_spec_noparts"]).parts_sids == []


def test_bad_scene_arguments():
    with pytest.raises(ConfigError, match="scene size 8x64"):
        generate_scene(np.random.default_rng(0), height=8, width=64)
    with pytest.raises(ConfigError, match="n=0"):
        generate_scenes(0)
