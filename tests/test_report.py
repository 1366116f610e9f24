"""Reports and comparisons of run folders: iterations_to_reach, `dreamdd compare`, `dreamdd report`, and the page
opened in headless Chromium (every image loaded)."""
import json
import math
import shutil
from pathlib import Path

import pytest

from dreamdd.cli import main
from dreamdd.report import write_report
from dreamdd.runs import Reach, compare_curves, iterations_to_reach, load_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOSTILE = '<img src="nothing-here.png" id="injected">&amp;'

TINY = ["--quiet", "--set", "model.width=16", "--set", "model.depth=2", "--set", "match.batch_real=16",
        "--set", "distill.iterations=3", "--set", "distill.inner_loop=1", "--set", "distill.n_data=32",
        "--set", "distill.eval_every=1", "--set", "distill.eval_repeats=2", "--set", "distill.eval_epochs=2",
        "--set", "eval.epochs=2", "--set", "eval.repeats=2", "--set", "eval.val_every=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny digits runs, DREAM and IDC (random selector, real init); run A holds an evaluation table."""
    base = tmp_path_factory.mktemp("runs")
    a, b = base / "dream", base / "idc"
    assert main(["distill", "--dataset", "digits", "--ipc", "1", "--out", str(a), *TINY,
                 "--set", "select.kmeans_iter=10"]) == 0
    assert main(["distill", "--dataset", "digits", "--ipc", "1", "--out", str(b), "--selector", "random",
                 "--init", "real", *TINY]) == 0
    (a / "eval_table.json").write_text(json.dumps({
        "rows": [{"model": "convnet", "test_mean": 61.25, "test_std": 1.5, "repeats": 2, "epochs": 2},
                 {"model": HOSTILE, "test_mean": 40.0, "test_std": 0.0, "repeats": 2, "train_size": 10}],
        "recipe": "epochs 2, lr 0.01"}))
    return a, b


def write_run(folder: Path, periodic, final=None, **summary) -> Path:
    """A hand-made run folder: periodic (iteration, val_mean) points and an optional final val_mean."""
    folder.mkdir(parents=True)
    events = [{"event": "iteration", "iteration": i, "loss": 1.0 / i, "seconds": 0.1}
              for i in range(1, max([p[0] for p in periodic] + [final[0] if final else 0]) + 1)]
    events += [{"event": "eval", "iteration": i, "val_mean": v, "val_std": 1.0, "repeats": 1, "epochs": 5}
               for i, v in periodic]
    if final:
        events.append({"event": "eval", "iteration": final[0], "final": True, "val_mean": final[1],
                       "val_std": 0.5, "test_mean": final[1] - 2, "test_std": 0.5, "repeats": 2, "epochs": 10})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "summary.json").write_text(json.dumps({"status": "finished", **summary}))
    return folder


# ---- pure logic ----------------------------------------------------------------------------------------------
def test_iterations_to_reach():
    curve = [(2, 50.0), (4, 70.0), (6, 80.0), (8, 75.0)]
    assert iterations_to_reach(curve, 70.0) == 4          # reaching exactly counts
    assert iterations_to_reach(curve, 65.0) == 4
    assert iterations_to_reach(curve, 10.0) == 2
    assert iterations_to_reach(curve, 80.5) is None       # never
    assert iterations_to_reach(list(reversed(curve)), 72.0) == 6   # taken in order of iteration
    assert iterations_to_reach([(1, math.nan), (3, 60.0)], 50.0) == 3
    assert iterations_to_reach([], 1.0) is None


def test_compare_curves_reach_and_ratio():
    fast = [(2, 60.0), (4, 75.0), (6, 82.0)]
    slow = [(2, 50.0), (4, 60.0), (6, 66.0), (8, 70.0)]
    reach_fast, reach_slow = compare_curves(fast, slow)
    assert reach_fast == Reach(6, 82.0, 8, 70.0, 4)
    assert reach_fast.ratio == pytest.approx(2.0)          # the slow run's 8 iterations / the fast run's 4
    assert reach_slow.iteration is None and reach_slow.ratio is None
    same = [(1, 50.0), (2, 60.0)]
    assert [r.ratio for r in compare_curves(same, same)] == [1.0, 1.0]


def test_compare_prints_reach_never_and_ratio(tmp_path, capsys):
    a = write_run(tmp_path / "a", [(2, 60.0), (4, 75.0)], final=(6, 82.0))
    b = write_run(tmp_path / "b", [(2, 50.0), (4, 60.0), (6, 66.0), (8, 70.0)])   # no final evaluation
    png = tmp_path / "cmp.png"
    assert main(["compare", str(a), str(b), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "final evaluation's" in out
    assert "a: final 82.00 at iteration 6 (final evaluation, 2 x 10 epochs" in out
    assert "b: final 70.00 at iteration 8 (last periodic evaluation" in out
    assert "a reaches b's final 70.00 at iteration 4; ratio b's iterations / a's = 8/4 = 2.00" in out
    assert "b reaches a's final 82.00: never (best 70.00 within 8 iterations)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_real_runs(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    reaches = compare_curves(load_run(a).curve(), load_run(b).curve())
    for name, other, reach in (("dream", "idc", reaches[0]), ("idc", "dream", reaches[1])):
        assert f"{name}: final {reach.final:.2f} at iteration 3 (final evaluation, idc (epochs=2), 2 x 2 epochs" in out
        expected = "never" if reach.iteration is None else f"at iteration {reach.iteration};"
        assert f"{name} reaches {other}'s final {reach.target:.2f}{': ' if reach.iteration is None else ' '}" \
               f"{expected}" in out
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_compare_without_curve_is_a_user_error(tmp_path, capsys):
    a = write_run(tmp_path / "a", [(2, 60.0)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "summary.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    assert main(["compare", str(a), str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no eval events with 'val_mean'" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--metric", "test_mean", "--out", str(tmp_path / "x.png")]) == 2


# ---- the report without a browser ----------------------------------------------------------------------------
def test_report_of_two_runs_has_every_part(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "both.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    for png in ("both-accuracy.png", "both-loss.png"):
        assert (out.parent / png).read_bytes()[:4] == b"\x89PNG"
    for part in ('id="overview"', 'id="accuracy"', 'id="loss"', 'id="run-1"', 'id="run-2"', "Synthetic images",
                 "Timings", "Configuration", "eval_table.json", "Recipe: epochs 2, lr 0.01", "61.25 ± 1.50", "test (%), mean ± std",
                 "Validation accuracy (%) against outer iteration"):
        assert part in page, part
    assert page.count("<img") == 4 and page.count('src="data:image/png;base64,') == 4   # self-contained


def test_report_default_path_and_missing_optional_files(runs, tmp_path, capsys):
    run = tmp_path / "bare"
    shutil.copytree(runs[1], run)
    for name in ("grid.png", "config.yaml", "metadata.json", "log.txt", "checkpoint.pt"):
        (run / name).unlink()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"event": "iteration", "itera')          # a line cut short by a kill
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert (run / "report-accuracy.png").exists() and (run / "report-loss.png").exists()
    assert "no grid.png in this run" in page and "no config.yaml in this run" in page
    assert "1 unreadable line(s) skipped" in page

    only_summary = tmp_path / "failed"
    only_summary.mkdir()
    (only_summary / "summary.json").write_text(json.dumps({"status": "failed", "error": "the loss became nan"}))
    page_path, _ = write_report([only_summary])
    page = page_path.read_text(encoding="utf-8")
    assert "status: failed" in page and "no final evaluation recorded" in page

    coreset = tmp_path / "coreset"      # `dreamdd select` writes no metrics.jsonl and no iterations
    coreset.mkdir()
    (coreset / "summary.json").write_text(json.dumps({
        "status": "finished", "method": "coreset-herding", "ipc": 1, "wall_seconds": 3.5,
        "evaluation": {"model": "convnet", "repeats": 2, "epochs": 5, "val_mean": 56.0, "val_std": 2.0,
                       "test_mean": 55.5, "test_std": 1.0}}))
    page = write_report([coreset])[0].read_text(encoding="utf-8")
    assert "55.50 ± 1.00" in page and "56.00 ± 2.00" in page and "coreset-herding" in page

    (tmp_path / "nothing").mkdir()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a dreamdd run folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "absent")]) == 2


def test_report_escapes_every_string_from_files(tmp_path):
    run = write_run(tmp_path / "<b>run</b>", [(1, 50.0)], final=(2, 60.0), status="<i>finished</i>",
                    dataset="<script>alert(1)</script>")
    (run / "config.yaml").write_text("data:\n  dataset: '<script>alert(2)</script>'\n")
    (run / "eval_table.csv").write_text(f'model,test_mean,test_std,note\n"{HOSTILE}",50.5,1.25,"a & b"\n')
    page = write_report([run], tmp_path / "r.html")[0].read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>run</b>" not in page and "<i>finished" not in page
    assert HOSTILE not in page and 'id="injected"' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;b&gt;run&lt;/b&gt;" in page and "a &amp; b" in page and "50.50 ± 1.25" in page


def test_help_texts(capsys):
    for command, words in (("report", ["RUN_DIR", "--out FILE", "report.html"]),
                           ("compare", ["RUN_A", "RUN_B", "--metric", "compare.png"])):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert all(w in out for w in words), out


# ---- the page in a browser -----------------------------------------------------------------------------------
def test_report_in_headless_chromium(runs, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("headless Chromium is not installed; .ci/run installs it "
                    "(apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is missing: pip install -e '.[test]'")
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    page, _ = write_report(list(runs), tmp_path / "report.html")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height), 900), 12000))
        screenshot = tmp_path / "report-screenshot.png"
        assert driver.save_screenshot(str(screenshot))
        sections = driver.execute_script(
            "return Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
        headings = driver.execute_script(
            "return Array.from(document.querySelectorAll('h2, h3, h4')).map(h => h.textContent)")
        text = driver.execute_script("return document.body.innerText")
        injected = driver.execute_script("return document.getElementById('injected') === null")
    finally:
        driver.quit()
    assert len(images) == 4, images                   # accuracy, loss, and one grid per run
    broken = [alt for alt, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert sections == ["overview", "accuracy", "loss", "run-1", "run-2"]
    for heading in ("Overview", "Accuracy", "Matching loss", "dream", "idc", "Synthetic images", "Evaluation",
                    "Timings", "Configuration", "eval_table.json"):
        assert heading in headings, heading
    assert injected and HOSTILE in text               # shown as text, not turned into an element
    with Image.open(screenshot) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 900
        low, high = shot.convert("L").getextrema()
        assert high - low > 100                       # not a blank page
    assert screenshot.stat().st_size > 20_000
