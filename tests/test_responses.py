"""OpenAI's Responses API (/v1/responses), judged by the official `openai` client against the session
daemon's real models over its Unix socket: text streamed and not, a function tool round trip through
previous_response_id, text.format json_schema, reasoning, keeping responses by id, and bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.daemons import Daemon
from tests.support.inprocess import InProcess
from r1.daemon.database import Database
from r1.daemon.stored_responses import StoredResponse, StoredResponses

GREEDY: dict[str, Any] = {"temperature": 0}
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
QUESTION = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def client(openai_client: openai.OpenAI) -> openai.OpenAI:
    return openai_client


def test_text_answer_is_a_response_with_a_message(client: openai.OpenAI) -> None:
    answer = client.responses.create(model="smollm2:135m", input="Name a colour.", instructions="Be brief.",
                                     max_output_tokens=12, metadata={"ticket": "17"}, **GREEDY)
    assert answer.id.startswith("resp_") and answer.object == "response" and answer.model == "smollm2:135m"
    assert abs(answer.created_at - time.time()) < 60
    assert answer.status in ("completed", "incomplete")
    [message] = answer.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    [part] = message.content
    assert part.type == "output_text" and part.text.strip() and part.annotations == []
    assert answer.output_text == part.text  # the SDK's own sum of the output
    usage = answer.usage
    assert usage.input_tokens > 5 and 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert answer.instructions == "Be brief." and answer.metadata == {"ticket": "17"} and answer.store is True
    assert answer.max_output_tokens == 12 and answer.tools == [] and answer.tool_choice == "auto"
    if answer.status == "incomplete":
        assert answer.incomplete_details.reason == "max_output_tokens" and usage.output_tokens == 12


def test_a_cut_answer_is_incomplete(client: openai.OpenAI) -> None:
    answer = client.responses.create(model="smollm2:135m", input="Write a long story about a cat.",
                                     max_output_tokens=3, **GREEDY)
    assert answer.status == "incomplete" and answer.incomplete_details.reason == "max_output_tokens"
    assert answer.output[0].status == "incomplete" and answer.usage.output_tokens == 3


def test_streamed_events_build_the_same_answer(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "smollm2:135m", "input": [{"role": "user", "content": "Name three colours."}],
                          "max_output_tokens": 10, **GREEDY}
    whole = client.responses.create(**kw)
    events = list(client.responses.create(**kw, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete" if whole.status == "incomplete" else "response.completed"]
    assert len(kinds) == 8 + len(deltas)
    message_id = events[2].item.id
    assert all(d.item_id == message_id and d.output_index == 0 and d.content_index == 0 for d in deltas)
    text = "".join(d.delta for d in deltas)
    assert text == whole.output_text and events[-4].text == text
    last = events[-1].response
    assert last.output_text == text and last.usage.output_tokens == whole.usage.output_tokens
    assert events[0].response.status == "in_progress" and events[0].response.id == last.id
    with client.responses.stream(**kw) as stream:  # the SDK's helper accumulates the same events
        assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == text



def test_a_function_call_round_trip_through_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gemma-tools", input=QUESTION, tools=[WEATHER], max_output_tokens=40,
                                    **GREEDY)
    assert first.status == "completed"
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.status == "completed"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert first.output_text == ""  # the call is the whole answer
    # The tool's result, answered by call_id, continues the stored conversation.
    second = client.responses.create(model="gemma-tools", previous_response_id=first.id, tools=[WEATHER],
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "Sunny, 21 C"}], max_output_tokens=20, **GREEDY)
    assert second.previous_response_id == first.id
    assert not [item for item in second.output if item.type == "function_call"]
    assert second.output[-1].type == "message"
    # The whole conversation was in the prompt: more than the question alone.
    alone = client.responses.create(model="gemma-tools", input=QUESTION, tools=[WEATHER], max_output_tokens=1, **GREEDY)
    assert second.usage.input_tokens > alone.usage.input_tokens + 10
    # Streamed, the call comes as its own item with its arguments.
    events = list(client.responses.create(model="gemma-tools", input=QUESTION, tools=[WEATHER],
                                          max_output_tokens=40, stream=True, **GREEDY))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert events[-1].type == "response.completed" and events[-1].response.output[-1].type == "function_call"
    # tool_choice "none": no tools reach the template, so the model answers in words.
    words = client.responses.create(model="gemma-tools", input=QUESTION, tools=[WEATHER], tool_choice="none",
                                    max_output_tokens=8, **GREEDY)
    assert [item.type for item in words.output] == ["message"]


def test_a_conversation_continues_from_items_sent_back(client: openai.OpenAI) -> None:
    """Without the store: the client sends the earlier output back as input items (store: false)."""
    first = client.responses.create(model="gemma-tools", input=QUESTION, tools=[WEATHER], max_output_tokens=40,
                                    store=False, **GREEDY)
    [call] = first.output
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    second = client.responses.create(model="gemma-tools", tools=[WEATHER], max_output_tokens=20, input=[
        {"role": "user", "content": QUESTION}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}], **GREEDY)
    assert second.status in ("completed", "incomplete") and second.output[-1].type == "message"


def test_text_format_json_schema_gives_json_of_the_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    answer = client.responses.create(model="smollm2:135m", input="A person as JSON.", max_output_tokens=60,
                                     text={"format": {"type": "json_schema", "name": "person", "schema": schema,
                                                      "strict": True}}, **GREEDY)
    assert answer.status == "completed"
    parsed = json.loads(answer.output_text)
    assert set(parsed) == {"name", "age"} and isinstance(parsed["age"], int)
    assert answer.text.format.type == "json_schema"
    loose = client.responses.create(model="smollm2:135m", input="A colour as JSON.", max_output_tokens=30,
                                    text={"format": {"type": "json_object"}}, **GREEDY)
    assert loose.output_text.startswith("{")  # any JSON object, which a small model may not end in 30 tokens
    if loose.status == "completed":
        assert isinstance(json.loads(loose.output_text), dict)


def test_a_reasoning_model_gives_a_reasoning_item(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "thinker", "input": "2+2?", "max_output_tokens": 8, **GREEDY}
    answer = client.responses.create(**kw, reasoning={"effort": "low"})
    reasoning, message = answer.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    [summary] = reasoning.summary
    assert summary.type == "summary_text" and summary.text
    # A random-weight model never closes the block the template opened: all it wrote is reasoning.
    assert message.type == "message" and answer.output_text == "" and answer.status == "incomplete"
    assert answer.usage.output_tokens_details.reasoning_tokens == answer.usage.output_tokens == 8
    events = list(client.responses.create(**kw, stream=True))
    kinds = [e.type for e in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_summary_part.added"]
    assert "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta") == summary.text
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index("response.content_part.added")
    hidden = client.responses.create(**kw, reasoning={"effort": "none"})
    assert [item.type for item in hidden.output] == ["message"]
    assert hidden.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_are_kept_read_and_deleted_by_id(client: openai.OpenAI) -> None:
    answer = client.responses.create(model="smollm2:135m", input="Say hi.", max_output_tokens=4, **GREEDY)
    kept = client.responses.retrieve(answer.id)
    assert kept.id == answer.id and kept.output_text == answer.output_text and kept.usage == answer.usage
    deleted = client.responses.delete(answer.id)
    assert deleted is None or getattr(deleted, "deleted", True)  # the SDK returns nothing for a delete
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(answer.id)
    assert answer.id in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(answer.id)


def test_delete_answers_in_openais_shape(gemma_daemon: Daemon) -> None:
    status, answer = gemma_daemon.request("POST", "/v1/responses", {"model": "smollm2:135m", "input": "Hi",
                                                                    "max_output_tokens": 2})
    assert status == 200, answer
    status, deleted = gemma_daemon.request("DELETE", f"/v1/responses/{answer['id']}", None)
    assert status == 200 and deleted == {"id": answer["id"], "object": "response.deleted", "deleted": True}
    assert "output_text" not in answer  # the SDK computes it; it is not on the wire


@pytest.mark.unit
def test_expired_responses_are_pruned(tmp_path: Path) -> None:
    database = Database(tmp_path / "r1.db")
    try:
        kept = StoredResponses(database)
        now = time.time()
        for name, expires in (("resp_old", now - 1), ("resp_new", now + 3600)):
            kept.put(StoredResponse(name, "m", now - 10, expires, None, [], [], {"id": name}))
        assert kept.get("resp_old") is None  # expired: never returned, even before it is pruned
        assert kept.get("resp_new").response == {"id": "resp_new"}
        assert kept.prune() == 1
        assert not kept.delete("resp_old") and kept.delete("resp_new")
        assert kept.get("resp_new") is None
    finally:
        database.close()


def test_bad_input_gets_openais_error_shape(client: openai.OpenAI) -> None:
    def refused(kind: type[openai.APIStatusError], **kw: Any) -> dict[str, Any]:
        with pytest.raises(kind) as caught:
            client.responses.create(**{"model": "smollm2:135m", "input": "Hi", **kw})
        body = caught.value.body
        assert set(body) >= {"message", "type", "code"}, body
        return body

    unknown = refused(openai.BadRequestError, input=[{"type": "item_reference", "id": "msg_1"}])
    assert "item_reference" in unknown["message"] and unknown["type"] == "invalid_request_error"
    missing = refused(openai.NotFoundError, previous_response_id="resp_nope")
    assert "resp_nope" in missing["message"] and missing["type"] == "not_found_error"
    bad_schema = refused(openai.BadRequestError, tools=[{**WEATHER, "parameters": {"type": "string"}}])
    assert "get_weather" in bad_schema["message"] and "parameters" in bad_schema["message"]
    assert "parameters" in refused(openai.BadRequestError, tools=[{**WEATHER, "parameters": [1]}])["message"]
    nameless = {"type": "function", "parameters": WEATHER["parameters"]}
    assert "'name'" in refused(openai.BadRequestError, tools=[nameless])["message"]
    # a hosted tool is left out (test_agent_protocols.py), unless the request makes it required
    web = refused(openai.BadRequestError, tools=[{"type": "web_search"}], tool_choice="required")
    assert "web_search" in web["message"] and "tool_choice" in web["message"]
    assert "background" in refused(openai.BadRequestError, background=True)["message"]
    assert "image" in refused(openai.BadRequestError, input=[{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/cat.png"}]}])["message"]
    assert "role" in refused(openai.BadRequestError, input=[{"role": "tool", "content": "x"}])["message"]
    assert "reasoning.effort" in refused(openai.BadRequestError, reasoning={"effort": "extreme"})["message"]
    assert "no-such-model" in refused(openai.NotFoundError, model="no-such-model")["message"]


# --- in-process, with scripted runners ----------------------------------------------------------


async def test_fields_become_the_cores_request(api: InProcess) -> None:
    await api.add_model("chat")
    async with openai.AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key="r1", max_retries=0) as client:
        answer = await client.responses.create(
            model="chat", instructions="Be brief.", temperature=0.2, top_p=0.5, max_output_tokens=2,
            input=[{"role": "developer", "content": "Answer in French."},
                   {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            text={"format": {"type": "json_object"}}, extra_body={"options": {"top_k": 7}})
    sent = api.runners.requests[-1]
    assert sent["sampling"] == {"temperature": 0.2, "top_p": 0.5, "num_predict": 2, "top_k": 7}
    assert sent["format"] == "json"
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "Be brief."), ("system", "Answer in French."), ("user", "hi")]
    assert answer.output_text == "Hello," and answer.status == "incomplete"


async def test_an_error_after_the_first_event_is_in_band(api: InProcess) -> None:
    from r1.daemon.scheduler.runner_client import RunnerDied

    await api.add_model("chat")
    api.runners.script[2:] = [RunnerDied("the model runner for chat stopped: was killed by SIGKILL", "was killed", -9)]
    response = await api.client.post("/v1/responses", json={"model": "chat", "input": "hi", "stream": True})
    assert response.status == 200  # the headers went with the first event
    events = [e.split("\n") for e in (await response.text()).split("\n\n") if e]
    assert all(kind.startswith("event: ") and data.startswith("data: ") for kind, data in events)
    parsed = [json.loads(data.removeprefix("data: ")) for _, data in events]
    assert [p["type"] for p in parsed][-2:] == ["error", "response.failed"]
    assert [p["sequence_number"] for p in parsed] == list(range(len(parsed)))
    assert "SIGKILL" in parsed[-2]["message"] and parsed[-1]["response"]["status"] == "failed"
    assert "".join(p["delta"] for p in parsed if p["type"] == "response.output_text.delta") == "Hello,"
    failed = parsed[-1]["response"]["id"]
    response = await api.client.get(f"/v1/responses/{failed}")
    assert response.status == 404  # only finished responses are kept
