"""What dreamdd reads and writes on disk: the names of a run folder's files (names.py), spelled once."""
