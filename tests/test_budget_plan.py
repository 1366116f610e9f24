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


def test_budget_plans_the_run_and_chooses_the_lr_on_validation_only(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "PROBE_EVAL_EPOCHS", 2)
    scored = []
    real = budget.evaluate_images

    def validation_only(*args, **kwargs):
        assert kwargs["test"] is False
        scored.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(budget, "evaluate_images", validation_only)
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=TINY)
    plan = json.loads((result.path / "budget.json").read_text())
    assert len(scored) == 1 + len(LR_FACTORS)          # the initial set and each candidate
    assert [c["multiple"] for c in plan["probe"]["candidates"]] == list(LR_FACTORS)
    assert plan["lr"] in [c["lr"] for c in plan["probe"]["candidates"]]
    best = max(plan["probe"]["candidates"], key=lambda c: (c["val_mean"], -c["lr"]))
    assert plan["lr"] == best["lr"] and plan["probe"]["split"] == "validation"
    config = yaml.safe_load((result.path / "config.yaml").read_text())
    assert config["synth"]["lr"] == plan["lr"] and config["distill"]["iterations"] == plan["iterations"]
    assert config["distill"]["budget_minutes"] == pytest.approx(8 / 60)
    assert result.summary["iterations"] <= plan["iterations"]
    assert "budget 0.1 min" in (result.path / "log.txt").read_text()


def test_budget_without_calibration_keeps_the_presets_rate_and_scores_nothing(tmp_path, monkeypatch):
    def no_scoring(*args, **kwargs):
        raise AssertionError("distill.budget_calibrate false must not evaluate any probe")

    monkeypatch.setattr(budget, "evaluate_images", no_scoring)
    overrides = {**TINY, "distill": {**TINY["distill"], "budget_calibrate": False}}
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, budget="8s", overrides=overrides)
    plan = json.loads((result.path / "budget.json").read_text())
    assert plan["probe"] is None and plan["lr"] == plan["paper_lr"]
    assert "budget_calibrate" in plan["lr_choice"]
    config = yaml.safe_load((result.path / "config.yaml").read_text())
    assert config["synth"]["lr"] == plan["paper_lr"] and config["distill"]["iterations"] == plan["iterations"]
    assert "no probes" in (result.path / "log.txt").read_text()


def test_budget_with_resume_is_refused(tmp_path, capsys):
    code = main(["distill", "--resume", str(tmp_path), "--budget", "10m"])
    assert code == 2 and "budget" in capsys.readouterr().err
