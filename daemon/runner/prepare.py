"""Preparing a generate request: the prompt through the chat template, its tokens, and the messages a
chat drops to fit the context. Runs on the runner's prepare threads, beside the model thread: templates
render in the renderer processes (renderers.py), and the backends' tokenizers are safe to call while the
model decodes (llama.cpp's vocabulary is read-only once loaded, as llama-server's HTTP threads rely on;
mlx-lm's is a Hugging Face fast tokenizer, whose encode and decode share it read-only).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..backends import Backend, BackendError
from ..backends.llama_vision import MARKER
from ..reasoning import template_opens_think
from ..templates.renderers import Renderers
from .budget import ThinkBudget
from .protocol import Frame
from .stops import StopMatcher

log = logging.getLogger("r1.runner")


@dataclass
class Request:
    """One generation in the batch: what the runner applies on top of the backend's tokens."""
    frame: Frame
    prompt: str
    tokens: list[int]
    limit: int
    stops: StopMatcher
    cached: int = 0  # prompt tokens its slot held evaluated already; prompt_eval_count leaves them out
    started: int = field(default_factory=time.perf_counter_ns)
    first: int = 0
    last: int = 0
    count: int = 0
    announced: bool = False  # whether its start frame went out
    written: list[str] = field(default_factory=list)  # the answer, for Ollama's `context`
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # of tokens whose text the stop matcher holds
    budget: ThinkBudget | None = None  # tokens it may think before the runner closes the block
    images: Any = None  # its prompt's images (backend.image_prompt), whose `tokens` are `tokens`


def context_of(frame: Frame, backend: Backend) -> int:
    """A runner loaded with a larger context may serve a request that asked for a smaller one."""
    return min(backend.context_length, frame.get("num_ctx") or backend.context_length)


class Preparer:
    def __init__(self, backend: Backend, renderers: Renderers) -> None:
        self.backend = backend
        self.renderers = renderers

    def render(self, source: str, messages: list[dict[str, Any]], frame: Frame, **fields: Any) -> str:
        backend = self.backend
        return self.renderers.render(source, messages, bos_token=backend.bos_token, eos_token=backend.eos_token,
                                     think=frame.get("think"), effort=frame.get("reasoning_effort"), **fields)

    def prompt(self, frame: Frame) -> str:
        source = frame.get("template") or self.backend.chat_template
        if "messages" in frame:
            if not source:
                raise BackendError("this model has no chat template; give it one with `r1 create` and a TEMPLATE line, or use /api/generate")
            messages = [_placed(m, "content") for m in frame["messages"]]
            return self.render(source, messages, frame, tools=frame.get("tools"))
        system, prompt = frame.get("system"), _placed(frame, "prompt")["prompt"]
        if frame.get("raw"):
            return prompt
        # Ollama's `context`: the earlier prompt and answer, as text, before this turn's prompt.
        earlier = self.backend.detokenize(frame["context"]) if frame.get("context") else ""
        if not source:
            return earlier + (f"{system}\n\n{prompt}" if system else prompt)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return earlier + self.render(source, messages, frame, suffix=frame.get("suffix"))

    def fit(self, frame: Frame, context: int) -> tuple[str, list[int]]:
        """The prompt and its tokens; a chat too long for the context loses its oldest turns,
        as in Ollama: system messages and the last message stay."""
        backend = self.backend
        if frame.get("fill") == "tokens":  # fill in the middle with the model's own FIM tokens, no template
            tokens = backend.fill_in_middle(frame.get("prompt", ""), frame["suffix"])
            return backend.detokenize(tokens), tokens
        prompt = self.prompt(frame)
        tokens = backend.tokenize(prompt)
        messages = frame.get("messages")
        if not messages or len(tokens) < context:
            return prompt, tokens
        keep = frame.get("sampling", {}).get("num_keep")
        kept = tokens if keep == -1 else tokens[:keep or 0]  # Ollama's num_keep: -1 keeps the whole prompt
        dropped, skipped = 0, 0  # skipped: the oldest messages, which hold some of the kept tokens
        while len(tokens) >= context:
            droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system" and i >= skipped]
            if not droppable:
                break
            fewer = messages[: droppable[0]] + messages[droppable[0] + 1:]
            fewer_prompt = self.prompt({**frame, "messages": fewer})
            fewer_tokens = backend.tokenize(fewer_prompt)
            if fewer_tokens[: len(kept)] != kept:  # the message is (partly) within the first num_keep tokens
                skipped = droppable[0] + 1
                continue
            messages, prompt, tokens, dropped = fewer, fewer_prompt, fewer_tokens, dropped + 1
        if dropped:
            log.info("dropped the %d oldest messages of a chat to fit the context of %d tokens", dropped, context)
        return prompt, tokens

    def request(self, frame: Frame) -> Request:
        """A generate frame made ready for the model thread."""
        context = context_of(frame, self.backend)
        images, given = None, _images(frame)
        if given:  # a chat with images is kept whole: its oldest turns are not dropped to fit
            prompt = self.prompt(frame)
            images = self.backend.image_prompt(prompt, given)
            tokens = images.tokens
        else:
            prompt, tokens = self.fit(frame, context)
        room = context - len(tokens)
        if room <= 0:
            if images is not None:
                images.close()
            raise BackendError(
                f"the prompt is {len(tokens)} tokens, which fills the model's context of {context}; "
                "shorten it or raise the num_ctx option"
            )
        sampling = frame.get("sampling", {})
        limit = sampling.get("num_predict", -1)
        limit = room if limit is None or limit < 0 else min(limit, room)
        budget = frame.get("think_budget")
        return Request(frame, prompt, tokens, limit, StopMatcher(sampling.get("stop") or []),
                       budget=None if budget is None else ThinkBudget(budget, opened=template_opens_think(prompt)),
                       images=images)

    def tokens(self, frame: Frame) -> list[int]:
        """A text's tokens; without one, those of the prompt a generate frame would render."""
        if "text" in frame:
            return self.backend.tokenize(frame["text"])
        given = _images(frame)
        if not given:
            return self.backend.tokenize(self.prompt(frame))
        placed = self.backend.image_prompt(self.prompt(frame), given)  # each image counts its positions
        placed.close()
        return placed.tokens


def _placed(part: Frame, key: str) -> Frame:
    """A message (or a generate frame's prompt) with a MARKER where each of its images goes: before its
    text, as Ollama places them; the images themselves stay out of what the template renders."""
    images = part.get("images") or []
    rest = {k: v for k, v in part.items() if k != "images"}
    return rest | {key: MARKER * len(images) + (part.get(key) or "")}


def _images(frame: Frame) -> list[bytes]:
    """The request's images in the order the prompt places them (the daemon checked their base64)."""
    parts = frame.get("messages", [frame])
    return [base64.b64decode(image) for part in parts for image in part.get("images") or []]
