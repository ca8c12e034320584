"""The scheduler's books with a fake runner and a fake clock: budget, LRU, queue, keep-alive, stop,
runners that die, and the fallback from llama.cpp's extra buffers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any

import pytest

from r1.daemon.scheduler.model_spec import ModelSpec
from r1.daemon.scheduler.runner_client import RunnerDied
from r1.daemon.scheduler.scheduler import Busy, ModelTooLarge
from tests.support.fakerunner import GB, MACHINE, CrashBook, FakeRunner, Harness, settle, spec


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_for_a_cold_model_load_it_once() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            h.gate = asyncio.Event()
            a = spec("a")
            users = [asyncio.ensure_future(h.use(a)) for _ in range(5)]
            await settle()
            h.gate.set()
            runners = await asyncio.gather(*users)
            assert h.started == ["a"] and len({r.pid for r in runners}) == 1
            assert h.scheduler.loads == 1
    run(main())


def test_other_load_options_are_another_instance() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            first = await h.use(spec("a"))
            threads = dataclasses.replace(spec("a"), load=(("num_ctx", 2048), ("num_thread", 2)))
            second = await h.use(threads)
            assert first.pid != second.pid and h.started == ["a", "a"]
            assert await h.use(spec("a")) is first and await h.use(threads) is second
    run(main())


def test_a_larger_context_replaces_the_smaller_and_serves_it() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            small = await h.use(spec("a", ctx=2048))
            large = await h.use(spec("a", ctx=8192))
            assert large.pid != small.pid and h.started == ["a", "a"]
            await settle()
            assert [i.spec.num_ctx for i in h.scheduler.instances()] == [8192] and not small.alive
            assert await h.use(spec("a", ctx=2048)) is large  # held to 2048 by the runner
            assert await h.use(spec("a", ctx=4096)) is large and h.started == ["a", "a"]
    run(main())


def test_a_busy_smaller_context_goes_when_its_request_ends() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            async with h.scheduler.lease(spec("a", ctx=2048)) as busy:
                large = await h.use(spec("a", ctx=8192))
                assert sorted(i.spec.num_ctx for i in h.scheduler.instances()) == [2048, 8192]
                assert await h.use(spec("a", ctx=2048)) is large  # not the one on its way out
            await settle()
            assert [i.spec.num_ctx for i in h.scheduler.instances()] == [8192] and not busy.runner.alive
    run(main())


def test_models_made_from_one_share_its_runner() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            base = spec("a")
            # `r1 create` from it: another name, manifest and settings; the same files.
            variant = dataclasses.replace(base, name="a-chat", manifest_id="id-a-chat")
            first = await h.use(base)
            assert await h.use(variant) is first and h.started == ["a"]
            assert await h.scheduler.stop(variant.weights) == 1 and h.loaded() == []
    run(main())


def test_idle_models_are_unloaded_least_recently_used_first() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="3GiB") as h:
            a, b, c, d = spec("a"), spec("b"), spec("c"), spec("d")
            runner_a = await h.use(a)
            runner_b = await h.use(b)
            await h.use(c)
            await h.use(a)  # a is now more recent than b
            await h.use(d)
            assert h.loaded() == ["a", "c", "d"]
            assert not runner_b.alive and runner_a.alive
            assert h.scheduler.evictions == 1 and h.scheduler.used == 3 * GB
    run(main())


def test_a_model_in_use_is_never_unloaded_and_the_newcomer_waits_for_it() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="2GiB") as h:
            a, b, c = spec("a"), spec("b"), spec("c")
            release_a = asyncio.Event()
            entered: list[str] = []

            async def hold(s: ModelSpec, until: asyncio.Event) -> None:
                async with h.scheduler.lease(s):
                    entered.append(s.name)
                    await until.wait()

            holder = asyncio.ensure_future(hold(a, release_a))
            await settle()
            await h.use(b)  # fits beside a
            waiter = asyncio.ensure_future(hold(c, asyncio.Event()))
            await settle()
            assert entered == ["a", "c"]  # c took idle b's place; a, busy, stayed
            assert h.loaded() == ["a", "c"]
            late = asyncio.ensure_future(h.use(spec("d")))
            await settle()
            assert not late.done() and h.scheduler.waiting == 1  # both loaded models are busy: d waits
            release_a.set()
            await holder
            await late
            assert "d" in h.loaded() and "a" not in h.loaded()
            waiter.cancel()
    run(main())


@pytest.mark.unit
def test_a_model_larger_than_the_budget_fails_at_once_naming_both_sizes() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="8GiB") as h:
            with pytest.raises(ModelTooLarge, match=r"needs 9\.1 GiB .* memory budget is 8\.0 GiB") as caught:
                await h.use(spec("huge", 9.1))
            assert caught.value.status == 507 and h.started == []
    run(main())


def test_the_queue_is_bounded() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="1GiB", R1_MAX_QUEUE="1") as h:
            done = asyncio.Event()

            async def hold() -> None:
                async with h.scheduler.lease(spec("a")):
                    await done.wait()

            holder = asyncio.ensure_future(hold())
            await settle()
            queued = asyncio.ensure_future(h.use(spec("b")))
            await settle()
            with pytest.raises(Busy, match="R1_MAX_QUEUE") as caught:
                await h.use(spec("c"))
            assert caught.value.status == 503
            done.set()
            await asyncio.gather(holder, queued)
            assert h.loaded() == ["b"]
    run(main())


def test_requests_to_one_slot_take_turns_in_arrival_order() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB", R1_NUM_PARALLEL="1") as h:
            a = spec("a")
            order: list[int] = []
            running = 0
            most = 0

            async def one(n: int) -> None:
                nonlocal running, most
                async with h.scheduler.lease(a):
                    running += 1
                    most = max(most, running)
                    order.append(n)
                    await asyncio.sleep(0.001)
                    running -= 1

            await asyncio.gather(*(one(n) for n in range(6)))
            assert order == list(range(6)) and most == 1
    run(main())


def test_num_parallel_lets_that_many_in_at_once() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB", R1_NUM_PARALLEL="2") as h:
            running = most = 0

            async def one() -> None:
                nonlocal running, most
                async with h.scheduler.lease(spec("a")):
                    running += 1
                    most = max(most, running)
                    await asyncio.sleep(0.001)
                    running -= 1

            await asyncio.gather(*(one() for _ in range(5)))
            assert most == 2
    run(main())


def test_each_runner_gets_four_slots_and_requests_beyond_them_wait_in_arrival_order() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            release = asyncio.Event()
            entered: list[int] = []

            async def hold(n: int) -> None:
                async with h.scheduler.lease(spec("a")):
                    entered.append(n)
                    await release.wait()

            holders = [asyncio.ensure_future(hold(n)) for n in range(6)]
            await settle()
            [instance] = h.scheduler.instances()
            assert dict(instance.runner.spec.load)["num_parallel"] == 4  # type: ignore[union-attr]
            assert (instance.slots, instance.busy, entered, h.scheduler.waiting) == (4, 4, [0, 1, 2, 3], 2)
            release.set()
            await asyncio.gather(*holders)
            assert entered == list(range(6)) and instance.busy == 0 and h.started == ["a"]
    run(main())


def test_slots_shrink_to_what_the_budget_holds_and_the_log_says_why(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            with caplog.at_level(logging.INFO, logger="r1.daemon.scheduler.scheduler"):
                roomy = await h.use(spec("a", 1, per_slot=0.5))  # 2.5 GiB with 4 slots
                tight = await h.use(spec("b", 1, per_slot=1.25))  # evicts a: 3 slots take 3.5 GiB, 4 would 4.75
            assert dict(roomy.spec.load)["num_parallel"] == 4 and roomy.spec.estimate == int(2.5 * GB)
            assert dict(tight.spec.load)["num_parallel"] == 3 and tight.spec.estimate == int(3.5 * GB)
            assert not roomy.alive and h.scheduler.used == int(3.5 * GB)
            assert "b gets 3 sequence slots of R1_NUM_PARALLEL's 4" in caplog.text
            assert "a gets" not in caplog.text
            lone = await h.use(spec("c", 3.5, per_slot=1))
            assert dict(lone.spec.load)["num_parallel"] == 1 and lone.spec.estimate == int(3.5 * GB)
    run(main())


def test_a_larger_context_with_fewer_slots_replaces_the_smaller_and_serves_it() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            small = await h.use(spec("a", 1, ctx=2048, per_slot=0.25))
            large = await h.use(spec("a", 1.5, ctx=8192, per_slot=1))
            assert [dict(r.spec.load)["num_parallel"] for r in (small, large)] == [4, 3]
            await settle()
            assert not small.alive and h.started == ["a", "a"]
            assert await h.use(spec("a", 1, ctx=2048, per_slot=0.25)) is large
    run(main())


def test_keep_alive_unloads_an_idle_model_when_it_runs_out() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB", R1_KEEP_ALIVE="5m") as h:
            runner = await h.use(spec("a"))
            h.now += 298
            assert await h.scheduler.reap() == 0 and runner.alive
            h.now += 3
            assert await h.scheduler.reap() == 1
            assert not runner.alive and h.loaded() == []
    run(main())


def test_each_request_sets_the_keep_alive_and_a_negative_one_keeps_forever() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            runner = await h.use(spec("a"), keep_alive=-1)
            h.now += 10**9
            assert await h.scheduler.reap() == 0 and runner.alive
            assert h.scheduler.expires_at(h.scheduler.instances()[0]) is None
            await h.use(spec("a"), keep_alive=10)
            h.now += 11
            assert await h.scheduler.reap() == 1 and not runner.alive
    run(main())


def test_keep_alive_zero_unloads_when_the_request_ends() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            runner = await h.use(spec("a"), keep_alive=0)
            await settle()
            assert not runner.alive and h.loaded() == []
    run(main())


def test_stop_unloads_idle_models_now_and_busy_ones_after_their_requests() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            idle = await h.use(spec("a"))
            assert await h.scheduler.stop("weights-a") == 1 and not idle.alive
            release = asyncio.Event()

            async def hold() -> FakeRunner:
                async with h.scheduler.lease(spec("b")) as lease:
                    await release.wait()
                    return lease.runner  # type: ignore[return-value]

            holder = asyncio.ensure_future(hold())
            await settle()
            assert await h.scheduler.stop("weights-b") == 1
            assert h.loaded() == ["b"] and h.scheduler.instances()[0].stopping
            release.set()
            busy = await holder
            await settle()
            assert not busy.alive and h.loaded() == []
    run(main())


def test_max_loaded_limits_the_count() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="10GiB", R1_MAX_LOADED="2") as h:
            for name in "abc":
                await h.use(spec(name))
            assert h.loaded() == ["b", "c"]
    run(main())


def test_a_dead_runner_is_replaced_and_a_failed_load_is_retried() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            first = await h.use(spec("a"))
            first.alive = False  # ended, and seen to
            second = await h.use(spec("a"))
            assert second is not first and h.started == ["a", "a"]
            second.killed = True  # killed a moment ago: only a ping can tell
            third = await h.use(spec("a"))
            assert third is not second and h.started == ["a", "a", "a"]
            h.fail_next = True
            with pytest.raises(RuntimeError, match="would not load"):
                await h.use(spec("b"))
            assert "b" not in h.loaded()
            await h.use(spec("b"))
            assert "b" in h.loaded()
    run(main())


def test_close_stops_every_runner() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            runners = [await h.use(spec(n)) for n in "ab"]
        assert not any(r.alive for r in runners) and h.loaded() == []
    run(main())


def test_a_runner_that_dies_while_idle_leaves_the_books_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            first = await h.use(spec("a"))
            first.die("was killed by SIGKILL")  # the OOM killer, between requests
            await settle()
            assert h.loaded() == [] and h.scheduler.used == 0
            assert "was killed by SIGKILL while idle" in caplog.text
            assert await h.use(spec("a")) is not first
    run(main())


@pytest.mark.unit
def test_a_runner_that_dies_mid_request_is_unloaded_when_the_request_ends() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            async with h.scheduler.lease(spec("a")) as lease:
                lease.runner.die("was killed by SIGKILL")  # type: ignore[attr-defined]
                await settle()
                assert h.loaded() == ["a"]  # the request in flight still holds it
            await settle()
            assert h.loaded() == []
    run(main())


def test_a_crash_while_loading_with_extra_buffers_falls_back_once_and_is_remembered(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        book = CrashBook()
        async with Harness(book, R1_MEMORY_BUDGET="4GiB") as h:
            h.crash_with = signal.SIGSEGV
            with caplog.at_level(logging.WARNING):
                runner = await h.use(spec("a"))
                await h.use(spec("b"))
            assert runner.info["extra_buffers"] is False
            assert h.started == ["a", "a (safe)", "b (safe)"]  # b never pays for the crash
            assert caplog.text.count("crashed while loading") == 1 and "SIGSEGV" in caplog.text
            assert list(book) == [(MACHINE.engine, MACHINE.cpu)]
        async with Harness(book, R1_MEMORY_BUDGET="4GiB") as h:  # a restarted daemon remembers
            h.crash_with = signal.SIGSEGV
            await h.use(spec("a"))
            assert h.started == ["a (safe)"]
    run(main())


@pytest.mark.unit
@pytest.mark.parametrize("mode, crash, expected", [
    ("auto", signal.SIGKILL, ["a"]),  # killed from outside: nothing to do with the kernels
    ("on", signal.SIGSEGV, ["a"]),  # forced on: the crash is the answer
])
def test_no_fallback_for_other_deaths_or_when_forced_on(mode: str, crash: int, expected: list[str]) -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB", R1_LLAMA_EXTRA_BUFFERS=mode) as h:
            h.crash_with = crash
            with pytest.raises(RunnerDied, match=signal.Signals(crash).name):
                await h.use(spec("a"))
            assert h.started == expected and not h.book and h.loaded() == []
    run(main())


def test_extra_buffers_off_and_other_formats_never_use_them() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET="4GiB", R1_LLAMA_EXTRA_BUFFERS="off") as h:
            await h.use(spec("a"))
            assert h.started == ["a (safe)"]
        async with Harness(R1_MEMORY_BUDGET="4GiB") as h:
            mlx = ModelSpec("m", "id-m", "weights-m", "mlx", Path("/m/m"), (("num_ctx", 2048),), estimate=GB)
            h.crash_with = signal.SIGSEGV
            await h.use(mlx)
            assert h.started == ["m (safe)"]
    run(main())
