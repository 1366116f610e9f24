"""The iteration-efficiency benchmark: curve arithmetic (dreamdd.experiments), and a tiny digits run of
benchmarks/iterations.py that writes its JSON and plot."""
import json

from dreamdd import experiments as bench


def test_smoothing_averages_neighbours_and_truncates_at_the_ends():
    assert bench.smoothed([0, 3, 6, 9], 3) == [1.5, 3, 6, 7.5]
    assert bench.smoothed([1, 5, 2], 1) == [1, 5, 2]


def _records(accs, seconds_per_it=10):
    return [{"iteration": i * 5, "test_mean": a, "elapsed_seconds": i * 5 * seconds_per_it}
            for i, a in enumerate(accs)]


def test_targets_ratios_and_time_come_from_the_smoothed_curves():
    random = bench.arm_curve([_records([10, 20, 30, 40, 40]), _records([10, 20, 30, 40, 40])], 1)
    dream = bench.arm_curve([_records([10, 40, 41, 42, 43], 20), _records([10, 40, 45, 42, 43], 20)], 1)
    assert dream["mean"][2] == 43 and dream["std"][2] == 2
    result = bench.summarize({"random": random, "dream": dream})
    assert result["target"] == 40 and result["random_first_reach"] == 15 and result["random_horizon"] == 20
    arm = result["arms"]["dream"]
    assert arm["iterations_to_target"] == 5 and arm["ratio_vs_random_reach"] == 3
    assert arm["ratio_vs_random_horizon"] == 4
    assert arm["seconds_to_target"] == 100 and arm["time_ratio_vs_random_reach"] == 1.5


def test_an_arm_that_never_reaches_has_no_ratio():
    random = bench.arm_curve([_records([10, 50])], 1)
    low = bench.arm_curve([_records([10, 20])], 1)
    arm = bench.summarize({"random": random, "low": low})["arms"]["low"]
    assert arm["iterations_to_target"] is None and arm["ratio_vs_random_horizon"] is None


def test_tiny_digits_benchmark_writes_results_and_plot(benchmark, tiny_set, tmp_path):
    tiny = tiny_set
    out = tmp_path / "iterations.json"
    done = benchmark("iterations", "--dataset", "digits", "--ipc", "1", "--seeds", "0", "1", "--iterations", "2",
                     "--snapshot-every", "1", "--eval-repeats", "1", "--eval-epochs", "2",
                     "--runs", str(tmp_path / "runs"), "--out", str(out), *tiny)
    data = json.loads(out.read_text())
    assert set(data["curves"]) == {"dream", "random"}
    assert data["curves"]["dream"]["iterations"] == [0, 1, 2]
    benchmark("iterations", "--dataset", "digits", "--ipc", "1", "--seeds", "0", "1", "--iterations", "2",
              "--snapshot-every", "1", "--evaluate-at", "0", "2", "--eval-repeats", "1",
              "--eval-epochs", "2", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "at.json"), *tiny)
    assert json.loads((tmp_path / "at.json").read_text())["curves"]["random"]["iterations"] == [0, 2]
    assert len(data["curves"]["random"]["per_seed"]) == 2
    assert data["summary"]["arms"]["random"]["iterations_to_target"] is not None
    assert out.with_suffix(".png").stat().st_size > 1000
    cached = sorted((tmp_path / "runs" / "dream-s0" / "snapshots" / "iter-000001").glob("eval-*.json"))
    assert len(cached) == 1
    assert "target = random selection's final" in done.stdout
    benchmark("iterations", "--dataset", "digits", "--ipc", "1", "--seeds", "0", "1", "--iterations", "2",
              "--snapshot-every", "1", "--eval-repeats", "1", "--eval-epochs", "2",
              "--runs", str(tmp_path / "runs"), "--out", str(out), *tiny)   # all reused
    assert json.loads(out.read_text())["summary"] == data["summary"]


def test_an_arm_whose_initial_set_already_reaches_is_flagged_without_a_ratio():
    random = bench.arm_curve([_records([10, 30, 40])], 1)
    early = bench.arm_curve([_records([45, 46, 47])], 1)
    arm = bench.summarize({"random": random, "early": early})["arms"]["early"]
    assert arm["iterations_to_target"] == 0 and arm["reached_by_initial_set"]
    assert arm["ratio_vs_random_horizon"] is None and arm["time_ratio_vs_random_reach"] is None


def test_identical_snapshots_are_evaluated_once(tmp_path, tiny, monkeypatch):
    import shutil

    import dreamdd
    run = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, evaluate=False,
                          overrides=tiny(distill={"iterations": 1, "snapshot_every": 1}))
    first, last = (str(s) for s in bench.snapshots(run.path).values())
    twin = tmp_path / "twin"
    shutil.copytree(first, twin)                   # another arm's copy of the same initial set
    calls = []
    real = bench.evaluate_snapshot
    monkeypatch.setattr(bench, "evaluate_snapshot", lambda *args: calls.append(args[0]) or real(*args))
    records = bench.evaluate_snapshots([first, last, str(twin)], repeats=1, epochs=1, jobs=1)
    assert calls == [first, last]
    assert records[2]["test_mean"] == records[0]["test_mean"] and [r["iteration"] for r in records] == [0, 1, 0]
