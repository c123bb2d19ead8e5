import numpy as np
import pytest
import torch

from tenfold.errors import DataError
from tenfold.panoptic.format import (EvalSpec, builtin_spec, decode_uids, encode_ids, read_gt, read_prediction,
                                     write_gt, write_prediction)


def test_decode_known_values():
    uids = np.array([0, 23, 26, 26002, 2401001, 99_999_99, 1000], np.int32)
    sid, iid, pid = decode_uids(uids)
    assert sid.tolist() == [0, 23, 26, 26, 24, 99, 1]
    assert iid.tolist() == [-1, -1, -1, 2, 10, 999, 0]
    assert pid.tolist() == [0, 0, 0, 0, 1, 99, 0]


def test_encode_decode_roundtrip_numpy_and_torch():
    rng = np.random.default_rng(0)
    sid = rng.integers(1, 100, 500)
    iid = rng.integers(-1, 1000, 500)
    pid = np.where(iid >= 0, rng.integers(0, 100, 500), 0)
    uids = encode_ids(sid, iid, pid)
    s2, i2, p2 = decode_uids(uids)
    assert (s2 == sid).all() and (i2 == iid).all() and (p2 == pid).all()
    ts, ti, tp = decode_uids(torch.as_tensor(uids))
    assert ts.dtype == torch.int32 and (ts.numpy() == sid).all() and (ti.numpy() == iid).all()
    assert (encode_ids(ts, ti, tp).numpy() == uids).all()


@pytest.mark.parametrize("bad", [100, 555, 999, -1, 10_000_000])
def test_invalid_uids_are_rejected(bad):
    with pytest.raises(DataError, match=str(bad)):
        decode_uids(np.array([[1, bad]], np.int32), where="x.tif")


def test_encode_rejects_out_of_range_and_part_without_instance():
    with pytest.raises(DataError, match="sid 100"):
        encode_ids(np.array([100]), np.array([1]), np.array([1]))
    with pytest.raises(DataError, match="pid needs an iid"):
        encode_ids(np.array([3]), np.array([-1]), np.array([2]))


def test_shipped_specs_load():
    cpp = EvalSpec.load(builtin_spec("ppq_cpp_19_23_cvpr21_default_evalspec.yaml"))
    assert len(cpp.eval_sids) == 19 and len(cpp.things) == 8 and cpp.parts_sids == [24, 25, 26, 27, 28]
    assert cpp.num_flat == 23 and cpp.sid_pid_map is None
    ppp = EvalSpec.load(builtin_spec("ppq_ppp_59_57_cvpr21_default_evalspec.yaml"))
    assert len(ppp.eval_sids) == 59 and len(ppp.parts_sids) == 15 and ppp.num_flat == 57
    # PPP folds countable part instances (aeroplane engines 6..15 -> engine) and groups parts
    lut = ppp.dataset.sid_pid_file2sid_pid
    assert lut[106] == lut[115] == 106 and lut[116] == 107
    assert ppp.sid_pid_map[102] == 104 and ppp.sid_pid_map[2] == 202
    grouped = EvalSpec.load(builtin_spec("ppq_cpp_19_23_cvpr21_grouped_evalspec.yaml"))
    assert grouped.num_flat == 9


def test_malformed_spec_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2.0\ndataset_spec_path: [\n")
    with pytest.raises(DataError, match="bad.yaml is not valid YAML"):
        EvalSpec.load(bad)
    src = builtin_spec("ppq_cpp_19_23_cvpr21_default_evalspec.yaml").read_text()
    missing = tmp_path / "missing.yaml"
    missing.write_text(src.replace("eval_sid_things:", "eval_sid_thingz:"))
    with pytest.raises(DataError, match="missing.yaml: missing field 'eval_sid_things'"):
        EvalSpec.load(missing)
    nods = tmp_path / "nods.yaml"
    nods.write_text(src.replace("cpp_datasetspec.yaml", "nothere.yaml"))
    with pytest.raises(DataError, match="nothere.yaml"):
        EvalSpec.load(nods)
    with pytest.raises(DataError, match="does not exist"):
        EvalSpec.load(tmp_path / "absent.yaml")


def test_label_files_roundtrip(tmp_path):
    uids = np.array([[0, 23, 26002], [2401001, 24, 7]], np.int32)
    path = write_gt(tmp_path / "a.tif", uids)
    assert (read_gt(path) == uids).all() and read_gt(path).dtype == np.int32
    # the reference reads GT with PIL: our TIFFs must be readable that way too
    from PIL import Image
    assert (np.array(Image.open(path)) == uids).all()
    p = write_prediction(tmp_path / "p.png", np.full((2, 3), 26), np.ones((2, 3)), np.full((2, 3), 255))
    assert read_prediction(p).shape == (2, 3, 3)
    with pytest.raises(DataError, match="iid value 256"):
        write_prediction(tmp_path / "q.png", np.full((2, 3), 26), np.full((2, 3), 256), np.ones((2, 3)))
    with pytest.raises(DataError, match="uid 555"):
        write_gt(tmp_path / "b.tif", np.array([[555]], np.int32))
