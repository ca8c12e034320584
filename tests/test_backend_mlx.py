"""MlxBackend in-process, on a tiny random-weight MLX model that mlx-lm really loads and runs."""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import mlx.core as mx
import mlx_lm
import pytest
from mlx_lm.generate import generate_step

from r1.daemon.backends import load_backend
from r1.daemon.backends.base import BackendError
from r1.daemon.backends.mlx import MlxBackend
from r1.daemon.metadata import model_files, read_metadata
from tests.support.tinymlx import CONTEXT, DEFAULT_TEMPLATE, THINK_TEMPLATE, write_mlx_model

GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}  # plain argmax, as generate_step's default sampler
# With the tiny model's seed-0 weights, greedy decoding after this prompt samples EOS at step 10.
EOS_PROMPT = "The robot"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlx_model(tmp_path_factory.mktemp("mlx") / "tiny")


@pytest.fixture(scope="module")
def backend(folder: Path) -> Iterator[MlxBackend]:
    backend = MlxBackend(folder, {})
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def reference(folder: Path):
    """The same model loaded by mlx-lm alone: what the backend's output is checked against."""
    return mlx_lm.load(str(folder))


def greedy_ids(reference, tokens: list[int], n: int) -> list[int]:
    model, _ = reference
    return [token for token, _ in generate_step(mx.array(tokens), model, max_tokens=n)]


def take(backend: MlxBackend, prompt: str, n: int, **sampling) -> list[str]:
    return list(islice(backend.stream(backend.tokenize(prompt), sampling, None), n))


def test_tiny_model_is_real_and_r1_reads_its_metadata(folder: Path) -> None:
    model, tokenizer = mlx_lm.load(str(folder))
    pieces = list(mlx_lm.stream_generate(model, tokenizer, "Once upon a time", max_tokens=8))
    assert len(pieces) == 8 and pieces[-1].generation_tokens == 8
    meta = read_metadata(*model_files(folder))
    assert (meta.format, meta.architecture, meta.context_length) == ("mlx", "llama", CONTEXT)
    assert meta.chat_template == DEFAULT_TEMPLATE


@pytest.mark.unit
def test_tiny_model_is_deterministic(tmp_path: Path, folder: Path) -> None:
    again = write_mlx_model(tmp_path / "again")
    other = write_mlx_model(tmp_path / "other", seed=1)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert all((folder / n).read_bytes() == (again / n).read_bytes() for n in names)
    assert (other / "model.safetensors").read_bytes() != (folder / "model.safetensors").read_bytes()


@pytest.mark.unit
def test_registered_for_the_mlx_format() -> None:
    assert load_backend("mlx") is MlxBackend


@pytest.mark.unit
def test_exposes_template_tokens_and_context(backend: MlxBackend, folder: Path) -> None:
    assert backend.chat_template == DEFAULT_TEMPLATE
    assert (backend.bos_token, backend.eos_token) == ("<s>", "</s>")
    assert backend.context_length == CONTEXT  # max_position_embeddings
    assert MlxBackend(folder, {"num_ctx": 256, "num_gpu": 0, "use_mmap": False}).context_length == 256


@pytest.mark.unit
def test_chat_template_variants(tmp_path: Path) -> None:
    think = MlxBackend(write_mlx_model(tmp_path / "think", chat_template=THINK_TEMPLATE), {})
    assert think.chat_template == THINK_TEMPLATE and think.chat_template.count("<think>") == 1
    assert MlxBackend(write_mlx_model(tmp_path / "none", chat_template=None), {}).chat_template is None


@pytest.mark.unit
def test_tokenize_adds_bos_once_and_parses_special_tokens(backend: MlxBackend) -> None:
    (bos,) = backend.tokenize("<s>")
    plain = backend.tokenize("hello world")
    assert plain[0] == bos and plain.count(bos) == 1
    assert backend.tokenize("<s>hello world") == plain  # the template's own BOS is not doubled
    chat = backend.tokenize("<|im_start|>user\nhi<|im_end|>")
    assert len(backend.tokenize("<|im_start|>")) == 2  # BOS + one token for the marker
    assert chat[1] == backend.tokenize("<|im_start|>")[1]


def test_greedy_is_deterministic_and_matches_mlx_lm(backend: MlxBackend, reference) -> None:
    first = take(backend, "Once upon a time", 20, **GREEDY)
    assert first == take(backend, "Once upon a time", 20, **GREEDY)
    assert len(first) == 20 and sum(1 for p in first if p) >= 10
    # One piece per token, and together they are exactly the text mlx-lm's own decode gives.
    tokens = backend.tokenize("Once upon a time")
    ids = greedy_ids(reference, tokens, 20)
    _, tokenizer = reference
    assert "".join(first) == tokenizer.decode(tokens + ids)[len(tokenizer.decode(tokens)):]


def test_continuation_keeps_its_leading_space(backend: MlxBackend, reference) -> None:
    tokens = backend.tokenize(EOS_PROMPT)
    _, tokenizer = reference
    first_id = greedy_ids(reference, tokens, 1)
    assert tokenizer.convert_ids_to_tokens(first_id)[0].startswith("Ġ")  # byte-level BPE's space
    assert take(backend, EOS_PROMPT, 1, **GREEDY)[0].startswith(" ")


def test_stream_ends_at_eos(backend: MlxBackend, reference) -> None:
    tokens = backend.tokenize(EOS_PROMPT)
    ids = greedy_ids(reference, tokens, 50)
    eos = reference[1].eos_token_id
    assert eos in ids, "the tiny model's greedy output after EOS_PROMPT no longer reaches EOS"
    pieces = list(islice(backend.stream(tokens, GREEDY, None), 50))  # ends on its own, not at 50
    before = ids[: ids.index(eos)]
    # One piece per token before EOS, plus at most one for text held back at the end.
    assert len(before) <= len(pieces) <= len(before) + 1
    _, tokenizer = reference
    assert "".join(pieces) == tokenizer.decode(tokens + before)[len(tokenizer.decode(tokens)):]


def test_config_eos_token_ids_end_the_stream(backend: MlxBackend, folder: Path, tmp_path: Path) -> None:
    """Models such as Llama 3 list several end tokens in config.json's eos_token_id."""
    prompt = "Once upon a time"
    free = take(backend, prompt, 12, **GREEDY)
    ids = greedy_ids(mlx_lm.load(str(folder)), backend.tokenize(prompt), 12)
    stop_at = next(i for i in range(3, 12) if ids[i] not in ids[:i])
    copy = Path(shutil.copytree(folder, tmp_path / "eos"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "eos_token_id": [1, ids[stop_at]]}))
    pieces = list(islice(MlxBackend(copy, {}).stream(backend.tokenize(prompt), GREEDY, None), 12))
    assert pieces[:stop_at] == free[:stop_at] and len(pieces) <= stop_at + 1


@pytest.mark.unit
def test_stopped_early_then_streams_again(backend: MlxBackend) -> None:
    expected = take(backend, "hello world", 10, **GREEDY)
    stream = backend.stream(backend.tokenize("hello world"), GREEDY, None)
    assert [next(stream) for _ in range(3)] == expected[:3]
    stream.close()
    assert take(backend, "hello world", 10, **GREEDY) == expected


def test_seed_makes_sampling_repeatable(backend: MlxBackend) -> None:
    sampled = take(backend, "Once upon a time", 20, temperature=1.0, seed=3)
    assert sampled == take(backend, "Once upon a time", 20, temperature=1.0, seed=3)
    assert sampled != take(backend, "Once upon a time", 20, temperature=1.0, seed=4)
    # Ollama's defaults, a random seed: tokens come (the random model may draw its end token early, even first).
    assert any(take(backend, "Once upon a time", 20) for _ in range(3))


def test_penalties_apply_within_repeat_last_n(backend: MlxBackend) -> None:
    plain = take(backend, "Once upon a time", 20, **GREEDY)
    assert plain.count("bot") > 1  # the unpenalized output repeats a token
    penalized = dict(GREEDY, presence_penalty=100.0, frequency_penalty=1.0)
    assert take(backend, "Once upon a time", 20, **penalized, repeat_last_n=0) == plain  # 0: off
    assert take(backend, "Once upon a time", 20, **penalized, repeat_last_n=-1) != plain
    repeat = dict(GREEDY, repeat_penalty=50.0, repeat_last_n=64, top_k=5, top_p=0.5, min_p=0.1)
    assert take(backend, "Once upon a time", 20, **repeat) != plain


@pytest.mark.unit
def test_bad_requests_raise_backend_error(backend: MlxBackend) -> None:
    tokens = backend.tokenize("hi")
    for fmt in ("json", {"type": "object"}):
        with pytest.raises(BackendError, match="MLX backend cannot constrain output to JSON.*GGUF"):
            next(backend.stream(tokens, {}, fmt))
    with pytest.raises(BackendError, match="empty"):
        next(backend.stream([], {}, None))
    with pytest.raises(BackendError, match="repeat|penalty"):
        next(backend.stream(tokens, {"repeat_penalty": -1.0}, None))
    with pytest.raises(BackendError, match="embeddings"):
        backend.embed(["hello"], truncate=True, context=64)


@pytest.mark.unit
def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a folder"):
        MlxBackend(tmp_path / "absent", {})  # never a Hub repo id
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="config.json"):
        MlxBackend(tmp_path / "empty", {})


def test_memory_and_close(backend: MlxBackend, folder: Path) -> None:
    memory = backend.memory()
    assert memory["mlx_active"] > 0 and memory["mlx_peak"] >= memory["mlx_active"]
    weights = (folder / "model.safetensors").stat().st_size
    extra = MlxBackend(folder, {})
    loaded = mx.get_active_memory()
    extra.close()
    gc.collect()
    assert loaded - mx.get_active_memory() >= 0.9 * weights


def test_logprobs_are_mlx_lms_own(backend: MlxBackend, reference) -> None:
    tokens = backend.tokenize("hello world")
    model, tokenizer = reference
    expected = list(generate_step(mx.array(tokens), model, max_tokens=4))
    stream = backend.stream(tokens, GREEDY, None)
    for token, logprobs in expected:
        next(stream)
        entry = backend.logprobs(3)
        assert entry["token"] == tokenizer.decode([token]) and entry["logprob"] == pytest.approx(logprobs[token].item())
        best = sorted(range(logprobs.size), key=lambda t: -logprobs[t].item())[:3]
        assert [a["logprob"] for a in entry["top_logprobs"]] == pytest.approx([logprobs[t].item() for t in best])
        assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy: the likeliest was picked
    stream.close()
