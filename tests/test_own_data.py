"""A user's own data and a new user's first run: the own-data preset (sized for a CPU, no flip), the initial set
evaluated at iteration 0 with the loop's gain in summary.json, honest compare and report of coresets."""
import json

import numpy as np
import pytest

import dreamdd
from dreamdd.cli import main
from dreamdd.artifact import load_distilled
from dreamdd.config import resolve
from dreamdd.report import compare_runs, write_report
from dreamdd.runs import load_run

TINY = {"model": {"width": 16, "depth": 2}, "match": {"batch_real": 8},
        "distill": {"iterations": 3, "inner_loop": 1, "n_data": 16, "eval_every": 2, "eval_epochs": 2},
        "eval": {"epochs": 2, "repeats": 1, "val_every": 1}}


@pytest.fixture
def letters(tmp_path):
    """A tiny .npz of 3 classes of 12x12 grayscale images, as a user would bring."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    path = tmp_path / "letters.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:15], y_test=y[:15])
    return path


def test_own_data_gets_a_cpu_sized_preset_without_flip_never_the_papers_schedule(letters):
    config = resolve(str(letters), 2)
    assert config.preset == "own-data"
    assert config.distill.iterations == 20 and config.eval.epochs == 300
    assert "flip" not in config.eval.augment


def test_own_data_run_says_which_preset_applies_and_evaluates_the_initial_set(letters, tmp_path):
    result = dreamdd.distill(str(letters), 2, out=tmp_path / "run", quiet=True, overrides=TINY)
    log = (result.path / "log.txt").read_text()
    assert "preset own-data applies" in log and "augmentation color_crop_scale_rotate" in log
    periodic = [e["iteration"] for e in load_run(result.path).points()]
    assert periodic == [0, 2, 3]              # the initial set, every eval_every, and the last iteration
    gain = result.summary["loop_gain"]
    assert gain["last_iteration"] == 3
    assert gain["gain"] == pytest.approx(gain["last_val_mean"] - gain["initial_val_mean"])
    assert json.loads((result.path / "summary.json").read_text())["loop_gain"] == gain


def _write(folder, events, summary=None, metadata=None):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "summary.json").write_text(json.dumps({"status": "finished", **(summary or {})}))
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def test_compare_takes_the_final_evaluation_when_a_periodic_point_shares_its_iteration(tmp_path):
    def run(name, periodic, final):
        events = [{"event": "eval", "iteration": 5, "val_mean": periodic - 3, "repeats": 1, "epochs": 5},
                  {"event": "eval", "iteration": 10, "val_mean": periodic, "repeats": 1, "epochs": 5},
                  {"event": "eval", "iteration": 10, "final": True, "val_mean": final, "repeats": 3, "epochs": 50}]
        return _write(tmp_path / name, events)
    comparison = compare_runs(run("a", 97.53, 96.78), run("b", 96.57, 96.36))
    assert (comparison.reaches[0].final, comparison.reaches[1].final) == (96.78, 96.36)
    assert "final 96.78 at iteration 10" in "\n".join(comparison.lines())


def test_compare_with_a_coreset_says_what_to_do_instead(tmp_path):
    a = _write(tmp_path / "a", [{"event": "eval", "iteration": 2, "val_mean": 50.0}])
    coreset = _write(tmp_path / "c", [], summary={"method": "coreset-herding",
                                                  "evaluation": {"val_mean": 40.0, "test_mean": 39.0}})
    with pytest.raises(dreamdd.DreamddError, match="coreset.*dreamdd report"):
        compare_runs(a, coreset)


def test_report_of_a_coreset_run_names_real_images_and_draws_no_empty_curve(tmp_path, capsys):
    out = tmp_path / "sel"
    assert main(["select", "--dataset", "digits", "--per-class", "2", "--method", "random", "--out", str(out),
                 "--quiet", "--set", "eval.epochs=2", "--set", "eval.repeats=1", "--set", "model.width=16"]) == 0
    config = (out / "config.yaml").read_text()
    assert "synth:" not in config and "match:" not in config and "net_lr" in config
    page, _ = write_report([out])
    html = page.read_text()
    assert "Selected real images" in html and "Synthetic images" not in html
    assert "no accuracy against outer iteration" in html
    capsys.readouterr()


def test_report_warns_when_overlaid_losses_come_from_different_methods(tmp_path):
    loss = [{"event": "iteration", "iteration": i, "loss": 1.0 / i} for i in (1, 2)]
    a = _write(tmp_path / "a", loss, metadata={"method": "idc"})
    b = _write(tmp_path / "b", loss, metadata={"method": "dm"})
    html = write_report([a, b], tmp_path / "r.html")[0].read_text()
    assert "losses of different methods (dm, idc)" in html


def test_own_data_is_found_by_name_under_the_data_root_and_again_from_anywhere(letters, tmp_path, monkeypatch,
                                                                                capsys):
    root = tmp_path / "root"
    root.mkdir()
    letters.rename(root / "usps.npz")
    assert main(["datasets", "--data-root", str(root)]) == 0
    assert "usps" in capsys.readouterr().out
    overrides = dict(TINY, distill=dict(TINY["distill"], eval_every=0))
    for name in ("usps", "usps.npz"):
        result = dreamdd.distill(name, 2, data_root=str(root), out=tmp_path / f"run-{name}", quiet=True,
                                 overrides=overrides, evaluate=False)
        split = json.loads((result.path / "metadata.json").read_text())["split"]
        assert split["dataset"] == str((root / "usps.npz").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = dreamdd.evaluate(result.path, repeats=1, epochs=1)
    assert again["test_last_mean"] == again["runs"][0]["test_acc_last"]     # evaluated from elsewhere, on test
    assert again["val_size"] == load_distilled(result.path).metadata["val_size"]
