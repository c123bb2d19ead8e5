"""The FSCIL benchmarks in their real formats (tiny folders made by conftest.py), the carried CEC lists,
the papers' backbones, and the paper presets running a few steps end to end."""

import json

import pytest
import torch

from tenfold.cli import cli_main
from tenfold.data.fscil_benchmarks import CEC_DIR, cec_lists, cifar100_fscil, cub200_fscil, mini_imagenet_fscil
from tenfold.errors import DataError


def test_carried_cec_lists_have_the_benchmarks_shapes():
    cifar = cec_lists("cifar100", 8)[1:]
    assert [len(s) for s in cifar] == [25] * 8 and all(isinstance(e, int) and 0 <= e < 50000 for s in cifar for e in s)
    assert cifar[0][:5] == [29774, 33344, 4815, 6772, 48317]  # CEC session_2.txt (class 'plain')
    mini = cec_lists("mini_imagenet", 8)[1:]
    assert [len(s) for s in mini] == [25] * 8 and mini[0][0] == "MINI-ImageNet/train/n03544143/n0354414300000811.jpg"
    wnids = [{e.split("/")[2] for e in s} for s in mini]
    assert all(len(w) == 5 for w in wnids) and len(set().union(*wnids)) == 40
    cub = cec_lists("cub200", 10)[1:]
    assert [len(s) for s in cub] == [50] * 10
    assert sorted({int(e.split("/")[2][:3]) for s in cub for e in s}) == list(range(101, 201))
    assert "MIT" in (CEC_DIR / "SOURCE.md").read_text()


def test_mini_imagenet_loader_reads_the_split_files_and_resolves_the_cec_sessions(mini_root):
    bench = mini_imagenet_fscil(mini_root, size=16)
    assert bench.train.x.shape[1:] == (3, 16, 16) and len(bench.plan.base) == 60 and len(bench.plan.sessions) == 8
    assert len(bench.indices) == 9 and set(bench.train.y[bench.indices[0]].tolist()) == set(range(60))
    for t, group in enumerate(bench.plan.sessions, start=1):
        counts = torch.bincount(bench.train.y[bench.indices[t]], minlength=100)
        assert all(counts[c] == 5 for c in group) and counts.sum() == 25
    assert bench.train.class_names[60] == "n03544143"  # the first class of CEC session 2
    assert len(bench.test.y) == 200


def test_cub_loader_reads_the_three_id_files(cub_root):
    bench = cub200_fscil(cub_root, size=16)
    assert len(bench.plan.base) == 100 and [len(s) for s in bench.plan.sessions] == [10] * 10
    assert torch.equal(torch.unique(bench.train.y[bench.indices[0]]), torch.arange(100))
    for t, group in enumerate(bench.plan.sessions, start=1):
        assert sorted(set(bench.train.y[bench.indices[t]].tolist())) == list(group) and len(bench.indices[t]) == 50
    assert len(bench.test.y) == 200 and set(bench.test.y.tolist()) == set(range(200))


def test_cifar_loader_takes_an_index_folder_in_the_cec_format(cifar_root):
    root, index = cifar_root
    bench = cifar100_fscil(root, index)
    assert len(bench.indices[0]) == 360 and all(len(i) == 25 for i in bench.indices[1:])
    assert set(bench.train.y[bench.indices[1]].tolist()) == {60, 61, 62, 63, 64}
    with pytest.raises(DataError, match="is not an index into the 600 CIFAR-100 training images"):
        cifar100_fscil(root)  # the carried lists index the real 50000-image training set


def test_missing_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="split/train.csv"):
        mini_imagenet_fscil(tmp_path)
    with pytest.raises(DataError, match="images.txt"):
        cub200_fscil(tmp_path)
    with pytest.raises(DataError, match="session_2.txt does not exist"):
        cec_lists("x", 8, tmp_path)


def test_resnet12_and_resnet18_shapes_and_frozen_stage():
    from tenfold.incremental.backbones import resnet12, resnet18

    net = resnet12()
    assert sum(p.numel() for p in net.parameters()) == 12_424_320  # the few-shot ResNet-12 (64-160-320-640)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 640)
    r18 = resnet18(frozen_stages=1).train()
    assert r18(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert not any(p.requires_grad for p in r18.net.layer1.parameters()) and not r18.net.layer1.training
    assert all(p.requires_grad for p in r18.net.layer2.parameters()) and r18.net.layer2.training


def test_resnet18_loads_a_local_checkpoint(tmp_path):
    import timm

    from tenfold.incremental.backbones import resnet18

    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    net = resnet18(str(tmp_path / "r18.pth"))
    assert torch.equal(net.net.conv1.weight, src.conv1.weight)
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="do not fit"):
        resnet18(str(tmp_path / "bad.pth"))


def _few_steps(tmp_path, name, root, *extra):
    args = ["run", name, "--preset", "paper", "--out", str(tmp_path / "runs"), "--set", f"root={root}",
            "--set", "base.epochs=1", "--set", "base.warmup_steps=1", "--set", "incremental.steps=2",
            "--set", "base.batch_size=64", *extra]
    return cli_main(args)


@pytest.mark.slow
@pytest.mark.parametrize("name,fixture,extra", [
    ("fscil-mini", "mini_root", ["--set", "image_size=16", "--set", "resnet12_channels=[8,8,8,16]"]),
    ("fscil-cub", "cub_root", ["--set", "image_size=32"]),
    ("fscil-cifar100", "cifar_root", ["--set", "resnet12_channels=[8,8,8,16]"]),
])
def test_paper_presets_run_a_few_steps_on_real_format_folders_and_resume(tmp_path, request, capsys, monkeypatch,
                                                                         name, fixture, extra):
    """Interrupted after the first session of the first sessions stage, then ``--resume`` finishes the run;
    every (stage, epoch) row of metrics.csv appears once."""
    import csv

    root = request.getfixturevalue(fixture)
    if name == "fscil-cifar100":
        root, index = root
        extra = extra + ["--set", f"index_dir={index}"]
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "1")
    assert _few_steps(tmp_path, name, root, *extra) != 0
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    (folder,) = (tmp_path / "runs" / name).iterdir()
    assert not (folder / "results.json").exists() or json.loads((folder / "results.json").read_text())["status"] != "ok"
    code = _few_steps(tmp_path, name, root, *extra, "--resume")
    assert code == 0, capsys.readouterr().err
    rows = [(r["stage"], r["epoch"]) for r in csv.DictReader((folder / "metrics.csv").open())]
    assert len(rows) == len(set(rows)) and any(s.startswith("sessions-etf-dr") for s, _ in rows)
    result = json.loads((folder / "results.json").read_text())
    sessions = 11 if name == "fscil-cub" else 9
    assert f"etf-dr.session{sessions - 1}" in result["metrics"]
    assert result["metrics"]["finetune_set_mismatches"] == 0


def test_backbones_and_head_build_on_the_meta_device_and_run_in_float64():
    from tenfold.incremental import ProjectionHead
    from tenfold.incremental.backbones import resnet12, resnet18

    with torch.device("meta"):
        net, r18, head = resnet12(), resnet18(), ProjectionHead(640, 512)
        assert net(torch.empty(2, 3, 32, 32)).shape == (2, 640) and r18(torch.empty(2, 3, 32, 32)).shape == (2, 512)
        assert head(torch.empty(2, 640)).shape == (2, 512)
    small = resnet12((4, 4, 4, 8)).double()
    assert small(torch.randn(2, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64


def test_step_schedule_decays_at_the_milestones_after_the_warmup():
    from tenfold.incremental.sessions import BaseSettings, _base_lr

    s = BaseSettings(lr=0.25, schedule="step", warmup_steps=10, warmup_ratio=0.25, step_milestones=(0.4, 0.6),
                     step_gamma=0.25)
    assert _base_lr(s, 0, 100) == pytest.approx(0.25 * 0.25)
    assert _base_lr(s, 5, 100) == pytest.approx(0.25 * (1 - 0.5 * 0.75))
    assert _base_lr(s, 39, 100) == pytest.approx(0.25) and _base_lr(s, 40, 100) == pytest.approx(0.0625)
    assert _base_lr(s, 60, 100) == pytest.approx(0.25 / 16)
