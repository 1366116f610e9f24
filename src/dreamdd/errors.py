"""The errors a user can cause or ask for; the command line turns each into one message and an exit status."""
from __future__ import annotations

import errno


class DreamddError(Exception):
    """A problem the user can fix (missing file, unknown name, bad setting). The message names cause and fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run at a safe point; the message says how to continue it."""

    def __init__(self, message: str = "interrupted", signal_number: int = 2):
        super().__init__(message)
        self.signal_number = signal_number


_FIXES = {
    errno.ENOSPC: "free some space and run again (a distill run continues from its last checkpoint with --resume)",
    errno.EDQUOT: "free some space and run again (a distill run continues from its last checkpoint with --resume)",
    errno.EACCES: "make it writable, or choose another place (--out, --table)",
    errno.EPERM: "make it writable, or choose another place (--out, --table)",
    errno.EROFS: "the file system is read-only; choose another place (--out, --table)",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.EEXIST: "something is already there; choose another path",
    errno.ENOENT: "check the path",
}


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: what, where, why, and what to do about it."""
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None) or "a file"
    reason = error.strerror or str(error) or type(error).__name__
    return f"{where}: {reason}; {_FIXES.get(error.errno, 'check the path and its permissions')}"
