"""Every test gets its own R1_HOME and a short R1_SOCKET. HTTP-level tests get the app in-process
with scripted runners (`api`); end-to-end tests get a real daemon: their own (`daemon`,
`private_daemon`) or the session's one with Gemma and the tiny models loaded (`gemma_daemon`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from fakehub import FakeHub
from fakeollama import FakeOllama
from scripted import Script, ScriptedRunners
from tinymodels import GEMMA_TEMPLATE, THINK_TEMPLATE, TOOL_TEMPLATE, gemma_gguf, write_tiny_gguf

R1 = str(Path(sys.executable).with_name("r1"))
TEST_CACHE = Path(os.environ.get("R1_TEST_CACHE", Path(tempfile.gettempdir()) / "r1-test-models"))


def pytest_configure(config: pytest.Config) -> None:
    """The workers share the cores: each daemon's runners (daemons inherit this environment) compute
    with their share, or llama.cpp's threads spin waiting for cores that another worker holds.
    Measured: 2 workers on 2 cores, 210 s with runners on 2 threads, 158 s on 1.

    The suite starts hundreds of r1 processes from this editable checkout: they keep the bytecode
    they compile (in __pycache__, ignored by git) rather than compile r1's modules each time."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # xdist's controller runs no test; its workers inherit its environment and decide
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("R1_NUM_THREAD", str(max(1, (os.cpu_count() or 1) // workers)))


def worker_threads() -> int:
    """The threads for a runner a test starts itself: this worker's share of the cores, as the daemons'
    runners get it (pytest_configure)."""
    return int(os.environ["R1_NUM_THREAD"])


def own_runner_load(**options: Any) -> dict[str, Any]:
    """Load options for a runner a test starts itself, without a scheduler: this worker's share of the cores,
    and llama.cpp's extra buffer types off, since nothing falls back when they crash (CPUs with AMX, FACTS.md)."""
    return {"num_thread": worker_threads(), "extra_buffers": False, **options}


@pytest.fixture(autouse=True)
def r1_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """R1_HOME in the test's temp dir; the socket in a short dir of its own (macOS allows 104 bytes)."""
    sock_dir = Path(tempfile.mkdtemp(prefix="r1-", dir="/tmp"))
    monkeypatch.setenv("R1_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("R1_SOCKET", str(sock_dir / "r1.sock"))
    monkeypatch.setenv("R1_NO_AUTOSTART", "1")
    monkeypatch.setenv("R1_NO_OLLAMA_REGISTRY", "1")  # no test reaches the real registry; fakeollama's turn it on
    monkeypatch.delenv("R1_LOG_LEVEL", raising=False)
    yield {"R1_HOME": str(tmp_path / "home"), "R1_SOCKET": str(sock_dir / "r1.sock")}
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF, assembled once from its PyPI package."""
    return gemma_gguf(TEST_CACHE)


def unix_request(socket_path: Path, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 timeout: float = 30) -> tuple[int, Any]:
    """One HTTP request over the socket, with nothing of r1's client in between."""
    import http.client

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(socket_path))

    conn = Connection("localhost", timeout=timeout)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=payload)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    text = data.decode()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(text)
    return response.status, text


@dataclass
class Daemon:
    process: subprocess.Popen
    socket: Path
    home: Path
    env: dict[str, str]
    log_path: Path
    port: int | None = None  # its TCP listener, when R1_HOST gave it one

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real `r1` command against this daemon."""
        result = subprocess.run([R1, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"r1 {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                timeout: float = 120) -> tuple[int, Any]:
        return unix_request(self.socket, method, path, body, raw, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def wait_for_socket(path: Path, process: subprocess.Popen, log_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            unix_request(path, "GET", "/api/version", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"daemon did not answer on {path} in {timeout} s:\n{log_path.read_text()}")


def start_daemon(env: dict[str, str], log_path: Path) -> Daemon:
    with open(log_path, "ab") as log:
        process = subprocess.Popen([R1, "serve"], env=env, stdout=log, stderr=log)
    socket_path = Path(env["R1_SOCKET"])
    wait_for_socket(socket_path, process, log_path)
    port = int(env["R1_HOST"].rsplit(":", 1)[1]) if env.get("R1_HOST") else None
    return Daemon(process, socket_path, Path(env["R1_HOME"]), env, log_path, port)


@contextlib.contextmanager
def private_daemon(root: Path, **env: str) -> Iterator[Daemon]:
    """A daemon of its own (store under `root`, a short socket path) for a module's fixture;
    stopped with SIGTERM afterwards, which must end it cleanly."""
    sock_dir = tempfile.mkdtemp(prefix="r1-", dir="/tmp")
    full_env = {**os.environ, "R1_HOME": str(root / "home"), "R1_SOCKET": f"{sock_dir}/r1.sock",
                "R1_NO_AUTOSTART": "1", "R1_NO_OLLAMA_REGISTRY": "1", **env}
    daemon = start_daemon(full_env, root / "daemon.log")
    try:
        yield daemon
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def daemon_env(r1_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **r1_env}


@pytest.fixture
def daemon(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    """A real `r1 serve` on the test's socket and store; stopped with SIGTERM afterwards."""
    running = start_daemon(daemon_env, tmp_path / "daemon.log")
    yield running
    code = running.stop()
    assert code == 0, f"daemon exited with {code} on SIGTERM:\n{running.log()}"
    assert not running.socket.exists(), "the daemon left its socket behind"


class Stream:
    """An NDJSON response read line by line, with the socket at hand to drop mid-stream."""

    def __init__(self, socket_path: Path, path: str, body: dict[str, Any], timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        conn = http.client.HTTPConnection("localhost")
        conn.sock = self.sock
        conn.request("POST", path, body=json.dumps(body))
        self.response = conn.getresponse()
        self.status = self.response.status

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while line := self.response.readline():
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self.response.close()  # the socket's file descriptor closes only when its reader is closed too
        self.sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def runner_pids(daemon: Daemon) -> list[int]:
    """The daemon's live runner processes (an exited one not yet reaped does not count)."""
    pids = []
    for child in psutil.Process(daemon.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "r1.daemon.runner" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return pids


def runner_pid(daemon: Daemon, model: str) -> int:
    """The pid of the runner serving `model` (its one loaded instance)."""
    status, answer = daemon.request("GET", "/api/ps")
    assert status == 200
    [pid] = [m["pid"] for m in answer["models"] if m["name"] == model]
    return pid


def prompt_tokens(answer: dict[str, Any]) -> int:
    """The whole prompt of an Ollama-style answer: the tokens evaluated and those its slot held already."""
    return answer["prompt_eval_count"] + answer.get("prompt_cached", 0)


def wait_until(check: Any, timeout: float = 10, interval: float = 0.05) -> None:
    """Poll `check` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        time.sleep(interval)


# --- the session's daemon with real models ------------------------------------------------------

HF_NAME = "hf.co/acme/gemma-3-270m:Q4_K_M"  # Gemma again, under a Hugging Face name


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A Hub on loopback with one small GGUF repo, for the session daemon's pulls."""
    root = tmp_path_factory.mktemp("hub")
    with FakeHub() as fake:
        fake.add_repo("acme/tiny-GGUF", {"tiny-Q4_K_M.gguf": write_tiny_gguf(root / "tiny-Q4_K_M.gguf", seed=5)})
        yield fake


@pytest.fixture(scope="session")
def session_registry() -> Iterator[FakeOllama]:
    """An Ollama registry on loopback for the session daemon; tests publish what they pull."""
    with FakeOllama() as fake:
        yield fake


@contextlib.contextmanager
def over_socket(daemon: Daemon) -> Iterator[Any]:
    """An HTTP client over the daemon's Unix socket, for the official SDKs (openai 3.x and anthropic 2.x
    take an httpx2 client)."""
    import httpx2

    http = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(daemon.socket)), timeout=120)
    try:
        yield http
    finally:
        http.close()


@pytest.fixture(scope="module")
def openai_client(gemma_daemon: Daemon) -> Iterator[Any]:
    """The official `openai` client against the session daemon, over its socket."""
    import openai

    with over_socket(gemma_daemon) as http:
        yield openai.OpenAI(base_url="http://localhost/v1", api_key="r1", http_client=http, max_retries=0)


@pytest.fixture(scope="session")
def gemma_daemon(tmp_path_factory: pytest.TempPathFactory, gemma_path: Path, hub: FakeHub,
                 session_registry: FakeOllama) -> Iterator[Daemon]:
    """One real daemon for every end-to-end test of generation, over the socket and TCP:
    gemma (raw: its GGUF has no template), gemma-chat (Gemma's turns, at most 24 tokens),
    gemma-tools (a tool-calling template), Gemma under HF_NAME, smollm2:135m (the bundled SmolLM2 135M
    Instruct: a chat template and a 49k vocabulary, so JSON grammars are quick), tiny (random,
    ChatML) and thinker (random, a template that opens <think>). Tests add their own names beside them."""
    root = tmp_path_factory.mktemp("gemma-daemon")
    with private_daemon(root, **hub.env(), **session_registry.env(), R1_LOG_LEVEL="DEBUG",
                        R1_HOST=f"127.0.0.1:{free_port()}", HF_HOME=str(root / "hf")) as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        for name, template, parameters in (
            ("gemma-chat", GEMMA_TEMPLATE, {"stop": ["<end_of_turn>"], "num_predict": 24}),
            ("gemma-tools", TOOL_TEMPLATE, {"stop": ["</tool_call>", "<end_of_turn>"]}),
        ):
            status, answer = daemon.request("POST", "/api/create", {
                "model": name, "from": "gemma", "template": template, "parameters": parameters, "stream": False})
            assert status == 200, answer
        daemon.cli("cp", "gemma", HF_NAME)
        daemon.cli("import", "--bundled", "--copy")  # a copy: the store keeps no link into the installed package
        daemon.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
        daemon.cli("import", str(write_tiny_gguf(root / "think.gguf", chat_template=THINK_TEMPLATE, seed=1)),
                   "--name", "thinker")
        yield daemon


# --- the app in-process ------------------------------------------------------------------------

SCRIPT: Script = ["Hello", ",", " world", "!"]  # what scripted runners answer, a piece per token


@dataclass
class InProcess:
    """r1's app on a test server (TCP on loopback), over a temp store, with scripted runners."""

    client: Any  # aiohttp.test_utils.TestClient
    runners: ScriptedRunners
    home: Path
    tmp: Path

    async def add_model(self, name: str, **tiny: Any) -> None:
        """A tiny GGUF in the store under `name` (the scripted runners never read it)."""
        path = write_tiny_gguf(self.tmp / f"{name.replace(':', '-').replace('/', '-')}.gguf", **tiny)
        response = await self.client.post("/api/import", json={"path": str(path), "model": name, "stream": False})
        assert response.status == 200, await response.text()

    async def pull(self, model: str, **fields: Any) -> tuple[int, list[dict[str, Any]]]:
        """POST /api/pull (streamed unless stream=False): the status and every event (one when not streamed)."""
        response = await self.client.post("/api/pull", json={"model": model, **fields})
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, [json.loads(text)]
        assert response.content_type == "application/x-ndjson", text
        return response.status, [json.loads(line) for line in text.splitlines()]

    async def show(self, model: str) -> dict[str, Any]:
        response = await self.client.post("/api/show", json={"model": model})
        assert response.status == 200, await response.text()
        return await response.json()

    async def names(self) -> set[str]:
        """The names /api/tags lists."""
        response = await self.client.get("/api/tags")
        assert response.status == 200
        return {m["name"] for m in (await response.json())["models"]}


@pytest.fixture
async def make_api(aiohttp_client: Any, tmp_path: Path, r1_env: dict[str, str]) -> AsyncIterator[Any]:
    """r1's app in-process, with settings from the test's environment plus `env` (R1_API_KEY,
    R1_ORIGINS, HF_ENDPOINT, HF_HUB_OFFLINE...), scripted runners and, if given, the test's own
    Metrics: `await make_api(R1_API_KEY="k", metrics=Metrics(), script=[...])`. Each call is
    another app over the same R1_HOME; every client is closed before its store."""
    from r1.daemon.app import create_app
    from r1.daemon.config import Settings
    from r1.daemon.store import Store

    opened: list[tuple[Any, Any]] = []

    async def make(*, metrics: Any = None, script: Script | None = None, **env: str) -> InProcess:
        settings = Settings.from_env({**os.environ, **env})
        store = Store(settings.home)
        store.open()
        runners = ScriptedRunners(list(SCRIPT if script is None else script))
        try:
            client = await aiohttp_client(create_app(settings, store, start=runners.start, metrics=metrics))
        except BaseException:
            store.close()
            raise
        opened.append((client, store))
        return InProcess(client, runners, settings.home, tmp_path)

    try:
        yield make
    finally:
        for client, store in reversed(opened):
            await client.close()
            store.close()


@pytest.fixture
async def api(make_api: Any) -> InProcess:
    """r1's app in-process with the test's own store and scripted runners."""
    return await make_api()
