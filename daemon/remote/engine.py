"""HTTP to one remote engine: its key, its limit on requests in flight, its URL pool, and every fault
turned into an error that names the remote and the URL (never a secret) and says what to do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from ..config import Settings, secret_from_env
from ..errors import BadGateway, BadRequest, GatewayTimeout, NotFound, R1Error, ServiceUnavailable, TooManyRequests
from ..redact import header_secrets, masked_url, redact, remember, url_secrets
from .records import Remote
from .pool import UrlPool

log = logging.getLogger(__name__)

# What reading an answer that is not what its dialect promises raises: not JSON (ValueError), a missing
# or mistyped field (LookupError, TypeError, AttributeError), a line longer than aiohttp reads as one.
UNREADABLE = (ValueError, LookupError, TypeError, AttributeError, HttpProcessingError)
READ_BUFFER = 256 * 1024  # aiohttp's default, set here because it bounds a line of an answer: twice this


class RemoteAuthError(R1Error):
    status = 502  # r1's client did nothing wrong: the daemon's key for the remote is refused


def base_url(remote: Remote, url: str) -> str:
    """Where its API paths start: an OpenAI base URL ends in /v1 (a bare host gets it), an Ollama one is the host."""
    url = url.rstrip("/")
    if remote.dialect == "openai" and not url.split("://", 1)[-1].count("/"):
        return url + "/v1"
    return url


class RemoteEngine:
    def __init__(self, remote: Remote, settings: Settings) -> None:
        self.remote = remote
        self._settings = settings
        self.pool = UrlPool(tuple(base_url(remote, u) for u in remote.urls), self._healthy)
        self._turns = asyncio.Semaphore(settings.remote_parallel)
        self._session: aiohttp.ClientSession | None = None
        remember(header_secrets(remote.headers) | {secret for url in remote.urls for secret in url_secrets(url)})

    @property
    def health_path(self) -> str:
        return "/models" if self.remote.dialect == "openai" else "/api/version"

    def key_source(self) -> str:
        if self.remote.key_env:
            return f"the environment variable {self.remote.key_env} of the r1 daemon"
        if self.remote.key_file:
            return f"the key file {self.remote.key_file}"
        return "no key (r1 remote add --api-key-env or --api-key-file gives one)"

    def _key(self) -> str | None:
        if self.remote.key_env:
            key = secret_from_env(self.remote.key_env)
            if key is None:
                raise RemoteAuthError(f"remote {self.remote.name} reads its key from {self.remote.key_env}, which the "
                                      "r1 daemon's environment does not set; set it where the daemon starts "
                                      "(the service's environment) and restart it")
            return key
        if self.remote.key_file:
            try:
                return Path(self.remote.key_file).read_text().strip()
            except OSError as exc:
                raise RemoteAuthError(f"remote {self.remote.name}'s key file {self.remote.key_file} cannot be "
                                      f"read ({exc.strerror}); add the remote again with --api-key-file") from exc
        return None

    def _headers(self) -> dict[str, str]:
        headers = dict(self.remote.headers)
        key = self._key()
        if key:
            remember((key,))  # read at each request: a key file may have changed since the last one
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            verify = ssl.create_default_context(cafile=self.remote.ca_file) if self.remote.ca_file else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=verify),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._settings.remote_connect_timeout,
                                              sock_read=self._settings.remote_first_byte_timeout),
                trust_env=True,  # HTTPS_PROXY and friends
                read_bufsize=READ_BUFFER,
            )
        return self._session

    async def _healthy(self, url: str) -> bool:
        try:
            async with self._client().get(url + self.health_path, headers=self._headers()) as response:
                return response.status < 500
        except (TimeoutError, aiohttp.ClientError, R1Error):
            return False

    @contextlib.contextmanager
    def faults(self) -> Iterator[None]:
        """Around whatever talks to the upstream or reads its answers: an error leaves with every secret
        masked (upstreams quote the headers they got), and an answer r1 cannot read is the upstream's fault,
        a 502 that names it, never r1's 500."""
        try:
            yield
        except R1Error as exc:
            exc.args = (redact(str(exc)),)
            raise
        except UNREADABLE as exc:
            log.debug("remote %s sent an unreadable answer", self.remote.name, exc_info=True)
            raise BadGateway(f"remote {self.remote.name} sent an answer r1 cannot read ({_unreadable(exc)}); check "
                             f"that it speaks the {self.remote.dialect} dialect (r1 remote list)") from None

    async def read(self, events: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        """`events` read from an upstream's answer, through `faults`."""
        async with contextlib.aclosing(events):
            with self.faults():
                async for event in events:
                    yield event

    @contextlib.asynccontextmanager
    async def post(self, path: str, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer to a POST, status checked; tries the pool's URLs in turn until one answers."""
        async with self._turn():
            with self.faults():
                response = await self._send("POST", path, body)
            try:
                yield response
            finally:
                response.release()

    async def get(self, path: str) -> Any:
        async with self._turn():
            with self.faults():
                response = await self._send("GET", path, None)
                try:
                    return await response.json(content_type=None)
                finally:
                    response.release()

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._settings.offline:
            raise ServiceUnavailable(f"R1_OFFLINE is set: r1 calls no remote engine ({self.remote.name}); "
                                     "unset it to use remote models")
        async with self._turns:
            yield

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> aiohttp.ClientResponse:
        headers = self._headers()
        failures = []
        for url in self.pool.order():
            with self.pool.using(url):
                try:
                    async with asyncio.timeout(self._settings.remote_connect_timeout +
                                               self._settings.remote_first_byte_timeout):
                        response = await self._client().request(method, url + path, json=body, headers=headers)
                except TimeoutError as exc:  # aiohttp's read timeout too: a slow engine, not a dead URL
                    raise GatewayTimeout(f"remote {self.remote.name} at {masked_url(url)} did not start answering "
                                         f"within {self._settings.remote_first_byte_timeout:g} s "
                                         "(R1_REMOTE_FIRST_BYTE_TIMEOUT)") from exc
                except (aiohttp.ClientConnectionError, OSError) as exc:
                    self.pool.failed(url, type(exc).__name__)
                    failures.append(f"{masked_url(url)}: {exc}")
                    continue
            if response.status >= 500:
                self.pool.failed(url, f"HTTP {response.status}")
            else:
                self.pool.answered(url)
            if response.status < 400:
                return response
            detail = await _error_detail(response)
            response.release()
            raise self._refusal(response, url, detail)
        raise BadGateway(f"remote {self.remote.name} cannot be reached ({'; '.join(failures)}); "
                         "check that it runs and its URL (r1 remote list)")

    def _refusal(self, response: aiohttp.ClientResponse, url: str, detail: str) -> R1Error:
        name, status, url = self.remote.name, response.status, masked_url(url)
        if status in (401, 403):
            return RemoteAuthError(f"remote {name} at {url} refused the key ({status}: {detail}); the key comes from "
                                   f"{self.key_source()}")
        if status == 404:
            return NotFound(f"remote {name} at {url} has no such model or route ({detail}); "
                            f"`r1 remote models {name}` lists what it offers")
        if status == 429:
            return TooManyRequests(f"remote {name} is rate-limiting r1 ({detail}); try again later",
                                   response.headers.get("Retry-After"))
        if status >= 500:
            return BadGateway(f"remote {name} at {url} failed ({status}: {detail})")
        return BadRequest(f"remote {name} refused the request ({status}: {detail})")

    async def close(self) -> None:
        self.pool.close()
        if self._session is not None:
            await self._session.close()


def _unreadable(exc: Exception) -> str:
    """What was wrong with an answer, without quoting it."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, LineTooLong):
        return f"a line over {2 * READ_BUFFER // 1024} KiB"
    if isinstance(exc, HttpProcessingError):
        return f"not valid HTTP: {type(exc).__name__}"
    return f"not the shape its dialect has: {type(exc).__name__}"


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The upstream's own message, from OpenAI's {"error": {"message"}} or Ollama's {"error": "..."}."""
    text = (await response.text(errors="replace"))[:500]
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(text)["error"]
        return error["message"] if isinstance(error, dict) else str(error)
    return text.strip() or response.reason or "no details"
