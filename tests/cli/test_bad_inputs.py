"""Bad inputs, as a new user types them: each is exit 2, exactly one stderr line, no traceback, and no work.

Every case runs in-process through :func:`tenfold.cli.cli_main`; none trains (the errors come before work),
so the whole file stays fast.
"""

import pytest
import torch

from tenfold.cli import cli_main

NO_DATA = "/no/such/data/root"

# (arguments, a piece of the expected message)
BAD = [
    # unknown names
    (["run", "nosuch"], "unknown experiment 'nosuch'"),
    (["run", "digits-mpl"], "did you mean digits-mlp"),
    (["config", "nosuch"], "unknown experiment 'nosuch'"),
    (["bench", "no-such-bench"], "unknown benchmark"),
    (["reproduce", "--quick", "--only", "digits-mlp,nope"], "unknown experiment 'nope'"),
    (["reproduce", "--quick", "--preset", "standard", "--only", "digits-mlp"], "--quick and --preset standard disagree"),
    (["reproduce", "--preset", "smoke", "--only", "digits-mlp"], "preset 'smoke' does not exist"),
    # presets and config files
    (["run", "digits-mlp", "--preset", "huge"], "preset 'huge' does not exist"),
    (["config", "digits-mlp", "--preset", "huge"], "preset 'huge' does not exist"),
    (["run", "digits-mlp", "--config", "/no/such.yaml"], "does not exist"),
    (["run", "digits-mlp", "--config", "{garbage_yaml}"], "garbage.yaml"),
    (["run", "digits-mlp", "--config", "{list_yaml}"], "list.yaml"),
    # --set values
    (["run", "digits-mlp", "--set", "epochs=0"], "epochs"),
    (["run", "digits-mlp", "--set", "epochs=-3"], "epochs"),
    (["run", "digits-mlp", "--set", "epochs=many"], "epochs"),
    (["run", "digits-mlp", "--set", "epochs=1.5"], "epochs"),
    (["run", "digits-mlp", "--set", "lr=abc"], "lr"),
    (["run", "digits-mlp", "--set", "lr=.inf"], "lr"),
    (["run", "digits-mlp", "--set", "lr=nan"], "lr"),
    (["run", "digits-mlp", "--set", "lr=-inf"], "lr"),
    (["run", "digits-mlp", "--set", "nosuchfield=1"], "nosuchfield"),
    (["run", "digits-mlp", "--set", "model.width=32"], "model"),
    (["run", "fscil-shapes", "--set", "base.nosuch=1"], "nosuch"),
    (["run", "fscil-shapes", "--set", "base.lr=fast"], "lr"),
    (["run", "fscil-shapes", "--set", "base.epochs=0"], "epochs"),
    (["run", "sltt-digits", "--set", "T=0"], "T"),
    (["config", "digits-mlp", "--set", "epochs=0"], "epochs"),
    # malformed overrides
    (["run", "digits-mlp", "--set", "epochs"], "epochs"),
    (["run", "digits-mlp", "--set", "=3"], "=3"),
    (["run", "digits-mlp", "--set", "epochs.x=3"], "epochs"),
    (["run", "digits-mlp", "--set", ".epochs=3"], "epochs"),
    # options
    (["run", "digits-mlp", "--device", "tpu"], "device='tpu' is invalid"),
    (["run", "digits-mlp", "--devices", "0"], "devices=0 is invalid"),
    (["run", "digits-mlp", "--devices", "two"], "--devices"),
    (["run", "digits-mlp", "--seed", "-1"], "seed=-1 is invalid"),
    # several processes: refused before any is spawned
    (["run", "papal-game", "--devices", "2"], "it runs in one process"),
    (["run", "spide-digits", "--devices", "2", "--set", "batch_size=33"], "batch_size=33"),
    (["run", "partformer-metrics", "--devices", "2"], "it runs in one process"),
    (["run", "partformer-scenes", "--devices", "2", "--set", "batch_size=3"], "batch_size=3"),
    (["run", "lion", "--devices", "2"], "it runs in one process"),
    (["run", "digits-mlp", "--devices", "3"], "batch_size=64 is invalid with --devices 3"),
    (["run", "sltt-digits", "--devices", "2", "--set", "batch_size=33"], "batch_size=33"),
    (["run", "digits-mlp", "--bogus"], "No such option: --bogus"),
    (["run"], "Missing argument"),
    (["nosuchcommand"], "No such command"),
    # per-method options of tuning-minivtab (untyped dicts: checked against each method's defaults)
    (["run", "tuning-minivtab", "--set", "options.lora.rank=-1"], "options.lora.rank=-1 is invalid"),
    (["run", "tuning-minivtab", "--set", "options.lora-qv.rank=2.5"], "options.lora-qv.rank=2.5 is invalid"),
    (["run", "tuning-minivtab", "--set", "options.houlsby.dropout=1.0"], "dropout probability"),
    (["run", "tuning-minivtab", "--set", "options.kd.temperature=0"], "positive temperature"),
    (["run", "tuning-minivtab", "--set", "options.lora.use_dora=maybe"], "options.lora.use_dora='maybe'"),
    (["run", "tuning-minivtab", "--set", "options.vpt-deep.lenght=4"], "options.vpt-deep.lenght is unknown"),
    # precision
    (["run", "digits-mlp", "--precision", "8"], "precision='8' is invalid"),
    (["run", "papal-game", "--precision", "bf16-mixed"], "does not train through the engine's Fabric"),
    (["run", "digits-mlp", "--precision", "16-mixed", "--device", "cpu"], "needs CUDA"),
    (["run", "sltt-digits", "--precision", "bf16-mixed", "--set", "precision=bf16-mixed"], "use one"),
    # resume
    (["run", "digits-mlp", "--resume"], "--resume: no earlier run of digits-mlp"),
    (["run", "digits-mlp", "--resume-from", "{tmp}/nowhere"], "not a run folder"),
    (["run", "digits-mlp", "--resume-from", "{other_run}"], "not of 'digits-mlp'"),
    # --out naming a file
    (["run", "digits-mlp", "--out", "{a_file}"], "is a file"),
    (["run", "digits-mlp", "--resume", "--out", "{a_file}"], "is a file"),
    (["reproduce", "--quick", "--only", "digits-mlp", "--out", "{a_file}"], "is a file"),
    # missing data roots (paper presets read real files)
    (["run", "nio-cifar", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "sltt-cifar", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "spide-mnist-lenet", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "spide-cifar", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "fscil-cifar100", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "fscil-mini", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "fscil-cub", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "mpcl-cifar", "--set", f"root={NO_DATA}"], NO_DATA),
    (["run", "tuning-minivtab", "--set", "source=vtab1k", "--set", "tasks=[cifar]", "--set", f"vtab_root={NO_DATA}"],
     NO_DATA),
    (["run", "partformer-scenes", "--set", f"data_root={NO_DATA}", "--set", "eval_spec=ppq_cpp_19_23_cvpr21_default"],
     NO_DATA),
    (["run", "partformer-scenes", "--set", f"data_root={NO_DATA}"], "data_root needs eval_spec"),
    # an evidence-tier run with fewer seeds than its claims' intervals need is refused before any work
    (["run", "fscil-shapes", "--preset", "standard", "--set", "seeds=[0,1]"], "need 5 at the standard tier"),
    (["run", "digits-mlp", "--preset", "standard", "--set", "seeds=2"], "--preset quick"),
]


def _fill(args, tmp_path):
    (tmp_path / "garbage.yaml").write_text("epochs: [1, \n  : :\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "a_file").write_text("not a folder")
    other = tmp_path / "runs" / "lion" / "20260101-000000"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("experiment: lion\npreset: quick\nseed: 0\n")
    names = {"tmp": str(tmp_path), "garbage_yaml": str(tmp_path / "garbage.yaml"),
             "list_yaml": str(tmp_path / "list.yaml"), "a_file": str(tmp_path / "a_file"), "other_run": str(other)}
    return [a.format(**names) if "{" in a else a for a in args]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys, monkeypatch):
    args = _fill(args, tmp_path)
    if args[:1] == ["run"] and len(args) > 1 and "--out" not in args and "--bogus" not in args:
        args = args + ["--out", str(tmp_path / "runs")]
    monkeypatch.chdir(tmp_path)
    code = cli_main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


def test_garbage_weight_files_are_one_line_data_errors(tmp_path):
    from tenfold.errors import DataError
    from tenfold.incremental.backbones import resnet18

    garbage = tmp_path / "g.pth"
    garbage.write_bytes(b"not a checkpoint at all\n")
    not_a_state = tmp_path / "t.pth"
    torch.save([1, 2, 3], not_a_state)
    for path in (garbage, not_a_state):
        with pytest.raises(DataError) as info:
            resnet18(str(path))
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_tenfold_error_text_from_a_worker_is_rebuilt():
    from tenfold.errors import DataError
    from tenfold.experiments.runner import _worker_error

    text = ("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in f\n    raise DataError(...)\n'
            "tenfold.errors.DataError: root='/no' is not a folder\n")
    rebuilt = _worker_error(RuntimeError(text))
    assert isinstance(rebuilt, DataError) and str(rebuilt) == "root='/no' is not a folder"
    assert _worker_error(RuntimeError("Traceback...\nZeroDivisionError: division by zero")) is None


@pytest.mark.slow
def test_a_tenfold_error_in_a_worker_process_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TENFOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tenfold.cli", "run", "mpcl-cifar", "--devices", "2", "--device",
                           "cpu", "--out", str(tmp_path), "--set", f"root={NO_DATA}"],
                          capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and NO_DATA in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_git_state_of_a_checkout_and_of_a_plain_folder(tmp_path):
    import subprocess

    from tenfold.experiments.runner import git_state

    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("1")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (repo / "f.txt").write_text("2")
    assert git_state(repo) == {"commit": clean["commit"], "dirty": True}
