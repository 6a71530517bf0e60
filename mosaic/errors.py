"""Errors that the `mosaic` command turns into one clear line (exit 2) instead of a traceback."""

from __future__ import annotations


class MosaicError(Exception):
    """A user-facing error: bad input, missing file, unknown name. The message says what and where."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The error's first line (at most `limit` characters), or its type's name when it has no text."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


class ValidationFailed(MosaicError):
    """Data broke schema rules; carries every violation found (exit code 1 for `mosaic validate`)."""

    exit_code = 1

    def __init__(self, message: str, violations: list) -> None:
        super().__init__(message)
        self.violations = violations
