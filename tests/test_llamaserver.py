"""llama.cpp's OpenAI-compatible server starts from tests/support/llamaserver.py and streams as the official
client expects, so remote-engine tests can use it as a real upstream; and what it does differently from
OpenAI, which r1 has to cope with, is pinned here."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.llamaserver import LlamaServerFailed, llama_server
from tests.support.tinymodels import smollm2_gguf

ASK = [{"role": "user", "content": "Name a colour."}]


def test_llama_server_streams_a_chat() -> None:
    with llama_server(smollm2_gguf(), alias="smollm2", api_key="sk-local") as base_url:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-local", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["smollm2"]
        chunks = list(client.chat.completions.create(
            model="smollm2", messages=ASK, temperature=0, max_tokens=8, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.strip() and chunks[-1].choices[0].finish_reason in ("stop", "length")
        # Unlike OpenAI and vLLM, llama-cpp-python 0.3 ignores include_usage: no usage chunk in a stream,
        # so r1 must count what an upstream streams when it reports nothing.
        assert all(c.usage is None for c in chunks)
        reply = client.chat.completions.create(model="smollm2", messages=ASK, temperature=0, max_tokens=8)
        assert reply.choices[0].message.content.strip()  # not always `text`, even at temperature 0
        assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 8


def test_a_server_that_dies_says_why(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"no GGUF here")
    with pytest.raises(LlamaServerFailed, match="exited with") as raised, llama_server(bogus):
        pass
    assert "not-a-model.gguf" in str(raised.value)  # the end of its output names what it could not load
