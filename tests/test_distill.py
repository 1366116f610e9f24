"""End to end on the built-in digits: distill, evaluate, resume, reproducibility."""
import json

import pytest
import torch

import dreamdd
from dreamdd.artifact import load_distilled

TINY = {"model": {"width": 16, "depth": 2}, "match": {"batch_real": 16},
        "select": {"interval": 2},
        "distill": {"iterations": 4, "inner_loop": 3, "n_data": 64, "eval_every": 2, "eval_epochs": 3,
                    "checkpoint_every": 2},
        "eval": {"epochs": 6, "repeats": 2, "val_every": 2}}


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
    assert 0 <= summary["evaluation"]["test_mean"] <= 100
    events = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1, 2, 3, 4]
    periodic = [e for e in events if e["event"] == "eval" and not e.get("final")]
    assert [e["iteration"] for e in periodic] == [2, 4] and "test_mean" not in periodic[0]
    distilled = load_distilled(result.path)
    assert distilled.images.shape == (20, 1, 8, 8) and distilled.labels.tolist() == sum([[c] * 2 for c in
                                                                                          range(10)], [])
    assert distilled.metadata["selector"] == "dream" and distilled.metadata["ipc"] == 2
    assert distilled.images.min() >= 0 and distilled.images.max() <= 1
    x, y = distilled.dataset()[0]
    assert x.shape == (1, 8, 8) and int(y) == 0
    again = dreamdd.evaluate(result.path, repeats=1, epochs=4)
    assert again["repeats"] == 1 and 0 <= again["test_mean"] <= 100


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
