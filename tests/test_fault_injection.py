"""Fault injection: kill the process (SIGKILL, no cleanup) at every named write point of distill, select and
experts, then resume (or, killed before config.yaml existed, run the same command again) and compare the result
with an uninterrupted run, byte for byte (wall times aside). A fast subset runs by default; all under -m slow."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dreamdd import faults
from dreamdd.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = ["--set", "model.width=16", "--set", "model.depth=2"]
EVAL = ["--set", "eval.epochs=2", "--set", "eval.repeats=1", "--set", "eval.val_every=1"]
COMMANDS = {
    "distill": ["distill", "--dataset", "digits", "--ipc", "1", "--quiet", *MODEL, *EVAL,
                "--set", "match.batch_real=16", "--set", "distill.iterations=2", "--set", "distill.inner_loop=2",
                "--set", "distill.n_data=32", "--set", "distill.eval_every=0", "--set", "distill.checkpoint_every=1"],
    "select": ["select", "--dataset", "digits", "--per-class", "2", "--method", "herding", "--feature-epochs", "1",
               "--quiet", *MODEL, *EVAL],
    "experts": ["experts", "--dataset", "digits", "--experts", "2", "--epochs", "1", "--quiet", *MODEL],
}
FAST = [("distill", "metadata.json:written#1"), ("distill", "checkpoint.pt:written#2"),
        ("distill", "metrics.jsonl:torn#2"), ("select", "distilled.safetensors:replaced#1"),
        ("experts", "experts.json:replaced#1")]


def without_seconds(value):
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k not in ("seconds", "wall_seconds", "started",
                                                                             "timings", "run", "artifact")}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def result(command: str, folder: Path) -> dict:
    """What must not depend on where a run was killed: its artifact (or experts), its metrics, its status."""
    files = {"distill": ["distilled.safetensors", "grid.png"], "select": ["distilled.safetensors", "grid.png"],
             "experts": ["expert_000.safetensors", "expert_001.safetensors"]}[command]
    out = {name: (folder / name).read_bytes() for name in files}
    for name in ("metadata.json", "experts.json", "summary.json"):
        if (folder / name).exists():
            out[name] = without_seconds(json.loads((folder / name).read_text()))
    if (folder / "metrics.jsonl").exists():
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        out["metrics"] = [without_seconds(json.loads(line)) for line in lines]
    out["leftovers"] = sorted(p.name for p in folder.glob(".*.tmp"))
    return out


def run_argv(command: str, folder: Path) -> list[str]:
    return COMMANDS[command] + ["--out", str(folder)]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each command uninterrupted, with the write points it passes through, in order."""
    base = tmp_path_factory.mktemp("uninterrupted")
    refs = {}
    for command in COMMANDS:
        log = base / f"{command}.points"
        os.environ["DREAMDD_WRITE_POINTS"] = str(log)
        faults.reset()
        try:
            assert main(run_argv(command, base / command)) == 0
        finally:
            del os.environ["DREAMDD_WRITE_POINTS"]
        points = log.read_text().split()
        refs[command] = (result(command, base / command), points)
    return refs



def kill_and_resume(command: str, point: str, folder: Path) -> None:
    # the killed process computes with as many threads as this one, which runs the reference and the resume:
    # float reductions, and so the bytes, depend on the thread count
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS=str(torch.get_num_threads()),
               DREAMDD_KILL_AT=point)
    killed = subprocess.run([sys.executable, "-m", "dreamdd", *run_argv(command, folder)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, f"{point} was not reached: {killed.stderr[-2000:]}"
    summary = folder / "summary.json"
    if summary.exists() and json.loads(summary.read_text())["status"] == "finished":
        return      # killed after its last write: finished (a resume says so and changes nothing)
    if (folder / "config.yaml").exists():
        code = main([command, "--resume", str(folder), "--quiet"])
    else:   # killed before the run was recorded: the same command again
        code = main(run_argv(command, folder))
    assert code == 0, f"resuming after a kill at {point} failed"


@pytest.mark.parametrize("command, point", FAST)
def test_killed_at_a_write_point_then_resumed_equals_uninterrupted(tmp_path, references, command, point):
    assert point in references[command][1]
    kill_and_resume(command, point, tmp_path / "run")
    assert result(command, tmp_path / "run") == references[command][0]


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_killed_at_every_write_point_then_resumed_equals_uninterrupted(tmp_path, references, command):
    reference, points = references[command]
    failures = []
    for i, point in enumerate(points):
        folder = tmp_path / f"run{i}"
        try:
            kill_and_resume(command, point, folder)
            if result(command, folder) != reference:
                failures.append(f"{point}: the result differs")
        except AssertionError as error:
            failures.append(f"{point}: {error}")
    print(f"{command}: {len(points)} write points, {len(points) - len(failures)} held")
    assert not failures, "\n".join(failures)
