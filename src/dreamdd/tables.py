"""Evaluation tables: one row per model (mean and std of test accuracy at the validation-chosen checkpoint and
after the last epoch, with the protocol), as markdown, CSV and JSON."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from .io.rundir import write_json, write_text

COLUMNS = ("model", "test_mean", "test_std", "test_last_mean", "test_last_std", "val_mean", "repeats", "epochs",
           "train_size", "protocol")


def rows_of(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table rows of evaluation summaries (see evaluation.evaluate_training_set)."""
    return [{k: r.get(k) for k in COLUMNS} for r in results]


def recipe_line(results: Sequence[dict[str, Any]]) -> str:
    recipe = results[0]["recipe"] if results else {}
    keys = ("epochs", "batch", "lr", "lr_schedule", "learned_lr", "momentum", "weight_decay", "augment",
            "augment_mode", "cutmix_prob", "val_every", "patience")
    settings = ", ".join(f"{k} {recipe[k]}" for k in keys if k in recipe)
    protocol = results[0].get("protocol") if results else None
    return f"protocol {protocol}: {settings}" if protocol else settings


def _pm(mean: Any, std: Any) -> str:
    return "–" if mean is None else f"{mean:.2f} ± {std:.2f}"


def markdown(results: Sequence[dict[str, Any]], title: str = "") -> str:
    lines = [f"# {title}", ""] if title else []
    lines += ["| model | test, validation-chosen checkpoint (%) | test, last epoch (%) | validation (%) | networks "
              "| epochs | training images |", "|---|---|---|---|---|---|---|"]
    for r in rows_of(results):
        lines.append(f"| {r['model']} | {_pm(r['test_mean'], r['test_std'])} | "
                     f"{_pm(r['test_last_mean'], r['test_last_std'])} | {r['val_mean']:.2f} | "
                     f"{r['repeats']} | {r['epochs']} | {r['train_size']} |")
    lines += ["", f"Recipe: {recipe_line(results)}; the checkpoint is chosen on the validation split (never on "
                  "test), and the last epoch's network is tested as well.", ""]
    return "\n".join(lines)


def write_tables(prefix: str | os.PathLike, results: Sequence[dict[str, Any]], title: str = "") -> list[Path]:
    """PREFIX.md, PREFIX.csv and PREFIX.json (the JSON holds the rows and the full summaries)."""
    prefix = Path(prefix)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows_of(results))
    paths = [prefix.with_suffix(".md"), prefix.with_suffix(".csv"), prefix.with_suffix(".json")]
    write_text(paths[0], markdown(results, title))
    write_text(paths[1], buffer.getvalue())
    write_json(paths[2], {"rows": rows_of(results), "recipe": recipe_line(results), "results": list(results)})
    return paths


def accuracy_text(result: dict[str, Any]) -> str:
    """One line for a person: both test numbers (or the one there is), the protocol and what was trained."""
    parts = []
    if result.get("test_mean") is not None:
        parts.append(f"test accuracy {result['test_mean']:.2f} +- {result['test_std']:.2f} at the checkpoint "
                     f"chosen on {result.get('val_size', '?')} validation images (validation "
                     f"{result['val_mean']:.2f})")
    if result.get("test_last_mean") is not None:
        last = f"{result['test_last_mean']:.2f} +- {result['test_last_std']:.2f}"
        parts.append(f"after the last epoch {last}" if parts else
                     f"test accuracy after the last epoch {last} (no validation split, so no chosen checkpoint)")
    return (f"{'; '.join(parts) or 'no test accuracy'} [protocol {result.get('protocol', '?')}: "
            f"{result.get('repeats')} x {result.get('model')}, {result.get('epochs')} epochs]")
