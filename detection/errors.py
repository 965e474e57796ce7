"""The library's one exception type for user mistakes.

A ``DetectionError`` carries a message that names the file, line or field at
fault and says how to fix it. The CLI prints it as one ``error: ...`` line and
exits with status 2; anything else is an internal bug and may traceback.
"""

from __future__ import annotations


class DetectionError(Exception):
    """A user mistake (bad path, malformed file, unknown class, checksum mismatch...)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class TransientError(DetectionError):
    """A failure that may pass if the same command is run again (a network error, a server's 5xx).

    The CLI exits with status 75 (EX_TEMPFAIL) for it, not 2, so that orchestrators retry it and
    never retry a user mistake."""
