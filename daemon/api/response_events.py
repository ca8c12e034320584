"""The Responses API's answer: the core's chunks and final record as a Response object's output
items (reasoning, message, function calls), and, streamed, as its typed server-sent events.

One `ResponseShape` per request sees every item the core yields (`watch`), streamed or not, so
both build the same Response; streamed, each change is also an event (`event: TYPE`, then
`data: {..., "sequence_number": n}`) and the stream ends with `response.completed` (or
`response.incomplete`), with no `[DONE]`. An error after the first event comes in-band as an
`error` event and `response.failed`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..generation import Chunk, Final, Items, Whole
from .http import Framing, new_id, sse_event

Json = dict[str, Any]


def response_usage(final: Final, reasoning_tokens: int) -> Json:
    """OpenAI counts the whole prompt, with the part a slot held already as cached tokens."""
    prompt = final.prompt_eval_count + final.prompt_cached
    counts = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": final.prompt_cached},
              "output_tokens": final.eval_count, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
              "total_tokens": prompt + final.eval_count}
    return counts | {"cost": final.cost} if final.cost is not None else counts  # r1's addition, as on chat


class ResponseShape:
    """The Response of one request, built as the core's items arrive; a Dialect for `respond`."""

    stream_default = False

    def __init__(self, echo: Json, streaming: bool, keep: Callable[[Json], Awaitable[bool]],
                 namespaced: dict[str, tuple[str, str]] | None = None) -> None:
        self.framing = Framing("text/event-stream", self.in_band_error)
        self.namespaced = namespaced or {}  # the model's name of a namespace's function -> (namespace, name)
        self.streaming = streaming
        self.keep = keep  # stores the finished Response (or not, for store: false); whether it did
        self.response: Json = {"id": new_id("resp_"), "object": "response", "created_at": int(time.time()),
                               "status": "in_progress", "error": None, "incomplete_details": None,
                               **echo, "output": [], "usage": None}
        self.output: list[Json] = self.response["output"]
        self.open: Json | None = None  # the reasoning or message item being written
        self.texts: list[str] = []  # the open item's text so far
        self.reasoning_tokens = 0
        self.sequence = 0
        self.pending: list[bytes] = []  # framed events not yet written
        self.started = False

    # --- the core's items ---------------------------------------------------------------------

    async def watch(self, items: Items) -> Items:
        """Every item passes through here first; the finished Response is kept before the client
        sees its last event, so a next request can name it at once. One the store could not keep
        (a full disk) still answers, with "store": false."""
        try:
            async for item in items:
                if isinstance(item, Chunk):
                    self.add(item)
                else:
                    self.finish(item)
                    if not await self.keep(self.response):
                        self.response["store"] = False
                    self.emit(f"response.{self.response['status']}", response=self.response)
                yield item
        finally:
            await items.aclose()

    def add(self, chunk: Chunk) -> None:
        self.begin()
        if chunk.thinking:
            self.reasoning_tokens += max(1, len(chunk.logprobs))
            self.write("reasoning", chunk.thinking)
        if chunk.content:
            self.write("message", chunk.content)

    def finish(self, final: Final) -> None:
        self.begin()
        incomplete = final.done_reason == "length"
        status = "incomplete" if incomplete else "completed"
        if not final.tool_calls and not any(item["type"] == "message" for item in self.output):
            self.write("message", "")  # an answer is a message, even an empty one
        self.close(status)
        for call in final.tool_calls:
            self.function_call(call["function"]["name"], json.dumps(call["function"]["arguments"]))
        # Thinking the model never ended is all of its output; otherwise what the chunks carried (a chunk is
        # one token unless it carries log probabilities of more): the core does not count thinking apart.
        thought = min(self.reasoning_tokens, final.eval_count)
        reasoning = final.eval_count if final.unfinished_thinking and thought else thought
        self.response.update(status=status, usage=response_usage(final, reasoning),
                             incomplete_details={"reason": "max_output_tokens"} if incomplete else None)

    # --- output items -------------------------------------------------------------------------

    def begin(self) -> None:
        if not self.started:
            self.started = True
            self.emit("response.created", response=self.response)
            self.emit("response.in_progress", response=self.response)

    def write(self, kind: str, text: str) -> None:
        if self.open is None or self.open["type"] != kind:
            self.close("completed")
            self.start(kind)
        self.texts.append(text)
        if not text:
            return
        where = self.where()
        if kind == "reasoning":
            self.emit("response.reasoning_summary_text.delta", **where, summary_index=0, delta=text)
        else:
            self.emit("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[])

    def start(self, kind: str) -> None:
        if kind == "reasoning":
            self.open = {"id": new_id("rs_"), "type": "reasoning", "summary": []}
        else:
            self.open = {"id": new_id("msg_"), "type": "message", "role": "assistant", "status": "in_progress",
                         "content": []}
        self.output.append(self.open)
        self.texts = []
        self.emit("response.output_item.added", output_index=len(self.output) - 1, item=self.open)
        if kind == "reasoning":
            self.emit("response.reasoning_summary_part.added", **self.where(), summary_index=0,
                      part={"type": "summary_text", "text": ""})
        else:
            self.emit("response.content_part.added", **self.where(), content_index=0,
                      part={"type": "output_text", "text": "", "annotations": []})

    def close(self, status: str) -> None:
        """Finish the open item: its whole text in it, and its closing events."""
        item, text = self.open, "".join(self.texts)
        if item is None:
            return
        where = self.where()
        if item["type"] == "reasoning":
            part: dict[str, Any] = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            self.emit("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            self.emit("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            item.update(content=[part], status=status)
            self.emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            self.emit("response.content_part.done", **where, content_index=0, part=part)
        self.emit("response.output_item.done", output_index=where["output_index"], item=item)
        self.open = None

    def function_call(self, called: str, arguments: str) -> None:
        """A call as OpenAI writes it: a namespace's function by its own name, with its `namespace`."""
        namespace, name = self.namespaced.get(called, (None, called))
        item = {"id": new_id("fc_"), "type": "function_call", "call_id": new_id("call_"), "name": name,
                **({"namespace": namespace} if namespace else {}), "arguments": "", "status": "in_progress"}
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": len(self.output) - 1}
        self.emit("response.output_item.added", output_index=where["output_index"], item=item)
        self.emit("response.function_call_arguments.delta", **where, delta=arguments)
        item.update(arguments=arguments, status="completed")
        self.emit("response.function_call_arguments.done", **where, name=name, arguments=arguments)
        self.emit("response.output_item.done", output_index=where["output_index"], item=item)

    def where(self) -> Json:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output) - 1}

    # --- the wire -----------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        """Frame an event now (items change later), when the client asked for a stream."""
        if self.streaming:
            self.pending.append(sse_event(kind, {"type": kind, **fields, "sequence_number": self.sequence}))
            self.sequence += 1

    def event(self, item: Chunk | Final) -> bytes:
        return self.flush()  # watch() saw the item already and framed its events

    def flush(self) -> bytes:
        sent = b"".join(self.pending)
        self.pending.clear()
        return sent

    def answer(self, whole: Whole) -> Json:
        return self.response

    def in_band_error(self, body: Json) -> bytes:
        """An error after the first event (`body` is OpenAI's error object): an `error` event, then
        `response.failed` with the Response as far as it got."""
        error = body["error"]
        code = error.get("code") or error.get("type")
        self.emit("error", code=code, message=error["message"], param=error.get("param"))
        self.response.update(status="failed", error={"code": code, "message": error["message"]})
        self.emit("response.failed", response=self.response)
        return self.flush()
