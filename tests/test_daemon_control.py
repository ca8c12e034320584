"""`r1 daemon status|stop|restart`, POST /api/shutdown's guard, and the warning of a command whose
environment sets what the running daemon was started without: the real `r1` against real daemons."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.daemons import R1, start_daemon
from tests.support.fakehub import FakeHub
from tests.support.loopback import free_port
from tests.support.polling import wait_until
from tests.support.unixhttp import unix_request

WITHOUT_OFFLINE = ("Warning: the daemon was started without HF_HUB_OFFLINE=1; it does not see this command's "
                   "environment: `r1 daemon restart` to use it")


def r1(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([R1, *args], env=env, capture_output=True, text=True, timeout=120)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def one_line(text: str) -> str:
    return " ".join(text.split())  # notes wrap at the terminal's width


@pytest.fixture
def env(daemon_env: dict[str, str], hub: FakeHub, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a shell whose daemon `r1` starts itself; whatever it started is stopped after."""
    env = {**daemon_env, **hub.env(), "HF_HOME": str(tmp_path / "hf")}
    for variable in ("R1_NO_AUTOSTART", "HF_HUB_OFFLINE", "HF_TOKEN", "XPC_SERVICE_NAME"):
        env.pop(variable, None)
    yield env
    with contextlib.suppress(OSError, AssertionError):  # none left running
        psutil.Process(daemon_pid(env)).terminate()


def daemon_pid(env: dict[str, str]) -> int:
    status, info = unix_request(Path(env["R1_SOCKET"]), "GET", "/api/daemon")
    assert status == 200
    return info["pid"]


def test_stop_restart_and_a_later_commands_environment(env: dict[str, str]) -> None:
    none = r1(env, "daemon", "status")
    assert none.returncode == 3 and none.stdout == f"no r1 daemon is running on {env['R1_SOCKET']}\n"

    started = r1(env, "daemon", "restart")  # none was running: it starts one
    assert started.returncode == 0 and "Started the r1 daemon in the background" in started.stderr
    first = daemon_pid(env)
    status = r1(env, "daemon", "status")
    assert status.returncode == 0 and f"pid {first}, started " in status.stdout
    assert f"store   {env['R1_HOME']}" in status.stdout and "run by  r1 (r1 daemon stop|restart)" in status.stdout

    # HF_HUB_OFFLINE on a later command: the daemon does not see it, and the command says so.
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    ignored = r1(offline, "pull", "acme/nosuch-GGUF")
    assert WITHOUT_OFFLINE in one_line(ignored.stderr)
    assert "no model repo 'acme/nosuch-GGUF'" in ignored.stderr  # it asked the Hub all the same
    assert WITHOUT_OFFLINE in one_line(r1(offline, "daemon", "status").stderr)
    assert "Warning" not in r1(env, "pull", "acme/nosuch-GGUF").stderr  # the daemon's own value stands

    restarted = r1(offline, "daemon", "restart")
    assert restarted.returncode == 0 and restarted.stdout == f"stopped the r1 daemon (pid {first})\n"
    assert not running(first)
    second = daemon_pid(env)
    assert second != first
    honoured = r1(offline, "pull", "acme/nosuch-GGUF")
    assert "Warning" not in honoured.stderr and "HF_HUB_OFFLINE is set" in honoured.stderr

    twice = r1(env, "serve")  # a second daemon on the same socket: which one runs, and what differs
    assert twice.returncode == 1
    assert f"another r1 daemon (pid {second}) already listens on {env['R1_SOCKET']}" in one_line(twice.stderr)

    stopped = r1(env, "daemon", "stop")
    assert stopped.returncode == 0 and stopped.stdout == f"stopped the r1 daemon (pid {second})\n"
    assert not running(second) and not Path(env["R1_SOCKET"]).exists()
    again = r1(env, "daemon", "stop")
    assert again.returncode == 0 and again.stdout == f"no r1 daemon is running on {env['R1_SOCKET']}\n"


def test_a_service_daemon_is_left_to_its_manager_and_tcp_cannot_stop_any(daemon_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    """launchd names its job in XPC_SERVICE_NAME: the daemon knows it runs as the service."""
    import http.client

    port = free_port()
    service = start_daemon({**daemon_env, "XPC_SERVICE_NAME": "com.r1.daemon", "R1_HOST": f"127.0.0.1:{port}"},
                           tmp_path / "daemon.log")
    try:
        refused = r1(service.env, "daemon", "stop")
        assert refused.returncode == 1
        assert (f"the r1 daemon (pid {service.process.pid}) runs as a launchd service, which would start it again or "
                f"lose track of it: stop it with `launchctl kill TERM gui/{os.getuid()}/com.r1.daemon`") \
            in one_line(refused.stderr)
        assert "launchctl kickstart -k" in r1(service.env, "daemon", "restart").stderr
        assert "run by  launchd (r1 service)" in r1(service.env, "daemon", "status").stdout

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/api/shutdown")
        response = connection.getresponse()
        assert response.status == 403 and b"over its Unix socket only" in response.read()
        connection.request("GET", "/api/daemon")  # its settings and paths, too
        response = connection.getresponse()
        assert response.status == 403 and b"over its Unix socket only" in response.read()
        wait_until(lambda: service.request("GET", "/api/version")[0] == 200)
        assert service.process.poll() is None
    finally:
        assert service.stop() == 0, service.log()


@pytest.mark.unit
def test_differences_name_secrets_without_their_values() -> None:
    from r1.cli.daemon_control import differences
    from r1.daemon.config import Settings

    mine = {"R1_API_KEY": "s3cret", "HF_TOKEN": "hf_x", "HF_HUB_OFFLINE": "1", "R1_NO_AUTOSTART": "1",
            "R1_MEMORY_BUDGET": "2GB", "R1_KEEP_ALIVE": "5m"}
    theirs = {"R1_API_KEY": "", "HF_TOKEN": "", "HF_HUB_OFFLINE": "0", "R1_NO_AUTOSTART": "0",
              "R1_MEMORY_BUDGET": "1000", "R1_KEEP_ALIVE": "300.0", "R1_PULL_CONNECTIONS": "8"}
    assert differences(theirs, Settings.from_env(mine), theirs, mine) == [
        "without R1_API_KEY", "without HF_TOKEN", "without HF_HUB_OFFLINE=1", "with R1_MEMORY_BUDGET=1000, not 2GB"]
