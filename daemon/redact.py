"""The remote engines' secrets, kept out of everything r1 says and writes.

Whatever r1 sends a remote that could let someone else use it (its key, read from the daemon's
environment or a key file; the value of every configured header; a password or a key-like query
value in one of its URLs) is remembered here for the daemon's life. `redact` masks each of them,
in any letter case (upstreams echo headers back upper- or lower-cased), in the text given: error
messages before they leave the remote package, the request log's rows, and every record of the
daemon's log (`redact_logs` puts a filter on its handlers).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# A shorter value ("X-Cache: true") is no secret worth the name, and masking it would garble every message.
MIN_LENGTH = 8
# Query parameters that carry credentials (?key=, ?api-key=, ?access_token=, ?sig=...), not ?api-version=.
SECRET_QUERY = re.compile(r"key|token|secret|sig|pass|auth|credential", re.IGNORECASE)

_known: set[str] = set()  # casefolded
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def remember(values: Iterable[str]) -> None:
    """Mask these from now on (values shorter than MIN_LENGTH are ignored)."""
    global _pattern
    new = {value.strip().casefold() for value in values if len(value.strip()) >= MIN_LENGTH} - _known
    if not new:
        return
    with _lock:
        _known.update(new)
        # Longest first, so a secret that contains another is masked whole.
        _pattern = re.compile("|".join(map(re.escape, sorted(_known, key=len, reverse=True))), re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every remembered secret, in any letter case, replaced by MASK."""
    pattern = _pattern
    return text if pattern is None else pattern.sub(MASK, text)


def header_secrets(headers: dict[str, str]) -> set[str]:
    """Each value, and the credential of a "Scheme credential" value (an upstream may echo either)."""
    found = set()
    for value in headers.values():
        found.add(value)
        scheme, _, credential = value.strip().partition(" ")
        if credential and scheme.isalpha():
            found.add(credential.strip())
    return found


def url_secrets(url: str) -> set[str]:
    """A URL's password (and the Basic credential aiohttp makes of it) and its key-like query values."""
    parts = urlsplit(url)
    found = {value for name, value in parse_qsl(parts.query) if SECRET_QUERY.search(name)}
    if parts.password:
        found.add(parts.password)
        found.add(base64.b64encode(f"{parts.username or ''}:{parts.password}".encode()).decode())
    return found


def masked_url(url: str) -> str:
    """A URL as r1 shows it (`r1 remote list`, errors, the log): its password and key-like query values
    masked, whatever their length."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    if query:
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(f"{name}={MASK}" if eq and SECRET_QUERY.search(name) else name + eq + value
                         for name, eq, value in pairs)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class RedactingFilter(logging.Filter):
    """Masks the remembered secrets in a record's message, its traceback and its stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Put a RedactingFilter on each of the logger's handlers (the root logger's by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
