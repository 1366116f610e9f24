"""Shared test settings and helpers: the tiny distillation settings (once, here) and the benchmark scripts run as
a user runs them, in a child process over the same dreamdd."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dreamdd

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SRC = Path(dreamdd.__file__).resolve().parents[1]

# Tiny settings for fast runs on the built-in digits: a narrow, shallow ConvNet, small batches, few iterations,
# short evaluations. Tests that need other values copy them with tiny_settings(...).
TINY = {"model": {"width": 16, "depth": 2}, "match": {"batch_real": 16}, "select": {"interval": 2},
        "synth": {"factor": 1},
        "distill": {"iterations": 3, "inner_loop": 2, "n_data": 32, "eval_every": 0, "checkpoint_every": 1},
        "eval": {"epochs": 2, "repeats": 1, "val_every": 1},
        "dc": {"outer_loop": 2, "inner_loop": 1},
        "mtt": {"syn_steps": 4, "expert_epochs": 1, "max_start_epoch": 2},
        "dreamplus": {"warmup_images": 64}}
# The same as command-line options of the benchmark scripts (--set key=value), narrower still.
TINY_SET = ["--set", "model.width=8", "--set", "model.depth=2", "--set", "match.batch_real=8",
            "--set", "distill.inner_loop=2", "--set", "distill.n_data=32", "--set", "eval.val_every=1"]


def tiny_settings(**sections) -> dict:
    """A deep copy of TINY with `sections` ({"distill": {"iterations": 1}, ...}) merged in."""
    settings = copy.deepcopy(TINY)
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return settings


def run_benchmark(script: str, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """benchmarks/<script>.py with `args` in a child process (or, with `code`, that Python code run inside
    benchmarks/, where the scripts import as modules), over the dreamdd under test; fails with its output."""
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, str(BENCHMARKS / f"{script}.py"),
                                                                      *args]
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=BENCHMARKS, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="session")
def benchmark():
    """benchmark("iterations", *args) -> the finished child process (stdout, stderr)."""
    return run_benchmark


@pytest.fixture
def tiny():
    """tiny(**sections) -> a fresh copy of the tiny settings with `sections` merged in (see TINY)."""
    return tiny_settings


@pytest.fixture
def tiny_set():
    """The tiny settings as --set options of the benchmark scripts (see TINY_SET)."""
    return list(TINY_SET)
