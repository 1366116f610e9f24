"""Named write points, where the fault-injection tests kill the process (DREAMDD_KILL_AT=NAME[#N]: SIGKILL at
the N-th time, default the first, that point is reached; DREAMDD_WRITE_POINTS=FILE: append every point reached).
Unset, both cost two environment lookups per write."""
from __future__ import annotations

import os
import signal
from typing import Callable

_counts: dict[str, int] = {}


def reached(name: str, before_kill: Callable[[], object] | None = None) -> None:
    """Mark write point `name`: record it, or die there without any cleanup if the environment asks (after
    before_kill(), which can leave a write half done, as a power cut would)."""
    log = os.environ.get("DREAMDD_WRITE_POINTS")
    kill_at = os.environ.get("DREAMDD_KILL_AT")
    if not log and not kill_at:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if log:
        with open(log, "a") as f:
            f.write(f"{name}#{_counts[name]}\n")
    if kill_at:
        point, _, nth = kill_at.partition("#")
        if point == name and _counts[name] == int(nth or 1):
            if before_kill is not None:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Count from zero again (for several runs in one process)."""
    _counts.clear()
