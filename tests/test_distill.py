"""End to end on the built-in digits: distill, evaluate, resume, reproducibility."""
import json

import pytest
import torch

import dreamdd
from conftest import tiny_settings
from dreamdd.artifact import load_distilled
from dreamdd.engine.callbacks import room_for_another
from dreamdd.io.rundir import RunDir

TINY = tiny_settings(distill={"iterations": 4, "inner_loop": 3, "n_data": 64, "eval_every": 2, "eval_epochs": 3,
                              "checkpoint_every": 2},
                     eval={"epochs": 6, "repeats": 2, "val_every": 2})


def tiny(tmp_path, name, **kw):
    kw.setdefault("overrides", TINY)
    return dreamdd.distill("digits", 2, out=tmp_path / name, quiet=True, **kw)


def test_end_to_end_digits(tmp_path):
    result = tiny(tmp_path, "run")
    files = {p.name for p in result.path.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "distilled.safetensors", "metadata.json",
            "grid.png", "checkpoint.pt", "log.txt"} <= files
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["val_size"] > 0
    evaluation = load_distilled(result.path).metadata["evaluation"]      # two networks of 6 epochs, on test
    assert summary["evaluation"]["test_mean"] == evaluation["test_mean"] == pytest.approx(
        sum(r["test_acc"] for r in evaluation["runs"]) / 2)
    assert [r["epochs_trained"] for r in evaluation["runs"]] == [6, 6]
    events = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1, 2, 3, 4]
    periodic = [e for e in events if e["event"] == "eval" and not e.get("final")]
    assert [e["iteration"] for e in periodic] == [0, 2, 4] and "test_mean" not in periodic[0]
    distilled = load_distilled(result.path)
    assert distilled.images.shape == (20, 1, 8, 8) and distilled.labels.tolist() == sum([[c] * 2 for c in
                                                                                          range(10)], [])
    assert distilled.metadata["selector"] == "dream" and distilled.metadata["ipc"] == 2
    assert distilled.images.min() >= 0 and distilled.images.max() <= 1
    x, y = distilled.dataset()[0]
    assert x.shape == (1, 8, 8) and int(y) == 0
    again = dreamdd.evaluate(result.path, repeats=1, epochs=4)
    assert again["repeats"] == 1 and again["epochs"] == 4 and again["test_mean"] == again["runs"][0]["test_acc"]


def test_same_seed_gives_identical_artifact_and_other_seed_differs(tmp_path):
    a = tiny(tmp_path, "a", evaluate=False)
    b = tiny(tmp_path, "b", evaluate=False)
    c = tiny(tmp_path, "c", evaluate=False, seed=1)
    assert (a.path / "distilled.safetensors").read_bytes() == (b.path / "distilled.safetensors").read_bytes()
    assert (a.path / "metadata.json").read_text() == (b.path / "metadata.json").read_text()
    assert not torch.equal(load_distilled(a.path).images, load_distilled(c.path).images)


def test_resume_equals_uninterrupted(tmp_path):
    full = tiny(tmp_path, "full", evaluate=False)
    half = dict(TINY, distill=dict(TINY["distill"], iterations=2))
    part = tiny(tmp_path, "part", evaluate=False, overrides=half)
    resumed = dreamdd.distill(resume=part.path, iterations=4, evaluate=False, quiet=True)
    assert resumed.path == part.path
    assert (full.path / "distilled.safetensors").read_bytes() == \
        (part.path / "distilled.safetensors").read_bytes()
    events = [json.loads(line) for line in (part.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1, 2, 3, 4]


def test_random_selector_and_dream_differ(tmp_path):
    dream = tiny(tmp_path, "dream", evaluate=False)
    plain = tiny(tmp_path, "idc", evaluate=False, selector="random", init="real")
    assert load_distilled(plain.path).metadata["selector"] == "random"
    assert not torch.equal(load_distilled(dream.path).images, load_distilled(plain.path).images)


def test_ipc_larger_than_a_class_is_a_clear_error(tmp_path):
    with pytest.raises(dreamdd.DreamddError, match="larger than the smallest class"):
        dreamdd.distill("digits", 500, out=tmp_path / "big", quiet=True, overrides=TINY)


def test_snapshots_hold_the_set_at_each_interval_and_the_end(tmp_path):
    every = dict(TINY, distill=dict(TINY["distill"], snapshot_every=3, eval_every=0))
    result = tiny(tmp_path, "snap", evaluate=False, overrides=every)
    snapshots = sorted(p.name for p in (result.path / "snapshots").iterdir())
    assert snapshots == ["iter-000000", "iter-000003", "iter-000004"]
    first, last = (load_distilled(result.path / "snapshots" / s) for s in ("iter-000000", "iter-000004"))
    assert torch.equal(last.images, load_distilled(result.path).images)
    assert not torch.equal(first.images, last.images)
    assert [load_distilled(result.path / "snapshots" / s).metadata["iterations"] for s in snapshots] == [0, 3, 4]
    assert first.metadata["elapsed_seconds"] == 0 < last.metadata["elapsed_seconds"]
    result = dreamdd.evaluate(result.path / "snapshots" / "iter-000003", repeats=1)   # the run's recipe
    assert result["epochs"] == TINY["eval"]["epochs"] and result["runs"][0]["epochs_trained"] == TINY["eval"]["epochs"]
    assert result["test_mean"] == result["runs"][0]["test_acc"]


def test_max_minutes_stops_early_and_records_why(tmp_path):
    budget = dict(TINY, distill=dict(TINY["distill"], max_minutes=1e-9, eval_every=0))
    result = tiny(tmp_path, "budget", overrides=budget)
    assert result.summary["iterations"] == 1 and load_distilled(result.path).metadata["iterations"] == 1
    assert result.summary["timings"]["inner_iterations"] == 1     # the deadline ends the outer iteration early
    events = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1]
    assert any(e["event"] == "stopped" and e["reason"] == "max_minutes" and e["cut_short"] for e in events)
    assert [e["iteration"] for e in events if e.get("final")] == [1]
    assert RunDir(result.path).load_checkpoint()["completed"] == 1


def test_the_deadline_ends_a_dc_outer_iteration_after_the_round_it_falls_in(tmp_path):
    """DC's rounds each update the images, so the deadline ends its outer iteration of 4 rounds after the first;
    cut in the last planned outer iteration, the run still records that the deadline ended it."""
    settings = dict(TINY, distill=dict(TINY["distill"], max_minutes=1e-9, eval_every=0, iterations=1),
                    match=dict(TINY.get("match", {}), method="dc"), dc={"outer_loop": 4, "inner_loop": 1})
    result = tiny(tmp_path, "dc", overrides=settings, evaluate=False)
    assert result.summary["iterations"] == 1 and result.summary["timings"]["inner_iterations"] == 1
    events = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "stopped" and e["cut_short"] for e in events)
    assert "the deadline came in it after 1 inner steps" in (result.path / "log.txt").read_text()


def test_a_method_that_ends_at_the_deadline_starts_an_outer_iteration_while_one_inner_step_fits():
    from types import SimpleNamespace
    from dreamdd.engine.callbacks import TimeBudget

    def loop(ends_at_deadline):
        return SimpleNamespace(method=SimpleNamespace(ends_at_deadline=ends_at_deadline),
                               context=SimpleNamespace(cut_short=False, last_step_seconds=2.0,
                                                       inner_steps_this_iteration=3),
                               timings=SimpleNamespace(elapsed=50.0))
    # 10 s left of a minute: an inner step of 2 s fits, an outer iteration of 20 s does not
    assert not TimeBudget(1).stop_after(loop(True), 1, 20.0)
    assert TimeBudget(1).stop_after(loop(False), 1, 20.0)
    cut = loop(True)
    cut.context.cut_short = True                  # the deadline already ended this outer iteration
    assert TimeBudget(1).stop_after(cut, 1, 5.0)


def test_the_budget_admits_an_iteration_only_if_it_would_end_in_time():
    assert room_for_another(elapsed=50.0, last_iteration=10.0, max_minutes=1)
    assert not room_for_another(elapsed=50.0, last_iteration=10.5, max_minutes=1)   # would end at 60.5 s
    assert not room_for_another(elapsed=61.0, last_iteration=0.0, max_minutes=1)
    assert room_for_another(elapsed=1e9, last_iteration=1e9, max_minutes=None)


def test_resume_keeps_counting_time_and_inner_iterations(tmp_path):
    half = dict(TINY, distill=dict(TINY["distill"], iterations=2, eval_every=0))
    part = tiny(tmp_path, "part", evaluate=False, overrides=half)
    first = part.summary["timings"]
    resumed = dreamdd.distill(resume=part.path, iterations=4, evaluate=False, quiet=True)
    assert first["inner_iterations"] == 2 * 3 and resumed.summary["timings"]["inner_iterations"] == 4 * 3
    assert resumed.summary["timings"]["elapsed"] > first["elapsed"] > 0
