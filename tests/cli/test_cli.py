"""The user path: the CLI in a temporary folder, files written, one-line errors with exit code 2."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tenfold.cli import cli_main
from tenfold.engine.checkpoint import load_state, load_weights

TENFOLD = [sys.executable, "-m", "tenfold.cli"]


def _run(args, capsys):
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_digits_mlp(capsys):
    code, out, _ = _run(["list"], capsys)
    assert code == 0 and "digits-mlp" in out


def test_run_writes_a_complete_run_folder(tmp_path, capsys):
    code, out, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--set", "epochs=20", "--seed", "3"], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "digits-mlp").iterdir()
    names = {p.name for p in folder.iterdir()}
    assert {"config.yaml", "metrics.csv", "results.json", "training.png", "model.safetensors", "checkpoints"} <= names
    data = json.loads((folder / "results.json").read_text())
    assert data["experiment"] == "digits-mlp" and data["seed"] == 3 and data["status"] == "ok"
    assert set(data) >= {"metrics", "claims", "figures", "wall_s", "versions", "preset"}
    assert set(data["git"]) == {"commit", "dirty"}  # None outside a git checkout
    paper_claim, check = data["claims"]
    assert paper_claim["kind"] == "paper" and paper_claim["n"] == 3 and paper_claim["ablation"] == ["activation=identity"]
    assert paper_claim["holds"] == (paper_claim["value"] <= 0.9)
    assert check["kind"] == "check" and check["holds"] == (check["value"] >= 0.95)
    assert "check: MLP test accuracy" in out and "paper: a hidden nonlinearity" in out


BAD_CLI = [
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["run", "digits-mlpp"], "did you mean digits-mlp"),
    (["run", "digits-mlp", "--set", "epochs=0"], "field 'epochs'=0"),
    (["run", "digits-mlp", "--set", "weight_decay=fast"], "field 'weight_decay'='fast'"),
    (["run", "digits-mlp", "--set", "widht=3"], "unknown field 'widht'"),
    (["run", "digits-mlp", "--set", "epochs"], "override 'epochs' is malformed"),
    (["run", "digits-mlp", "--preset", "huge"], "preset 'huge' does not exist"),
    (["run", "digits-mlp", "--device", "tpu"], "device='tpu' is invalid"),
    (["run", "digits-mlp", "--devices", "0"], "devices=0 is invalid"),
    (["run", "digits-mlp", "--seed", "-1"], "seed=-1 is invalid"),
    (["run", "digits-mlp", "--config", "/no/such.yaml"], "config file /no/such.yaml does not exist"),
    (["bench", "no-such-bench"], "unknown benchmark 'no-such-bench'"),
    (["reproduce", "--quick", "--only", "digits-mlp,nope"], "unknown experiment 'nope'"),
    (["run", "digits-mlp", "--bogus"], "No such option: --bogus"),
]


@pytest.mark.parametrize("args,message", BAD_CLI)
def test_bad_input_gives_one_line_and_exit_2(args, message, tmp_path, capsys):
    code, out, err = _run(args + (["--out", str(tmp_path)] if args[0] == "run" and "--bogus" not in args else []),
                          capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert message in lines[0]
    assert not (tmp_path / "digits-mlp").exists() or not any((tmp_path / "digits-mlp").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    code, _, err = _run(["run", "digits-mlp", "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in err


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    first = ["run", "digits-mlp", "--out", str(tmp_path), "--set", "epochs=1", "--set", "thresholds.min_test_acc=0"]
    assert _run(first, capsys)[0] == 0
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--set", "epochs=2", "--resume"], capsys)
    assert code == 2 and "--set changes epochs (the run has epochs=1)" in err


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    args = ["run", "digits-mlp", "--set", "epochs=6"]
    assert _run(args + ["--out", str(tmp_path / "a")], capsys)[0] == 0
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "3")
    assert _run(args + ["--out", str(tmp_path / "b")], capsys)[0] == 130
    (folder,) = (tmp_path / "b" / "digits-mlp").iterdir()
    assert json.loads((folder / "results.json").read_text())["status"] == "interrupted"
    assert load_state(folder / "checkpoints" / "seed0-mlp-lr0.003.pt")["epoch"] == 3
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    assert _run(args + ["--out", str(tmp_path / "b"), "--resume"], capsys)[0] == 0
    (full,) = (tmp_path / "a" / "digits-mlp").iterdir()
    a, b = load_weights(full / "model.safetensors"), load_weights(folder / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((f / "results.json").read_text()) for f in (full, folder))
    assert ra["metrics"] == rb["metrics"]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(tmp_path):
    """A real SIGKILL while training: every file left is complete, and --resume finishes the run
    with weights bit-identical to an uninterrupted one."""
    env = {**os.environ, "TENFOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    epochs = 40  # the kill lands 0.2 s after the first checkpoint; 10 epochs all fitted in that on a fast machine
    args = ["run", "digits-mlp", "--set", f"epochs={epochs}"]
    proc = subprocess.Popen(TENFOLD + args + ["--out", str(tmp_path / "k")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "k").glob("digits-mlp/*/checkpoints/seed0-mlp-lr0.003.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt is not None, "the run never wrote a checkpoint"
    folder = ckpt.parent.parent
    if (folder / "results.json").exists():
        pytest.skip("the run finished before the kill landed")
    epoch = load_state(ckpt)["epoch"]  # complete and loadable
    if epoch == epochs:
        pytest.skip("the training finished before the kill landed")
    assert 1 <= epoch < epochs
    assert all(not p.name.endswith(".tmp") for p in folder.rglob("*") if not p.name.startswith("."))
    done = subprocess.run(TENFOLD + args + ["--out", str(tmp_path / "k"), "--resume"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    ref = subprocess.run(TENFOLD + args + ["--out", str(tmp_path / "ref")], env=env, capture_output=True)
    assert ref.returncode == 0
    (ref_folder,) = (tmp_path / "ref" / "digits-mlp").iterdir()
    a, b = load_weights(ref_folder / "model.safetensors"), load_weights(folder / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    env = {**os.environ, "TENFOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    args = ["run", "digits-mlp", "--set", "epochs=3", "--device", "cpu"]
    one = subprocess.run(TENFOLD + args + ["--out", str(tmp_path / "one")], env=env, capture_output=True)
    two = subprocess.run(TENFOLD + args + ["--out", str(tmp_path / "two"), "--devices", "2"], env=env,
                         capture_output=True)
    assert one.returncode == 0 and two.returncode == 0, two.stderr.decode()[-2000:]
    (f1,) = (tmp_path / "one" / "digits-mlp").iterdir()
    (f2,) = (tmp_path / "two" / "digits-mlp").iterdir()
    w1, w2 = load_weights(f1 / "model.safetensors"), load_weights(f2 / "model.safetensors")
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-5), k
    r1, r2 = (json.loads((f / "results.json").read_text())["metrics"] for f in (f1, f2))
    assert r1["test_acc"] == pytest.approx(r2["test_acc"], abs=1 / 359 + 1e-9)
    assert r1["final_loss"] == pytest.approx(r2["final_loss"], rel=1e-4)


def test_info(capsys):
    code, out, _ = _run(["info"], capsys)
    assert code == 0 and "torch: 2.14.1" in out


@pytest.mark.skipif(shutil.which("tenfold") is None and not Path(sys.executable).with_name("tenfold").exists(),
                    reason="console script not installed")
def test_console_script_exit_code():
    exe = shutil.which("tenfold") or str(Path(sys.executable).with_name("tenfold"))
    proc = subprocess.run([exe, "run", "nope"], capture_output=True, text=True, env={**os.environ, "TENFOLD_PROGRESS": "0"})
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "unknown experiment" in proc.stderr
