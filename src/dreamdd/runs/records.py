"""The one reader of run folders (distill's and select's): a RunRecord holds what a folder holds, read leniently
(every file optional, unreadable parts listed as problems), with its events, curves and final evaluation. The
report, compare and the benchmarks read runs through here."""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DreamddError
from ..io.names import CONFIG, EVAL_TABLE, METADATA, METRICS, SUMMARY
from ..io.rundir import RunDir

TABLE_GLOB = EVAL_TABLE + "*"
RUN_FILES = (CONFIG, METRICS, SUMMARY, METADATA)


@dataclass
class EvalTable:
    """An evaluation table found in a run folder (eval_table*.json / .csv, else .md shown as text)."""
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    text: str | None = None


@dataclass
class RunRecord:
    """What a run folder holds, read leniently: every file is optional, unreadable parts become `problems`."""
    path: Path
    label: str
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    metadata: dict[str, Any] | None
    config_text: str | None
    tables: list[EvalTable]
    problems: list[str]

    def iterations(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "iteration" and is_number(e.get("iteration"))]

    def losses(self) -> list[tuple[int, float]]:
        return [(e["iteration"], e["loss"]) for e in self.iterations() if is_number(e.get("loss"))]

    def points(self, metric: str = "val_mean") -> list[dict[str, Any]]:
        """The periodic eval events that hold `metric`, by iteration."""
        rows = [e for e in self.events if e.get("event") == "eval" and not e.get("final")
                and is_number(e.get("iteration")) and is_number(e.get(metric))]
        return sorted(rows, key=lambda e: e["iteration"])

    def final_evaluation(self) -> dict[str, Any] | None:
        """The final evaluation: its eval event, else summary.json's evaluation (with the run's last iteration,
        when known; a coreset run has none)."""
        finals = [e for e in self.events if e.get("event") == "eval" and e.get("final")]
        if finals:
            return finals[-1]
        evaluation = (self.summary or {}).get("evaluation")
        if not isinstance(evaluation, dict):
            return None
        iteration = (self.summary or {}).get("iterations", (self.metadata or {}).get("iterations"))
        return {"event": "eval", "final": True, **({"iteration": iteration} if is_number(iteration) else {}),
                **evaluation}

    def final_event(self, metric: str = "val_mean") -> dict[str, Any] | None:
        """The final evaluation when it can go on a curve of `metric`: it has an iteration and that metric."""
        event = self.final_evaluation()
        if event is not None and is_number(event.get("iteration")) and is_number(event.get(metric)):
            return event
        return None

    def curve(self, metric: str = "val_mean") -> list[tuple[int, float]]:
        """(iteration, accuracy): the periodic evaluations, then the final one."""
        points = [(e["iteration"], float(e[metric])) for e in self.points(metric)]
        final = self.final_event(metric)
        if final is not None:
            points.append((final["iteration"], float(final[metric])))
        return sorted(points, key=lambda p: p[0])

    def final_accuracy(self, metric: str = "val_mean") -> tuple[int, float] | None:
        """The run's final accuracy: the final evaluation's, else the last periodic one; with its iteration."""
        curve = self.curve(metric)
        return curve[-1] if curve else None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what can go on a curve."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} could not be read ({error})")
        return None


def _read_events(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return events


def _cell(text: str) -> Any:
    """A CSV cell as a number when it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_tables(folder: Path, problems: list[str] | None = None) -> list[EvalTable]:
    """The evaluation tables of a folder: eval_table*.json (rows: a list, or {"rows": [...]}), else the .csv of
    the same name, else the .md as text."""
    problems = [] if problems is None else problems
    tables: dict[str, EvalTable] = {}
    for path in sorted(folder.glob(TABLE_GLOB + ".json")):
        data = _read_json(path, problems)
        rows = data.get("rows") if isinstance(data, dict) else data
        if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
            note = data.get("recipe") if isinstance(data, dict) and isinstance(data.get("recipe"), str) else ""
            tables[path.stem] = EvalTable(path.name, rows, "Recipe: " + note if note else "")
        elif data is not None:
            problems.append(f"{path.name} holds no list of rows")
    for path in sorted(folder.glob(TABLE_GLOB + ".csv")):
        if path.stem not in tables:
            try:
                with open(path, newline="") as f:
                    rows = [{k: _cell(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
                tables[path.stem] = EvalTable(path.name, rows)
            except (OSError, csv.Error, UnicodeDecodeError) as error:
                problems.append(f"{path.name} could not be read ({error})")
    for path in sorted(folder.glob(TABLE_GLOB + ".md")):
        if path.stem not in tables:
            tables[path.stem] = EvalTable(path.name, text=path.read_text(errors="replace"))
    return [tables[k] for k in sorted(tables)]


def load_run(path: str | os.PathLike, label: str | None = None) -> RunRecord:
    """Read a run folder (distill's or select's); any file may be missing, but not all of them."""
    path = Path(path)
    if not path.is_dir():
        raise DreamddError(f"{path} is not a folder; give the run folder a `dreamdd distill` wrote")
    if not any((path / name).exists() for name in RUN_FILES):
        raise DreamddError(f"{path} is not a dreamdd run folder: it has none of {', '.join(RUN_FILES)}")
    problems: list[str] = []
    summary = _read_json(path / SUMMARY, problems)
    if isinstance(summary, dict) and summary.get("status") == "running":
        summary = RunDir(path).summary()   # "stopped" if no process writes it any more
    metadata = _read_json(path / METADATA, problems)
    config = path / CONFIG
    return RunRecord(path=path, label=label or path.resolve().name, events=_read_events(path / METRICS, problems),
                     summary=summary if isinstance(summary, dict) else None,
                     metadata=metadata if isinstance(metadata, dict) else None,
                     config_text=config.read_text(errors="replace") if config.exists() else None,
                     tables=read_tables(path, problems), problems=problems)


def load_runs(paths: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """Several runs, labelled by folder name (with parent folders added until the labels differ)."""
    resolved = [Path(p).resolve() for p in paths]
    depth = 1
    labels = [p.name for p in resolved]
    while len(set(labels)) < len(labels) and depth < 6:
        depth += 1
        labels = ["/".join(p.parts[-depth:]) for p in resolved]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({k + 1})" for k, label in enumerate(labels)]
    return [load_run(p, label) for p, label in zip(paths, labels)]
