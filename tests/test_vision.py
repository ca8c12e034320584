"""Images answered, end to end: a tiny text model with a tiny vision projector (tinyvision.py) stored
in a real daemon, asked through all four dialects with the official clients. Random weights: what is
checked is the plumbing (image bytes to an image's positions in the prompt to an answer), and that
the image really reaches the model: its positions count, and another image gives another answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.support.answers import prompt_tokens
from tests.support.daemons import Daemon, over_socket, private_daemon
from tests.support.polling import wait_until
from tests.support.tinymodels import write_tiny_gguf
from tests.support.tinyvision import IMAGE_TOKENS, png, write_tiny_vision_model

RED, BLUE = png((255, 0, 0)), png((0, 0, 255), stripe=(255, 255, 0))
GREEDY = {"temperature": 0, "num_predict": 8}
QUESTION = "What is in the picture?"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + b64(data)


@pytest.fixture(scope="module")
def vision_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """`seer`: the tiny model with its projector beside it (r1 import keeps it); `blind`: text only."""
    root = tmp_path_factory.mktemp("vision")
    model, _ = write_tiny_vision_model(root / "seer")
    with private_daemon(root, R1_LOG_LEVEL="DEBUG", R1_NUM_PARALLEL="1", R1_LOG_PROMPTS="1") as daemon:
        daemon.cli("import", str(model), "--name", "seer")
        daemon.cli("import", str(write_tiny_gguf(root / "blind.gguf", seed=3)), "--name", "blind")
        yield daemon


@pytest.fixture(scope="module")
def client(vision_daemon: Daemon) -> ollama.Client:
    return ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(vision_daemon.socket)))


def chat(client: ollama.Client, image: bytes | None, model: str = "seer") -> Any:
    message: dict[str, Any] = {"role": "user", "content": QUESTION}
    if image is not None:
        message["images"] = [b64(image)]
    return client.chat(model=model, messages=[message], options=GREEDY)


def test_an_image_takes_its_positions_in_the_prompt_and_changes_the_answer(vision_daemon: Daemon) -> None:
    def generate(**fields: Any) -> dict[str, Any]:
        status, answer = vision_daemon.request("POST", "/api/generate", {
            "model": "seer", "prompt": QUESTION, "options": GREEDY, "stream": False, **fields})
        assert status == 200, answer
        return answer

    text_only, seen = generate(), generate(images=[b64(RED)])
    assert prompt_tokens(seen) == prompt_tokens(text_only) + IMAGE_TOKENS
    assert seen["response"] != text_only["response"]

    def counted(*blocks: dict[str, Any]) -> int:  # count_tokens: the tokenize op, which context_fit uses too
        status, answer = vision_daemon.request("POST", "/v1/messages/count_tokens", {"model": "seer", "messages": [
            {"role": "user", "content": [*blocks, {"type": "text", "text": QUESTION}]}]})
        assert status == 200, answer
        return answer["input_tokens"]

    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(RED)}}
    assert counted(image, image) == counted() + 2 * IMAGE_TOKENS


def test_the_request_log_keeps_a_note_of_an_image_not_its_bytes(vision_daemon: Daemon, client: ollama.Client) -> None:
    BLUE_NOTE = f"<image: {len(b64(BLUE))} base64 characters>"
    chat(client, BLUE)

    def logged() -> list[dict[str, Any]]:  # rows are written a moment after their answer
        rows = vision_daemon.request("GET", "/api/log?reads=0&limit=1000")[1]["requests"]
        return [row for row in rows if row["route"] == "/api/chat" and row["prompt"] and BLUE_NOTE in row["prompt"]]

    wait_until(logged, timeout=10)
    row = logged()[0]
    assert QUESTION in row["prompt"], row
    assert b64(BLUE) not in row["prompt"] and row["answer"]


def test_r1_run_sends_the_image_files_a_prompt_names(vision_daemon: Daemon, tmp_path: Path) -> None:
    """As `ollama run`: a path to an image in the prompt (its spaces escaped) goes as the image, not as text."""
    image = tmp_path / "a red dot.png"
    image.write_bytes(RED)
    escaped = str(image).replace(" ", "\\ ")
    run = vision_daemon.cli("run", "seer", f"{QUESTION} {escaped}", "--keepalive", "1m")
    assert f"Added image '{image}'" in run.stderr and run.stdout.strip(), run
    note = f"<image: {len(b64(RED))} base64 characters>"

    def logged() -> list[str]:
        rows = vision_daemon.request("GET", "/api/log?reads=0&limit=1000")[1]["requests"]
        return [row["prompt"] for row in rows if row["prompt"] and note in row["prompt"] and "a red dot" not in row["prompt"]
                and json.loads(row["prompt"])[-1]["content"] == QUESTION]

    wait_until(logged, timeout=10)
    blind = vision_daemon.cli("run", "blind", f"{QUESTION} {escaped}", "--keepalive", "1m")
    assert "Added image" not in blind.stderr  # a model without vision gets the text as typed


def test_two_images_are_kept_apart_in_the_cache_and_the_same_one_is_reused(client: ollama.Client) -> None:
    # One slot (R1_NUM_PARALLEL=1): each request finds the previous one's cells, the text before the image alike.
    blue = chat(client, BLUE)
    red = chat(client, RED)
    assert red.message.content != blue.message.content
    assert red.prompt_eval_count >= IMAGE_TOKENS  # blue's cells stop where the images differ
    again = chat(client, RED)
    assert again.message.content == red.message.content
    assert again.prompt_eval_count == 1  # the same image: its cells are reused whole
    blue_again = chat(client, BLUE)
    assert blue_again.message.content == blue.message.content
    assert blue_again.prompt_eval_count >= IMAGE_TOKENS


def test_an_image_through_each_dialect_with_its_official_client(vision_daemon: Daemon, client: ollama.Client) -> None:
    expected = chat(client, RED).message.content
    generated = client.generate(model="seer", prompt=QUESTION, images=[b64(RED)], options=GREEDY).response
    assert generated  # /api/generate renders its own turn: the same answer is not promised
    with over_socket(vision_daemon) as http:
        oa = openai.OpenAI(base_url="http://localhost/v1", api_key="r1", http_client=http, max_retries=0)
        completion = oa.chat.completions.create(model="seer", temperature=0, max_tokens=8, messages=[
            {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                         {"type": "image_url", "image_url": {"url": data_url(RED)}}]}])
        assert completion.choices[0].message.content == expected
        response = oa.responses.create(model="seer", temperature=0, max_output_tokens=8, input=[
            {"role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                         {"type": "input_image", "image_url": data_url(RED), "detail": "auto"}]}])
        assert response.output_text == expected
        claude = anthropic.Anthropic(base_url="http://localhost", api_key="r1", http_client=http, max_retries=0)
        message = claude.messages.create(model="seer", extra_body={"temperature": 0}, max_tokens=8, messages=[
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(RED)}},
                {"type": "text", "text": QUESTION}]}])
        assert message.content[0].text == expected
        assert message.usage.input_tokens + message.usage.cache_read_input_tokens == completion.usage.prompt_tokens


def test_bad_images_are_400s_that_name_them(vision_daemon: Daemon, client: ollama.Client) -> None:
    def refused(path: str, body: dict[str, Any]) -> str:
        status, answer = vision_daemon.request("POST", path, {"stream": False, **body})
        assert status == 400, answer
        return str(answer)

    def chat_with(images: list[str]) -> dict[str, Any]:
        return {"model": "seer", "messages": [{"role": "user", "content": "hi", "images": images}]}

    assert "messages[0].images[1] is not valid base64" in refused("/api/chat", chat_with([b64(RED), "not base64!"]))
    assert "messages[0].images[0] is not an image" in refused("/api/chat", chat_with([b64(b"plain text")]))
    riff = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    assert "is a WebP image" in refused("/api/generate", {"model": "seer", "prompt": "hi", "images": [b64(riff)]})
    broken = RED[:40]  # a PNG's signature and header, then nothing: only the decoder can tell
    assert "image 2 of the prompt could not be decoded" in refused("/api/chat", chat_with([b64(RED), b64(broken)]))
    remote = {"model": "seer", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    assert "does not fetch URLs" in refused("/v1/chat/completions", remote)
    by_url = {"model": "seer", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]}
    answer = refused("/v1/messages", by_url)
    assert "'type': 'error'" in answer and "messages[0].content[0].source is a url source" in answer
    assert chat(client, RED).message.content  # the runner lived through it all


def test_a_model_without_a_projector_refuses_images(vision_daemon: Daemon, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        chat(client, RED, model="blind")
    assert caught.value.status_code == 400 and "blind:latest has no vision projector" in caught.value.error
    assert chat(client, None, model="blind").message.content is not None
