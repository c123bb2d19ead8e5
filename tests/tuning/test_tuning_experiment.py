"""The user path of ``tuning-minivtab`` and the cached foundation models."""

import dataclasses
import json

import pytest
import torch

import tenfold.tuning.foundation as foundation
from tenfold.cli import cli_main


@pytest.fixture
def tiny_foundations(monkeypatch):
    """Foundation specs with one pre-training epoch, so that tests pre-train in a second."""
    specs = {k: dataclasses.replace(v, epochs=1) for k, v in foundation.SPECS.items()}
    monkeypatch.setattr(foundation, "SPECS", specs)
    return specs


def test_foundation_is_deterministic_and_cached(tiny_foundations, tmp_path):
    a, info_a = foundation.foundation_model("digits", tmp_path / "a")
    b, info_b = foundation.foundation_model("digits", tmp_path / "b")
    c, info_c = foundation.foundation_model("digits", tmp_path / "a")
    assert not info_a["cached"] and not info_b["cached"] and info_c["cached"]
    assert info_c["held_out_acc"] == pytest.approx(info_a["held_out_acc"])
    for (n, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(p, q) and torch.equal(p, r), n
    assert a.patch_embed.num_patches == 16 and a.embed_dim == 64 and len(a.blocks) == 4


@pytest.mark.parametrize("kind", sorted(foundation.SHIPPED))
def test_shipped_foundation_has_its_hash_and_loads_without_pretraining(kind, monkeypatch):
    """Every machine tunes the same backbone: the shipped file's SHA-256 is the recorded one, and the loader
    uses it instead of pre-training (whose rounding differs between CPUs)."""
    path = foundation.SHIPPED_DIR / f"foundation-{kind}.safetensors"
    assert foundation.file_sha256(path) == foundation.SHIPPED[kind]

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pre-trained although the weights ship")

    monkeypatch.setattr(foundation, "pretrain", no_pretraining)
    model, info = foundation.foundation_model(kind)
    assert info["shipped"] and info["path"] == str(path) and info["sha256"] == foundation.SHIPPED[kind]
    assert info["held_out_acc"] > 1.5 / foundation.SPECS[kind].num_classes  # above chance
    assert not model.training


def test_a_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    from tenfold.errors import DataError

    data = bytearray((foundation.SHIPPED_DIR / "foundation-digits.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    (tmp_path / "foundation-digits.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(foundation, "SHIPPED_DIR", tmp_path)
    with pytest.raises(DataError, match="SHA-256 .* differs from the shipped"):
        foundation.foundation_model("digits")


def test_a_changed_spec_is_pretrained_not_taken_from_the_shipped_file(tiny_foundations):
    assert foundation.shipped_path("digits") is None


def test_foundation_does_not_touch_the_global_rng(tiny_foundations, tmp_path):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    foundation.build_vit(seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_tasks_are_few_shot_and_disjoint():
    from tenfold.tuning.tasks import make_task

    for name in ("digits-5-9", "rotation", "inverted"):
        task = make_task(name, seed=1, shots=20)
        assert len(task.y_train) == 20 * task.num_classes
        assert len(task.y_test) + len(task.y_train) == 896  # every digit 5-9 of scikit-learn exactly once
    shapes = make_task("shapes", seed=0, shots=5)
    assert shapes.num_classes == 10 and shapes.x_train.shape[1:] == (3, 32, 32) and len(shapes.y_train) == 50
    a, b = make_task("digits-5-9", seed=0), make_task("digits-5-9", seed=1)
    assert not torch.equal(a.x_train, b.x_train)


@pytest.mark.slow
def test_run_through_the_cli_writes_table_figure_and_claims(tiny_foundations, tmp_path, capsys):
    args = ["run", "tuning-minivtab", "--out", str(tmp_path / "runs"), "--set", f"cache_dir={tmp_path / 'cache'}",
            "--set", "methods=[linear,full,lora-qv,vpt-deep,kd]", "--set", "tasks=[digits-5-9,rotation]",
            "--set", "seeds=3", "--set", "epochs=1", "--set", "test_size=50", "--set", "lr_factors=[1.0,3.0]"]
    code = cli_main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (folder,) = (tmp_path / "runs" / "tuning-minivtab").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert (folder / "accuracy_vs_parameters.png").is_file() and (folder / "training_curves.png").is_file()
    curves = json.loads((folder / "training_curves.json").read_text())   # per task, method and seed: each epoch
    assert set(curves) == {"digits-5-9", "rotation"} and set(curves["rotation"]) == {"linear", "full", "lora-qv",
                                                                                      "vpt-deep", "kd"}
    assert all(len(seeds) == 3 and all(len(c) == 1 and c[0] > 0 for c in seeds)
               for task in curves.values() for seeds in task.values())
    table = next(iter(data["tables"].values()))
    for method in ("linear", "full", "lora-qv", "vpt-deep", "kd"):
        assert f"| {method} |" in table
    names = [c["name"] for c in data["claims"]]
    assert "lora-qv beats the linear probe (task-mean accuracy gain)" in names
    assert "full fine-tuning beats the linear probe" in names
    lora = next(c for c in data["claims"] if c["name"].startswith("lora-qv beats"))
    assert lora["kind"] == "paper" and lora["n"] == 3 and lora["ablation"] == ["freeze_new=true"]
    absent = next(c for c in data["claims"] if c["name"].startswith("ssf beats"))  # ssf not in this run
    assert absent["holds"] is False
    backbone = next(c for c in data["claims"] if c["name"].startswith("frozen backbone"))
    assert backbone["holds"]
    formulas = next(c for c in data["claims"] if c["name"].startswith("trainable parameters"))
    assert formulas["holds"]
    assert data["metrics"]["trainable_linear"] == 64 * 5 + 5
    rows = (folder / "metrics.csv").read_text().splitlines()
    # header; per task and method: 2 lr trials (seed 0; a pick on a 2-rate grid is always on an edge, so one
    # more rate outward) + seeds 1, 2
    assert len(rows) == 1 + 2 * 5 * (2 + 1 + 2)


def test_weight_decay_is_searched_jointly_with_the_lr(tiny_foundations, tmp_path, capsys):
    args = ["run", "tuning-minivtab", "--out", str(tmp_path / "runs"), "--set", f"cache_dir={tmp_path / 'cache'}",
            "--set", "methods=[linear,lora-qv]", "--set", "tasks=[digits-5-9]", "--set", "seeds=2",
            "--set", "epochs=1", "--set", "test_size=50", "--set", "lr_factors=[1.0,3.0]",
            "--set", "weight_decays=[0.0,0.5]"]
    assert cli_main(args) == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "tuning-minivtab").iterdir()
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * (2 * 2 + 1 + 1)   # per method: 2 lrs x 2 decays (seed 0), one more lr, seed 1
    data = json.loads((folder / "results.json").read_text())
    table = next(iter(data["tables"].values()))
    assert "wd 0)" in table or "wd 0.5)" in table
    assert "jointly with the weight decay from [0.0, 0.5]" in data["notes"]


def test_an_lr_picked_on_an_edge_grows_the_grid_outward(tiny_foundations, tmp_path, capsys):
    import csv

    args = ["run", "tuning-minivtab", "--out", str(tmp_path / "runs"), "--set", f"cache_dir={tmp_path / 'cache'}",
            "--set", "methods=[linear,lora-qv]", "--set", "tasks=[digits-5-9]", "--set", "seeds=2",
            "--set", "epochs=1", "--set", "test_size=50", "--set", "lr_factors=[1.0,3.0]", "--set", "lr_extend=2"]
    assert cli_main(args) == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "tuning-minivtab").iterdir()
    data = json.loads((folder / "results.json").read_text())
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    for method in ("linear", "lora-qv"):
        tried = sorted({float(r["lr"]) for r in rows if r["method"] == method and r["seed"] == "0"})
        base = 2e-2   # the frozen-backbone methods' base lr
        assert 3 <= len(tried) <= 4 and {base, 3 * base} <= set(tried)
        # each growth is one rate outward by the grid's own ratio (3): the rates tried stay one geometric grid
        assert all(abs(b / a - 3) < 1e-9 for a, b in zip(tried, tried[1:]))
        picked = [float(r["lr"]) for r in rows if r["method"] == method and r["seed"] == "1"][0]
        assert picked in tried
    edge = next(c for c in data["claims"] if c["name"].startswith("every method's lr pick"))
    assert edge["kind"] == "check" and data["metrics"]["lr_on_edge"] in (0.0, 1.0, 2.0)


def test_freeze_new_ablation_turns_every_method_into_the_linear_probe(tiny_foundations, tmp_path):
    """The ablation of the paper claims: with the methods' own tensors frozen at their initial values, the
    zero-initialised methods compute exactly what the linear probe does, so their gain over it vanishes."""
    from tenfold.tuning.protocol import StudentShape, tune_on_task
    from tenfold.tuning.tasks import make_task

    base, _ = foundation.foundation_model("digits", tmp_path / "cache")
    task = make_task("digits-5-9", 0, 5)
    task.x_test, task.y_test = task.x_test[:60], task.y_test[:60]
    common = dict(options={}, epochs=1, batch_size=10, lr=1e-2, weight_decay=1e-4, seed=0, student=StudentShape())
    linear = tune_on_task("linear", base, task, **common).accuracy
    for method in ("lora-qv", "adaptformer"):
        frozen = tune_on_task(method, base, task, freeze_new=True, **common)
        assert frozen.accuracy == linear and frozen.backbone_unchanged, method


@pytest.mark.parametrize("override,needle", [
    ("methods=[lora,nope]", "method='nope' is unknown"),
    ("tasks=[cifar]", "tasks"),
    ("seeds=0", "seeds"),
    ("lr=-1", "lr"),
    ("options={lora: {rnak: 2}}", "rnak"),
])
def test_bad_config_is_a_one_line_error_with_exit_code_2(override, needle, tmp_path, capsys):
    code = cli_main(["run", "tuning-minivtab", "--out", str(tmp_path), "--set", override,
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "tasks=[digits-5-9]"
                     if not override.startswith("tasks") else "seeds=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err
    assert not (tmp_path / "cache").exists()  # failed before any pre-training


def test_paper_preset_without_vtab_folder_fails_before_work(tmp_path, capsys):
    code = cli_main(["run", "tuning-minivtab", "--preset", "paper", "--out", str(tmp_path),
                     "--set", f"vtab_root={tmp_path / 'missing'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "vtab_root=" in err and "VTAB-1k" in err


def test_vtab_lists_are_read_and_checked(tmp_path):
    from PIL import Image

    from tenfold.errors import DataError
    from tenfold.tuning.vtab import read_list, vtab_task

    task = tmp_path / "dtd"
    (task / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (10, 12), (40 * i, 0, 0)).save(task / "images" / f"{i}.jpg")
    (task / "train800val200.txt").write_text("images/0.jpg 0\nimages/1.jpg 2\n")
    (task / "test.txt").write_text("images/2.jpg 1\n")
    train, test, classes = vtab_task(tmp_path, "dtd", size=16)
    x, y = train[1]
    assert classes == 3 and len(train) == 2 and len(test) == 1 and x.shape == (3, 16, 16) and y == 2
    (task / "test.txt").write_text("images/2.jpg one\n")
    with pytest.raises(DataError, match=r"test.txt:1: expected '<image path> <integer label>'"):
        read_list(task / "test.txt")


def _tiny_vtab(root, task="dtd", train=10, test=4):
    from PIL import Image

    folder = root / task
    (folder / "images").mkdir(parents=True)
    lines = {"train800val200.txt": [], "test.txt": []}
    for i in range(train + test):
        Image.new("RGB", (20, 20), ((37 * i) % 255, 80 * (i % 2), 30)).save(folder / "images" / f"{i}.jpg")
        lines["train800val200.txt" if i < train else "test.txt"].append(f"images/{i}.jpg {i % 2}")
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_vtab1k_paper_preset_runs_end_to_end_on_a_tiny_folder_with_local_weights(tmp_path, capsys):
    """The paper preset's code path: local weights (safetensors of the timm model), a VTAB-1k-format folder,
    the lr search on a validation part of train800val200, a few steps; a wrong weight file is one line."""
    import timm
    from safetensors.torch import save_file

    _tiny_vtab(tmp_path / "vtab")
    name = "vit_tiny_patch16_224"  # the preset's ViT-B/16 path, at a size a test can afford
    model = timm.create_model(name, pretrained=False, img_size=32)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    common = ["run", "tuning-minivtab", "--preset", "paper", "--set", f"vtab_root={tmp_path / 'vtab'}",
              "--set", f"backbone={name}", "--set", "image_size=32", "--set", "tasks=[dtd]", "--set", "epochs=1",
              "--set", "batch_size=4", "--set", "methods=[linear,lora-qv]", "--set", "lr_factors=[1.0]"]
    code = cli_main(common + ["--out", str(tmp_path / "runs"), "--set", f"weights={tmp_path / 'w.safetensors'}"])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "runs" / "tuning-minivtab").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert "| lora-qv |" in next(iter(data["tables"].values()))
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    code = cli_main(common + ["--out", str(tmp_path / "bad"), "--set", f"weights={tmp_path / 'bad.safetensors'}"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert code == 2 and len(err) == 1 and "weights=" in err[0] and name in err[0], err


def test_on_foundation_resizes_and_repeats_grey_channels():
    from tenfold.tuning.tasks import make_task, on_foundation

    task = make_task("digits-5-9", seed=0, shots=3)
    moved = on_foundation(task, "fractal", 32, 3)
    assert moved.foundation == "fractal" and moved.x_train.shape[1:] == (3, 32, 32)
    assert torch.equal(moved.y_test, task.y_test) and moved.num_classes == task.num_classes
    assert torch.equal(moved.x_train[:, 0], moved.x_train[:, 2])
    # bilinear resizing keeps a constant image constant and the mean intensity close
    flat = on_foundation(dataclasses.replace(task, x_train=torch.full((2, 1, 8, 8), 0.25)), "fractal", 32, 3)
    assert torch.allclose(flat.x_train, torch.tensor(0.25))
    assert moved.x_test.mean().item() == pytest.approx(task.x_test.mean().item(), abs=0.02)
    with pytest.raises(Exception, match="in_chans"):
        on_foundation(make_task("shapes", seed=0, shots=2), "x", 32, 2)


def test_fractal_foundation_tunes_every_task_on_one_backbone(tmp_path, monkeypatch, capsys):
    """`foundation=fractal`: one backbone (asked once, by that name) for digits and shapes tasks, fed 32 px RGB;
    the parameter-count formulas are checked on it."""
    asked = []

    def fake(kind="digits", cache_dir=None, progress=None, shipped=True):
        asked.append(kind)
        model = foundation.build_vit(img_size=32, patch_size=8, in_chans=3, num_classes=5, embed_dim=16, depth=1,
                                     num_heads=2, mlp_ratio=4.0)
        return model.eval(), {"held_out_acc": 0.5, "cached": True, "path": "", "shipped": False}

    import tenfold.tuning

    monkeypatch.setattr(tenfold.tuning, "foundation_model", fake)
    args = ["run", "tuning-minivtab", "--out", str(tmp_path), "--set", "foundation=fractal",
            "--set", "methods=[linear,vpt-deep,lora-qv]", "--set", "tasks=[digits-5-9,shapes]", "--set", "seeds=2",
            "--set", "epochs=1", "--set", "test_size=20", "--set", "lr_factors=[1.0]", "--set", "shots=4",
            "--set", "val_shots=1"]
    assert cli_main(args) == 0, capsys.readouterr().err
    assert asked == ["fractal"]
    (folder,) = (tmp_path / "tuning-minivtab").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert data["metrics"]["formula_mismatches"] == 0 and "pretrain_acc_fractal" in data["metrics"]
