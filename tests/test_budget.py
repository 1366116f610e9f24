"""The time-budget benchmark (benchmarks/budget.py): which snapshots it evaluates, and a tiny digits run that
writes its curve, final result and plot."""
import json

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("budget")


def test_snapshots_are_the_first_the_last_and_one_per_interval(bench):
    elapsed = {0: 0.0, 1: 50.0, 2: 100.0, 3: 130.0, 4: 260.0, 5: 270.0}
    assert bench.pick_snapshots(elapsed, 100.0) == [0, 2, 4, 5]   # 260 s passes the 200 mark; 300 is never reached
    assert bench.pick_snapshots(elapsed, 120.0) == [0, 3, 4, 5]
    assert bench.pick_snapshots({0: 0.0}, 100.0) == [0]
    assert bench.pick_snapshots(elapsed, 1e-9) == [0, 1, 2, 3, 4, 5]


def test_tiny_digits_budget_run_writes_curve_final_and_plot(bench, tmp_path, capsys):
    tiny = ["--set", "model.width=8", "--set", "model.depth=2", "--set", "match.batch_real=8",
            "--set", "distill.inner_loop=2", "--set", "distill.n_data=32", "--set", "eval.val_every=1",
            "--set", "eval.epochs=2", "--set", "distill.iterations=2", "--set", "distill.snapshot_every=1",
            "--set", "distill.eval_every=0", "--set", "distill.max_minutes=60"]
    out = tmp_path / "budget.json"
    args = ["--dataset", "digits", "--ipc", "1", "--preset", "digits", "--run", str(tmp_path / "run"),
            "--every-minutes", "1e-6", "--curve-epochs", "1", "--final-repeats", "2", "--jobs", "1",
            "--out", str(out), *tiny]
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    assert [r["iteration"] for r in data["curve"]] == [0, 1, 2]
    assert all(r["epochs"] == 1 and r["repeats"] == 1 for r in data["curve"])
    assert data["final"]["iteration"] == 2 and data["final"]["repeats"] == 2 and data["final"]["epochs"] == 2
    assert out.with_suffix(".png").stat().st_size > 0
    assert "final set: test" in capsys.readouterr().out
    assert bench.main(args) == 0              # a finished run and its cached evaluations are reused
    assert json.loads(out.read_text())["final"] == data["final"]
