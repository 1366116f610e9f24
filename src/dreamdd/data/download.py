"""Fetching dataset files: md5-checked downloads written atomically, and tar extraction that cannot escape its folder."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..errors import DreamddError

TIMEOUT = 15.0  # seconds per network operation: fail fast on machines without internet
DEADLINE = 3600.0  # seconds for one whole download
CHUNK = 1 << 20


class DownloadFailed(DreamddError):
    """The network could not deliver a file (no connection, timeout, HTTP error); the caller adds the fix."""


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: str | os.PathLike, expected: str) -> None:
    """Raise DreamddError if the file's md5 is not `expected`."""
    actual = md5sum(path)
    if actual != expected:
        raise DreamddError(f"{path} has md5 {actual}, expected {expected}: the file is corrupt or not the "
                           f"original; delete it and download it again (or load without verify to trust it)")


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, innermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def fetch(url: str, dest: str | os.PathLike, md5: str | None = None, timeout: float = TIMEOUT,
          deadline: float = DEADLINE) -> Path:
    """Download `url` to `dest` via a temporary file in the same folder, with a progress bar, checking its length
    and md5 before the rename. `timeout` bounds each network operation and `deadline` the whole download, so a
    server trickling bytes cannot hold a run forever. A failure leaves nothing behind (no .part, no folders)."""
    dest = Path(dest)
    created = _missing_folders(dest.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received, expected = 0, None
        give_up = time.monotonic() + deadline
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = (getattr(response, "headers", None) or {}).get("Content-Length")
                expected = int(length) if length and str(length).isdigit() else None
                with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name, disable=None,
                          leave=False) as bar:
                    while True:
                        if time.monotonic() > give_up:
                            raise DownloadFailed(f"could not download {url}: not finished within {deadline:.0f} s "
                                                 f"({received} bytes received; the server is too slow)")
                        block = response.read1(CHUNK)   # what has arrived, so the deadline is checked often
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
        except DownloadFailed:
            raise
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e   # URLError/HTTPError/timeouts are OSErrors
            raise DownloadFailed(f"could not download {url}: {reason}") from e
        if expected is not None and received != expected:
            raise DownloadFailed(f"could not download {url}: it ended after {received} of its {expected} bytes")
        if md5 is not None and digest.hexdigest() != md5:
            raise DreamddError(f"the download of {url} has md5 {digest.hexdigest()}, expected {md5}, so it was "
                               f"deleted; try again later, or fetch the file by hand and place it at {dest}")
        os.replace(tmp, dest)
        return dest
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in created:   # leave no empty folders where there were none
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise DreamddError(f"{archive} contains the unsafe path {member.name!r} and was not extracted; "
                           f"delete it and download the original archive")
    if not (member.isfile() or member.isdir()):
        raise DreamddError(f"{archive} contains {member.name!r}, which is not a plain file or folder (link or "
                           f"device), and was not extracted; delete it and download the original archive")


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a (compressed) tar into `dest`, refusing absolute paths, '..', links and devices.

    Extraction goes to a temporary folder inside `dest` first, so an interrupted run leaves no half-written dataset.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kwargs)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DreamddError(f"could not extract {archive}: {e}; delete it and download it again") from e
        for entry in tmp.iterdir():
            _move_into(entry, dest / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into(src: Path, target: Path) -> None:
    """Move src to target; if both are folders, move file by file (replacing files of the same name)."""
    if src.is_dir() and target.is_dir():
        for entry in src.iterdir():
            _move_into(entry, target / entry.name)
    else:
        os.replace(src, target)
