"""Fixtures and hooks only (the helpers they use are in tests/support/). Every test gets its own R1_HOME
and a short R1_SOCKET. HTTP-level tests get the app in-process with scripted runners (`api`); end-to-end
tests get a real daemon: their own (`daemon`, `private_daemon`) or the session's one with Gemma and the
tiny models loaded (`gemma_daemon`). Tests marked `unit` make the fast lane (`pytest -m unit`); every
other test is marked `e2e` here."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import HF_NAME, Daemon, over_socket, private_daemon, start_daemon
from tests.support.fakehub import FakeHub
from tests.support.fakeollama import FakeOllama
from tests.support.inprocess import InProcess
from tests.support.loopback import free_port
from tests.support.scripted import SCRIPT, Script, ScriptedRunners
from tests.support.terminal import Terminal
from tests.support.tinymodels import (GEMMA_TEMPLATE, TEST_CACHE, THINK_TEMPLATE, TOOL_TEMPLATE, gemma_gguf,
                                      write_tiny_gguf)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test not marked `unit` is end-to-end, so `pytest -m e2e` is the slow lane alone."""
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.e2e)


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


# --- the session's daemon with real models ------------------------------------------------------

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



# --- shared by several modules, over the module's own daemon or Hub -------------------------------

@pytest.fixture(scope="module")
def tiny(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random model as `tiny`, greedy, in a module that starts a `daemon` of its own (module-scoped)."""
    daemon.cli("import", str(write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")), "--name", "tiny-base")
    # Greedy: a random model sampled freely may end before its first token, now and then.
    status, _ = daemon.request("POST", "/api/create", {"model": "tiny", "from": "tiny-base", "stream": False,
                                                       "parameters": {"temperature": 0}})
    assert status == 200
    return "tiny"


@pytest.fixture
def terminal(daemon: Daemon) -> Iterator[Callable[..., Terminal]]:
    """`terminal("run", "tiny")`: the real `r1 run tiny` on a pseudo-terminal, against the test's `daemon`;
    every terminal started is killed afterwards."""
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal(list(args), daemon.env))
        return started[-1]

    yield start
    for term in started:
        term.close()


@pytest.fixture
def hf_client(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub in this process: no token from this machine, nothing read or written outside the
    test's temp dir, and the fake Hub (the module's `hub`) for whatever it asks its default endpoint
    (it read HF_ENDPOINT at import)."""
    from huggingface_hub import constants

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_OIDC_RESOURCE", "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf" / "agent_harnesses.json"))
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
