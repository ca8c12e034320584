"""Shell completion: the scripts `r1 completion` prints, and model names completed from a real daemon,
through the real bash script where bash is installed and through click's protocol for zsh and fish."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import R1, Daemon, private_daemon
from tests.support.tinymodels import write_tiny_bert, write_tiny_gguf

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def completion_script(shell: str) -> str:
    result = subprocess.run([R1, "completion", shell], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("shell, marks", [
    ("bash", ["_R1_COMPLETE=bash_complete", "complete -o nosort -F _r1_completion r1"]),
    ("zsh", ["#compdef r1", "_R1_COMPLETE=zsh_complete", "compdef _r1_completion r1"]),
    ("fish", ["_R1_COMPLETE=fish_complete", "complete --no-files --command r1"]),
])
def test_completion_prints_the_script(shell: str, marks: list[str]) -> None:
    script = completion_script(shell)
    for mark in marks:
        assert mark in script, f"no {mark!r} in:\n{script}"


@needs_bash
def test_the_bash_script_is_valid_bash() -> None:
    result = subprocess.run([BASH, "-n"], input=completion_script("bash"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run([R1, "completion", "tcsh"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "'tcsh' is not one of" in result.stderr


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon whose store holds tiny:latest, tiny:q8 and other:latest (one model, three names), and
    embedder:latest (a model that only embeds)."""
    root = tmp_path_factory.mktemp("completion")
    with private_daemon(root) as daemon:
        daemon.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
        daemon.cli("cp", "tiny", "tiny:q8")
        daemon.cli("cp", "tiny", "other")
        daemon.cli("import", str(write_tiny_bert(root / "embedder.gguf")), "--name", "embedder")
        yield daemon


def bash_completions(daemon: Daemon, *lines: str) -> list[set[str]]:
    """What bash offers (COMPREPLY) at the end of each line, through the script `r1 completion bash` prints."""
    calls = "\n".join(f"complete_line {line!r}" for line in lines)
    program = f"""
eval "$(r1 completion bash)"
complete_line() {{
    COMP_LINE=$1 COMP_POINT=${{#1}} COMPREPLY=()
    _r1_completion r1
    printf '%s\\n' "${{COMPREPLY[@]}}" --
}}
{calls}
"""
    env = {**daemon.env, "PATH": f"{Path(R1).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([BASH, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stderr, result.stderr
    blocks = result.stdout.split("--\n")[:-1]
    return [set(block.split()) for block in blocks]


@needs_bash
def test_bash_completes_model_names_from_the_daemon(named: Daemon) -> None:
    _, catalog = named.request("GET", "/api/catalog")
    deepseek = {m["name"] for m in catalog["models"] if m["name"].startswith("deepseek-r1:")}
    assert deepseek
    offered = bash_completions(
        named, "r1 show ", "r1 run ", "r1 run ti", "r1 rm tiny:", "r1 rm tiny:latest ot", "r1 rm tiny:latest ",
        "r1 cp tiny:latest ", "r1 pull deepseek-r1:", "r1 stop ", "r1 li", "r1 show --j",
    )
    assert offered == [
        {"tiny:latest", "tiny:q8", "other:latest", "embedder:latest"},
        {"tiny:latest", "tiny:q8", "other:latest"},  # no model that only embeds: run chats
        {"tiny:latest", "tiny:q8"},
        {"latest", "q8"},  # bash counts only what follows the ':' as the word being completed
        {"other:latest"},
        {"tiny:q8", "other:latest", "embedder:latest"},  # not a name already given
        set(),  # a new name: nothing to offer
        {name.split(":", 1)[1] for name in deepseek},
        set(),  # nothing is loaded
        {"list"},
        {"--json"},
    ]
    status, _ = named.request("POST", "/api/generate", {"model": "other", "keep_alive": "1m"})
    assert status == 200
    assert bash_completions(named, "r1 stop ") == [{"other:latest"}]


def click_protocol(daemon: Daemon, shell: str, line: str) -> list[str]:
    """What `r1` answers to `shell`'s completion request for `line`, as the zsh and fish scripts ask."""
    words = line.split()
    current = "" if line.endswith(" ") else words[-1]
    cword = str(len(words) if line.endswith(" ") else len(words) - 1)
    env = {**daemon.env, "_R1_COMPLETE": f"{shell}_complete", "COMP_WORDS": line,
           "COMP_CWORD": current if shell == "fish" else cword}
    result = subprocess.run([R1], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout.splitlines()


def test_zsh_and_fish_complete_model_names_from_the_daemon(named: Daemon) -> None:
    zsh = click_protocol(named, "zsh", "r1 show ti")  # type, value, help: three lines each
    assert sorted(zip(zsh[::3], zsh[1::3], zsh[2::3])) == [("plain", "tiny:latest", "_"), ("plain", "tiny:q8", "_")]
    assert sorted(click_protocol(named, "fish", "r1 show tiny:")) == ["plain,tiny:latest", "plain,tiny:q8"]
    # Paths are the shell's to complete: r1 says so, for import's PATH as for its --dir.
    assert click_protocol(named, "fish", "r1 import ./mo") == ["file,./mo"]
    assert click_protocol(named, "fish", "r1 import --from ollama --dir ./mo") == ["dir,./mo"]


def test_completion_without_a_daemon_offers_nothing_and_starts_none(r1_env: dict[str, str]) -> None:
    env = {**os.environ, **r1_env, "_R1_COMPLETE": "zsh_complete", "COMP_WORDS": "r1 show ", "COMP_CWORD": "2"}
    env.pop("R1_NO_AUTOSTART")  # a command would start a daemon here; completing must not
    result = subprocess.run([R1], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")
    assert not Path(r1_env["R1_SOCKET"]).exists()
