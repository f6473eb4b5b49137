"""Errors that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

from pathlib import Path


class AvbridgeError(Exception):
    """Base class for user-facing errors (bad input, missing checkpoint, bad option)."""

    exit_code = 2


class MediaError(AvbridgeError):
    """A media file cannot be used: names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class CheckpointError(AvbridgeError):
    """A model checkpoint is missing, truncated or does not match the architecture."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
