"""Pages of runs: read run folders, compare their accuracy curves, write a self-contained report.html.

Run folders are read by `dreamdd.runs` (records and curves: a run's eval events give its accuracy curve, and
`iterations_to_reach` the paper's "iterations to reach the baseline"); the figures are drawn by `dreamdd.plots`.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import DreamddError
from .io.names import CONFIG, GRID, REPORT
from .plots import metric_label, plot_accuracy, plot_loss
from .io.rundir import atomic_write
from .runs import Reach, RunRecord, compare_curves, is_number, load_runs



# ---- compare -------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    runs: tuple[RunRecord, RunRecord]
    metric: str
    reaches: tuple[Reach, Reach]
    plot: Path | None = None

    def lines(self) -> list[str]:
        """The comparison as text lines (what `dreamdd compare` prints)."""
        a, b = self.runs
        what = metric_label(self.metric).replace(" (%)", "")
        out = [f"accuracy: {what} ('{self.metric}' of the eval events in metrics.jsonl); a run's final accuracy is "
               f"its final evaluation's, else its last periodic one"]
        for run, reach in zip(self.runs, self.reaches):
            final = run.final_event(self.metric)
            source = "final evaluation" if final is not None else "last periodic evaluation"
            event = final if final is not None else run.points(self.metric)[-1]
            protocol = _protocol(event)
            periodic = run.points(self.metric)
            extra = f"; periodic: {_protocol(periodic[-1]) or '?'} at {len(periodic)} point(s)" if periodic else ""
            out.append(f"{run.label}: final {reach.final:.2f} at iteration {reach.final_iteration} "
                       f"({source}{', ' + protocol if protocol else ''}{extra})  [{run.path}]")
        for (run, other), reach in zip(((a, b), (b, a)), self.reaches):
            head = f"{run.label} reaches {other.label}'s final {reach.target:.2f}"
            if reach.iteration is None:
                best = max(acc for _, acc in run.curve(self.metric))
                out.append(f"{head}: never (best {best:.2f} within {reach.final_iteration} iterations)")
            else:
                ratio = reach.ratio
                out.append(f"{head} at iteration {reach.iteration}; ratio {other.label}'s iterations / "
                           f"{run.label}'s = {reach.target_iteration}/{reach.iteration} = "
                           + (f"{ratio:.2f}" if ratio is not None else "n/a"))
        protocols = {_protocol(e) for run in self.runs for e in run.points(self.metric)}
        protocols |= {_protocol(run.final_event(self.metric) or {}) for run in self.runs}
        protocols.discard("")
        if len(protocols) > 1:
            out.append(f"note: the points were measured with different protocols ({'; '.join(sorted(protocols))}); "
                       "for like-for-like curves use one eval.protocol and set distill.eval_epochs and "
                       "distill.eval_repeats to eval.epochs and eval.repeats")
        out += [f"note: {note}" for note in evaluation_notes(self.runs)]
        return out


def _protocol(event: dict[str, Any]) -> str:
    """'dc, 3 x 300 epochs': the evaluation protocol's name (with what departs from it) and its networks."""
    size = (f"{event['repeats']} x {event['epochs']} epochs"
            if is_number(event.get("repeats")) and is_number(event.get("epochs")) else "")
    return ", ".join(p for p in (event.get("protocol") if isinstance(event.get("protocol"), str) else "", size) if p)


def _split(run: RunRecord) -> str:
    """The data split a run was evaluated on (dataset, validation size, split seed), as text; '' when unknown."""
    split = (run.metadata or {}).get("split")
    if not isinstance(split, dict):
        return ""
    return f"{split.get('dataset')}, val_size {split.get('val_size')}, split seed {split.get('seed')}"


def evaluation_notes(runs: Sequence[RunRecord]) -> list[str]:
    """Plain warnings when runs' final numbers are not comparable: other protocols or other splits."""
    notes = []
    finals = {_protocol(run.final_evaluation() or {}) for run in runs} - {""}
    if len(finals) > 1:
        notes.append(f"the final evaluations ran under different protocols ({'; '.join(sorted(finals))}): their "
                     "numbers are not comparable (re-evaluate with `dreamdd evaluate RUN --protocol NAME`)")
    splits = {_split(run) for run in runs} - {""}
    if len(splits) > 1:
        notes.append(f"the runs were evaluated on different splits ({'; '.join(sorted(splits))})")
    return notes


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, metric: str = "val_mean",
                 plot: str | os.PathLike | None = None) -> Comparison:
    """Compare two run folders by `metric`; with `plot`, also write their overlaid accuracy curves there."""
    runs = load_runs([run_a, run_b])
    for run in runs:
        if str((run.metadata or run.summary or {}).get("method", "")).startswith("coreset-"):
            raise DreamddError(f"{run.path} is a coreset (dreamdd select): it has no outer iterations, so no curve "
                               "to compare; set its final accuracy beside the other run's with `dreamdd report "
                               f"{run_a} {run_b}`")
        if not run.curve(metric):
            raise DreamddError(f"{run.path} has no eval events with '{metric}' (metrics.jsonl) and no final "
                               f"evaluation holding it; compare needs an accuracy curve (default metric val_mean)")
    comparison = Comparison((runs[0], runs[1]), metric, compare_curves(runs[0].curve(metric), runs[1].curve(metric)))
    if plot is not None:
        comparison.plot = plot_accuracy(runs, plot, metric, mark_finals=True,
                                        title=f"{runs[0].label} vs {runs[1].label}: "
                                              f"{metric_label(metric).replace(' (%)', '')} against outer iteration")
    return comparison


# ---- the page ------------------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """A value as escaped HTML text; numbers shortened."""
    if isinstance(value, bool) or value is None:
        return html.escape(str(value) if value is not None else "")
    if isinstance(value, float):
        if not math.isfinite(value):
            return html.escape(str(value))
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _pm(mean: Any, std: Any) -> str:
    if not is_number(mean):
        return "–" if mean is None else esc(mean)
    return f'<span class="pm">{mean:.2f} ± {std:.2f}</span>' if is_number(std) else f"{mean:.2f}"


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
               css_class: str = "") -> str:
    """A table of dict rows, columns in order of first appearance; X_mean and X_std pairs become 'mean ± std'."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    pairs = {c[:-5] for c in columns if c.endswith("_mean") and c[:-5] + "_std" in columns}
    shown = [c for c in columns if not (c.endswith("_std") and c[:-4] in pairs)]
    names = {"val": "validation (%)", "test": "test (%)"}
    head = "".join(f"<th>{esc(names.get(c[:-5], c[:-5]) + ', mean ± std' if c[:-5] in pairs and c.endswith('_mean') else c)}</th>"
                   for c in shown)
    body = []
    for row in rows:
        cells = []
        for c in shown:
            if c.endswith("_mean") and c[:-5] in pairs:
                cells.append(f"<td>{_pm(row.get(c), row.get(c[:-5] + '_std'))}</td>")
            else:
                cells.append(f"<td>{esc(row.get(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _img(png: Path, alt: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img{cls} src="{_data_uri(png)}" alt="{esc(alt)}">'


def _seconds(value: Any) -> str:
    if not is_number(value):
        return "–"
    if value < 10:
        return f"{value:.3g} s"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def _timing(key: str, value: Any) -> str:
    """A summary.json timing, by what its name says: a share, a count, or seconds."""
    if not is_number(value):
        return esc(value)
    if key.endswith("share"):
        return f"{100 * value:.1f} %"
    if isinstance(value, int) or key.endswith(("iterations", "selections")) and float(value).is_integer():
        return str(int(value))
    return esc(_seconds(value))


def _overview_row(run: RunRecord, anchor: str) -> str:
    s, m = run.summary or {}, run.metadata or {}
    dataset = s.get("dataset") or m.get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name")
    final = run.final_evaluation() or {}
    periodic = run.points("val_mean")
    val = final if is_number(final.get("val_mean")) else (periodic[-1] if periodic else {})
    cells = [f'<a href="#{anchor}">{esc(run.label)}</a>', esc(s.get("status", "–")), esc(dataset),
             esc(s.get("ipc", m.get("ipc"))), esc(s.get("method", m.get("method"))),
             esc(s.get("selector", m.get("selector"))), esc(s.get("init", m.get("init"))),
             esc(s.get("iterations", m.get("iterations"))),
             _pm(val.get("val_mean"), val.get("val_std")), _pm(final.get("test_mean"), final.get("test_std")),
             _pm(final.get("test_last_mean"), final.get("test_last_std")),
             esc(_protocol(final)) or "–", esc(_seconds(s.get("wall_seconds")))]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


OVERVIEW_COLUMNS = ("run", "status", "dataset", "IPC", "method", "selector", "init", "iterations",
                    "final validation (%)", "final test, validation-chosen checkpoint (%)",
                    "final test, last epoch (%)", "final evaluation protocol", "wall time")


def _config_html(text: str) -> str:
    """config.yaml as it is, cut at its top-level keys into blocks that flow in columns."""
    blocks: list[list[str]] = []
    for line in text.rstrip("\n").splitlines():
        if not blocks or (line[:1] not in (" ", "\t", "-", "") and blocks[-1]):
            blocks.append([])
        blocks[-1].append(line)
    return '<div class="config">' + "".join(f"<pre>{esc(chr(10).join(b))}</pre>" for b in blocks) + "</div>"


def _run_section(run: RunRecord, anchor: str) -> str:
    s, m = run.summary or {}, run.metadata or {}
    parts = [f'<section class="run" id="{anchor}"><h2>{esc(run.label)}</h2>',
             f'<p class="path">{esc(run.path.resolve())}</p>']
    if s.get("status") not in (None, "finished"):
        parts.append(f'<p class="warn">status: {esc(s.get("status"))}'
                     + (f" — {esc(s['error'])}" if s.get("error") else "") + "</p>")
    for problem in run.problems:
        parts.append(f'<p class="warn">{esc(problem)}</p>')

    coreset = str(m.get("method") or s.get("method") or "").startswith("coreset-")
    parts.append('<h3>Selected real images</h3>' if coreset else '<h3>Synthetic images</h3>')
    grid = run.path / GRID
    if grid.exists() and grid.stat().st_size > 0:
        parts.append(_img(grid, f"synthetic images of {run.label}, one row per class", "grid"))
    else:
        parts.append(f'<p class="missing">no {GRID} in this run</p>')
    parts += _evaluation_parts(run, s, m) + _table_parts(run) + _timing_parts(run, s)

    parts.append('<h3>Configuration</h3>')
    if run.config_text is not None:
        parts.append(_config_html(run.config_text))
    else:
        parts.append(f'<p class="missing">no {CONFIG} in this run</p>')
    versions = m.get("versions")
    if isinstance(versions, dict):
        parts.append('<p class="note">versions: ' + esc(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _evaluation_parts(run: RunRecord, s: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """The final evaluation, each of its networks and the periodic validation points."""
    parts = ['<h3>Evaluation</h3>']
    final = run.final_evaluation()
    evaluation = m.get("evaluation") if isinstance(m.get("evaluation"), dict) else None
    if final is not None:
        keys = ("model", "repeats", "epochs", "protocol", "val_mean", "val_std", "test_mean", "test_std",
                "test_last_mean", "test_last_std", "val_size", "checkpoint")
        source = {**(evaluation or {}), **(s.get("evaluation") or {}), **final}
        parts.append(html_table([{k: source.get(k) for k in keys if k in source}]))
    else:
        parts.append('<p class="missing">no final evaluation recorded</p>')
    networks = (evaluation or {}).get("runs")
    if isinstance(networks, list) and networks and all(isinstance(r, dict) for r in networks):
        parts.append("<p>Each network (tested once after the last epoch, and once at the checkpoint chosen on "
                     "the validation split):</p>")
        parts.append(html_table(networks))
    points = run.points("val_mean")
    if points:
        parts.append("<p>Periodic validation during distillation:</p>")
        parts.append(html_table([{k: e.get(k) for k in ("iteration", "val_mean", "val_std", "repeats", "epochs")}
                                 for e in points]))
    return parts


def _table_parts(run: RunRecord) -> list[str]:
    """The evaluation tables found in the run folder."""
    parts = []
    for table in run.tables:
        parts.append(f'<h4 class="table-name">{esc(table.name)}</h4>')
        if table.text is not None:
            parts.append(f"<pre>{esc(table.text)}</pre>")
        elif table.rows:
            first = [c for c in ("model", "test_mean", "test_std") if any(c in r for r in table.rows)]
            rest = []
            for row in table.rows:
                rest += [k for k in row if k not in first and k not in rest]
            parts.append(html_table(table.rows, first + rest, "eval-table"))
        else:
            parts.append('<p class="missing">empty table</p>')
        if table.note:
            parts.append(f'<p class="note">{esc(table.note)}</p>')
    return parts


def _timing_parts(run: RunRecord, s: dict[str, Any]) -> list[str]:
    """Wall time, the mean outer iteration and the loop's timings by part."""
    parts = ['<h3>Timings</h3>']
    timings = s.get("timings") if isinstance(s.get("timings"), dict) else {}
    iterations = run.iterations()
    pairs = [("wall time", _seconds(s.get("wall_seconds")))]
    seconds = [e["seconds"] for e in iterations if is_number(e.get("seconds"))]
    if seconds:
        pairs.append((f"outer iteration (mean of {len(seconds)})", _seconds(sum(seconds) / len(seconds))))
    pairs += [(k, _timing(k, v)) for k, v in timings.items()]
    if len(pairs) > 1 or is_number(s.get("wall_seconds")):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
        parts.append(f'<table class="kv"><tbody>{rows}</tbody></table>')
        parts.append('<p class="note">select, match, network, evaluate: time spent in each part of the loop; '
                     'select_share: selection\'s share of select + match + network.</p>')
    else:
        parts.append('<p class="missing">no timings recorded</p>')
    return parts


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { margin-bottom: 0.3em; } h4 { margin: 0.8em 0 0.3em; font-family: monospace; }
table { border-collapse: collapse; margin: 0.4em 0 0.8em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
thead th, table.kv th { background: #f3f3f3; font-weight: 600; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
div.config { column-width: 22em; column-gap: 1em; }
div.config pre { break-inside: avoid; margin: 0 0 0.6em; white-space: pre-wrap; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; display: block; margin: 0.4em 0; }
.pm { white-space: nowrap; }
.path, .note, .meta { color: #666; font-size: 0.85em; } .missing { color: #888; font-style: italic; }
.warn { color: #a33; } section.run { margin-top: 2.5em; }
nav a { margin-right: 1em; }
"""


def default_report_path(run_dirs: Sequence[str | os.PathLike]) -> Path:
    """RUN_DIR/report.html for one run, ./report.html for several."""
    return Path(run_dirs[0]) / REPORT if len(run_dirs) == 1 else Path(REPORT)


def _loss_note(runs: Sequence[RunRecord]) -> str:
    """A warning when the overlaid losses come from different objectives (method or metric), whose scales differ."""
    kinds = set()
    for run in runs:
        if run.losses():
            meta = run.metadata or {}
            kinds.add(str(meta.get("method") or (run.summary or {}).get("method") or "?"))
    if len(kinds) > 1:
        return (f'<p class="warn">the losses of different methods ({esc(", ".join(sorted(kinds)))}) measure '
                "different things on different scales: compare each line\'s shape, not the lines</p>")
    return ""


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                 metric: str = "val_mean") -> tuple[Path, list[Path]]:
    """Write report.html (self-contained: images embedded) and its plots as PNGs beside it.

    Returns the page's path and the PNGs' paths (<stem>-accuracy.png, <stem>-loss.png).
    """
    if not run_dirs:
        raise DreamddError("report needs at least one run folder")
    runs = load_runs(run_dirs)
    out = Path(out) if out is not None else default_report_path(run_dirs)
    if out.is_dir():
        out = out / REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    accuracy = plot_accuracy(runs, out.parent / f"{out.stem}-accuracy.png", metric)
    loss = plot_loss(runs, out.parent / f"{out.stem}-loss.png")
    anchors = [f"run-{k + 1}" for k in range(len(runs))]
    title = "dreamdd report: " + ", ".join(run.label for run in runs)
    protocols = sorted({p for run in runs for p in (_protocol(e) for e in run.points(metric)) if p})
    finals = sorted({p for run in runs for p in [_protocol(run.final_event(metric) or {})] if p})
    caption = (f"{metric_label(metric)[:1].upper()}{metric_label(metric)[1:]} against outer iteration. Circles: "
               f"periodic evaluations during distillation ({esc(', '.join(protocols)) or 'none'}: networks × "
               f"epochs), band: mean ± std over the networks when more than one was trained. Squares: the final "
               f"evaluation ({esc(', '.join(finals)) or 'none'}), error bar: std"
               + ("; it trains its networks differently, so the dotted step to it is partly the protocol"
                  if set(finals) - set(protocols) and protocols else "")
               + ". All measured on the validation "
               "split carved out of the training set; test accuracy is in the tables."
               if metric == "val_mean" else f"{esc(metric_label(metric))} against outer iteration.")
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="meta">written {esc(time.strftime("%Y-%m-%d %H:%M:%S"))} by dreamdd report; '
            f"{len(runs)} run(s)</p>",
            "<nav>" + "".join(f'<a href="#{a}">{esc(r.label)}</a>' for r, a in zip(runs, anchors)) + "</nav>",
            '<section id="overview"><h2>Overview</h2><table><thead><tr>'
            + "".join(f"<th>{esc(c)}</th>" for c in OVERVIEW_COLUMNS) + "</tr></thead><tbody>"
            + "".join(_overview_row(r, a) for r, a in zip(runs, anchors)) + "</tbody></table>"
            '<p class="note">final validation: the final evaluation\'s validation accuracy (else the last periodic '
            "one); final test: the final evaluation's test accuracy (mean ± std over its networks) at the "
            "checkpoint chosen on the validation split, and after the last epoch (no choice at all).</p>"
            + "".join(f'<p class="warn">{esc(note)}</p>' for note in evaluation_notes(runs)) + "</section>",
            '<section id="accuracy"><h2>Accuracy</h2>'
            + (f'{_img(accuracy, "accuracy against outer iteration")}<p class="note">{caption}</p>'
               if any(run.curve(metric) for run in runs) else
               '<p class="missing">no accuracy against outer iteration: these runs have no iterations (a coreset) '
               "or no evaluation; their final accuracies are in the overview</p>") + "</section>",
            '<section id="loss"><h2>Matching loss</h2>'
            + (_img(loss, "matching loss against outer iteration") + _loss_note(runs)
               if any(run.losses() for run in runs) else '<p class="missing">no matching loss recorded</p>')
            + "</section>"]
    body += [_run_section(r, a) for r, a in zip(runs, anchors)]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")
    atomic_write(out, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return out, [accuracy, loss]
