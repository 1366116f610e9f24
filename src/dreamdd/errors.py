"""The one error type a user can cause; the command line turns it into a message and exit status 2."""


class DreamddError(Exception):
    """A problem the user can fix (missing file, unknown name, bad setting). The message names cause and fix."""
