"""The file names of a run folder (distill, select, experts) and of an artifact, spelled once: every module that
writes or reads one of them takes its name from here."""
from __future__ import annotations

CONFIG = "config.yaml"          # the resolved settings; its presence marks a folder a run can resume
REQUEST = "request.json"        # what the command was asked to do beyond config.yaml (e.g. whether to evaluate)
METRICS = "metrics.jsonl"       # one event a line: iterations, evaluations, a stop
SUMMARY = "summary.json"        # the run's status (running, finished, failed, ...) and its results
CHECKPOINT = "checkpoint.pt"    # the state a run resumes from
LOG = "log.txt"
GRID = "grid.png"               # the distilled images, one row a class
LOCK = ".lock"
BUDGET = "budget.json"          # the --budget plan: probes, measured times, the chosen horizon and image lr
TENSORBOARD = "tensorboard"     # --tensorboard's event files
TENSORS = "distilled.safetensors"   # an artifact's tensors ...
METADATA = "metadata.json"          # ... and what produced them (with the tensors' sha256)
SNAPSHOTS = "snapshots"         # snapshots/iter-NNNNNN/: artifacts of the set during the run
EXPERTS_MANIFEST = "experts.json"   # an experts folder's manifest
EVAL_TABLE = "eval_table"       # `dreamdd evaluate --table`'s default prefix (.md, .csv, .json)
REPORT = "report.html"


def snapshot(completed: int) -> str:
    """The folder of the snapshot after `completed` outer iterations, relative to the run folder."""
    return f"{SNAPSHOTS}/iter-{completed:06d}"


def snapshot_iteration(name: str) -> int:
    """The outer iteration of a snapshot folder's name (iter-NNNNNN)."""
    return int(name.split("-")[1])
