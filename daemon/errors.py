"""The daemon's error base classes: each carries the HTTP status the API answers with, and
a code for the dialects that send one (OpenAI's `error.code`).

Specific errors live next to the code that raises them and subclass one of these
(and a standard exception where that helps callers), so the API can turn any of
them into `{"error": "..."}` without matching on strings.
"""


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
