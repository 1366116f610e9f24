"""Accuracy curves of runs: the first outer iteration at which a curve reaches a target accuracy, and how two
runs fare against each other's final accuracy (the paper's "iterations to reach the baseline")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

Curve = Sequence[tuple[int, float]]


def iterations_to_reach(curve: Iterable[tuple[int, float]], target: float) -> int | None:
    """The first iteration at which `curve` (pairs of iteration and accuracy) reaches `target` (accuracy >=
    target), or None when it never does. Points are taken in order of iteration; NaN accuracies never reach."""
    for iteration, accuracy in sorted(curve, key=lambda p: p[0]):
        if accuracy >= target:
            return iteration
    return None


@dataclass
class Reach:
    """How one run fares against the other's final accuracy."""
    final_iteration: int        # this run's last point: iteration and accuracy
    final: float
    target_iteration: int       # the other run's last point: the accuracy to reach and when the other had it
    target: float
    iteration: int | None       # first iteration at which this run reaches `target`; None: never

    @property
    def ratio(self) -> float | None:
        """The other run's iterations over this run's iterations to the same accuracy (> 1: this one is faster)."""
        if self.iteration is None or self.iteration <= 0:
            return None
        return self.target_iteration / self.iteration


def compare_curves(a: Curve, b: Curve) -> tuple[Reach, Reach]:
    """For each curve, the first iteration at which it reaches the other's final accuracy (its last point: of two
    points at the last iteration, a periodic one and the final evaluation, the one listed last)."""
    if not a or not b:
        raise ValueError("both curves need at least one point")
    last_a = sorted(a, key=lambda p: p[0])[-1]     # sorted() is stable: the later of equal iterations stays last
    last_b = sorted(b, key=lambda p: p[0])[-1]
    return (Reach(last_a[0], last_a[1], last_b[0], last_b[1], iterations_to_reach(a, last_b[1])),
            Reach(last_b[0], last_b[1], last_a[0], last_a[1], iterations_to_reach(b, last_a[1])))
