"""A request that leaves num_ctx to r1 gets a context that holds its prompt (daemon/scheduler/context_fit.py): the
runner is replaced by one with a larger context, up to the model's trained one; num_ctx set keeps today's
behaviour (a prompt too long for it is refused)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemons import Daemon, private_daemon
from r1.daemon.scheduler.context_fit import grown_context
from tests.support.tinymodels import write_quiet_gguf

# About 5,000 tokens with SmolLM2's tokenizer: more than the default context of 4096 holds.
LONG = " ".join(f"word{i}" for i in range(1200))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("context-fit")
    with private_daemon(root, R1_NUM_PARALLEL="1") as daemon:
        daemon.cli("import", str(write_quiet_gguf(root / "quiet.gguf", context_length=65536)), "--name", "quiet")
        yield daemon


def context_in_ps(daemon: Daemon) -> list[int]:
    return [m["context_length"] for m in daemon.request("GET", "/api/ps")[1]["models"]]


def test_a_prompt_longer_than_the_default_context_grows_it(daemon: Daemon) -> None:
    status, answer = daemon.request("POST", "/api/chat", {"model": "quiet", "stream": False, "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
        {"role": "user", "content": LONG}]})
    assert status == 200, answer
    assert 4096 < answer["prompt_eval_count"] < 8192 - 2048  # the whole chat, no message dropped
    assert context_in_ps(daemon) == [8192]  # the smallest power of two that holds it and room for an answer
    assert "growing the context to 8192" in daemon.log()
    # A short request is served by the larger runner, with its whole context.
    status, answer = daemon.request("POST", "/api/generate", {"model": "quiet", "prompt": "hi", "stream": False})
    assert status == 200 and context_in_ps(daemon) == [8192]
    assert daemon.cli("ps").stdout.count("8192") == 1


def test_num_ctx_set_keeps_its_context(daemon: Daemon) -> None:
    status, answer = daemon.request("POST", "/api/generate", {
        "model": "quiet", "prompt": LONG, "stream": False, "options": {"num_ctx": 4096}})
    assert status == 400 and "fills the model's context of 4096" in answer["error"]
    status, answer = daemon.request("POST", "/api/chat", {"model": "quiet", "stream": False, "options": {"num_ctx": 4096},
                                                          "messages": [{"role": "user", "content": LONG},
                                                                       {"role": "user", "content": "hi"}]})
    assert status == 200 and answer["prompt_eval_count"] < 100  # today's way: the oldest message dropped


@pytest.mark.unit
def test_the_grown_context_stays_within_the_trained_one_and_the_budget() -> None:
    assert grown_context(5000, 2048, 65536, lambda n: True) == 8192
    assert grown_context(5000, 2048, 6000, lambda n: True) == 6000  # the trained context caps it
    assert grown_context(5000, 2048, 65536, lambda n: n <= 16384) == 8192
    assert grown_context(20000, 2048, 65536, lambda n: n <= 16384) is None  # nothing that holds it fits
