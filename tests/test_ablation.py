"""The ablation runner (benchmarks/ablation.py) on a tiny digits setting: four rows, JSON written."""
import json

from dreamdd.experiments import mean_curve


def test_seeds_curves_keep_only_the_iterations_every_seed_evaluated():
    # a run of an older version without the last iteration's periodic point next to one that has it
    curve = mean_curve([{5: 90.0, 10: 92.0}, {5: 94.0}])
    assert curve == [(5, 92.0)]


def test_ablation_runs_the_four_combinations(benchmark, tiny_set, tmp_path):
    tiny = [*tiny_set, "--set", "eval.epochs=2", "--set", "eval.repeats=1"]
    out = tmp_path / "ablation.json"
    done = benchmark("ablation", "--method", "idc", "--dataset", "digits", "--ipc", "1", "--seeds", "0",
                     "--iterations", "2", "--eval-every", "1", "--eval-epochs", "2",
                     "--runs", str(tmp_path / "runs"), "--out", str(out), *tiny)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["selector"], r["init"]) for r in rows] == [("random", "real"), ("dream", "real"),
                                                          ("random", "representative"),
                                                          ("dream", "representative")]
    assert all(r["test_per_seed"] == [r["test_mean"]] and r["test_std"] == 0 for r in rows)    # one seed
    assert all(sorted(r["val_curve"]) == ["0", "1", "2"] for r in rows)    # iteration 0, every 1, the last
    assert rows[0]["iterations_to_baseline"] is not None   # the baseline reaches its own final accuracy
    printed = done.stdout
    assert "Rep. matching" in printed and printed.count("idc ") >= 4


def test_ablation_names_its_baseline_and_runs_idcs_own_with_64_real_images(benchmark, tiny_set, tmp_path):
    out = tmp_path / "ablation.json"
    done = benchmark("ablation", "--method", "idc", "--dataset", "digits", "--ipc", "1", "--seeds", "0",
                     "--iterations", "1", "--eval-epochs", "1", "--baseline", "idc", "--arms", "both",
                     "--runs", str(tmp_path / "runs"), "--out", str(out), *tiny_set, "--set", "eval.epochs=2",
                     "--set", "eval.repeats=1")
    result = json.loads(out.read_text())
    assert "64 real images" in result["baseline"] and len(result["rows"]) == 2
    baseline_config = (tmp_path / "runs" / "idc-random-real-idc64-s0" / "config.yaml").read_text()
    assert "batch_real: 64" in baseline_config
    both_config = (tmp_path / "runs" / "idc-dream-representative-s0" / "config.yaml").read_text()
    assert "batch_real: 8" in both_config
    assert "IDC's own baseline" in done.stdout


def test_ablation_keeps_the_rows_of_an_earlier_result_with_the_same_settings(benchmark, tiny_set, tmp_path):
    tiny = [*tiny_set, "--set", "eval.epochs=2", "--set", "eval.repeats=1"]
    common = ["--method", "idc", "--dataset", "digits", "--ipc", "1", "--seeds", "0", "--iterations", "1",
              "--eval-epochs", "1", *tiny]
    first = tmp_path / "first.json"
    benchmark("ablation", *common, "--arms", "both", "--runs", str(tmp_path / "runs1"), "--out", str(first))
    second = tmp_path / "second.json"
    done = benchmark("ablation", *common, "--arms", "matching", "--runs", str(tmp_path / "runs2"),
                     "--out", str(second), "--reuse", str(first))
    earlier, rows = json.loads(first.read_text())["rows"], json.loads(second.read_text())["rows"]
    assert [(r["selector"], r["init"]) for r in rows] == [("random", "real"), ("dream", "real"),
                                                          ("dream", "representative")]
    assert rows[0] == earlier[0] and rows[2] == earlier[1]        # kept as they were, not re-run
    assert sorted(p.name for p in (tmp_path / "runs2").iterdir()) == ["idc-dream-real-s0"]
    assert "kept from" in done.stderr
    # other settings: nothing is kept, the baseline runs again
    third = tmp_path / "third.json"
    done = benchmark("ablation", *common, "--arms", "matching", "--runs", str(tmp_path / "runs3"),
                     "--out", str(third), "--reuse", str(first), "--set", "match.batch_real=4")
    assert "not reused, its overrides differ" in done.stderr
    assert len(json.loads(third.read_text())["rows"]) == 2
