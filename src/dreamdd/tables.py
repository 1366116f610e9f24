"""Evaluation tables: one row per model (mean and std of test accuracy), as markdown, CSV and JSON."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from .rundir import write_json, write_text

COLUMNS = ("model", "test_mean", "test_std", "val_mean", "repeats", "epochs", "train_size")


def rows_of(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table rows of evaluation summaries (see evaluation.evaluate_training_set)."""
    return [{k: r.get(k) for k in COLUMNS} for r in results]


def recipe_line(results: Sequence[dict[str, Any]]) -> str:
    recipe = results[0]["recipe"] if results else {}
    keys = ("epochs", "batch", "lr", "momentum", "weight_decay", "augment", "cutmix_prob", "val_every", "patience")
    return ", ".join(f"{k} {recipe[k]}" for k in keys if k in recipe)


def markdown(results: Sequence[dict[str, Any]], title: str = "") -> str:
    lines = [f"# {title}", ""] if title else []
    lines += ["| model | test accuracy (%) | validation (%) | networks | epochs | training images |",
              "|---|---|---|---|---|---|"]
    for r in rows_of(results):
        lines.append(f"| {r['model']} | {r['test_mean']:.2f} ± {r['test_std']:.2f} | {r['val_mean']:.2f} | "
                     f"{r['repeats']} | {r['epochs']} | {r['train_size']} |")
    lines += ["", f"Recipe: {recipe_line(results)}; checkpoint chosen on the validation split, test split used "
                  "once per network.", ""]
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
