"""Where a run's time goes: one stopwatch with named, nested parts, so that each second is counted once.

A part entered inside another pauses the outer one: time spent selecting real images inside a matching step is
selection time, not matching time, whichever method asks for the batch.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

PARTS = ("select", "match", "network", "evaluate")
clock = time.perf_counter      # module attribute, so that tests can drive the stopwatch with a fake clock


@dataclass
class Timings:
    """Seconds spent in each part of the loop, for the run record and the speed benchmarks."""
    select: float = 0.0
    match: float = 0.0
    network: float = 0.0
    evaluate: float = 0.0
    elapsed: float = 0.0          # wall seconds of the loop (outer iterations and periodic evaluations)
    inner_iterations: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    _open: list[list[Any]] = field(default_factory=list, repr=False, compare=False)   # [part, since] stack

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Count the wall time of the block under `name` (one of PARTS), less the time of parts nested in it."""
        if name not in PARTS:
            raise ValueError(f"unknown timing part {name!r}; parts are {', '.join(PARTS)}")
        now = clock()
        if self._open:
            outer = self._open[-1]
            self._add(outer[0], now - outer[1])
        self._open.append([name, now])
        try:
            yield
        finally:
            end = clock()
            _, since = self._open.pop()
            self._add(name, end - since)
            if self._open:
                self._open[-1][1] = end

    def _add(self, name: str, seconds: float) -> None:
        setattr(self, name, getattr(self, name) + seconds)

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> "Timings":
        """The timings a checkpoint recorded, so that a resumed run keeps counting where it stopped."""
        names = (*PARTS, "elapsed", "inner_iterations")
        return cls(**{k: type(getattr(cls, k))(saved[k]) for k in names if k in saved})

    def as_dict(self) -> dict[str, float]:
        loop = self.select + self.match + self.network
        return {"select": self.select, "match": self.match, "network": self.network, "evaluate": self.evaluate,
                "elapsed": self.elapsed, "inner_iterations": self.inner_iterations,
                "seconds_per_inner_iteration": loop / self.inner_iterations if self.inner_iterations else 0.0,
                "select_share": self.select / loop if loop else 0.0, **self.extra}
