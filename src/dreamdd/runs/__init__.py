"""The one reader of run folders: records (RunRecord, load_run, load_runs) and curves (iterations to reach)."""
from .curves import Curve, Reach, compare_curves, iterations_to_reach
from .records import EvalTable, RunRecord, is_number, load_run, load_runs, read_tables

__all__ = ["Curve", "EvalTable", "Reach", "RunRecord", "compare_curves", "is_number", "iterations_to_reach",
           "load_run", "load_runs", "read_tables"]
