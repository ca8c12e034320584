"""One generation, whatever the dialect: resolve the model, lease its runner, split the reasoning.

The Ollama routes (and later the OpenAI ones) parse their own request shapes into a
`Request`, and shape the `Chunk`s and the `Final` they get back; the logic lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .capabilities import capabilities, check, fill_in_middle
from .draft import draft_files, draft_need, draft_path
from .errors import BadRequest, Conflict
from .kernels import ExtraBuffers
from .memory import Estimate, estimate, layers
from .metadata.projector import is_companion, projector_among
from .metrics import Metrics, answer_text, note
from .options.check import check_options, kv_cache_type, split_options
from .reasoning import Piece, ThinkSplitter
from .remote.engines import Remotes, answer
from .remote.models import remote_of
from .remote.wire import End
from .scheduler.context_fit import fitting_lease
from .scheduler.model_spec import Lease, ModelSpec
from .scheduler.scheduler import Scheduler
from .store import ModelRecord, Overrides, Store
from .tools import may_be_tool_call, parse_tool_calls


@dataclass(frozen=True)
class Core:
    """The daemon's services a generation uses; the API holds one per app."""

    store: Store
    scheduler: Scheduler
    metrics: Metrics
    remotes: Remotes


@dataclass
class Request:
    model: str
    prompt: str | None = None  # /api/generate
    messages: list[dict[str, Any]] | None = None  # /api/chat
    system: str | None = None
    template: str | None = None
    raw: bool = False
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    think: bool | None = None
    effort: str | None = None  # "low", "medium" or "high": how much to think (THINK_BUDGETS)
    think_budget: int | None = None  # at most this many thinking tokens (Anthropic's budget_tokens)
    think_field: str = "think"  # what the request's dialect calls its thinking switch, for errors
    keep_alive: float | None = None
    tools: list[Any] | None = None
    suffix: str | None = None  # text after the gap to fill in (/api/generate, /v1/completions)
    logprobs: int | None = None  # token log probabilities with this many alternatives each; None: none
    context: list[int] | None = None  # /api/generate: token ids an earlier answer returned
    images: list[str] | None = None  # /api/generate: base64 images (a chat's are in its messages, as Ollama's)

    @property
    def is_empty(self) -> bool:
        """Nothing to generate: Ollama's way of asking to load (or, with keep_alive 0, unload)."""
        return not self.messages if self.messages is not None else not self.prompt

    @property
    def has_images(self) -> bool:
        return bool(self.images) or any(m.get("images") for m in self.messages or [])


class Chunk(NamedTuple):
    """Text the model wrote, split; a named tuple because one is made per token."""

    thinking: str = ""
    content: str = ""
    # When asked for: one entry per token this text came from, as Ollama writes them:
    # {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}
    logprobs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Final:
    done_reason: str  # "stop", "length", "cancel", "load" or "unload"
    total_duration: int = 0  # nanoseconds, as Ollama reports them
    load_duration: int = 0
    prompt_eval_count: int = 0  # evaluated: the prompt less what a slot held from an earlier turn
    prompt_cached: int = 0  # r1's addition: prompt tokens a slot held evaluated already
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    draft_tokens: int = 0  # r1's addition: tokens speculative decoding drafted, and of them those the model kept
    draft_accepted: int = 0
    unfinished_thinking: bool = False  # the output ended inside <think>: all of it was reasoning
    tool_calls: tuple[dict[str, Any], ...] = ()  # [{"function": {"name", "arguments": {...}}}], Ollama's shape
    context: tuple[int, ...] | None = None  # /api/generate, not raw: the prompt and answer as token ids
    cost: float | None = None  # r1's addition for remote models with a price: US dollars
    counted: bool = False  # a remote model's upstream gave no token counts: r1 counted the answer's parts
    prompt_unknown: bool = False  # nor the prompt's: left out of the answer, as Ollama leaves out what it lacks

    def stats(self) -> dict[str, Any]:
        # r1's additions, present only when they say something
        unfinished = {"thinking_unfinished": True} if self.unfinished_thinking else {}
        cached = {"prompt_cached": self.prompt_cached} if self.prompt_cached else {}
        cost = {"cost": self.cost} if self.cost is not None else {}
        counted = {"tokens_counted_by_r1": True} if self.counted else {}
        drafts = {"draft_tokens": self.draft_tokens, "draft_accepted": self.draft_accepted} if self.draft_tokens else {}
        stats = unfinished | cached | cost | counted | drafts | {
            "done_reason": self.done_reason,
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
        }
        if self.prompt_unknown:
            del stats["prompt_eval_count"]
        return stats


# What generation yields: chunks, then one Final. A generator, so a consumer can close it early.
Items = AsyncGenerator[Chunk | Final, None]


@dataclass(frozen=True)
class Prepared:
    record: ModelRecord
    spec: ModelSpec
    frame: dict[str, Any]  # the runner's generate request
    # The model's spec for another num_ctx, when neither the request nor the model set one: r1 fits it.
    respec: Callable[[int], ModelSpec] | None = None

    def lease(self, scheduler: Scheduler, keep_alive: float | None) -> AbstractAsyncContextManager[Lease]:
        """A runner for this request; one whose context holds its prompt when r1 chooses the context."""
        if self.respec is None:
            return scheduler.lease(self.spec, keep_alive)
        return fitting_lease(scheduler, self.spec, self.frame, keep_alive, self.record.manifest.facts.context_length,
                             self.respec)


def model_path(store: Store, record: ModelRecord) -> Path:
    """What a backend opens: the GGUF's first shard (its companions, the projector among them, are not it),
    or the MLX folder."""
    snapshot = store.snapshot_path(record.manifest_id)
    if record.manifest.format == "gguf":
        ggufs = (f.path for f in record.manifest.files if f.path.lower().endswith(".gguf") and not is_companion(f.path))
        return snapshot / sorted(ggufs)[0]
    return snapshot


def projector_path(store: Store, record: ModelRecord) -> Path | None:
    """The model's vision projector (its `mmproj` file), or None for a text-only model."""
    projector = projector_among(record.manifest.files)
    return None if projector is None else store.snapshot_path(record.manifest_id) / projector.path


def model_template(record: ModelRecord) -> str | None:
    """The chat template in effect: one set by `r1 create`, else the model's own."""
    return record.manifest.overrides.template or record.manifest.facts.chat_template


def request_template(source: str | None, max_bytes: int) -> str | None:
    """A request's `template` as r1 renders it: an Ollama Go template is converted to Jinja, once its size
    is known to be within R1_TEMPLATE_MAX_BYTES."""
    if not source:
        return None
    from .templates.sized import converted_within  # loaded only when a request brings its own template

    return converted_within(source, max_bytes)


def model_spec(store: Store, record: ModelRecord, options: dict[str, Any],
               extra_buffers: ExtraBuffers) -> tuple[ModelSpec, Callable[[int], Estimate], dict[str, Any]]:
    """The runner spec for a model with these (checked) options, its memory estimate for a number
    of sequence slots, and the sampling options left over."""
    manifest = record.manifest
    fmt = manifest.format
    merged = {**check_options(manifest.overrides.parameters), **options}
    load, sampling = split_options(merged, manifest.facts.context_length)
    projector = projector_among(manifest.files)
    projector_size = projector.size if projector else 0
    kv_type = kv_cache_type(load, fmt, extra_buffers.kv_cache_type)
    drafting = draft_need(store, record, load["num_ctx"], repacked_types=extra_buffers.repacked_types(fmt),
                          kv_type=kv_type)
    draft_bytes = sum(f.size for f in draft_files(manifest))
    need: Callable[[int], Estimate] = functools.partial(estimate, manifest.facts, manifest.size - projector_size - draft_bytes, load["num_ctx"],
                             extra_buffers.repacked_types(fmt), kv_type=kv_type, projector=projector_size)
    if drafting is not None:
        need = _with_draft(need, drafting)
        load["draft"] = str(draft_path(store, record))
    if fmt == "gguf" and (mmproj := projector_path(store, record)) is not None:
        load["projector"] = str(mmproj)  # the runner loads it beside the model (backends/llama_vision.py)
    one = need(1).total
    spec = ModelSpec(record.name, record.manifest_id, manifest.weights_id, fmt, model_path(store, record),
                     tuple(sorted(load.items())), estimate=one, per_slot=need(2).total - one, record=record,
                     layers=layers(manifest.facts, need(1)) if fmt == "gguf" else None)
    return spec, need, sampling


def _with_draft(need: Callable[[int], Estimate], drafting: Callable[[int], Estimate]) -> Callable[[int], Estimate]:
    """A model's estimate for a number of slots, with its draft model's (the draft holds as many)."""
    return lambda slots: need(slots)._replace(draft=drafting(slots).total)


# Thinking tokens a level allows on models whose templates do not read a level themselves; "high" leaves
# the model to think as long as it does. The runner closes the <think> block when they are spent.
THINK_BUDGETS: dict[str, int | None] = {"low": 1024, "medium": 4096, "high": None}


def thinking_level(frame: dict[str, Any], request: Request, template: str | None) -> None:
    """A think level goes to templates that read one (gpt-oss's `reasoning_effort`); for the others it sets
    the thinking budget, unless the request set one itself."""
    budget = request.think_budget
    if request.effort is not None:
        frame["reasoning_effort"] = request.effort
        if budget is None and "reasoning_effort" not in (template or ""):
            budget = THINK_BUDGETS[request.effort]
    if budget is not None:
        frame["think_budget"] = budget


def conversation(request: Request, overrides: Overrides) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The system prompt in effect, and for a chat its messages: the model's own MESSAGEs first, and the
    system prompt as the first message unless the chat has one."""
    system = request.system if request.system is not None else overrides.system
    if request.messages is None:
        return system, None
    messages = list(overrides.messages or []) + request.messages
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return system, messages


def check_files(store: Store, record: ModelRecord) -> None:
    """A model is served only from the bytes it was stored with: a file another tool holds that changed
    or went away since the import, or a blob missing from the store, refuses it with what to do."""
    broken = store.broken(record.manifest)
    if broken:
        raise Conflict(f"{record.name} cannot be served: {'; '.join(map(str, broken))}; import it again "
                       "(r1 import --from TOOL NAME) or pull it")
    missing = store.missing_files(record.manifest)
    if missing:
        raise BadRequest(f"files of {record.name} are missing from the store ({', '.join(missing)}); "
                         f"pull or import it again")


def prepare(store: Store, record: ModelRecord, request: Request, extra_buffers: ExtraBuffers,
            max_template_bytes: int) -> Prepared:
    """Everything that can fail before a model loads fails here, with a 4xx."""
    check_files(store, record)
    spec, _, sampling = model_spec(store, record, request.options, extra_buffers)
    facts = record.manifest.facts
    asked_template = request_template(request.template, max_template_bytes)
    in_effect = asked_template or model_template(record)
    if not (request.is_empty and request.keep_alive == 0):  # unloading asks nothing of the model
        found = capabilities(facts, in_effect, projector=projector_among(record.manifest.files) is not None)
        check(request.model, record.name, found, chat=request.messages is not None,
              tools=bool(request.tools), think=request.think, suffix=bool(request.suffix),
              think_field=request.think_field,
              images=request.has_images)
    overrides = record.manifest.overrides
    frame: dict[str, Any] = {"sampling": sampling, "format": request.format}
    respec = None
    if "num_ctx" in {**(overrides.parameters or {}), **request.options}:
        frame["num_ctx"] = spec.num_ctx
    else:  # the whole context of the runner it gets, grown to fit its prompt (scheduler/context_fit.py)
        respec = functools.partial(_spec_with_context, store, record, request.options, extra_buffers)
    if request.logprobs is not None:
        frame["logprobs"] = request.logprobs
    template = asked_template or overrides.template
    if template:
        frame["template"] = template
    if request.think is not None:
        frame["think"] = request.think
    if request.think is not False:
        thinking_level(frame, request, in_effect)
    system, messages = conversation(request, overrides)
    if messages is not None:
        if not in_effect:
            raise BadRequest(
                f"{record.name} has no chat template, so it cannot chat; give it one with `r1 create` "
                "and a TEMPLATE line, or send it a plain prompt (/api/generate, /v1/completions)"
            )
        frame["messages"] = messages
        if request.tools:
            frame["tools"] = request.tools
    else:
        frame["prompt"] = request.prompt or ""
        frame["raw"] = request.raw
        if system:
            frame["system"] = system
        if request.suffix:
            frame["suffix"] = request.suffix
            frame["fill"] = fill_in_middle(facts, in_effect, request.raw)
        if request.context is not None:
            frame["context"] = request.context
        if request.images:
            frame["images"] = request.images
    return Prepared(record, spec, frame, respec)


def _spec_with_context(store: Store, record: ModelRecord, options: dict[str, Any], extra_buffers: ExtraBuffers,
                       num_ctx: int) -> ModelSpec:
    return model_spec(store, record, {**options, "num_ctx": num_ctx}, extra_buffers)[0]


def generate(core: Core, request: Request) -> Items:
    """Chunks of thinking and answer as the model writes them, then one Final. When the request log keeps
    text (R1_LOG_PROMPTS=1), the prompt and the answer go to it too; otherwise nothing is added per token."""
    kept = answer_text()
    if kept is None:
        return _generate(core, request)
    note(prompt=logged_prompt(request))
    return _keeping_answer(_generate(core, request), kept)


def logged_prompt(request: Request) -> str | None:
    """The prompt as the request log keeps it: a chat's images as a note of their size, not their bytes
    (a photo is megabytes of base64 in every row that holds it)."""
    if request.messages is None:
        return request.prompt
    return json.dumps([{**m, "images": [f"<image: {len(image)} base64 characters>" for image in m["images"]]}
                       if m.get("images") else m for m in request.messages])


async def _keeping_answer(items: Items, kept: list[str]) -> Items:
    async with contextlib.aclosing(items):
        async for item in items:
            if isinstance(item, Chunk):
                kept.append(item.content)
            yield item


async def _generate(core: Core, request: Request) -> Items:
    started = time.perf_counter_ns()
    scheduler = core.scheduler
    record = await asyncio.to_thread(core.store.get, request.model)
    if remote_of(record.manifest) is not None:
        async for item in _generate_remote(core, record, request, started):
            yield item
        return
    prepared = await asyncio.to_thread(prepare, core.store, record, request, scheduler.extra_buffers,
                                       scheduler.template_limits.max_bytes)
    note(model=prepared.record.name)  # loads and unloads too: the log says which model a cancelled load was
    if request.is_empty and request.keep_alive == 0:  # Ollama's way to unload (`r1 stop`): no load first
        await scheduler.stop(prepared.spec.weights)
        yield Final("unload", total_duration=time.perf_counter_ns() - started)
        return
    if request.is_empty:
        async with scheduler.lease(prepared.spec, request.keep_alive) as lease:
            pass
        yield Final("load", total_duration=time.perf_counter_ns() - started, load_duration=lease.load_duration)
        return
    show_thinking = request.think is not False
    # A raw prompt gets the model's text as written, tags and all, unless thinking was asked for.
    split = not request.raw or request.think is True
    first_token: float | None = None
    # With tools offered, an answer that starts like a tool call is held back until it is
    # whole: it comes out as tool_calls, or, if it is not one after all, as text at the end.
    held: str | None = "" if request.tools else None
    pending: list[dict[str, Any]] = []  # log probabilities of tokens whose text no chunk has carried yet
    thinking_parts = 0  # text frames (about one a token) that were all thinking, for the request log
    async with prepared.lease(scheduler, request.keep_alive) as lease:
        splitter = ThinkSplitter()
        async for frame in lease.runner.generate(prepared.frame):
            if "t" in frame:
                piece = splitter.feed(frame["t"]) if split else Piece(content=frame["t"])
                thinking_parts += bool(piece.thinking and not piece.content)
                if "lp" in frame:
                    pending += frame["lp"]
            elif "start" in frame:
                splitter = ThinkSplitter(opened=frame["start"]["opened_think"])
                continue
            else:
                piece = splitter.finish() if split else Piece()
                done = frame["done"]
            content = piece.content
            if held is not None and content:
                held += content
                content = ""
                if not may_be_tool_call(held):
                    content, held = held, None
            if content or (piece.thinking and show_thinking):
                if first_token is None:
                    first_token = (time.perf_counter_ns() - started) / 1e9
                    core.metrics.first_token.observe(first_token)
                yield Chunk(piece.thinking if show_thinking else "", content, tuple(pending))
                pending.clear()
    calls: list[dict[str, Any]] = []
    if held:
        calls = parse_tool_calls(held, request.tools or [])
        if not calls:
            yield Chunk("", held, tuple(pending))
            pending.clear()
    if pending:  # tokens whose text is not shown (hidden thinking, a tool call) were still sampled
        yield Chunk(logprobs=tuple(pending))
    _count(core.metrics, prepared.record.name, done, first_token)
    note(thinking_tokens=min(thinking_parts, done["eval_count"]))
    if "context" in done:
        done = {**done, "context": tuple(done["context"])}
    yield Final(
        **done,
        total_duration=time.perf_counter_ns() - started,
        load_duration=lease.load_duration,
        unfinished_thinking=split and splitter.unterminated,
        tool_calls=tuple(calls),
    )


async def _generate_remote(core: Core, record: ModelRecord, request: Request, started: int) -> Items:
    """A remote model's answer: the same chunks and Final as a local one's, from its upstream."""
    remote, upstream = remote_of(record.manifest) or ("", "")
    if request.is_empty:  # nothing to load or unload: the upstream keeps its models
        yield Final("unload" if request.keep_alive == 0 else "load", total_duration=time.perf_counter_ns() - started)
        return
    for field_name, value in (("suffix", request.suffix), ("logprobs", request.logprobs), ("context", request.context),
                              ("template", request.template), ("images", request.has_images or None)):
        if value is not None:
            raise BadRequest(f"{record.name} is a remote model ({remote}); r1 does not pass '{field_name}' to remote "
                             "engines: leave it out")
    engine = await core.remotes.engine(remote)
    overrides = record.manifest.overrides
    options = {**check_options(overrides.parameters), **request.options}
    system, messages = conversation(request, overrides)
    note(model=record.name, remote=remote)
    show_thinking = request.think is not False
    splitter = ThinkSplitter()  # a <think> block inline in the content, as some upstreams send it
    split = not request.raw or request.think is True
    first = last = 0
    parts = 0
    end = End()
    with core.remotes.answering(record):
        async with answer(engine, upstream, messages=messages, prompt=request.prompt, system=system, raw=request.raw,
                          options=options, fmt=request.format, tools=request.tools, think=request.think) as events:
            async for event in events:
                if event.end is not None:
                    end = event.end
                    break
                piece = splitter.feed(event.content) if split else Piece(content=event.content)
                thinking = event.thinking + piece.thinking
                last = time.perf_counter_ns()
                parts += 1
                if not first:
                    first = last
                    core.metrics.first_token.observe((first - started) / 1e9)
                if piece.content or (thinking and show_thinking):
                    yield Chunk(thinking if show_thinking else "", piece.content)
    tail = splitter.finish() if split else Piece()
    if tail.content or (tail.thinking and show_thinking):
        yield Chunk(tail.thinking if show_thinking else "", tail.content)
    counted, prompt_unknown = end.output_tokens is None, end.prompt_tokens is None
    prompt_tokens, output_tokens = end.prompt_tokens or 0, parts if counted else end.output_tokens or 0
    price = await asyncio.to_thread(core.remotes.records.price, f"{remote}:{upstream}")
    done: dict[str, Any] = {"done_reason": end.reason, "prompt_eval_count": prompt_tokens, "eval_count": output_tokens,
            "prompt_eval_duration": (first or last or started) - started, "eval_duration": last - first}
    _count(core.metrics, record.name, done, (first - started) / 1e9 if first else None)
    # An upstream that does not count the prompt (llama-cpp-python's server, streaming) leaves the cost
    # unknown too: a cost from a prompt of 0 would understate it.
    cost = None if price is None or prompt_unknown else price.cost(prompt_tokens, output_tokens)
    note(cost=cost, **({"prompt_tokens": None} if prompt_unknown else {}))
    yield Final(**done, total_duration=time.perf_counter_ns() - started,
                unfinished_thinking=split and splitter.unterminated, tool_calls=tuple(end.tool_calls),
                cost=cost, counted=counted, prompt_unknown=prompt_unknown)


async def count_tokens(core: Core, request: Request) -> int:
    """The tokens of the prompt a request would give the model (its chat through the template), counted
    by the model's runner, which loads it if need be."""
    record = await asyncio.to_thread(core.store.get, request.model)
    if remote_of(record.manifest) is not None:
        raise BadRequest(f"{record.name} is a remote model: r1 cannot count its tokens, only its upstream can")
    prepared = await asyncio.to_thread(prepare, core.store, record, request, core.scheduler.extra_buffers,
                                       core.scheduler.template_limits.max_bytes)
    note(model=record.name)
    async with core.scheduler.lease(prepared.spec, request.keep_alive) as lease:
        return len((await lease.runner.call("tokenize", **prepared.frame))["tokens"])


class Whole(NamedTuple):
    """A whole generation, for answers that are not streamed."""

    thinking: str
    content: str
    final: Final
    logprobs: list[dict[str, Any]]  # empty unless asked for


async def collect(items: Items) -> Whole:
    thinking: list[str] = []
    content: list[str] = []
    logprobs: list[dict[str, Any]] = []
    final = Final("stop")
    async with contextlib.aclosing(items):
        async for item in items:
            if isinstance(item, Chunk):
                thinking.append(item.thinking)
                content.append(item.content)
                logprobs += item.logprobs
            else:
                final = item
    return Whole("".join(thinking), "".join(content), final, logprobs)


def _count(metrics: Metrics, model: str, done: dict[str, Any], first_token: float | None) -> None:
    metrics.tokens.inc(done["eval_count"], model=model)
    metrics.prompt_tokens.inc(done["prompt_eval_count"], model=model)
    if done.get("draft_tokens"):
        metrics.draft_tokens.inc(done["draft_tokens"], model=model)
        metrics.draft_accepted.inc(done["draft_accepted"], model=model)
    rate = done["eval_count"] / (done["eval_duration"] / 1e9) if done["eval_duration"] > 0 else 0.0
    if done["eval_count"] > 1:
        metrics.decode_rate.observe(rate)
    note(prompt_tokens=done["prompt_eval_count"], prompt_cached=done.get("prompt_cached") or None,
         tokens=done["eval_count"], done=done["done_reason"],
         tokens_per_s=round(rate, 1), first_token_s=None if first_token is None else round(first_token, 3))

