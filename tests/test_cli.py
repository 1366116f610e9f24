"""The command line: user errors end in one message and exit status 2; no partial artifact is left."""
import json

import pytest

from dreamdd.cli import main

TINY = ["--set", "model.width=16", "--set", "model.depth=2", "--set", "match.batch_real=16",
        "--set", "distill.iterations=2", "--set", "distill.inner_loop=2", "--set", "distill.n_data=32",
        "--set", "distill.eval_every=0", "--set", "eval.epochs=3", "--set", "eval.repeats=1",
        "--set", "eval.val_every=1"]


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_distill_then_evaluate(tmp_path, capsys):
    code, out, _ = run(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", str(tmp_path / "r"),
                       "--quiet", *TINY)
    assert code == 0 and "test accuracy" in out and str(tmp_path / "r") in out
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "r"), "--repeats", "1", "--epochs", "2", "--quiet")
    assert code == 0 and "test accuracy" in out


@pytest.mark.parametrize("argv, message", [
    (["distill", "--dataset", "nosuchdata", "--ipc", "1"], "nosuchdata"),
    (["distill", "--dataset", "digits", "--ipc", "1000"], "larger than the smallest class"),
    (["distill", "--dataset", "digits", "--ipc", "1", "--set", "select.nope=1"], "unknown setting"),
    (["distill", "--dataset", "digits", "--ipc", "1", "--preset", "nope"], "unknown preset"),
    (["distill", "--dataset", "digits", "--ipc", "1", "--set", "model.name=nonet"], "nonet"),
    (["distill", "--dataset", "mnist", "--ipc", "1", "--set", "data.download=false"], "train-images"),
    (["evaluate", "does/not/exist"], "no distilled set"),
])
def test_user_errors_exit_2_with_one_message(tmp_path, capsys, argv, message):
    argv = argv + (["--out", str(tmp_path / "run"), "--data-root", str(tmp_path / "data")]
                   if argv[0] == "distill" else [])
    code, _, err = run(capsys, *argv, "--quiet")
    assert code == 2
    assert err.startswith("dreamdd: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "distilled.safetensors").exists()
    summary = tmp_path / "run" / "summary.json"
    if summary.exists():
        assert json.loads(summary.read_text())["status"] == "failed"


def test_nan_loss_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", str(tmp_path / "nan"),
                       "--quiet", *TINY, "--set", "synth.lr=1e30", "--set", "distill.iterations=3")
    assert code == 2 and "lower the image learning rate" in err
    assert not (tmp_path / "nan" / "distilled.safetensors").exists()
    assert json.loads((tmp_path / "nan" / "summary.json").read_text())["status"] == "failed"


def test_datasets_lists_digits_present(capsys, tmp_path):
    code, out, _ = run(capsys, "datasets", "--data-root", str(tmp_path))
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "present" in lines["digits"] and "missing" in lines["cifar10"]


def test_presets_listed(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "cifar10-ipc10" in out and "digits" in out


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # as if tensorboard were not installed
    code, _, err = run(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", str(tmp_path / "tb"),
                       "--quiet", "--tensorboard", *TINY)
    assert code == 2 and "pip install tensorboard" in err


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "dreamdd", "presets"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "cifar10-cpu-2h" in done.stdout
