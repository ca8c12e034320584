"""The daemon's error base classes: each carries the HTTP status the API answers with, and
a code for the dialects that send one (OpenAI's `error.code`).

Specific errors live next to the code that raises them and subclass one of these
(and a standard exception where that helps callers), so the API can turn any of
them into `{"error": "..."}` without matching on strings.
"""

from __future__ import annotations

import errno
from pathlib import Path


class R1Error(Exception):
    """An error whose message is meant for the user: it says what was wrong and what to do."""

    status: int = 500
    code: str | None = None
    headers: dict[str, str] = {}  # HTTP headers the answer carries (a 429's Retry-After)


class BadRequest(R1Error):
    status = 400


class NotFound(R1Error):
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class Forbidden(R1Error):
    status = 403


class Conflict(R1Error):
    status = 409


class InsufficientStorage(R1Error):
    status = 507


SQLITE_FULL = 13  # sqlite3's "database or disk is full" (sqlite3.Error.sqlite_errorcode)
SQLITE_FULL_TEXT = "database or disk is full"  # the same error raised with no code set (by hand, as tests do)


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk or the user's quota is full: an OSError's ENOSPC or
    EDQUOT, or SQLite's SQLITE_FULL. Every write path maps these to InsufficientStorage through here."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if type(seen).__module__ == "sqlite3" and (getattr(seen, "sqlite_errorcode", None) == SQLITE_FULL
                                                     or str(seen) == SQLITE_FULL_TEXT):
            return True
        seen = seen.__cause__
    return False


def disk_full(home: Path) -> InsufficientStorage:
    """The one answer to a write that found the disk full, wherever it happened."""
    return InsufficientStorage(f"the disk holding the r1 store ({home}) is full: free some space "
                               "(r1 rm unused models, or make room on that disk) and try again")


class ServiceUnavailable(R1Error):
    status = 503


class TooManyRequests(R1Error):
    """A remote engine's 429, passed on with its Retry-After."""

    status = 429

    def __init__(self, message: str, retry_after: str | None) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": retry_after} if retry_after else {}


class BadGateway(R1Error):
    """A remote engine that cannot be reached or failed."""

    status = 502


class GatewayTimeout(R1Error):
    status = 504
