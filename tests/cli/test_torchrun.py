"""The torchrun route: `torchrun --nproc-per-node 2 -m tenfold run ...` joins the launcher's processes
instead of spawning, and gives the results of the spawn route (`--devices 2`) on the same seed and config."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tenfold.cli import cli_main

TENFOLD = [sys.executable, "-m", "tenfold"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
SMALL = ["run", "digits-mlp", "--device", "cpu", "--set", "epochs=2", "--set", "lrs=[0.01]"]
ENV = {**os.environ, "TENFOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
LAUNCHER_VARS = ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, nproc=2):
    return subprocess.run(TORCHRUN + ["--nproc-per-node", str(nproc), "--master-port", str(_free_port()), "-m",
                                      "tenfold"] + args, env=ENV, capture_output=True, text=True, timeout=600)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _metrics_rows(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [tuple(row) for row in csv.reader(f)]


@pytest.fixture(scope="module")
def two_routes(tmp_path_factory):
    """The same small digits-mlp run through spawn (`--devices 2`) and through torchrun (2 processes)."""
    root = tmp_path_factory.mktemp("routes")
    spawn = subprocess.run(TENFOLD + SMALL + ["--devices", "2", "--out", str(root / "spawn")], env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert spawn.returncode == 0, spawn.stderr[-3000:]
    torchrun = _torchrun(SMALL + ["--devices", "2", "--out", str(root / "torchrun")])
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    return root, spawn, torchrun


@pytest.fixture
def launcher_env(monkeypatch):
    """This process as rank ``rank`` of a torchrun of ``world`` processes (``per_node`` on each node)."""
    def set_env(world=2, per_node=None, rank=0, local_rank=0):
        for key, value in {"TORCHELASTIC_RUN_ID": "test", "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": per_node or world,
                           "RANK": rank, "LOCAL_RANK": local_rank, "MASTER_PORT": _free_port()}.items():
            monkeypatch.setenv(key, str(value))
    for key in LAUNCHER_VARS:
        monkeypatch.delenv(key, raising=False)
    return set_env


@pytest.mark.slow
def test_torchrun_gives_the_results_of_the_spawn_route_in_one_run_folder(two_routes):
    root, spawn, torchrun = two_routes
    (f_spawn,) = (root / "spawn" / "digits-mlp").iterdir()
    (f_torchrun,) = (root / "torchrun" / "digits-mlp").iterdir()  # one run folder, named by rank 0 alone
    r1, r2 = (json.loads((f / "results.json").read_text()) for f in (f_spawn, f_torchrun))
    assert r2["status"] == "ok" and r2["metrics"].keys() == r1["metrics"].keys()
    m1, m2 = r1["metrics"], r2["metrics"]
    assert m1["test_acc"] == pytest.approx(m2["test_acc"], abs=1 / 359 + 1e-9)
    assert m1["final_loss"] == pytest.approx(m2["final_loss"], rel=1e-4)
    assert m1["linear_test_acc"] == pytest.approx(m2["linear_test_acc"], abs=1 / 359 + 1e-9)
    rows1, rows2 = _metrics_rows(f_spawn), _metrics_rows(f_torchrun)
    assert len(rows2) == len(rows1) and len(set(rows2)) == len(rows2)  # written once, by rank 0
    assert [r[:3] for r in rows2] == [r[:3] for r in rows1]  # the same stages, epochs and steps
    for a, b in zip(rows1[1:], rows2[1:]):
        assert float(a[3]) == pytest.approx(float(b[3]), rel=1e-4)
    assert "devices: 2" in (f_torchrun / "config.yaml").read_text()
    # rank 0 prints the result once; no Lightning banner, no traceback
    assert torchrun.stdout.count("run folder:") == 1 and "Initializing distributed" not in torchrun.stderr
    assert "Traceback" not in torchrun.stderr


@pytest.mark.slow
def test_two_nodes_of_one_process_each_give_the_same_results(two_routes, tmp_path):
    """Two torchrun "nodes" on this machine (static rendezvous, --node-rank 0 and 1): the num_nodes path."""
    root, _, _ = two_routes
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen(TORCHRUN + ["--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                                          "--rdzv-endpoint", endpoint, "-m", "tenfold"] + SMALL
                              + ["--devices", "2", "--out", str(tmp_path)], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    (out0, err0), (out1, err1) = (node.communicate(timeout=600) for node in nodes)
    assert [node.returncode for node in nodes] == [0, 0], err0[-2000:] + err1[-2000:]
    assert "run folder:" in out0 and out1 == ""  # the second node's process is rank 1: quiet
    (folder,) = (tmp_path / "digits-mlp").iterdir()
    (reference,) = (root / "spawn" / "digits-mlp").iterdir()
    got, want = (json.loads((f / "results.json").read_text())["metrics"] for f in (folder, reference))
    assert got["test_acc"] == pytest.approx(want["test_acc"], abs=1 / 359 + 1e-9)
    assert got["final_loss"] == pytest.approx(want["final_loss"], rel=1e-4)


@pytest.mark.slow
def test_resume_under_torchrun_continues_the_same_run_folder(two_routes, tmp_path):
    root, _, _ = two_routes
    out = tmp_path / "runs"
    shutil.copytree(root / "torchrun", out)
    (folder,) = (out / "digits-mlp").iterdir()
    before = json.loads((folder / "results.json").read_text())
    rows = _metrics_rows(folder)
    (folder / "results.json").unlink()  # an unfinished run: its stages are checkpointed, the results not written
    # --devices left out: torchrun's world size
    proc = _torchrun(SMALL + ["--out", str(out), "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (out / "digits-mlp").iterdir()] == [folder.name]
    after = json.loads((folder / "results.json").read_text())
    assert after["metrics"] == before["metrics"]
    assert _metrics_rows(folder) == rows  # no repeated rows


@pytest.mark.slow
def test_devices_other_than_torchruns_world_size_is_one_line_before_work(tmp_path):
    proc = _torchrun(SMALL + ["--devices", "3", "--out", str(tmp_path)])
    # each tenfold process exits 2; rank 0 alone prints the line; torchrun then reports the failed child itself
    assert proc.returncode != 0
    (line,) = _error_lines(proc.stderr)
    assert "--devices 3" in line and "world size 2" in line
    assert "exitcode  : 2" in proc.stderr  # torchrun's own report (and its exit code 1) follow
    assert not [line for line in proc.stderr.splitlines() if line.strip().startswith("File") and "tenfold" in line]
    assert not (tmp_path / "digits-mlp").exists()


def test_python_dash_m_tenfold_is_the_cli():
    proc = subprocess.run(TENFOLD + ["run", "nosuch"], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown experiment" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_launchers_world_size_other_than_devices_is_one_line_on_the_first_process(launcher_env, tmp_path,
                                                                                     capsys):
    launcher_env(world=2)
    code = cli_main(SMALL + ["--devices", "3", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--devices 3 does not match the launcher's world size 2 (2 per node x 1 node(s))" in err
    launcher_env(world=2, rank=1, local_rank=1)  # the other process: silently, exit 0 (the first one exits 2;
    # a non-zero exit here first could make torchrun stop the first process before it prints the line)
    assert cli_main(SMALL + ["--devices", "3", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    # the checks before spawning still run first under a launcher
    launcher_env(world=3)
    assert cli_main(SMALL + ["--devices", "3", "--out", str(tmp_path)]) == 2
    assert "batch_size=64 is invalid with --devices 3" in capsys.readouterr().err
    launcher_env(world=2)
    assert cli_main(["run", "papal-game", "--out", str(tmp_path)]) == 2  # --devices taken from the launcher: 2
    assert "it runs in one process" in capsys.readouterr().err
    assert not (tmp_path / "digits-mlp").exists() and not (tmp_path / "papal-game").exists()


def test_devices_default_to_the_launchers_world_size_and_fabric_does_not_spawn(launcher_env):
    from lightning.fabric.plugins.environments import TorchElasticEnvironment
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    from tenfold.engine.fabric import check_launcher, launcher_world, make_fabric
    from tenfold.errors import ConfigError

    assert launcher_world() is None and check_launcher(None) == 1 and check_launcher(3) == 3
    launcher_env(world=4, per_node=2, rank=2, local_rank=0)
    assert launcher_world() == (4, 2) and check_launcher(None) == 4 and check_launcher(4) == 4
    with pytest.raises(ConfigError, match="--devices 2 does not match .* world size 4 \\(2 per node x 2 node"):
        check_launcher(2)
    fabric = make_fabric("cpu", 4)
    assert isinstance(fabric.strategy.cluster_environment, TorchElasticEnvironment)
    assert isinstance(fabric.strategy.launcher, _SubprocessScriptLauncher)  # it sees the processes exist: no spawn
    assert fabric.strategy.cluster_environment.creates_processes_externally
    assert fabric.strategy.num_nodes == 2 and fabric.strategy.num_processes == 2 and fabric.world_size == 4
    assert fabric.global_rank == 2
