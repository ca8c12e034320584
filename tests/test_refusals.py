"""What r1 refuses as Ollama does (tools, thinking, images, suffix, generation on embedding models), and
the fields it accepts instead of ignoring (suffix, logprobs), in-process with scripted runners and judged
by the official `ollama` and `openai` clients."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import ollama
import openai
import pytest

from tests.support.inprocess import InProcess
from tests.support.tinymodels import THINK_TEMPLATE, TOOL_TEMPLATE

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PNG = b"\x89PNG\r\n\x1a\n"
# A template that fills in the middle itself, as Ollama's code models' templates do.
INFILL_TEMPLATE = "<PRE>{{ messages[-1]['content'] }}<SUF>{{ suffix }}<MID>"


@pytest.fixture
async def models(api: InProcess) -> InProcess:
    """chat (ChatML: no tools, no thinking), tooled, thinker, filler (FIM tokens), infill (a template
    that reads `suffix`) and embedder (a pooling model)."""
    await api.add_model("chat")
    await api.add_model("tooled", chat_template=TOOL_TEMPLATE)
    await api.add_model("thinker", chat_template=THINK_TEMPLATE)
    await api.add_model("filler", fim=True)
    await api.add_model("infill", chat_template=INFILL_TEMPLATE)
    await api.add_model("embedder", pooling_type=1)
    return api


@pytest.fixture
async def client(api: InProcess) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama.AsyncClient(host=str(api.client.make_url("")))
    yield client
    await client.close()


@pytest.fixture
async def oai(api: InProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key="r1", max_retries=0)
    yield client
    await client.close()


async def refused(call: Any) -> str:
    """The message of the 400 the official ollama client raised."""
    with pytest.raises(ollama.ResponseError) as caught:
        await call
    assert caught.value.status_code == 400, caught.value
    return caught.value.error


async def refused_by_openai(call: Any) -> str:
    with pytest.raises(openai.BadRequestError) as caught:
        await call
    assert caught.value.body["type"] == "invalid_request_error", caught.value.body
    return caught.value.body["message"]


async def test_tools_need_a_template_that_renders_them(models: InProcess, client: ollama.AsyncClient,
                                                       oai: openai.AsyncOpenAI) -> None:
    error = await refused(client.chat("chat", HI, tools=[WEATHER]))
    assert error.startswith("chat:latest does not support tools") and "r1 create" in error
    error = await refused_by_openai(oai.chat.completions.create(model="chat", messages=HI, tools=[WEATHER]))
    assert error.startswith("chat:latest does not support tools")
    assert models.runners.started == []  # refused before anything loaded
    answer = await client.chat("tooled", HI, tools=[WEATHER])
    assert answer.done and models.runners.requests[-1]["tools"] == [WEATHER]
    # tool_choice "none" takes the tools away: nothing is asked of the template.
    answer = await oai.chat.completions.create(model="chat", messages=HI, tools=[WEATHER], tool_choice="none")
    assert answer.choices[0].message.content == "Hello, world!" and "tools" not in models.runners.requests[-1]


async def test_think_true_needs_a_thinking_template(models: InProcess, client: ollama.AsyncClient,
                                                    oai: openai.AsyncOpenAI) -> None:
    for call in (client.chat("chat", HI, think=True), client.generate("chat", "hi", think=True),
                 client.chat("chat", HI, think="high")):
        assert (await refused(call)).startswith('"chat" does not support thinking')
    error = await refused_by_openai(oai.chat.completions.create(model="chat", messages=HI, reasoning_effort="high"))
    assert error.startswith('"chat" does not support thinking')
    assert models.runners.started == []
    assert (await client.chat("chat", HI, think=False)).done  # asking it not to think is fine
    assert (await oai.chat.completions.create(model="chat", messages=HI, reasoning_effort="none")).choices
    assert (await client.chat("thinker", HI, think=True)).done
    assert models.runners.requests[-1]["think"] is True


async def test_images_are_refused_by_models_without_a_projector(models: InProcess, client: ollama.AsyncClient,
                                                                oai: openai.AsyncOpenAI) -> None:
    blind = ("chat:latest has no vision projector, so it cannot take images; send text, or use a model with the "
             "vision capability (pulled or imported with its mmproj file)")
    for call in (client.generate("chat", "What is this?", images=[PNG]),
                 client.chat("chat", [{"role": "user", "content": "What is this?", "images": [PNG]}])):
        assert await refused(call) == blind
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}
    error = await refused_by_openai(oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}]))
    assert error == blind
    not_an_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    error = await refused_by_openai(oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": [not_an_image]}]))
    assert error == "messages[0].content[0].image_url.url is not an image r1 can read; send PNG, JPEG, GIF or BMP"
    assert models.runners.started == []
    assert (await client.generate("chat", "hi", images=[])).done  # no images: nothing to refuse


async def test_suffix_needs_a_model_that_fills_in_the_middle(models: InProcess, client: ollama.AsyncClient,
                                                             oai: openai.AsyncOpenAI) -> None:
    error = await refused(client.generate("chat", "def add(a, b):", suffix="    return c"))
    assert error.startswith("chat:latest does not support insert") and "'suffix'" in error
    error = await refused_by_openai(oai.completions.create(model="chat", prompt="x = ", suffix=";"))
    assert error.startswith("chat:latest does not support insert")
    assert models.runners.started == []
    # The model's FIM tokens build the prompt (in the runner: test_capabilities.py runs it for real).
    await client.generate("filler", "x = ", suffix=";", system="Be brief.")
    sent = models.runners.requests[-1]
    assert (sent["prompt"], sent["suffix"], sent["fill"]) == ("x = ", ";", "tokens")
    await oai.completions.create(model="filler", prompt="x = ", suffix=";")
    assert models.runners.requests[-1]["fill"] == "tokens" and models.runners.requests[-1]["raw"] is True
    # A template that reads `suffix` builds it, unless the prompt is raw (which skips templates).
    await client.generate("infill", "x = ", suffix=";")
    assert (models.runners.requests[-1]["fill"], models.runners.requests[-1]["suffix"]) == ("template", ";")
    error = await refused(client.generate("infill", "x = ", suffix=";", raw=True))
    assert "raw prompts skip the template" in error
    await client.generate("chat", "x = ", suffix="")  # an empty suffix is no suffix, as in Ollama
    assert "suffix" not in models.runners.requests[-1]


async def test_embedding_models_embed_and_do_not_generate(models: InProcess, client: ollama.AsyncClient) -> None:
    error = await refused(client.generate("embedder", "hi"))
    assert error.startswith('"embedder" does not support generate') and "/api/embed" in error
    assert (await refused(client.chat("embedder", HI))).startswith('"embedder" does not support chat')
    assert (await refused(client.generate("embedder"))).startswith('"embedder" does not support generate')  # a load
    assert models.runners.started == []
    assert len((await client.embed("embedder", ["hi", "there"])).embeddings) == 2
    unloaded = await client.generate("embedder", keep_alive=0)  # unloading asks nothing of the model
    assert unloaded.done_reason == "unload"


async def test_logprobs_fields_are_checked(models: InProcess, client: ollama.AsyncClient,
                                           oai: openai.AsyncOpenAI) -> None:
    assert await refused(client.generate("chat", "hi", logprobs=True, top_logprobs=21)) == \
        "top_logprobs must be between 0 and 20, not 21"
    assert "needs 'logprobs': true" in await refused(client.chat("chat", HI, top_logprobs=2))
    error = await refused_by_openai(oai.completions.create(model="chat", prompt="hi", logprobs=6))
    assert "'logprobs' must be an integer from 0 to 5" in error
    assert models.runners.started == []


async def test_ollama_logprobs_come_with_their_chunks(models: InProcess, client: ollama.AsyncClient) -> None:
    chunks = [c async for c in await client.generate("chat", "hi", logprobs=True, top_logprobs=2, stream=True)]
    assert models.runners.requests[-1]["logprobs"] == 2
    tokens = [c.logprobs for c in chunks[:-1]]
    assert [[(lp.token, lp.logprob) for lp in chunk] for chunk in tokens] == [
        [("Hello", 0.0)], [(",", -0.1)], [(" world", -0.2)], [("!", -0.3)]]
    assert [[t.token for t in chunk[0].top_logprobs] for chunk in tokens] == [
        ["Hello", "?"], [",", "?"], [" world", "?"], ["!", "?"]]
    assert chunks[-1].done and not chunks[-1].logprobs
    whole = await client.chat("chat", HI, logprobs=True)
    assert [lp.token for lp in whole.logprobs] == ["Hello", ",", " world", "!"]
    assert all(lp.top_logprobs == [] for lp in whole.logprobs)  # logprobs without alternatives
    plain = await client.chat("chat", HI)
    assert plain.logprobs is None and "logprobs" not in models.runners.requests[-1]


async def test_openai_logprobs_in_both_shapes(models: InProcess, oai: openai.AsyncOpenAI) -> None:
    answer = await oai.chat.completions.create(model="chat", messages=HI, logprobs=True, top_logprobs=1)
    content = answer.choices[0].logprobs.content
    assert [(t.token, t.logprob, t.bytes) for t in content][:2] == [("Hello", 0.0, list(b"Hello")), (",", -0.1, [44])]
    assert [t.top_logprobs[0].token for t in content] == ["Hello", ",", " world", "!"]
    stream = await oai.chat.completions.create(model="chat", messages=HI, logprobs=True, stream=True)
    streamed = [t.token async for chunk in stream for choice in chunk.choices if choice.logprobs
                for t in choice.logprobs.content]
    assert streamed == ["Hello", ",", " world", "!"]
    plain = await oai.chat.completions.create(model="chat", messages=HI)
    assert plain.choices[0].logprobs is None
    completion = await oai.completions.create(model="chat", prompt="hi", logprobs=2)
    legacy = completion.choices[0].logprobs
    assert legacy.tokens == ["Hello", ",", " world", "!"] and legacy.token_logprobs == [0.0, -0.1, -0.2, -0.3]
    assert legacy.text_offset == [0, 5, 6, 12]  # where each token starts in "Hello, world!"
    assert legacy.top_logprobs[2] == {" world": -0.2, "?": -1.2}
    response = await models.client.post("/v1/completions", json={"model": "chat", "prompt": "hi", "logprobs": 0,
                                                                   "stream": True})
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines()
              if line.startswith("data: {")]
    offsets = [e["choices"][0]["logprobs"]["text_offset"] for e in events if e["choices"][0]["logprobs"]]
    assert offsets == [[0], [5], [6], [12]]  # counted across the stream's events
