"""Run folders that nothing corrupts: resume, extension, locking, checksums, fingerprints, one message per
failure (exit status 2) and a summary that never says "running" for a run that stopped."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamdd import faults
from dreamdd.artifact import load_distilled
from dreamdd.cli import main
from dreamdd.errors import DreamddError
from dreamdd.io.rundir import RunDir

TINY = ["--set", "model.width=16", "--set", "model.depth=2", "--set", "match.batch_real=16",
        "--set", "distill.iterations=2", "--set", "distill.inner_loop=2", "--set", "distill.n_data=32",
        "--set", "distill.eval_every=0", "--set", "distill.checkpoint_every=1", "--set", "eval.epochs=2",
        "--set", "eval.repeats=1", "--set", "eval.val_every=1"]
SRC = Path(__file__).resolve().parents[1] / "src"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def new_run(capsys, path, *extra):
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", path, "--quiet", *TINY,
                       *extra)
    assert code == 0, err
    return Path(path)


def status(run):
    return json.loads((Path(run) / "summary.json").read_text())["status"]


def without_seconds(value):
    """A JSON value without its wall times (the only thing two runs of the same settings may differ in)."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def artifact_bytes(run):
    """The artifact's tensors and its metadata without the evaluation's wall times."""
    metadata = json.loads((Path(run) / "metadata.json").read_text())
    return (Path(run) / "distilled.safetensors").read_bytes(), without_seconds(metadata)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run (2 iterations) and its extension to 3, to compare resumed runs with."""
    base = tmp_path_factory.mktemp("reference")
    argv = ["distill", "--dataset", "digits", "--ipc", "1", "--quiet", *TINY]
    assert main(argv + ["--out", str(base / "two")]) == 0
    assert main(argv + ["--out", str(base / "three"), "--set", "distill.iterations=3"]) == 0
    return {"two": base / "two", "three": base / "three"}


@pytest.fixture
def interrupt_at(monkeypatch):
    """interrupt_at("checkpoint.pt:replaced", 2): Ctrl-C the next run when that write point is reached the 2nd time."""
    def arm(point, nth=1):
        seen = {"n": 0}

        def reached(name, before_kill=None):
            if name == point:
                seen["n"] += 1
                if seen["n"] == nth:
                    raise KeyboardInterrupt
        monkeypatch.setattr(faults, "reached", reached)
    return arm


# ---- 1, 19, 24: extending a finished run --------------------------------------------------------------------

def test_extension_keeps_the_finished_artifact_until_its_successor_is_complete(tmp_path, capsys, reference,
                                                                                interrupt_at):
    run = new_run(capsys, tmp_path / "run")
    before = artifact_bytes(run)
    interrupt_at("checkpoint.pt:replaced", 1)          # the extension stops after iteration 3's checkpoint
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 4, "--quiet")
    assert code == 130 and f"--resume {run}" in err and status(run) == "interrupted"
    assert artifact_bytes(run) == before and load_distilled(run).metadata["iterations"] == 2
    config = (run / "config.yaml").read_bytes()
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 2, "--quiet")   # cannot go back
    assert code == 2 and "completed 3 outer iterations" in err and "Traceback" not in err
    assert (run / "config.yaml").read_bytes() == config and artifact_bytes(run) == before
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 0 and artifact_bytes(run) == artifact_bytes(reference["three"]) and status(run) == "finished"


def test_fewer_iterations_than_completed_is_refused_without_an_artifact(tmp_path, capsys, interrupt_at):
    interrupt_at("checkpoint.pt:replaced", 2)
    code, _, _ = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet",
                     *TINY, "--no-eval")
    assert code == 130 and not (tmp_path / "r" / "distilled.safetensors").exists()
    config = (tmp_path / "r" / "config.yaml").read_bytes()
    code, _, err = cli(capsys, "distill", "--resume", tmp_path / "r", "--iterations", 1, "--quiet")
    assert code == 2 and "completed 2 outer iterations" in err
    assert (tmp_path / "r" / "config.yaml").read_bytes() == config      # a refused resume writes nothing


def test_finished_run_resumed_without_more_iterations_is_refused(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    code, _, err = cli(capsys, "distill", "--resume", run, "--quiet")
    assert code == 2 and "already finished 2 iterations" in err


# ---- 2, 17: a kill between the artifact's files, or before grid and summary -----------------------------------

@pytest.mark.parametrize("point", ["distilled.safetensors:replaced", "metadata.json:replaced", "grid.png:written"])
def test_a_stop_around_the_artifact_is_completed_by_resume(tmp_path, capsys, reference, interrupt_at, point):
    interrupt_at(point)
    code, _, _ = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY)
    assert code == 130 and status(tmp_path / "r") == "interrupted"
    if point == "distilled.safetensors:replaced":    # new tensors, no metadata yet: never passes for finished
        code, _, err = cli(capsys, "evaluate", tmp_path / "r", "--quiet")
        assert code == 2 and "--resume" in err
    code, _, err = cli(capsys, "distill", "--resume", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert artifact_bytes(tmp_path / "r") == artifact_bytes(reference["two"])
    assert status(tmp_path / "r") == "finished" and (tmp_path / "r" / "grid.png").exists()


# ---- 3: the lock ---------------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    with RunDir(run).locked():
        code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 2 and f"process {os.getpid()}" in err and "being written" in err
    assert status(run) == "finished"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    holder = (f"import os, signal; from dreamdd.io.rundir import RunDir\n"
              f"with RunDir({str(run)!r}).locked(): os.kill(os.getpid(), signal.SIGKILL)")
    env = dict(os.environ, PYTHONPATH=str(SRC))      # the child imports the dreamdd under test
    assert subprocess.run([sys.executable, "-c", holder], env=env, timeout=120).returncode == -signal.SIGKILL
    assert "process" in (run / ".lock").read_text()
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 0, err


# ---- 5, 6, 8: checkpoints that do not belong, or are damaged or hostile ---------------------------------------

def test_a_checkpoint_of_another_run_or_an_edited_config_is_refused(tmp_path, capsys, reference):
    other = new_run(capsys, tmp_path / "ipc2", "--ipc", 2)
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 2 and "not written with this run's settings" in err
    shutil.copy(reference["two"] / "checkpoint.pt", run / "checkpoint.pt")
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("seed: 0", "seed: 5"))
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 2 and "not written with this run's settings" in err


def _hostile_pickle(marker):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return pickle.dumps({"completed": 1, "x": Boom()})


def _checkpoints(tmp_path, good: bytes):
    marker = tmp_path / "executed"
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    import io
    foreign = io.BytesIO()
    torch.save({"completed": 1, "images": torch.zeros(1)}, foreign)
    listed = io.BytesIO()
    torch.save([1, 2, 3], listed)
    return marker, {"empty": b"", "garbage": os.urandom(4096), "truncated": good[: len(good) // 2],
                    "flipped": bytes(flipped), "foreign": foreign.getvalue(), "list": listed.getvalue(),
                    "os.system pickle": _hostile_pickle(marker)}


@pytest.mark.parametrize("case", ["empty", "garbage", "truncated", "flipped", "foreign", "list", "os.system pickle"])
def test_a_damaged_foreign_or_hostile_checkpoint_is_one_message(tmp_path, capsys, reference, case):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    marker, cases = _checkpoints(tmp_path, (run / "checkpoint.pt").read_bytes())
    (run / "checkpoint.pt").write_bytes(cases[case])
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
    assert code == 2 and "checkpoint" in err and "Traceback" not in err and "weights_only" not in err
    assert not marker.exists() and status(run) == "finished"


def test_flipped_bytes_in_the_artifact_are_refused(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    data = bytearray((run / "distilled.safetensors").read_bytes())
    data[-5] ^= 0x01
    (run / "distilled.safetensors").write_bytes(bytes(data))
    with pytest.raises(DreamddError, match="sha256"):
        load_distilled(run)
    code, _, err = cli(capsys, "evaluate", run, "--quiet")
    assert code == 2 and "sha256" in err


# ---- 7, 29: torn metrics line, leftover temporary files -------------------------------------------------------

def test_a_torn_metrics_line_and_leftover_temporary_files_are_repaired(tmp_path, capsys, reference, interrupt_at):
    interrupt_at("checkpoint.pt:replaced", 1)
    cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY)
    run = tmp_path / "r"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"event": "iteration", "iter')
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    assert [e["iteration"] for e in RunDir(run).events("iteration")] == [1]
    code, _, err = cli(capsys, "distill", "--resume", run, "--quiet")
    assert code == 0, err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and not list(run.glob(".*.tmp"))
    assert artifact_bytes(run) == artifact_bytes(reference["two"])


# ---- 11: unwritable places and a full disk ------------------------------------------------------------------

def test_out_naming_a_file_is_one_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "file", "--quiet")
    assert code == 2 and "is a file" in err


def test_out_inside_a_file_is_one_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "file" / "run",
                       "--quiet", *TINY)
    assert code == 2 and "Traceback" not in err and "file" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_folder_is_one_message(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "ro" / "run",
                           "--quiet", *TINY)
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    assert code == 2 and "Permission denied" in err


@pytest.mark.parametrize("number, words", [(errno.EACCES, "writable"), (errno.EROFS, "read-only"),
                                           (errno.ENOSPC, "free some space")])
def test_a_failing_disk_is_one_message_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch, number, words):
    """The second checkpoint cannot be written (read-only, full disk): exit 2, and the first is intact."""
    real = torch.save
    calls = {"n": 0}

    def failing(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == "dreamdd-checkpoint":
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(number, os.strerror(number), str(f))
        return real(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", failing)
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY)
    assert code == 2 and words in err and "Traceback" not in err
    assert RunDir(tmp_path / "r").load_checkpoint()["completed"] == 1
    assert status(tmp_path / "r") == "failed" and not list((tmp_path / "r").glob(".*.tmp"))


def test_an_unwritable_table_is_one_message(tmp_path, capsys, reference, monkeypatch):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "evaluate", reference["two"], "--models", "convnet", "--epochs", 1, "--repeats", 1,
                       "--table", tmp_path / "file" / "table", "--quiet")
    assert code == 2 and "choose another path" in err and "Traceback" not in err


# ---- 12: damaged settings -----------------------------------------------------------------------------------

def test_a_damaged_config_yaml_is_one_message(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    for text in ("seed: [unclosed", "!!python/object/apply:os.system ['true']", "- a list\n", "synth: {nope: 1}\n"):
        (run / "config.yaml").write_text(text)
        code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, "--quiet")
        assert code == 2 and "config.yaml" in err and "Traceback" not in err


def test_yaml_tags_in_preset_or_set_are_refused(tmp_path, capsys):
    marker = tmp_path / "executed"
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--preset", preset,
                       "--out", tmp_path / "a", "--quiet")
    assert code == 2 and "tags such as !!python" in err
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "b", "--quiet",
                       "--set", f"seed=!!python/object/apply:os.system ['touch {marker}']")
    assert code == 2 and "tags such as !!python" in err and not marker.exists()


# ---- 16: SIGTERM ---------------------------------------------------------------------------------------------

def test_sigterm_stops_at_a_safe_point_and_says_how_to_resume(tmp_path):
    run = tmp_path / "r"
    argv = [sys.executable, "-m", "dreamdd", "distill", "--dataset", "digits", "--ipc", "1", "--out", str(run),
            "--quiet", *TINY, "--set", "distill.iterations=1000"]
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        if (run / "checkpoint.pt").exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and f"--resume {run}" in err and "Traceback" not in err
    assert status(run) == "interrupted"
    assert RunDir(run).load_checkpoint()["completed"] >= 1


# ---- 18, 23: what a resume accepts --------------------------------------------------------------------------

@pytest.mark.parametrize("option", [["--set", "eval.epochs=9"], ["--set", "eval.epochs=-1"], ["--seed", "3"],
                                    ["--dataset", "mnist"], ["--ipc", "5"], ["--out", "elsewhere"]])
def test_resume_refuses_options_that_would_change_the_run(tmp_path, capsys, reference, option):
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    code, _, err = cli(capsys, "distill", "--resume", run, "--iterations", 3, *option, "--quiet")
    assert code == 2 and "accepts only --iterations, --device" in err
    assert status(run) == "finished"


def test_resume_accepts_device_and_remembers_no_eval(tmp_path, capsys, interrupt_at):
    interrupt_at("checkpoint.pt:replaced", 1)
    code, _, _ = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY,
                     "--no-eval")
    assert code == 130
    code, _, err = cli(capsys, "distill", "--resume", tmp_path / "r", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert "evaluation" not in load_distilled(tmp_path / "r").metadata


# ---- 22: a failure before the first checkpoint --------------------------------------------------------------

def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path, capsys, reference, interrupt_at):
    interrupt_at("metrics.jsonl:appended", 1)
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY)
    assert code == 130 and not (tmp_path / "r" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["resume_with"] == \
        f"dreamdd distill --resume {tmp_path / 'r'}"
    code, _, err = cli(capsys, "distill", "--resume", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert artifact_bytes(tmp_path / "r") == artifact_bytes(reference["two"])


# ---- 21, 25: settings that cannot work ----------------------------------------------------------------------

@pytest.mark.parametrize("setting, message", [("synth.factor=9", "synth.factor 9 is larger"),
                                              ("distill.max_minutes=-1", "max_minutes must be positive")])
def test_impossible_settings_are_one_message(tmp_path, capsys, setting, message):
    code, _, err = cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY,
                       "--set", setting)
    assert code == 2 and message in err and "Traceback" not in err


# ---- 27: evaluating an unfinished run -----------------------------------------------------------------------

def test_evaluating_an_unfinished_run_says_to_finish_it(tmp_path, capsys, interrupt_at):
    interrupt_at("checkpoint.pt:replaced", 1)
    cli(capsys, "distill", "--dataset", "digits", "--ipc", 1, "--out", tmp_path / "r", "--quiet", *TINY)
    code, _, err = cli(capsys, "evaluate", tmp_path / "r", "--quiet")
    assert code == 2 and "without a finished artifact" in err and "--resume" in err and "--dataset" not in err


def test_a_killed_run_reads_as_stopped_not_running(tmp_path, capsys, reference):
    from dreamdd.runs import load_run
    run = tmp_path / "run"
    shutil.copytree(reference["two"], run)
    resume_with = f"dreamdd distill --resume {run}"
    (run / "summary.json").write_text(json.dumps({"status": "running", "resume_with": resume_with}))
    with RunDir(run).locked():
        assert RunDir(run).summary()["status"] == "running"
    summary = RunDir(run).summary()
    assert summary["status"] == "stopped" and "--resume" in summary["error"]
    assert load_run(run).summary["status"] == "stopped"


# ---- select and experts: the same guarantees ----------------------------------------------------------------

SELECT = ["select", "--dataset", "digits", "--per-class", 2, "--quiet", "--no-eval", "--set", "model.width=16",
          "--set", "model.depth=2"]
EXPERTS = ["experts", "--dataset", "digits", "--experts", 2, "--epochs", 1, "--quiet", "--set", "model.width=16",
           "--set", "model.depth=2"]


def test_select_resume_is_locked_keeps_its_settings_and_remembers_no_eval(tmp_path, capsys, interrupt_at):
    interrupt_at("distilled.safetensors:replaced")
    assert cli(capsys, *SELECT, "--out", tmp_path / "s")[0] == 130
    assert status(tmp_path / "s") == "interrupted"
    code, _, err = cli(capsys, "select", "--resume", tmp_path / "s", "--per-class", 3, "--quiet")
    assert code == 2 and "accepts only --device and --quiet" in err
    with RunDir(tmp_path / "s").locked():
        code, _, err = cli(capsys, "select", "--resume", tmp_path / "s", "--quiet")
    assert code == 2 and "being written" in err
    code, _, err = cli(capsys, "select", "--resume", tmp_path / "s", "--quiet")
    assert code == 0, err
    assert status(tmp_path / "s") == "finished" and "evaluation" not in load_distilled(tmp_path / "s").metadata
    code, _, err = cli(capsys, "select", "--resume", tmp_path / "s", "--quiet")
    assert code == 2 and "finished select run" in err
    code, _, err = cli(capsys, "distill", "--resume", tmp_path / "s", "--quiet")
    assert code == 2 and "dreamdd select --resume" in err


def test_experts_resume_keeps_intact_experts_and_replaces_damaged_ones(tmp_path, capsys):
    from dreamdd.experts import ExpertBuffer
    assert cli(capsys, *EXPERTS, "--out", tmp_path / "e")[0] == 0
    folder = tmp_path / "e"
    original = {n: (folder / n).read_bytes() for n in ("expert_000.safetensors", "expert_001.safetensors")}
    damaged = bytearray(original["expert_001.safetensors"])
    damaged[-3] ^= 0xFF
    (folder / "expert_001.safetensors").write_bytes(bytes(damaged))
    with pytest.raises(DreamddError, match="damaged"):
        ExpertBuffer(folder)
    code, _, err = cli(capsys, "experts", "--resume", folder, "--quiet")
    assert code == 2 and "finished" in err
    manifest = json.loads((folder / "experts.json").read_text())
    manifest.pop("finished")                                   # as if stopped before the end
    (folder / "experts.json").write_text(json.dumps(manifest))
    (folder / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    code, _, err = cli(capsys, "experts", "--resume", folder, "--epochs", 3, "--quiet")
    assert code == 2 and "accepts only --device and --quiet" in err
    code, _, err = cli(capsys, "experts", "--resume", folder, "--quiet")
    assert code == 0, err
    assert {n: (folder / n).read_bytes() for n in original} == original
    assert len(ExpertBuffer(folder)) == 2
    code, _, err = cli(capsys, *EXPERTS, "--out", folder)
    assert code == 2 and "dreamdd experts --resume" in err


def test_a_folder_claimed_by_another_run_meanwhile_is_refused(tmp_path, monkeypatch):
    """Two runs given the same new --out at once: the one that locks second finds config.yaml and stops."""
    run = RunDir.create(tmp_path / "r", "x")
    (tmp_path / "r" / "config.yaml").write_text("seed: 0\n")    # the other run, between create and lock
    with pytest.raises(DreamddError, match="claimed by another run"):
        with run.locked(new=True):
            pass
