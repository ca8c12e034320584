"""Partial GPU offload that fits: the layer count for device sizes the tests give (gpu_fit.py), the
scheduler booking host and GPU memory apart, `r1 ps`'s processor column, and on this CPU-only build a
real load that finds no GPU and says 100% CPU. (No GPU was lent for this suite: benchmarks/gpu_fit_check.py
is the check for a machine with one.)"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from tests.support.daemons import Daemon
from r1.cli.main import processor
from r1.daemon.backends.devices import Device, gpus, offload
from r1.daemon.gpu_fit import MARGIN, Layers, fit, split
from r1.daemon.memory import MiB, estimate, layers
from r1.daemon.metadata import ModelFacts
from r1.daemon.scheduler.model_spec import ModelSpec
from r1.daemon.scheduler.scheduler import ModelTooLarge
from tests.support.fakerunner import GB, FakeRunner, Harness, spec

# Four layers of 100 MiB, each with 10 MiB of KV cache per slot; a 50 MiB output layer, a 20 MiB compute buffer.
SIZES = Layers(weights=(100 * MiB,) * 4, output=50 * MiB, kv_per_layer=10 * MiB, compute=20 * MiB, host=300 * MiB)
WHOLE = 300 * MiB + 4 * 110 * MiB  # all of it on the host


@pytest.mark.unit
def test_everything_fits_a_large_device_output_layer_included() -> None:
    placed = fit(SIZES, 8 * GB)
    assert (placed.layers, placed.total_layers) == (5, 5)  # llama.cpp's n_gpu_layers: block_count + 1
    assert placed.device == 4 * 110 * MiB + 50 * MiB + 20 * MiB and placed.host == 300 * MiB


@pytest.mark.unit
def test_a_smaller_device_takes_the_last_layers_that_fit() -> None:
    # Room for the compute buffer and two layers with their KV cache (240 MiB), not three (350).
    placed = fit(SIZES, MARGIN + 300 * MiB)
    assert placed.layers == 2 and placed.device == 2 * 110 * MiB + 20 * MiB
    assert placed.host == WHOLE - 2 * 110 * MiB  # the host keeps its own compute buffer
    # Every repeating layer but not the output layer: n_gpu_layers stops at block_count.
    assert fit(SIZES, MARGIN + 4 * 110 * MiB + 20 * MiB + 49 * MiB).layers == 4


@pytest.mark.unit
def test_a_device_without_room_for_one_layer_gets_none() -> None:
    for free in (0, MARGIN, MARGIN + 129 * MiB):
        assert fit(SIZES, free) == split(SIZES, 0) and fit(SIZES, free).host == WHOLE
    assert fit(SIZES, MARGIN + 130 * MiB).layers == 1


@pytest.mark.unit
def test_num_gpu_overrides_the_fit() -> None:
    assert fit(SIZES, 8 * GB, num_gpu=0).layers == 0  # CPU only, though it all fits
    assert fit(SIZES, 0, num_gpu=3).layers == 3  # the user's count, though it does not
    assert fit(SIZES, 0, num_gpu=-1).layers == 5  # -1: all of them
    assert fit(SIZES, 0, num_gpu=99).layers == 5


@pytest.mark.unit
def test_slots_and_the_kv_cache_type_change_the_fit() -> None:
    gemma = ModelFacts(format="gguf", block_count=18, head_count=4, head_count_kv=1, key_length=256, value_length=256,
                       vocab_size=262_144, embedding_length=640, parameter_count=268_098_176)
    free = MARGIN + 600 * MiB
    fitted = {kind: fit(layers(gemma, estimate(gemma, 253 * MiB, 32768, kv_type=kind)), free) for kind in ("f16", "q4_0")}
    # 18 layers with 32 MiB of f16 KV cache each at num_ctx 32768 do not all fit 600 MiB; with q4_0 (9 MiB) they
    # do, and the output layer (the 262k x 640 embeddings) too.
    assert fitted["f16"].layers < 18 < fitted["q4_0"].layers
    assert fitted["f16"].device <= 600 * MiB and fitted["q4_0"].device <= 600 * MiB
    assert fit(SIZES, MARGIN + 400 * MiB, slots=4).layers < fit(SIZES, MARGIN + 400 * MiB).layers


@pytest.mark.unit
def test_the_estimates_layers_add_up_to_the_estimate() -> None:
    gemma = ModelFacts(format="gguf", block_count=18, head_count_kv=1, key_length=256, value_length=256,
                       vocab_size=262_144, embedding_length=640, parameter_count=268_098_176)
    one = estimate(gemma, 253 * MiB, 4096)
    sizes = layers(gemma, one)
    on_host = split(sizes, 0)
    assert (on_host.host, on_host.device) == (one.total, 0)
    assert sizes.kv_per_layer * 18 == one.kv_cache and sizes.output > 120 * MiB  # the 262k x 640 embeddings


@pytest.mark.unit
def test_the_processor_column_says_cpu_gpu_shares_as_ollama_does() -> None:
    assert processor({"size": 100, "size_vram": 0}) == "100% CPU"
    assert processor({"size": 100, "size_vram": 100}) == "100% GPU"
    assert processor({"size": 100, "size_vram": 52}) == "48%/52% CPU/GPU"
    assert processor({"size": 100, "size_vram": 52, "extra_buffers": False}) == "48%/52% CPU/GPU*"


@pytest.mark.unit
def test_a_load_takes_num_gpu_or_fits_the_roomiest_gpu() -> None:
    load: dict[str, Any] = {"layers": SIZES.to_frame(), "num_parallel": 1}
    small, large = (Device(f"CUDA{i}", "test GPU", "gpu", free, 80 * GB) for i, free in ((0, MARGIN), (1, 8 * GB)))
    assert offload(load, []).layers == 0  # a CPU-only build: nothing goes anywhere, whatever num_gpu says
    assert offload({**load, "num_gpu": 3}, []).layers == 0
    assert offload(load, [small, large]).layers == 5
    assert offload({**load, "num_gpu": 2}, [small, large]).layers == 2
    assert offload({"num_gpu": 2}, [large]) is None  # no layer sizes: llama.cpp takes num_gpu as it is


@pytest.mark.unit
def test_this_cpu_build_of_llama_cpp_has_no_gpu() -> None:
    assert gpus() == []


class OffloadingRunner(FakeRunner):
    """A runner that reports what it offloaded, as llama_cpp.py does: its host share is what it measures."""

    def __init__(self, spec: ModelSpec, extra_buffers: bool, free: int) -> None:
        super().__init__(spec, extra_buffers)
        assert spec.layers is not None
        placed = fit(spec.layers, free, spec.slots, dict(spec.load).get("num_gpu"))
        self.info = {"rss": placed.host, "extra_buffers": extra_buffers, "gpu": placed.layers > 0,
                     "offload": {**placed.to_frame(), "devices": [Device("CUDA0", "test", "gpu", free, 8 * GB).to_frame()]}}

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return {"rss": self.info["rss"]}


def gpu_spec(name: str) -> ModelSpec:
    """A model of 1.04 GiB (SIZES) whose layers can go to a GPU."""
    whole = split(SIZES, 0)
    return dataclasses.replace(spec(name, whole.host / GB), layers=SIZES)


def test_the_scheduler_books_host_and_gpu_memory_apart() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET=str(WHOLE + 100 * MiB), R1_NUM_PARALLEL="1") as h:
            free = MARGIN + 300 * MiB  # two layers' worth
            h.scheduler._start = lambda s, extra: _start(h, s, extra, free)
            await h.use(gpu_spec("a"))
            [a] = h.scheduler.instances()
            assert a.device == 2 * 110 * MiB + 20 * MiB and a.memory == WHOLE - 2 * 110 * MiB
            assert h.scheduler.used == a.memory and h.scheduler.device_used == a.device
            assert h.scheduler.gpu_free == free - a.device  # what the next load can count on
            # The budget holds only the host's share: a second model fits beside it now that all of "a" did not,
            # and with the GPU too full for another layer, all of "b" is planned on the host.
            h.scheduler.budget = a.memory + WHOLE
            await h.use(gpu_spec("b"))
            assert h.loaded() == ["a", "b"]
            b = next(i for i in h.scheduler.instances() if i.spec.name == "b")
            assert b.device == 0 and b.memory == WHOLE
            await h.scheduler.stop("weights-a")
            assert h.scheduler.gpu_free == free  # its layers left the GPU with it
    asyncio.run(main())


async def _start(h: Harness, spec: ModelSpec, extra_buffers: bool, free: int) -> OffloadingRunner:
    h.started.append(spec.name)
    return OffloadingRunner(spec, extra_buffers, h.scheduler.gpu_free if h.scheduler.gpu_free is not None else free)


@pytest.mark.unit
def test_too_large_says_how_much_would_go_to_the_host_and_the_gpu() -> None:
    async def main() -> None:
        async with Harness(R1_MEMORY_BUDGET=str(WHOLE), R1_NUM_PARALLEL="1") as h:
            h.scheduler.gpu_free = MARGIN + 300 * MiB  # as a runner reported it
            big = dataclasses.replace(gpu_spec("big"), estimate=2 * WHOLE)  # more than the budget even so
            with pytest.raises(ModelTooLarge, match=r"needs 1\.2 GiB of host memory beside 240 MiB on the GPU"):
                await h.use(big)
    asyncio.run(main())


def test_a_real_load_on_this_cpu_build_reports_no_gpu_and_100_percent_cpu(gemma_daemon: Daemon) -> None:
    status, answer = gemma_daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "Hi", "raw": True, "stream": False, "options": {"num_predict": 1}})
    assert status == 200, answer
    models = gemma_daemon.request("GET", "/api/ps")[1]["models"]
    gemma = next(m for m in models if m["name"].split(":")[0] == "gemma")
    assert gemma["offload"] == {"layers": 0, "total_layers": 19, "devices": []} and gemma["size_vram"] == 0
    header, *rows = gemma_daemon.cli("ps").stdout.splitlines()
    assert any(line[header.index("PROCESSOR"):].startswith("100% CPU") for line in rows if line.startswith("gemma"))
