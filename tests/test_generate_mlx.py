"""MLX models through a real daemon: a tiny llama built by the test, run by mlx-lm on the CPU in a runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.tinymlx import THINK_TEMPLATE, write_mlx_model


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module; each test imports a model of its own."""
    with private_daemon(tmp_path_factory.mktemp("mlx")) as running:
        yield running


def test_mlx_model_generates_and_chats_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("import", str(write_mlx_model(tmp_path / "tiny-mlx")), "--name", "tiny-mlx")
    status, raw = daemon.request("POST", "/api/generate", {
        "model": "tiny-mlx", "prompt": "The robot", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 6, "seed": 1},
    })
    assert status == 200, raw
    assert raw["done"] is True and raw["eval_count"] >= 1 and raw["prompt_eval_count"] >= 2
    assert raw["done_reason"] in ("length", "stop")
    status, again = daemon.request("POST", "/api/generate", {
        "model": "tiny-mlx", "prompt": "The robot", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 6, "seed": 1},
    })
    assert again["response"] == raw["response"]  # greedy: the same tokens, in another request
    status, chat = daemon.request("POST", "/api/chat", {
        "model": "tiny-mlx", "stream": False, "options": {"num_predict": 5, "seed": 3},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    })
    assert status == 200, chat
    assert chat["message"]["role"] == "assistant" and chat["eval_count"] <= 5
    assert chat["prompt_eval_count"] > raw["prompt_eval_count"]  # the template wrapped both messages


def test_mlx_think_template_and_refused_format(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("import", str(write_mlx_model(tmp_path / "think-mlx", chat_template=THINK_TEMPLATE)), "--name", "think-mlx")
    status, chat = daemon.request("POST", "/api/chat", {
        "model": "think-mlx", "stream": False, "options": {"num_predict": 6, "temperature": 0},
        "messages": [{"role": "user", "content": "Why?"}],
    })
    assert status == 200, chat
    # The template opened <think>; a random model never closes it, so whatever it wrote is thinking.
    assert chat["message"]["content"] == ""
    assert chat["message"]["thinking"] and chat["eval_count"] == 6 and chat["thinking_unfinished"] is True
    status, refused = daemon.request("POST", "/api/generate", {
        "model": "think-mlx", "prompt": "x", "format": "json", "stream": False,
    })
    assert status == 400 and "MLX" in refused["error"] and "format" in refused["error"]
