"""Many processes: `torchrun -m dreamdd` with the gloo backend on this CPU, against one process.

A 2-process run learns each class on one rank; its artifact equals the 1-process one up to float rounding
(TOLERANCE: the data-parallel network update sums gradient shares; and a process that computes fewer classes gets
some last bits differently even without any collective: one process running DM on classes 1, 3, 5, 7, 9 only
differs from the all-class run by one ulp in two of them), whatever the number of processes that resume it. Evaluation networks are keyed by their
index, so a 2-process evaluation equals the 1-process one exactly."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import dreamdd
from dreamdd.cli import main
from dreamdd.distributed import World
from dreamdd.errors import DreamddError

from conftest import SRC, tiny_settings

TOLERANCE = 1e-3     # max pixel difference (pixels in [0, 1]); measured about 1e-7 after 2-3 tiny iterations
SETTINGS = tiny_settings(synth={"ipc": 1}, distill={"iterations": 2, "snapshot_every": 1, "eval_every": 1,
                                                    "eval_repeats": 2}, eval={"repeats": 2})
RUN = dict(ipc=1, method="idc", selector="dream", init="representative")


def as_set_options(settings: dict) -> list[str]:
    return [f"--set={section}.{key}={value}" for section, values in settings.items() for key, value in values.items()]


def torchrun(*args: object, processes: int = 2, **env_vars: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node N -m dreamdd ARGS` over the dreamdd under
    test, one thread per process, with `env_vars` set."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT")}
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1", DREAMDD_COLLECTIVE_TIMEOUT_MINUTES="2",
               **env_vars)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "dreamdd", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def failure(done: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: a child's own fatal error (its Python stack, from PYTHONFAULTHANDLER) first,
    which torchrun's long report that follows would push out of a plain tail."""
    lines = done.stderr.splitlines()
    fatal = [i for i, line in enumerate(lines) if "Fatal Python error" in line or "terminate called" in line]
    own = "\n".join(lines[max(fatal[0] - 2, 0):fatal[0] + 40]) if fatal else ""
    return f"{own}\n...\n{done.stderr[-2000:]}"


def one_process(out, iterations: int = 2, resume=None):
    if resume is not None:
        return dreamdd.distill(resume=resume, iterations=iterations)
    return dreamdd.distill("digits", **RUN, out=out, overrides=SETTINGS, iterations=iterations)


def images(run) -> torch.Tensor:
    return dreamdd.load_distilled(run).images


def assert_close(a, b) -> None:
    difference = (images(a) - images(b)).abs().max().item()
    assert difference <= TOLERANCE, f"{a} and {b} differ by {difference}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process to 2 iterations, and the same run in 2 processes (each with its final evaluation, 2 networks);
    the 1-process run continued to 3."""
    root = tmp_path_factory.mktemp("dist")
    one_process(root / "one")
    done = torchrun("distill", "--dataset", "digits", "--ipc", 1, "--method", "idc", "--selector", "dream",
                    "--init", "representative", *as_set_options(SETTINGS), "--quiet",
                    "--out", root / "two", DREAMDD_WRITE_POINTS=str(root / "write-points.log"))
    assert done.returncode == 0, failure(done)
    shutil.copytree(root / "one", root / "three")
    one_process(None, 3, resume=root / "three")
    return root, done


def test_every_rank_leaves_the_process_group_after_rank_0_has_written_everything(runs):
    root, _ = runs
    points = (root / "write-points.log").read_text().split()
    left = [i for i, point in enumerate(points) if point.startswith("process-group:left@")]
    assert sorted(points[i].split("#")[0] for i in left) == ["process-group:left@rank0", "process-group:left@rank1"]
    assert min(left) > max(i for i, point in enumerate(points) if not point.startswith("process-group:left@"))


def test_two_processes_equal_one_and_rank_0_alone_writes(runs):
    root, done = runs
    assert_close(root / "one", root / "two")
    assert done.stdout.count("results:") == 1 and done.stdout.count("test accuracy") == 1    # rank 0 alone speaks
    summary = json.loads((root / "two" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 2 and summary["processes"] == 2
    log = (root / "two" / "log.txt").read_text()
    assert "torchrun: 2 processes" in log and log.count("distilling digits") == 1
    assert "classes by rank: 0: 0 2 4 6 8; 1: 1 3 5 7 9" in log            # each rank learned its own classes
    assert sorted(p.name for p in (root / "two").iterdir()) == sorted(p.name for p in (root / "one").iterdir())


def test_periodic_evaluation_and_snapshots_run_under_torchrun(runs):
    root, _ = runs
    for snapshot in ("iter-000000", "iter-000001", "iter-000002"):
        assert_close(root / "one" / "snapshots" / snapshot, root / "two" / "snapshots" / snapshot)
    events = [json.loads(line) for line in (root / "two" / "metrics.jsonl").read_text().splitlines()]
    periodic = [e for e in events if e["event"] == "eval" and not e.get("final")]
    assert [e["iteration"] for e in periodic] == [0, 1, 2] and all(e["repeats"] == 2 for e in periodic)
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1, 2]


def test_dsa_in_two_processes_equals_one(tmp_path):
    """DSA trains its network on the whole synthetic set (gathered) and sums its loss over the rank's classes."""
    settings = tiny_settings(synth={"ipc": 1}, distill={"iterations": 1})
    dreamdd.distill("digits", ipc=1, method="dsa", out=tmp_path / "one", overrides=settings, evaluate=False)
    done = torchrun("distill", "--dataset", "digits", "--ipc", 1, "--method", "dsa", *as_set_options(settings),
                    "--no-eval", "--quiet", "--out", tmp_path / "two")
    assert done.returncode == 0, failure(done)
    assert_close(tmp_path / "one", tmp_path / "two")


def test_a_two_process_run_resumes_in_one_process(runs):
    root, _ = runs
    shutil.copytree(root / "two", root / "two-then-one")
    one_process(None, 3, resume=root / "two-then-one")
    assert_close(root / "three", root / "two-then-one")


def test_a_one_process_run_resumes_in_two_with_the_final_evaluation_spread(runs):
    root, _ = runs
    shutil.copytree(root / "one", root / "one-then-two")
    done = torchrun("distill", "--resume", root / "one-then-two", "--iterations", 3, "--quiet")
    assert done.returncode == 0, failure(done)
    assert_close(root / "three", root / "one-then-two")
    evaluation = dreamdd.load_distilled(root / "one-then-two").metadata["evaluation"]
    assert [(r["run"], r["rank"]) for r in evaluation["runs"]] == [(0, 0), (1, 1)]


def test_a_two_process_evaluation_equals_one(runs):
    root, _ = runs
    done = torchrun("evaluate", root / "one", "--repeats", 3, "--epochs", 2, "--json", "--quiet")
    assert done.returncode == 0, failure(done)
    spread = json.loads(done.stdout)                          # printed once, by rank 0
    assert [r["rank"] for r in spread["runs"]] == [0, 1, 0]
    alone = dreamdd.evaluate(root / "one", repeats=3, epochs=2)
    keys = ("run", "val_acc", "test_acc", "test_acc_last", "epoch")
    assert [{k: r[k] for k in keys} for r in spread["runs"]] == [{k: r[k] for k in keys} for r in alone["runs"]]
    assert spread["test_mean"] == alone["test_mean"]


def test_a_rank_that_dies_stops_the_run_and_its_last_checkpoint_resumes(runs):
    root, _ = runs
    done = torchrun("distill", "--dataset", "digits", "--ipc", 1, "--method", "idc", "--selector", "dream",
                    "--init", "representative", *as_set_options(SETTINGS), "--set=distill.eval_every=0",
                    "--set=distill.snapshot_every=0", "--iterations", 3, "--no-eval", "--quiet",
                    "--out", root / "killed", DREAMDD_KILL_AT="outer-iteration@rank1#2")   # images as "three"
    assert done.returncode != 0
    summary = json.loads((root / "killed" / "summary.json").read_text())
    assert summary["status"] in ("failed", "interrupted") and "--resume" in summary["resume_with"]
    assert "dreamdd: " in done.stderr and "--resume" in done.stderr.split("torch.distributed.elastic")[0]
    assert "another process of this torchrun stopped" in done.stderr or "terminated" in done.stderr
    one_process(None, 3, resume=root / "killed")                   # from the checkpoint after iteration 1
    assert_close(root / "three", root / "killed")


def test_a_user_error_under_torchrun_is_said_once(tmp_path):
    done = torchrun("distill", "--dataset", "no-such-set", "--ipc", 1, "--quiet", "--out", tmp_path / "r")
    assert done.returncode != 0 and done.stderr.count("dreamdd: error") == 1, done.stderr[-2000:]
    assert "unknown dataset 'no-such-set'" in done.stderr


def test_commands_that_do_not_share_work_refuse_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["presets"]) == 2
    assert "dreamdd presets runs in one process" in capsys.readouterr().err


def test_more_processes_than_classes_is_one_clear_error():
    with pytest.raises(DreamddError, match="11 processes but only 10 classes.*--nproc_per_node 10"):
        World(rank=3, size=11).owned(10)
    assert World(rank=1, size=3).owned(10) == [1, 4, 7]


def test_shares_of_a_batch_cover_it_once_in_order():
    for n in (0, 1, 5, 64):
        shares = [World(rank, 3).share(n) for rank in range(3)]
        assert [i for s in shares for i in range(n)[s]] == list(range(n))


def test_one_process_collectives_change_nothing():
    world, x = World(), torch.arange(6.0).view(3, 2)
    assert torch.equal(world.assemble_rows(x, 1), x) and world.gather("a") == ["a"] and world.broadcast(5) == 5
    assert world.weighted_mean(2.5, 4) == 2.5 and world.decide(True)


def test_a_bf16_run_in_two_processes_equals_one_in_bf16(tmp_path):
    settings = tiny_settings(synth={"ipc": 1}, distill={"iterations": 1})
    dreamdd.distill("digits", **RUN, out=tmp_path / "one", overrides=settings, precision="bf16", evaluate=False)
    done = torchrun("distill", "--dataset", "digits", "--ipc", 1, "--method", "idc", "--selector", "dream",
                    "--init", "representative", *as_set_options(settings), "--precision", "bf16", "--no-eval",
                    "--quiet", "--out", tmp_path / "two")
    assert done.returncode == 0, failure(done)
    assert dreamdd.load_distilled(tmp_path / "two").metadata["precision"] == "bf16"
    assert_close(tmp_path / "one", tmp_path / "two")
