"""Fetching dataset files: md5-checked downloads written atomically, and tar extraction that cannot escape its folder."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from ..errors import DreamddError

TIMEOUT = 15.0  # seconds per network operation: fail fast on machines without internet
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


def fetch(url: str, dest: str | os.PathLike, md5: str | None = None, timeout: float = TIMEOUT) -> Path:
    """Download `url` to `dest` via a temporary file in the same folder, checking its md5 before the rename."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
        except (urllib.error.URLError, OSError, ValueError) as e:  # URLError/HTTPError/timeouts are OSErrors
            reason = getattr(e, "reason", None) or e
            raise DownloadFailed(f"could not download {url}: {reason}") from e
        if md5 is not None and digest.hexdigest() != md5:
            raise DreamddError(f"the download of {url} has md5 {digest.hexdigest()}, expected {md5}, so it was "
                               f"deleted; try again later, or fetch the file by hand and place it at {dest}")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
