"""Issue 25's hostile templates against a real daemon and real runners: each costs its own request a 400
that names the limit, within the time limit, while other clients of the same model are answered; the
runner stays the same process and keeps serving; the daemon's event loop never does template work.

One daemon for the module, with R1_TEMPLATE_TIMEOUT at 2 s (and the loop limit out of the way where the
time limit is the point); tiny random GGUF models (tests/support/tinymodels.py), one whose own template is hostile.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.daemons import Daemon, private_daemon
from r1.daemon.runner.protocol import Frame, decode, encode
from r1.daemon.runner.worker import UNRUN
from r1.daemon.templates.renderers import GRACE
from tests.support.tinymodels import write_endless_gguf, write_tiny_gguf

TIMEOUT = 2.0  # R1_TEMPLATE_TIMEOUT of this module's daemon
MAX_BYTES = 512 * 1024  # R1_TEMPLATE_MAX_BYTES: room for a template that takes a while to convert
QUICK = 1.2  # seconds a plain chat on the tiny model takes at most, on a machine busy with other tests too
# The issue's template, word for word.
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[0].content }}"
# One call that runs long without any loop or call of the template's looking at the clock: only the kill stops it.
DEAF = "{{ ((range(100000) | list) * 80) | sort | sort | sort | sort | sort | sort | sort | sort | length }}"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("hostile-templates")
    with private_daemon(root, R1_TEMPLATE_TIMEOUT=f"{TIMEOUT:g}s", R1_TEMPLATE_MAX_LOOPS="1000000000",
                        R1_TEMPLATE_MAX_BYTES=str(MAX_BYTES), R1_LLAMA_EXTRA_BUFFERS="off") as running:
        running.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
        running.cli("import", str(write_tiny_gguf(root / "hostile.gguf", chat_template=NESTED, seed=3)),
                    "--name", "hostile")
        yield running
        assert "Traceback" not in running.log(), running.log()


def chat(daemon: Daemon, model: str = "tiny", **fields: Any) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = daemon.request("POST", "/api/chat", {"model": model, "messages": HELLO, "stream": False,
                                                        "options": {"num_predict": 2}, **fields}, timeout=60)
    return status, body, time.monotonic() - started


def generate(daemon: Daemon, template: str, model: str = "tiny") -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = daemon.request("POST", "/api/generate", {"model": model, "prompt": "Hello", "template": template,
                                                            "stream": False, "options": {"num_predict": 2}},
                                  timeout=60)
    return status, body, time.monotonic() - started


def runner_of(daemon: Daemon, model: str = "tiny") -> int:
    status, answer = daemon.request("GET", "/api/ps")
    assert status == 200
    [pid] = {m["pid"] for m in answer["models"] if m["name"].split(":")[0] == model}
    return pid


def renderers_of(runner: int) -> set[int]:
    return {p.pid for p in psutil.Process(runner).children()
            if p.status() != psutil.STATUS_ZOMBIE and "templates.renderer" in " ".join(p.cmdline())}


def beside(hostile: Any, *others: Any) -> tuple[Any, list[Any], float]:
    """The hostile call's result, the others' results (started 0.2 s after it), and by how many seconds the
    others finished before the hostile one (negative if after)."""
    results: dict[str, Any] = {}

    def run() -> None:
        results["hostile"] = hostile()
        results["hostile_done"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    answered = [other() for other in others]
    others_done = time.monotonic()
    thread.join(60)
    return results["hostile"], answered, results["hostile_done"] - others_done


def test_the_issues_nested_loop_is_a_400_in_time_while_another_chat_on_the_model_answers(daemon: Daemon) -> None:
    assert chat(daemon)[0] == 200
    runner = runner_of(daemon)
    (status, body, took), [(other, _, other_took)], lead = beside(lambda: generate(daemon, NESTED),
                                                                   lambda: chat(daemon))
    assert status == 400 and body["error"] == f"the chat template ran longer than {TIMEOUT:g} s (R1_TEMPLATE_TIMEOUT)"
    assert took < TIMEOUT + GRACE + 1
    assert other == 200 and other_took < QUICK and lead > 0  # answered while the template still ran
    assert runner_of(daemon) == runner and chat(daemon)[0] == 200


def test_a_model_whose_own_template_is_hostile_is_a_400_and_hurts_nobody(daemon: Daemon) -> None:
    status, body, took = chat(daemon, "hostile")
    assert status == 400 and "R1_TEMPLATE_TIMEOUT" in body["error"] and took < TIMEOUT + GRACE + 1
    # The same template given by `r1 create` to a model sharing tiny's runner.
    status, body = daemon.request("POST", "/api/create", {"model": "tiny-hostile", "from": "tiny", "template": NESTED,
                                                          "stream": False})
    assert status == 200, body
    assert chat(daemon)[0] == 200
    runner = runner_of(daemon)
    (status, body, _), [(other, _, other_took)], lead = beside(lambda: chat(daemon, "tiny-hostile"),
                                                               lambda: chat(daemon))
    assert status == 400 and "R1_TEMPLATE_TIMEOUT" in body["error"]
    assert other == 200 and other_took < QUICK and lead > 0
    assert runner_of(daemon) == runner and chat(daemon, "hostile")[0] == 400


# Through the `template` field of /api/generate: each a 400 naming what, none a 500.
PROBES = {
    "'a' * 10**9": ("{{ 'a' * 10**9 }}", "1,000,000,000 characters with *"),
    "range(20_000_000)": ("{% for i in range(20000000) %}{% endfor %}x", "Range too big"),
    "Go: range over 20,000,000": ("{{ range $i := 20000000 }}{{ end }}x", "R1_TEMPLATE_TIMEOUT"),
    "Go: range over more than the loop limit": ("{{ range $i := 2000000000 }}{{ end }}x", "R1_TEMPLATE_MAX_LOOPS"),
    "a doubling ~ loop": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                          "{% endfor %}{{ ns.s }}", "characters with ~"),
    "a replace bomb": ("{{ ('a' * 1000) | replace('a', 'a' * 1000000) }}", "characters with replace"),
    "a join bomb": ("{{ ('ab' * 1000000) | join('x' * 1000) }}", "characters with join"),
    "recursion through a macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursed"),
    "nesting of 150 levels": ("{% if true %}" * 150 + "x" + "{% endif %}" * 150, "too deeply"),
    "include": ("{% include 'x.txt' %}", "uses {% include %}"),
    "import": ("{% import 'x.txt' as x %}", "uses {% import %}"),
    "extends": ("{% extends 'x.txt' %}", "uses {% extends %}"),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_each_probe_is_a_400_naming_it_and_memory_stays_bounded(daemon: Daemon, name: str) -> None:
    source, words = PROBES[name]
    status, body, took = generate(daemon, source)
    assert status == 400 and words in body["error"], body
    assert took < TIMEOUT + GRACE + 1
    runner = runner_of(daemon)
    assert psutil.Process(runner).memory_info().rss < 512 * 2**20
    assert all(psutil.Process(pid).memory_info().rss < 256 * 2**20 for pid in renderers_of(runner))
    assert chat(daemon)[0] == 200


def test_a_render_deaf_to_its_deadline_is_killed_and_the_runner_stays(daemon: Daemon) -> None:
    assert chat(daemon)[0] == 200
    runner = runner_of(daemon)
    before = renderers_of(runner)
    status, body, took = generate(daemon, DEAF)
    assert status == 400 and "R1_TEMPLATE_TIMEOUT" in body["error"]
    assert took < TIMEOUT + GRACE + 1
    assert runner_of(daemon) == runner and chat(daemon)[0] == 200
    assert renderers_of(runner) and renderers_of(runner) != before  # the overrunning one was replaced


def go_template(size: int) -> str:
    unit = ("{{ if .System }}<|system|>{{ .System }}{{ end }}"
            "{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}\n")
    return unit * (size // len(unit))


def test_a_1_mb_template_is_refused_at_once(daemon: Daemon) -> None:
    started = time.monotonic()
    status, body = daemon.request("POST", "/api/create", {"model": "huge", "from": "tiny",
                                                          "template": go_template(1_000_000), "stream": False})
    assert status == 400 and "R1_TEMPLATE_MAX_BYTES" in body["error"], body
    status, body, _ = generate(daemon, go_template(1_000_000))
    assert status == 400 and "R1_TEMPLATE_MAX_BYTES" in body["error"], body
    assert time.monotonic() - started < 2


def test_the_event_loop_answers_while_a_large_template_converts(daemon: Daemon) -> None:
    # Converted to Jinja, Go doubles in size: within R1_TEMPLATE_MAX_BYTES both ways, seconds of work here.
    done: dict[str, Any] = {}

    def create() -> None:
        done["answer"] = daemon.request("POST", "/api/create", {"model": "large", "from": "tiny",
                                                                "template": go_template(MAX_BYTES // 2 - 10_000),
                                                                "stream": False})

    thread = threading.Thread(target=create)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        started = time.monotonic()
        assert daemon.request("GET", "/api/tags")[0] == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    assert done["answer"][0] == 200, done["answer"]
    assert slowest < 0.3


# --- the runner's side: a cancel for a request not yet with the model answers it at once -------------------


class RunnerProcess:
    """A runner process spoken to frame by frame, as the daemon speaks to it."""

    def __init__(self, model: Path) -> None:
        parent, child = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, "-m", "r1.daemon.runner", "--fd", str(child.fileno()),
                                         "--log-level", "WARNING"], pass_fds=(child.fileno(),))
        child.close()
        self.sock = parent
        self.reader = parent.makefile("rb")
        self.ids = itertools.count(1)
        self.frames: list[Frame] = []
        loaded = self.call("load", format="gguf", path=str(model), load={
            "num_ctx": 1024, "num_parallel": 2, "extra_buffers": False, "num_thread": 1},
            templates={"timeout": TIMEOUT, "max_loops": 10**9})  # the time limit, not the loop limit, ends NESTED
        assert "result" in loaded, loaded

    def send(self, op: str, **fields: Any) -> int:
        rid = next(self.ids)
        self.sock.sendall(encode({"id": rid, "op": op, **fields}))
        return rid

    def until(self, rid: int, *keys: str, wait: float = 30) -> Frame:
        """The next frame for `rid` holding one of `keys` (frames for others are kept for later)."""
        self.sock.settimeout(wait)
        for frame in self.frames:
            if frame["id"] == rid and any(k in frame for k in keys):
                self.frames.remove(frame)
                return frame
        while True:
            frame = decode(self.reader.readline())
            if frame["id"] == rid and any(k in frame for k in keys):
                return frame
            self.frames.append(frame)

    def call(self, op: str, **fields: Any) -> Frame:
        return self.until(self.send(op, **fields), "result", "error")

    def close(self) -> None:
        self.reader.close()  # the socket's descriptor closes only once its reader is closed too
        self.sock.close()
        assert self.process.wait(10) == 0


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    process = RunnerProcess(write_endless_gguf(tmp_path_factory.mktemp("endless") / "endless.gguf"))
    yield process
    process.close()


def test_a_cancel_answers_a_generation_still_being_prepared_at_once(runner: RunnerProcess) -> None:
    rid = runner.send("generate", messages=HELLO, template=NESTED, sampling={"num_predict": 2})
    time.sleep(0.2)
    cancelled_at = time.monotonic()
    runner.send("cancel", target=rid)
    assert runner.until(rid, "done", "error")["done"] == UNRUN
    assert time.monotonic() - cancelled_at < TIMEOUT / 2  # not when the render gave up
    plain = runner.send("generate", messages=HELLO, sampling={"num_predict": 2})
    assert runner.until(plain, "done")["done"]["eval_count"] == 2  # the runner serves on


def test_a_cancel_answers_a_tokenize_still_being_prepared_at_once(runner: RunnerProcess) -> None:
    rid = runner.send("tokenize", messages=HELLO, template=NESTED)
    time.sleep(0.2)
    cancelled_at = time.monotonic()
    runner.send("cancel", target=rid)
    assert runner.until(rid, "result", "error")["status"] == 499
    assert time.monotonic() - cancelled_at < TIMEOUT / 2


def test_a_cancel_answers_a_generation_held_behind_the_batch_at_once(runner: RunnerProcess) -> None:
    busy = runner.send("generate", prompt="Once", raw=True, sampling={"num_predict": 100_000})
    runner.until(busy, "t")
    held = runner.send("generate", prompt="Twice", raw=True, logprobs=2, sampling={"num_predict": 4})
    time.sleep(0.2)  # prepared, and waiting for the batch to drain: it must run alone
    cancelled_at = time.monotonic()
    runner.send("cancel", target=held)
    assert runner.until(held, "done", "error")["done"]["done_reason"] == "cancel"
    assert time.monotonic() - cancelled_at < 1
    runner.send("cancel", target=busy)
    assert runner.until(busy, "done")["done"]["done_reason"] == "cancel"
