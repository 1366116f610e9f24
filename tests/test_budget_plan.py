"""`dreamdd distill --budget`: durations, a plan measured on this machine, an image lr chosen on the validation
split (never the test split), and the plan recorded where a user looks."""
import json

import pytest
import yaml

import dreamdd
from dreamdd import budget
from dreamdd.budget import LR_FACTORS, parse_duration
from dreamdd.cli import main

TINY = {"model": {"width": 8, "depth": 2}, "match": {"batch_real": 8}, "synth": {"factor": 1},
        "distill": {"inner_loop": 2, "n_data": 16, "eval_every": 0},
        "eval": {"epochs": 2, "repeats": 1, "val_every": 1}}


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("2h", 7200), ("90s", 90), ("1h30m", 5400), ("5", 300),
                                          ("0.5h", 1800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "30x", "-5m", "0", "10m later"])
def test_parse_duration_refuses_what_is_not_a_duration(text):
    with pytest.raises(dreamdd.DreamddError, match="budget"):
        parse_duration(text)


@pytest.fixture
def scored(monkeypatch):
    """Whether each evaluation of the run touched the test split (False: validation only), in order."""
    splits = []
    real = budget.Evaluator.evaluate

    def recorded(self, *args, **kwargs):
        splits.append(kwargs.get("test", True))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(budget.Evaluator, "evaluate", recorded)
    return splits


def test_budget_plans_the_run_and_chooses_the_lr_on_validation_only(tmp_path, monkeypatch, scored):
    monkeypatch.setattr(budget, "PROBE_EVAL_EPOCHS", 2)
    # probes of one outer iteration of 2 inner steps, whatever this machine's speed: whether probes fit the
    # budget is the planner's unit test below; here, what they do
    monkeypatch.setattr(budget, "MIN_PROBE_STEPS", 1)
    monkeypatch.setattr(budget, "_probe_length", lambda *args: (2, 1, 2))
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=TINY)
    plan = json.loads((result.path / "budget.json").read_text())
    # the initial set and each candidate on validation only; the test split once, by the run's final evaluation
    assert scored == [False] * (1 + len(LR_FACTORS)) + [True]
    assert [c["multiple"] for c in plan["probe"]["candidates"]] == list(LR_FACTORS)
    assert plan["lr"] in [c["lr"] for c in plan["probe"]["candidates"]]
    best = max(plan["probe"]["candidates"], key=lambda c: (c["val_mean"], -c["lr"]))
    assert plan["lr"] == best["lr"] and plan["probe"]["split"] == "validation"
    assert plan["lr_choice"] == "validation probes"
    config = yaml.safe_load((result.path / "config.yaml").read_text())
    assert config["synth"]["lr"] == plan["lr"] and config["distill"]["iterations"] == plan["iterations"]
    assert config["distill"]["budget_minutes"] == pytest.approx(8 / 60)
    assert result.summary["iterations"] <= plan["iterations"]
    assert "budget 0.1 min" in (result.path / "log.txt").read_text()


def test_budget_without_calibration_keeps_the_presets_rate_and_scores_nothing(tmp_path, scored):
    overrides = {**TINY, "distill": {**TINY["distill"], "budget_calibrate": False}}
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=overrides)
    plan = json.loads((result.path / "budget.json").read_text())
    assert scored == [True]      # no probe scored on validation: only the run's own final evaluation ran
    assert plan["probe"] is None and plan["lr"] == plan["paper_lr"]
    assert "budget_calibrate" in plan["lr_choice"]
    config = yaml.safe_load((result.path / "config.yaml").read_text())
    assert config["synth"]["lr"] == plan["paper_lr"] and config["distill"]["iterations"] == plan["iterations"]
    assert "no probes" in (result.path / "log.txt").read_text()


def test_budget_too_small_for_probes_takes_the_measured_multiple_without_scoring(tmp_path, monkeypatch, scored):
    monkeypatch.setattr(budget, "MIN_PROBE_STEPS", 10 ** 6)
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=TINY)
    plan = json.loads((result.path / "budget.json").read_text())
    assert scored == [True]      # probes that cannot tell the rates apart were not run: only the final evaluation
    assert plan["probe"] is None
    assert plan["lr"] == pytest.approx(budget.UNCALIBRATED_MULTIPLE * plan["paper_lr"])
    assert "inner steps within its share" in plan["lr_choice"]
    assert plan["compile_warmup_seconds"] is None


def test_under_compile_the_plan_times_the_loop_after_a_compiling_warmup(tmp_path, monkeypatch, scored):
    monkeypatch.setattr(budget, "MIN_PROBE_STEPS", 10 ** 6)
    warmed, timed = [], []
    real_warmup = budget._compile_warmup

    def warmup(*args):
        assert not timed, "the warm-up must come before the timing probe"
        warmed.append(True)
        return real_warmup(*args)

    real_costs = budget._step_costs
    monkeypatch.setattr(budget, "_compile_warmup", warmup)
    monkeypatch.setattr(budget, "_step_costs", lambda *args: timed.append(True) or real_costs(*args))
    # the planner's switch only: the forwards stay eager, so nothing is compiled for real in this test
    monkeypatch.setattr(budget.compilation, "enabled", lambda: True)
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=TINY)
    plan = json.loads((result.path / "budget.json").read_text())
    assert warmed == [True] and timed
    assert plan["compile_warmup_seconds"] > 0
    assert scored == [False, True]     # the warm-up's one epoch on validation, then the run's final evaluation
    assert "compiled the networks' forwards before timing" in (result.path / "log.txt").read_text()


def test_budget_clusters_a_pool_of_each_class_unless_the_settings_give_one(tmp_path, monkeypatch, scored):
    monkeypatch.setattr(budget, "MIN_PROBE_STEPS", 10 ** 6)
    monkeypatch.setattr(budget, "BUDGET_POOL", 20)             # digits' classes hold more than 20 images
    result = dreamdd.distill("digits", 1, out=tmp_path / "pooled", quiet=True, budget="8s", overrides=TINY)
    plan = json.loads((result.path / "budget.json").read_text())
    assert plan["selection_pool"].startswith("select.pool_size 20")
    assert yaml.safe_load((result.path / "config.yaml").read_text())["select"]["pool_size"] == 20
    assert "select.pool_size 20" in (result.path / "log.txt").read_text()
    given = {**TINY, "select": {**TINY.get("select", {}), "pool_size": 50}}
    result = dreamdd.distill("digits", 1, out=tmp_path / "given", quiet=True, budget="8s", overrides=given)
    assert json.loads((result.path / "budget.json").read_text())["selection_pool"] is None
    assert yaml.safe_load((result.path / "config.yaml").read_text())["select"]["pool_size"] == 50


def test_the_plan_allows_one_outer_iteration_more_than_fits_and_the_deadline_ends_the_loop():
    from dreamdd.config import Config
    config = Config()
    config.select.selector, config.match.method, config.distill.inner_loop = "random", "idc", 10
    planned, plan = budget._planned(config, 100.0, budget.time.perf_counter(), 10, 1.0, 0.0, 0.01, 0.1, "x10",
                                    None, lambda message: None)
    assert plan["seconds_per_outer_iteration"] == pytest.approx(10.0)
    # just under 100 s are left after planning: 9 outer iterations of 10 s fit, and one more is allowed
    assert planned.distill.iterations == 9 + 1 and planned.distill.max_minutes == pytest.approx(100 / 60, 1e-3)


def test_outer_iteration_time_counts_a_selection_round_per_interval_and_per_fresh_network():
    from dreamdd.config import Config
    config = Config()
    config.select.selector, config.select.interval = "dream", 10
    timings = budget.Timings(select=6.0, match=2.0, network=1.0, inner_iterations=3,
                             extra={"selections": 10})      # one round of 10 classes in a 3-step probe
    per_step, per_round = budget._step_costs(config, timings, num_classes=10)
    assert per_step == pytest.approx(1.0) and per_round == pytest.approx(6.0)
    config.match.method = "idc"              # a fresh network (and round) each outer iteration
    assert budget._outer_seconds(config, per_step, per_round, 2) == pytest.approx(2 + 6)
    assert budget._outer_seconds(config, per_step, per_round, 25) == pytest.approx(25 + 3 * 6)
    config.match.method = "dm"               # one step per outer iteration, a round every 10 of them
    assert budget._outer_seconds(config, per_step, per_round, 1) == pytest.approx(1 + 0.6)
    config.select.selector = "random"        # no rounds: selection is part of each step
    per_step, per_round = budget._step_costs(config, timings, num_classes=10)
    assert per_step == pytest.approx(3.0) and per_round == 0.0


def test_a_probe_takes_the_longest_outer_iterations_that_fit_its_share():
    from dreamdd.config import Config
    config = Config()
    config.select.selector, config.select.interval, config.match.method = "dream", 10, "idc"
    # 1 s a step, 6 s a selection round: 10 steps (16 s) fit 20 s, 11 steps (23 s) do not
    assert budget._probe_length(config, 1.0, 6.0, 20.0, 100) == (10, 1, 10)
    assert budget._probe_length(config, 1.0, 6.0, 5.0, 100) == (1, 0, 0)      # not even one step fits
    config.match.method = "dm"                # one step an outer iteration, a round every 10 of them
    assert budget._probe_length(config, 1.0, 6.0, 16.5, 1) == (1, 10, 10)


def test_budget_with_resume_is_refused(tmp_path, capsys):
    code = main(["distill", "--resume", str(tmp_path), "--budget", "10m"])
    assert code == 2 and "budget" in capsys.readouterr().err
