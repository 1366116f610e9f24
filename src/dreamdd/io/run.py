"""One owner of a run folder's life, for every command that writes one (distill, select, experts): create it (or
find it to resume, refusing options that would change its settings), lock it, write what it was asked (request.json)
and its settings (config.yaml, last: it marks a folder a run can resume), keep its log, mark it running while the
work runs (failed or interrupted, with how to continue, if it stops) and finished with its summary at the end."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from ..config import Config
from ..errors import DreamddError
from .names import CONFIG, LOG, REQUEST, SUMMARY
from .rundir import RunDir, refuse_with_resume, run_config, write_json, write_text


class RunSession:
    """A command's run folder while the command runs: `with RunSession.create(...) as session:` holds its lock."""

    def __init__(self, run: RunDir, command: str, new: bool, quiet: bool = True, log_file: bool = True):
        self.run, self.command, self.new, self.quiet, self.log_file = run, command, new, quiet, log_file
        self.started: float | None = None

    @classmethod
    def create(cls, command: str, out: str | os.PathLike | None, default_name: str, **options: Any) -> "RunSession":
        """A new run: `out` (it must be empty), else runs/<default_name>[-N]."""
        return cls(RunDir.create(out, default_name, command=command), command, new=True, **options)

    @classmethod
    def resume(cls, command: str, path: str | os.PathLike, accepts: str, given: dict[str, Any],
               **options: Any) -> "RunSession":
        """The run in `path` to continue; any of `given` that is set would change its settings and is refused."""
        refuse_with_resume(command, path, accepts, **given)
        return cls(RunDir.existing(path, command), command, new=False, **options)

    @property
    def path(self) -> Path:
        return self.run.path

    def file(self, name: str) -> Path:
        return self.run.file(name)

    def __enter__(self) -> "RunSession":
        self._lock = self.run.locked(new=self.new)
        self._lock.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    # ---- what the run was asked, and its settings --------------------------------------------------------
    def begin(self, request: dict[str, Any], config_text: str) -> None:
        """Write request.json and then config.yaml: once config.yaml is there the folder can be resumed."""
        write_json(self.file(REQUEST), request)
        write_text(self.file(CONFIG), config_text)

    def config(self) -> Config:
        """The settings a resumed run recorded."""
        return run_config(self.run)

    def request(self, *keys: str) -> dict[str, Any]:
        """request.json; with `keys`, each must be there (else the folder is damaged and cannot be resumed)."""
        request = self.run.request()
        if any(key not in request for key in keys):
            raise DreamddError(f"{self.file(REQUEST)} is damaged; start a new {self.command} run")
        return request

    def status(self) -> str | None:
        return self.run.summary().get("status")

    # ---- while it runs -----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """A line in log.txt (with its time) and, unless quiet, on the terminal."""
        if self.log_file:
            with open(self.file(LOG), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """summary.json says running while the body runs; failed or interrupted, with the command that continues
        the run, if it stops."""
        self.started = time.time()
        with self.run.attempt(f"dreamdd {self.command} --resume {self.path}", self.started):
            yield

    def elapsed(self) -> float:
        """Wall seconds since the attempt began."""
        return time.time() - (self.started or time.time())

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """summary.json: status finished and `summary`."""
        summary = {"status": "finished", **summary}
        write_json(self.file(SUMMARY), summary)
        return summary
