"""The coding agents, installed from npm at the versions in tests/agents/versions.json and run for real
through `r1 launch TOOL --exec -- ARGS`: each calls a tool, gets its result back to the model, ends, and
exits 0, and every request it made got a 200 (the daemon's request log says so).

The model is a tiny random one with a real tokenizer and a 64K context (tinymodels.write_quiet_gguf):
scripted to call the agent's shell tool first and to answer "Done." once the tool has answered, so a
session is two or three requests that end at once. The agents install once into a cache folder that
survives between runs (R1_TEST_AGENTS, default ~/.cache/r1-tests/agents); npm and node must be there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.record import agent_environment
from tests.support.daemons import R1, Daemon, private_daemon
from tests.support.polling import wait_until
from tests.support.tinymodels import write_quiet_gguf

AGENTS = Path(__file__).parent / "agents"
VERSIONS = json.loads((AGENTS / "versions.json").read_text())
CACHE = Path(os.environ.get("R1_TEST_AGENTS", Path.home() / ".cache" / "r1-tests" / "agents"))
PROMPT = "List the files in this folder"
# Each agent's own way to run one prompt and exit, and the shell tool it offers with its argument's name.
RUNS = {
    "claude": (["-p", PROMPT], "Bash", "command"),
    "codex": (["exec", "--skip-git-repo-check", PROMPT], "exec_command", "cmd"),
    "opencode": (["run", PROMPT], "bash", "command"),
}
# What each session sends: the first request, the one after the tool's result, opencode's title request.
REQUESTS = {"claude": 2, "codex": 2, "opencode": 3}


def installed_agents() -> Path:
    """The folder of the agents' binaries, installed with npm into CACHE once per set of versions."""
    packages = sorted(f"{agent['package']}@{agent['version']}" for agent in VERSIONS.values())
    prefix = CACHE / "-".join(p.rsplit("/", 1)[-1] for p in packages)
    binaries = prefix / "node_modules" / ".bin"
    if all((binaries / tool).exists() for tool in VERSIONS):
        return binaries
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install the coding agents (node 20 or later)")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".installing-", dir=CACHE))  # renamed once whole
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(partial), *packages],
                   check=True, capture_output=True, timeout=600)
    shutil.rmtree(prefix, ignore_errors=True)
    partial.rename(prefix)
    return binaries


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with one scripted model per agent: `TOOL-model` calls the agent's shell tool (`ls`), then
    says "Done.". (The JSON's odd spacing gives each of its tokens one successor, as the model needs.)"""
    root = tmp_path_factory.mktemp("agents")
    with private_daemon(root) as daemon:
        for tool, (_, function, argument) in RUNS.items():
            call = f'{{"name":"{function}","arguments":{{ "{argument}"\t:"ls"}} }}'
            path = write_quiet_gguf(root / f"{tool}.gguf", answers={"\n": call, "\n\n": "Done."})
            daemon.cli("import", str(path), "--name", f"{tool}-model")
        yield daemon


@pytest.mark.parametrize("tool", sorted(RUNS))
def test_the_agent_runs_a_session_through_r1_launch(daemon: Daemon, tool: str, tmp_path: Path) -> None:
    binaries = installed_agents()
    first_id = max((e["id"] for e in log_entries(daemon, 0)), default=0)
    home = tmp_path / "home"
    home.mkdir()
    env = agent_environment(home, binaries, {}, base=daemon.env)
    arguments, _, _ = RUNS[tool]
    run = subprocess.run([R1, "launch", tool, "--model", f"{tool}-model", "--exec", "--", *arguments], env=env,
                         cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "Done." in run.stdout  # the answer after the tool's result: the whole loop went through r1
    def requests() -> list[dict]:
        return [e for e in log_entries(daemon, first_id) if e["route"].startswith("/v1/")]

    wait_until(lambda: len(requests()) >= REQUESTS[tool], timeout=5, interval=0.5)
    entries = requests()
    assert [e["status"] for e in entries] == [200] * REQUESTS[tool], entries
    assert {e["model"] for e in entries} == {f"{tool}-model:latest"}


def log_entries(daemon: Daemon, after: int) -> list[dict]:
    """The request log's entries after id `after`, oldest first (written within half a second)."""
    result = subprocess.run([R1, "log", "--json", "-n", "100"], env=daemon.env, capture_output=True, text=True,
                            check=True)
    return sorted((e for e in json.loads(result.stdout) if e["id"] > after), key=lambda e: e["id"])
