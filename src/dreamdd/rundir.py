"""The run folder: atomic writes of its files, the metrics log and the checkpoint to resume from."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import DreamddError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
LOG = "log.txt"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class RunDir:
    """One run's folder. Everything a run writes goes through here."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tensorboard = None

    def enable_tensorboard(self) -> None:
        """Mirror numeric event fields to TensorBoard (optional: needs the tensorboard package)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DreamddError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                               "(or run without --tensorboard; metrics.jsonl has the same numbers)") from None
        self.tensorboard = SummaryWriter(str(self.path / "tensorboard"))

    @classmethod
    def create(cls, path: str | os.PathLike | None, default_name: str, base: str | os.PathLike = "runs") -> "RunDir":
        """A new, empty run folder: `path` if given (it must be empty), else runs/<default_name>[-N]."""
        if path is not None:
            target = Path(path)
            if target.exists() and any(target.iterdir()):
                raise DreamddError(f"output folder {target} is not empty; choose another --out, "
                                   f"or continue that run with --resume {target}")
        else:
            target = Path(base) / default_name
            n = 2
            while target.exists():
                target = Path(base) / f"{default_name}-{n}"
                n += 1
        target.mkdir(parents=True, exist_ok=True)
        return cls(target)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- metrics -----------------------------------------------------------------------------------------
    def log_event(self, event: dict[str, Any]) -> None:
        """Append one event (one JSON line) to metrics.jsonl."""
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()
        if self.tensorboard is not None and "iteration" in event:
            for key, value in event.items():
                if key not in ("iteration", "event") and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self.tensorboard.add_scalar(f"{event.get('event', 'event')}/{key}", value, event["iteration"])
            self.tensorboard.flush()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if kind is None or r.get("event") == kind]

    def truncate_events(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite metrics.jsonl with only the events `keep` accepts (on resume: drop what will be redone)."""
        rows = [r for r in self.events() if keep(r)]
        write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows))

    # ---- checkpoint --------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.file(CHECKPOINT), lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.file(CHECKPOINT)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)
