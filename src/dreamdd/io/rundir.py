"""The run folder: atomic, checksummed writes of its files, its lock, the metrics log and the checkpoint to
resume from. Every command that writes a folder (distill, select, experts) goes through here."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .. import faults
from ..config import Config, safe_yaml
from ..errors import DreamddError, Interrupted
from .names import CHECKPOINT, CONFIG, LOCK, METRICS, REQUEST, SUMMARY, TENSORBOARD

CHECKPOINT_FORMAT = "dreamdd-checkpoint"
TEMPORARY_SUFFIX = ".tmp"
CHUNK = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a run folder is then not protected against a second writer
    fcntl = None  # type: ignore[assignment]


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights_only(source: str | os.PathLike | io.BytesIO) -> Any:
    """torch.load of tensors and plain containers only (no code runs), without torch's warnings about odd
    files: the caller turns any failure into its own one message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(source, map_location="cpu", weights_only=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, flush it to disk, then rename it over `path`: a reader
    (or a crash at any moment) sees the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give the file the mode a plain open() would
        faults.reached(f"{path.name}:written")
        os.replace(tmp, path)
        faults.reached(f"{path.name}:replaced")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_text(path: Path) -> str:
    """A text file's content; one that is not UTF-8 text is a DreamddError naming it."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError as e:
        raise DreamddError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); it is damaged") from None


def read_json(path: Path, fix: str = "replace it, or remove it and run again") -> Any:
    """A JSON file's content; a damaged or unreadable one is a DreamddError naming the file and `fix`."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DreamddError(f"{path} is damaged (not valid JSON: {e}); {fix}") from None


def refuse_with_resume(command: str, path: str | os.PathLike, accepts: str, **given: Any) -> None:
    """A resumed run keeps the settings it was started with; an option that would change them is refused."""
    named = [f"--{k.replace('_', '-')}" if k != "overrides" else "--set" for k, v in given.items()
             if v is not None and v != {} and v != []]
    if named:
        raise DreamddError(f"--resume continues {path} with the settings it was started with (its {CONFIG}), "
                           f"so {', '.join(named)} cannot be given with it; `dreamdd {command} --resume` accepts "
                           f"only {accepts}. To change settings, start a new run with --out")


def run_config(run: "RunDir") -> Config:
    """The resolved settings a run folder records (config.yaml), validated."""
    path = run.file(CONFIG)
    try:
        return Config.from_dict(safe_yaml(read_text(path), str(path)) or {})
    except DreamddError as error:
        raise DreamddError(f"{path} is damaged or edited ({error}); restore it, or start a new run") from None


def _leftover(path: Path) -> bool:
    """What a run killed before writing config.yaml can leave: its lock, request.json and temporary files (a
    folder holding nothing else counts as empty, so the same command can simply be run again)."""
    return path.name in (LOCK, REQUEST) or (path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX))


class RunDir:
    """One run's folder. Everything a run writes goes through here."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tensorboard = None
        self._lock_file = None

    def enable_tensorboard(self) -> None:
        """Mirror numeric event fields to TensorBoard (optional: needs the tensorboard package)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DreamddError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                               "(or run without --tensorboard; metrics.jsonl has the same numbers)") from None
        self.tensorboard = SummaryWriter(str(self.path / TENSORBOARD))

    @classmethod
    def create(cls, path: str | os.PathLike | None, default_name: str, base: str | os.PathLike = "runs",
               command: str = "distill") -> "RunDir":
        """A new, empty run folder: `path` if given (it must be empty), else runs/<default_name>[-N]."""
        if path is not None:
            target = Path(path)
            if target.exists() and not target.is_dir():
                raise DreamddError(f"--out {target} is a file, not a folder; name a new folder")
            if target.exists() and any(not _leftover(p) for p in target.iterdir()):
                raise DreamddError(f"output folder {target} is not empty; choose another --out, "
                                   f"or continue that run with dreamdd {command} --resume {target}")
        else:
            target = Path(base) / default_name
            n = 2
            while target.exists():
                target = Path(base) / f"{default_name}-{n}"
                n += 1
        target.mkdir(parents=True, exist_ok=True)
        return cls(target)

    @classmethod
    def existing(cls, path: str | os.PathLike, command: str) -> "RunDir":
        """A run folder that `dreamdd <command>` wrote (it holds config.yaml), to resume."""
        run = cls(path)
        if not run.path.is_dir():
            raise DreamddError(f"{run.path} is not a folder; --resume takes the run folder a `dreamdd {command}` "
                               "wrote")
        if not run.file(CONFIG).exists():
            raise DreamddError(f"{run.path} is not a dreamdd {command} run folder (no {CONFIG}); give the folder "
                               f"a `dreamdd {command}` run wrote")
        request = run.request()
        if request.get("command", command) != command:
            raise DreamddError(f"{run.path} was written by `dreamdd {request['command']}`; resume it with "
                               f"dreamdd {request['command']} --resume {run.path}")
        return run

    def file(self, name: str) -> Path:
        return self.path / name

    def request(self) -> dict[str, Any]:
        """request.json: the command and the choices config.yaml does not hold ({} for older runs)."""
        if not self.file(REQUEST).exists():
            return {}
        request = read_json(self.file(REQUEST), fix=f"start a new run (the folder {self.path} cannot be resumed)")
        if not isinstance(request, dict):
            raise DreamddError(f"{self.file(REQUEST)} is damaged (not a mapping); start a new run")
        return request

    # ---- lock --------------------------------------------------------------------------------------------
    @contextmanager
    def locked(self, new: bool = False) -> Iterator["RunDir"]:
        """Hold the folder's lock while writing it: a second writer is refused with the holder named. The lock is
        the operating system's (flock), so a killed holder releases it and leaves no stale lock behind. `new`: the
        folder was just created for a new run, so another run must not have claimed it meanwhile."""
        path = self.file(LOCK)
        handle = open(path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise DreamddError(f"{self.path} is being written by {holder}; wait for it to finish (or stop "
                                   "it) before resuming or writing this folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._lock_file = handle
        try:
            if new and self.file(CONFIG).exists():
                raise DreamddError(f"{self.path} was claimed by another run at the same moment; choose another "
                                   "--out")
            self.remove_temporary_files()
            yield self
        finally:
            self._lock_file = None
            handle.close()   # releases the flock

    def remove_temporary_files(self) -> None:
        """Temporary files a killed write left behind (only safe while holding the lock)."""
        for leftover in self.path.rglob(f".*{TEMPORARY_SUFFIX}"):
            leftover.unlink(missing_ok=True)

    def is_being_written(self) -> bool:
        """Whether a live process holds the folder's lock."""
        if fcntl is None or not self.file(LOCK).exists():
            return False
        with open(self.file(LOCK)) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
        return False

    # ---- status ------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """summary.json; one that says "running" while no process writes the folder (the writer was killed
        without a chance to say so) says "stopped" instead, with how to continue."""
        if not self.file(SUMMARY).exists():
            return {}
        summary = read_json(self.file(SUMMARY), fix="it is rewritten when the run is resumed")
        if not isinstance(summary, dict):
            return {}
        if summary.get("status") == "running" and not self.is_being_written():
            summary = dict(summary, status="stopped", error="the process writing this run ended without finishing "
                           f"it (killed?); continue with {summary.get('resume_with', '--resume')}")
        return summary

    @contextmanager
    def attempt(self, resume_with: str, started: float) -> Iterator[None]:
        """summary.json says "running" while the body runs; if it fails, "failed" or "interrupted" with the error
        and how to continue, and a Ctrl-C or SIGTERM becomes Interrupted naming that command."""
        write_json(self.file(SUMMARY), {"status": "running", "started": started, "resume_with": resume_with})
        try:
            yield
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            try:
                write_json(self.file(SUMMARY), {"status": "interrupted" if interrupted else "failed",
                                                "error": str(error) or type(error).__name__, "started": started,
                                                "resume_with": resume_with})
            except OSError:
                pass   # a full or read-only disk: the error being raised says so
            if interrupted:
                signal_number = getattr(error, "signal_number", 2)
                raise Interrupted(f"{'terminated' if signal_number != 2 else 'interrupted'}; continue with "
                                  f"{resume_with}", signal_number) from None
            raise

    # ---- metrics -----------------------------------------------------------------------------------------
    def log_event(self, event: dict[str, Any]) -> None:
        """Append one event (one JSON line) to metrics.jsonl."""
        line = json.dumps(event) + "\n"
        with open(self.file(METRICS), "a") as f:
            faults.reached(f"{METRICS}:torn", before_kill=lambda: (f.write(line[:len(line) // 2]), f.flush()))
            f.write(line)
            f.flush()
        faults.reached(f"{METRICS}:appended")
        if self.tensorboard is not None and "iteration" in event:
            for key, value in event.items():
                if key not in ("iteration", "event") and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self.tensorboard.add_scalar(f"{event.get('event', 'event')}/{key}", value, event["iteration"])
            self.tensorboard.flush()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The events of metrics.jsonl; a torn last line (a write cut off by a crash or a full disk) is skipped,
        damage anywhere else is an error."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError:
                if number == len(lines):
                    break
                raise DreamddError(f"{path} line {number} is damaged; delete that line (or the file) and "
                                   "run again") from None
            rows.append(row)
        return [r for r in rows if kind is None or r.get("event") == kind]

    def truncate_events(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite metrics.jsonl with only the events `keep` accepts (on resume: drop what will be redone, and a
        torn last line)."""
        rows = [r for r in self.events() if keep(r)]
        write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows))

    # ---- checkpoint --------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """checkpoint.pt: the state, serialized, inside an envelope with its sha256."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        envelope = {"format": CHECKPOINT_FORMAT, "version": 1, "sha256": hashlib.sha256(payload).hexdigest(),
                    "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
        atomic_write(self.file(CHECKPOINT), lambda tmp: torch.save(envelope, tmp))

    def load_checkpoint(self, expected_fingerprint: str | None = None) -> dict[str, Any] | None:
        """The checkpoint's state (None if there is none), verified: its checksum, and that the settings it was
        written with have `expected_fingerprint`. Loading executes no code."""
        path = self.file(CHECKPOINT)
        if not path.exists():
            return None
        fix = (f"delete {path} to restart the run from its beginning with --resume, or start a new run")
        try:
            envelope = load_weights_only(path)
        except Exception as e:   # a corrupt, truncated or hostile file: refuse it, never execute it
            raise DreamddError(f"{path} is damaged or not a dreamdd checkpoint ({type(e).__name__}); {fix}") \
                from None
        if isinstance(envelope, dict) and "completed" in envelope and "images" in envelope:
            raise DreamddError(f"{path} was written by an older dreamdd, without a checksum or the settings' "
                               f"fingerprint, so it cannot be verified; {fix}")
        if not (isinstance(envelope, dict) and envelope.get("format") == CHECKPOINT_FORMAT
                and isinstance(envelope.get("payload"), torch.Tensor) and isinstance(envelope.get("sha256"), str)):
            raise DreamddError(f"{path} is not a dreamdd checkpoint; {fix}")
        payload = envelope["payload"].numpy().tobytes()
        if hashlib.sha256(payload).hexdigest() != envelope["sha256"]:
            raise DreamddError(f"{path} is damaged (its sha256 does not match); {fix}")
        try:
            state = load_weights_only(io.BytesIO(payload))
        except Exception as e:
            raise DreamddError(f"{path} is damaged or not a dreamdd checkpoint ({type(e).__name__}); {fix}") \
                from None
        if not isinstance(state, dict) or not isinstance(state.get("completed"), int):
            raise DreamddError(f"{path} is not a dreamdd checkpoint; {fix}")
        if expected_fingerprint is not None and state.get("fingerprint") != expected_fingerprint:
            raise DreamddError(f"{path} was not written with this run's settings ({CONFIG} was edited, or the "
                               f"checkpoint comes from another run); restore the original {CONFIG}, or {fix}")
        return state
