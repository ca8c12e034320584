"""`r1 launch`: the environment a coding agent needs to use a local model through r1, with the TCP
listener opened for it; checked by running a stand-in for each tool that records what it was given."""

from __future__ import annotations

import json
import os
import shlex
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.loopback import free_port
from tests.support.tinymodels import write_quiet_gguf, write_tiny_gguf


def exports(stdout: str) -> tuple[dict[str, str], list[str]]:
    """The `export NAME=VALUE` lines and the command line `r1 launch` printed."""
    *lines, command = stdout.strip().splitlines()
    env = {}
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env, shlex.split(command)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("launch")
    with private_daemon(root) as daemon:  # no R1_HOST: only the socket, until r1 launch opens TCP
        # "tiny": a template that renders tools and a context of 64K tokens, as the tools need.
        daemon.cli("import", str(write_quiet_gguf(root / "quiet.gguf")), "--name", "tiny")
        yield daemon


def test_launch_opens_the_tcp_listener_and_prints_claude_codes_variables(daemon: Daemon) -> None:
    assert daemon.request("GET", "/api/tcp")[1]["address"] is None
    env, command = exports(daemon.cli("launch", "claude", "--model", "tiny").stdout)
    assert command == ["claude"]
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "tiny" and env["ANTHROPIC_AUTH_TOKEN"]
    base = env["ANTHROPIC_BASE_URL"]
    assert base.startswith("http://127.0.0.1:") and not base.endswith("/v1")  # Claude Code appends /v1/messages
    with urllib.request.urlopen(base + "/api/version", timeout=10) as answer:  # the listener is open
        assert json.load(answer)["r1_version"]
    assert daemon.request("GET", "/api/tcp")[1]["address"] == base.removeprefix("http://")
    again, _ = exports(daemon.cli("launch", "opencode", "-m", "tiny").stdout)  # the same listener, not a second
    config = json.loads(again["OPENCODE_CONFIG_CONTENT"])
    assert config["model"] == "r1/tiny" and config["provider"]["r1"]["options"]["baseURL"] == base + "/v1"


def test_codex_gets_a_provider_of_its_own_and_exec_runs_the_tool(daemon: Daemon, tmp_path: Path) -> None:
    env, command = exports(daemon.cli("launch", "codex", "--model", "tiny").stdout)
    assert command[:5] == ["codex", "-c", "model_provider=r1", "-c", command[4]] and command[-2:] == ["-m", "tiny"]
    assert 'wire_api = "responses"' in command[4] and 'env_key = "R1_API_KEY"' in command[4]
    assert env == {"R1_API_KEY": "r1"}
    # --exec: a stand-in `codex` on PATH records its arguments and the key variable it was given.
    record = tmp_path / "record.json"
    tool = tmp_path / "codex"
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$R1_API_KEY\" \"$@\" > {record}\n")
    tool.chmod(0o755)
    daemon.env["PATH"] = f"{tmp_path}{os.pathsep}{daemon.env['PATH']}"
    try:
        daemon.cli("launch", "codex", "--model", "tiny", "--exec", "--", "exec", "--json", "hi there")
    finally:
        daemon.env["PATH"] = daemon.env["PATH"].split(os.pathsep, 1)[1]
    # The arguments after -- go to the tool, after r1's.
    assert record.read_text().splitlines() == ["r1", *command[1:], "exec", "--json", "hi there"]


def test_launch_refuses_what_it_cannot_do(daemon: Daemon) -> None:
    missing = daemon.cli("launch", "claude", "--model", "no-such-model", check=False)
    assert missing.returncode == 1 and "no-such-model" in missing.stderr
    address = daemon.request("GET", "/api/tcp")[1]["address"]
    request = urllib.request.Request(f"http://{address}/api/tcp", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403  # opened over the socket only
    status, answer = daemon.request("POST", "/api/tcp", {"host": f"0.0.0.0:{free_port()}"})
    assert status == 400 and "loopback" in answer["error"]


def test_launch_checks_that_the_model_can_serve_the_tool(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "plain.gguf", seed=3)), "--name", "no-tools")
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "raw.gguf", chat_template=None, seed=4)), "--name", "raw")
    status, answer = daemon.request("POST", "/api/create", {"model": "short", "from": "tiny",
                                                            "parameters": {"num_ctx": 8192}, "stream": False})
    assert status == 200, answer
    refusals = {
        ("raw", "claude"): ["raw has no chat template", "TEMPLATE"],
        ("no-tools", "codex"): ["does not show the model any tools", "TEMPLATE"],
        ("short", "claude"): ["holds 8192 tokens of context", "PARAMETER num_ctx 32768"],
    }
    for (model, tool), words in refusals.items():
        refused = daemon.cli("launch", tool, "--model", model, check=False)
        assert refused.returncode == 1 and refused.stdout == "", refused
        assert all(word in refused.stderr for word in words), refused.stderr
