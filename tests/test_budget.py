"""The time-budget benchmark: which snapshots it evaluates (dreamdd.experiments), and a tiny digits run of
benchmarks/budget.py that writes its curve, final result and plot."""
import json

from dreamdd import experiments as bench


def test_snapshots_are_the_first_the_last_and_one_per_interval():
    elapsed = {0: 0.0, 1: 50.0, 2: 100.0, 3: 130.0, 4: 260.0, 5: 270.0}
    assert bench.pick_snapshots(elapsed, 100.0) == [0, 2, 4, 5]   # 260 s passes the 200 mark; 300 is never reached
    assert bench.pick_snapshots(elapsed, 120.0) == [0, 3, 4, 5]
    assert bench.pick_snapshots({0: 0.0}, 100.0) == [0]
    assert bench.pick_snapshots(elapsed, 1e-9) == [0, 1, 2, 3, 4, 5]


def test_tiny_digits_budget_run_writes_curve_final_and_plot(benchmark, tiny_set, tmp_path):
    tiny = [*tiny_set, "--set", "eval.epochs=2", "--set", "distill.iterations=2", "--set", "distill.snapshot_every=1",
            "--set", "distill.eval_every=0", "--set", "distill.max_minutes=60"]
    out = tmp_path / "budget.json"
    args = ["--dataset", "digits", "--ipc", "1", "--preset", "digits", "--run", str(tmp_path / "run"),
            "--every-minutes", "1e-6", "--curve-epochs", "1", "--final-repeats", "2", "--jobs", "1",
            "--precision", "bf16", "--eval-precision", "bf16", "--out", str(out), *tiny]
    done = benchmark("budget", *args)
    data = json.loads(out.read_text())
    assert [r["iteration"] for r in data["curve"]] == [0, 1, 2]
    assert all(r["epochs"] == 1 and r["repeats"] == 1 and r["precision"] == "bf16" for r in data["curve"])
    assert data["precision"] == data["final"]["precision"] == "bf16"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["precision"] == "bf16"
    assert data["final"]["iteration"] == 2 and data["final"]["repeats"] == 2 and data["final"]["epochs"] == 2
    assert out.with_suffix(".png").stat().st_size > 0
    assert "final set: test" in done.stdout
    benchmark("budget", *args)              # a finished run and its cached evaluations are reused
    assert json.loads(out.read_text())["final"] == data["final"]
