"""Pulls from Ollama's registry (a fake one on loopback, tests/support/fakeollama.py), and `r1 pull` of a
model the store already has: checked against its source, "up to date" when nothing changed.

The protocol, the layers and the transfer are tested in-process (r1's app on aiohttp's test server,
scripted runners); that pulled models chat through the real llama.cpp runner, and what `r1 pull`
prints, against the session daemon."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import ollama
import pytest

from tests.support.answers import prompt_tokens
from tests.support.daemons import Daemon
from tests.support.fakehub import FakeHub
from tests.support.fakeollama import (ADAPTER, LICENSE, MANIFEST_TYPE, MESSAGES, MODEL, PARAMS, PROJECTOR, SYSTEM,
                                      TEMPLATE, FakeOllama)
from tests.support.inprocess import InProcess
from r1.cli.render import human_size
from r1.daemon.intake.pull.hub import hub_repo
from r1.daemon.store import parse_name
from r1.daemon.templates.go import to_jinja
from tests.support.tinymodels import DEFAULT_TEMPLATE, write_tiny_gguf

# A ChatML template in Go's dialect, as Ollama's library writes them.
GO_TEMPLATE = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
               "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
               "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n")
# Another turn format, and a Jinja template that renders by hand what Ollama renders from it for a
# system prompt and one user message: its older templates (no .Messages) end the prompt after .Response.
E2E_GO_TEMPLATE = ("{{ if .System }}### System:\n{{ .System }}\n{{ end }}"
                   "### User:\n{{ .Prompt }}\n### Assistant:\n{{ .Response }}")
E2E_BY_HAND = "### System:\nBe brief.\n### User:\nhi\n### Assistant:{{ '\\n' }}"  # Jinja drops a final newline
PARAMETERS = {"temperature": 0.2, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 128, "mirostat": 1, "top_k": "many"}
FIRST_MESSAGES = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "A tiny model."}]

MakeApi = Callable[..., Awaitable[InProcess]]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Two different tiny GGUFs (about 0.4 MB, one byte range each), both with a ChatML template."""
    root = tmp_path_factory.mktemp("ollama-ggufs")
    return {name: write_tiny_gguf(root / f"{name}.gguf", seed=seed).read_bytes()
            for name, seed in (("chat", 21), ("other", 22))}


def chat_layers(gguf: bytes, **replace: bytes) -> list[tuple[str, bytes]]:
    """What `ollama create` makes of a Modelfile with every setting: the GGUF and five small layers."""
    layers = {MODEL: gguf, TEMPLATE: GO_TEMPLATE.encode(), SYSTEM: b"You are terse.",
              PARAMS: json.dumps(PARAMETERS).encode(), MESSAGES: json.dumps(FIRST_MESSAGES).encode(),
              LICENSE: b"Apache License 2.0", **replace}
    return list(layers.items())


@pytest.fixture
def registry(ggufs: dict[str, bytes]) -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        fake.add_model("library/tiny-chat", "latest", chat_layers(ggufs["chat"]))
        yield fake


NO_HUB = "http://127.0.0.1:9"  # nothing listens there: these names never reach the Hub


@pytest.fixture
async def served(make_api: MakeApi, registry: FakeOllama) -> InProcess:
    return await make_api(**registry.env(), HF_ENDPOINT=NO_HUB)


def cdn_ranges(registry: FakeOllama, digest: str) -> list[str | None]:
    return [r for method, path, r, _ in registry.requests if path == "/cdn/" + digest.replace(":", "/")]


def store_files(home: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (home / folder).iterdir())


# --- in-process --------------------------------------------------------------------------------


async def test_a_library_name_is_pulled_with_its_settings(served: InProcess, registry: FakeOllama,
                                                         ggufs: dict[str, bytes]) -> None:
    gguf, digest = ggufs["chat"], digest_of(ggufs["chat"])
    status, events = await served.pull("tiny-chat")
    assert status == 200
    statuses = [e["status"] for e in events]
    assert statuses[:2] == ["pulling manifest", "left out parameters r1 does not use: mirostat, "
                                                "top_k (option 'top_k' must be int, not 'many')"]
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [e for e in events if "total" in e]
    assert progress and all(e == {"status": f"pulling {digest[7:19]}", "digest": digest, "total": len(gguf),
                                  "completed": e["completed"], "file": "model.gguf"} for e in progress)
    host = registry.url.removeprefix("http://")
    assert {k: events[-1][k] for k in ("model", "tag", "repo", "size", "downloaded")} == {
        "model": "tiny-chat:latest", "tag": "latest", "repo": f"{host}/library/tiny-chat",
        "size": len(gguf), "downloaded": len(gguf)}

    # The protocol: the manifest asked for as Docker's v2 schema; the blob through its redirect, in one range.
    assert ("GET", "/v2/library/tiny-chat/manifests/latest", None, MANIFEST_TYPE) in registry.requests
    assert any(path == f"/v2/library/tiny-chat/blobs/{digest}" for _, path, _, _ in registry.requests)
    assert cdn_ranges(registry, digest) == [f"bytes=0-{len(gguf) - 1}"] and registry.served_bytes(digest) == len(gguf)

    info = await served.show("tiny-chat")
    assert info["files"] == [{"path": "model.gguf", "digest": digest, "size": len(gguf), "present": True}]
    assert (Path(info["path"]) / "model.gguf").read_bytes() == gguf
    assert info["template"] == to_jinja(GO_TEMPLATE)
    assert info["system"] == "You are terse." and info["messages"] == FIRST_MESSAGES
    assert info["license"] == "Apache License 2.0"
    assert info["parameters"].splitlines() == [
        'num_ctx                        128', 'stop                           "<|im_end|>"',
        'stop                           "<|im_start|>"', 'temperature                    0.2']
    assert store_files(served.home, "partial") == []


async def test_a_namespaced_name_with_the_registry_host(served: InProcess, registry: FakeOllama,
                                                       ggufs: dict[str, bytes]) -> None:
    registry.add_model("acme/tiny", "q8", [(MODEL, ggufs["other"])])  # no settings: the GGUF's own apply
    status, events = await served.pull("registry.ollama.ai/acme/tiny:q8")
    assert status == 200 and events[-1]["status"] == "success"
    assert events[-1]["model"] == "registry.ollama.ai/acme/tiny:q8"
    info = await served.show("registry.ollama.ai/acme/tiny:q8")
    assert info["files"][0]["digest"] == digest_of(ggufs["other"])
    assert info["template"] == DEFAULT_TEMPLATE and info["system"] == "" and info["parameters"] == ""
    # Ollama's library namespace written out is the plain name, as Ollama shows it.
    status, events = await served.pull("registry.ollama.ai/library/tiny-chat")
    assert status == 200 and events[-1]["model"] == "tiny-chat:latest"
    assert await served.names() == {"registry.ollama.ai/acme/tiny:q8", "tiny-chat:latest"}


async def test_a_dropped_connection_resumes_with_a_range(served: InProcess, registry: FakeOllama,
                                                        ggufs: dict[str, bytes]) -> None:
    size, digest = len(ggufs["chat"]), digest_of(ggufs["chat"])
    registry.drop_after(digest, 100_000, times=2)
    status, events = await served.pull("tiny-chat")
    assert status == 200 and events[-1]["status"] == "success"
    # The one range, then twice from where the connection dropped: no byte is fetched twice.
    assert cdn_ranges(registry, digest) == [f"bytes=0-{size - 1}", f"bytes=100000-{size - 1}", f"bytes=200000-{size - 1}"]
    assert registry.served_bytes(digest) == size
    assert (await served.show("tiny-chat"))["files"][0]["digest"] == digest


async def test_a_wrong_digest_is_retried_once_then_refused(served: InProcess, registry: FakeOllama,
                                                          ggufs: dict[str, bytes]) -> None:
    size, digest = len(ggufs["chat"]), digest_of(ggufs["chat"])
    registry.corrupt(digest, times=2)  # both attempts
    status, events = await served.pull("tiny-chat")
    assert status == 200 and "success" not in [e.get("status") for e in events]
    host = registry.url.removeprefix("http://")
    assert events[-1]["error"].startswith(f"model.gguf from {host}/library/tiny-chat failed its sha256 check twice")
    assert registry.served_bytes(digest) == 2 * size
    assert await served.names() == set()
    assert store_files(served.home, "blobs") == [] and store_files(served.home, "partial") == []

    registry.corrupt(digest, times=1)  # once: the second attempt gets the right bytes
    status, events = await served.pull("tiny-chat")
    assert status == 200 and events[-1]["status"] == "success"
    assert store_files(served.home, "blobs") == [digest.replace(":", "-")]


async def test_a_second_name_sharing_the_blob_downloads_nothing(served: InProcess, registry: FakeOllama,
                                                               ggufs: dict[str, bytes]) -> None:
    digest = digest_of(ggufs["chat"])
    registry.add_model("library/tiny-twin", "7b", chat_layers(ggufs["chat"], **{SYSTEM: b"Another prompt."}))
    assert (await served.pull("tiny-chat"))[1][-1]["status"] == "success"
    registry.reset_counters()
    status, events = await served.pull("tiny-twin:7b")
    assert status == 200 and events[-1]["status"] == "success" and events[-1]["downloaded"] == 0
    assert registry.served_bytes(digest) == 0 and cdn_ranges(registry, digest) == []
    assert store_files(served.home, "blobs") == [digest.replace(":", "-")]
    assert (await served.show("tiny-twin:7b"))["system"] == "Another prompt."


async def test_an_unknown_name_says_where_it_looked(make_api: MakeApi, served: InProcess, registry: FakeOllama) -> None:
    status, [answer] = await served.pull("nosuch")
    assert status == 404
    assert answer["error"] == (
        "model 'nosuch:latest' not found: not in the store; not in r1's catalog (`r1 search` lists it); "
        f"not a Hugging Face repo (those are named org/repo[:quant], from {NO_HUB}); "
        f"not in Ollama's registry at {registry.url} (as library/nosuch:latest)")
    status, [answer] = await served.pull("tiny-chat:70b")  # a known model, an unknown tag
    assert status == 404 and answer["error"].endswith(f"not in Ollama's registry at {registry.url} (as library/tiny-chat:70b)")

    registry.reset_counters()
    off = await make_api(**{**registry.env(), "R1_NO_OLLAMA_REGISTRY": "1"}, HF_ENDPOINT=NO_HUB)
    status, [answer] = await off.pull("tiny-chat")
    assert status == 404 and answer["error"].endswith("; Ollama's registry not asked (R1_NO_OLLAMA_REGISTRY is set)")
    assert registry.requests == []


async def test_what_r1_cannot_run_is_refused_or_left_out(served: InProcess, registry: FakeOllama,
                                                        ggufs: dict[str, bytes]) -> None:
    gguf = ggufs["chat"]
    registry.add_model("library/lora", "latest", [(MODEL, gguf), (ADAPTER, b"lora weights")])
    client = ollama.AsyncClient(host=str(served.client.make_url("")))
    with pytest.raises(ollama.ResponseError) as caught:
        await client.pull("lora")
    await client.close()
    assert caught.value.status_code == 400
    assert "applies a LoRA adapter to its base model, which r1 cannot do" in caught.value.error
    assert registry.served_bytes(digest_of(gguf)) == 0, "refused before any byte moved"

    registry.add_model("library/not-vision", "latest", [(MODEL, gguf), (PROJECTOR, b"vision tower")])
    status, events = await served.pull("not-vision")  # a projector layer that is no projector: nothing stored
    assert status == 200 and "not a vision projector r1 can keep" in events[-1]["error"]
    assert "not-vision:latest" not in await served.names()

    registry.add_model("library/odd-template", "latest", [(MODEL, gguf), (TEMPLATE, b"{{ if .System }}{{ .System }}")])
    status, events = await served.pull("odd-template")
    assert status == 200 and events[-1]["status"] == "success"
    [note] = [e["status"] for e in events if e["status"].startswith("kept")]
    assert note.startswith("kept the model file's own chat template: Ollama's template could not be converted (")
    assert (await served.show("odd-template"))["template"] == DEFAULT_TEMPLATE

    registry.add_model("library/safetensors", "latest", [("application/vnd.ollama.image.tensor", b"weights")])
    status, [answer] = await served.pull("safetensors")
    assert status == 400 and "r1 needs exactly one GGUF layer" in answer["error"]


async def test_a_stored_model_is_checked_for_a_newer_version(make_api: MakeApi, served: InProcess,
                                                            registry: FakeOllama, ggufs: dict[str, bytes]) -> None:
    gguf, digest = ggufs["chat"], digest_of(ggufs["chat"])
    published = registry.add_model("library/tiny-chat", "latest", chat_layers(gguf))  # as the fixture did: its digest
    assert (await served.pull("tiny-chat"))[1][-1]["status"] == "success"
    manifest = (await served.show("tiny-chat"))["digest"]

    registry.reset_counters()  # the same manifest: up to date, only the manifest asked for
    status, events = await served.pull("tiny-chat")
    assert status == 200
    assert [e["status"] for e in events] == ["pulling manifest", f"pulling {digest[7:19]}", "up to date", "success"]
    assert events[1]["completed"] == events[1]["total"] == len(gguf)
    assert events[-1]["up_to_date"] is True and events[-1]["downloaded"] == 0 and events[-1]["digest"] == manifest
    assert events[-1]["note"] == f"{registry.url[7:]}/library/tiny-chat:latest has not changed (manifest {published[7:19]})"
    assert [path for _, path, _, _ in registry.requests] == ["/v2/library/tiny-chat/manifests/latest"]

    # A new version (another system prompt, the same GGUF): pulled, with no byte of the GGUF again.
    registry.add_model("library/tiny-chat", "latest", chat_layers(gguf, **{SYSTEM: b"You are verbose."}))
    status, events = await served.pull("tiny-chat")
    assert status == 200 and events[-1]["status"] == "success" and "up_to_date" not in events[-1]
    assert events[-1]["downloaded"] == 0 and registry.served_bytes(digest) == 0
    assert (await served.show("tiny-chat"))["system"] == "You are verbose."

    # An imported model has no source to check; with the registry off, an Ollama model is kept unchecked.
    await served.add_model("imported")
    status, events = await served.pull("imported")
    assert status == 200 and events[-1]["up_to_date"] is False
    assert events[-1]["note"] == ("imported:latest was imported from a file or made with `r1 create`, not pulled: "
                                  "there is no newer version to check for")
    registry.reset_counters()
    off = await make_api(**{**registry.env(), "R1_NO_OLLAMA_REGISTRY": "1"}, HF_ENDPOINT=NO_HUB)
    status, events = await off.pull("tiny-chat")
    assert status == 200 and events[-1]["note"].startswith("R1_NO_OLLAMA_REGISTRY is set: kept the stored copy")
    assert registry.requests == []


def test_registry_names_never_mean_a_catalog_entry() -> None:
    assert hub_repo(parse_name("deepseek-r1:7b-q8_0")) == ("unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF", "Q8_0")
    assert hub_repo(parse_name("registry.ollama.ai/someone/deepseek-r1:7b-q8_0")) is None
    assert hub_repo(parse_name("registry.ollama.ai/library/deepseek-r1:7b")) == (  # the short name itself
        "unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF", "Q4_K_M")


# --- the session daemon: the real runner, the real CLI ------------------------------------------


def test_pulled_models_chat_and_r1_pull_says_what_happened(gemma_daemon: Daemon, session_registry: FakeOllama,
                                                           hub: FakeHub, ggufs: dict[str, bytes],
                                                           tmp_path: Path) -> None:
    gguf = ggufs["chat"]
    size = human_size(len(gguf))
    host = session_registry.url.removeprefix("http://")
    # Ollama's Go template (not the GGUF's ChatML), system prompt and parameters: the runner must obey all three.
    session_registry.add_model("library/e2e-chat", "latest", [
        (MODEL, gguf), (TEMPLATE, E2E_GO_TEMPLATE.encode()), (SYSTEM, b"Be brief."),
        (PARAMS, b'{"num_predict": 6, "temperature": 0}')])
    session_registry.add_model("acme/e2e-tiny", "q8", [(MODEL, ggufs["other"])])

    first = gemma_daemon.cli("pull", "e2e-chat")
    assert first.stdout.startswith(f"pulled e2e-chat:latest (latest, {size}) from {host}/library/e2e-chat: "
                                   f"{size} downloaded in "), first.stdout
    # org/repo that the Hub does not have: Ollama's registry next, stored under the name given.
    second = gemma_daemon.cli("pull", "acme/e2e-tiny:q8")
    assert second.stdout.startswith(f"pulled hf.co/acme/e2e-tiny:q8 (q8, {human_size(len(ggufs['other']))}) "
                                    f"from {host}/acme/e2e-tiny: "), second.stdout
    assert any(path.startswith("/api/models/acme/e2e-tiny") for _, path, _ in hub.requests), "the Hub was asked first"
    assert second.stderr == (f"no model repo 'acme/e2e-tiny' on {hub.url} (if it is private, set HF_TOKEN): "
                             f"pulling {host}/acme/e2e-tiny:q8 from Ollama's registry\n")

    # The same weights under the Jinja that writes, by hand, the prompt Ollama renders from E2E_GO_TEMPLATE,
    # and under the GGUF's ChatML: greedy answers to the same prompt are the same, to another prompt not.
    for name, template in (("e2e-chat-by-hand", E2E_BY_HAND), ("e2e-chat-chatml", DEFAULT_TEMPLATE)):
        status, answer = gemma_daemon.request("POST", "/api/create", {"model": name, "from": "e2e-chat",
                                                                      "template": template, "stream": False})
        assert status == 200, answer
    answers = {}
    for model in ("e2e-chat", "e2e-chat-by-hand", "e2e-chat-chatml", "acme/e2e-tiny:q8"):
        status, answers[model] = gemma_daemon.request("POST", "/api/chat", {
            "model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False})
        assert status == 200 and answers[model]["done"], answers[model]
    assert answers["e2e-chat"]["eval_count"] == 6, "the params layer's num_predict"
    pulled, by_hand, chatml = (answers[m] for m in ("e2e-chat", "e2e-chat-by-hand", "e2e-chat-chatml"))
    assert (prompt_tokens(pulled), pulled["message"]) == (prompt_tokens(by_hand), by_hand["message"])
    assert prompt_tokens(pulled) != prompt_tokens(chatml)
    assert answers["acme/e2e-tiny:q8"]["message"]["role"] == "assistant"

    again = gemma_daemon.cli("pull", "e2e-chat")
    assert again.stdout == "e2e-chat:latest is up to date\n"
    assert f"{host}/library/e2e-chat:latest has not changed" in again.stderr

    hub.add_repo("acme/e2e-hub-GGUF", {"e2e-Q4_K_M.gguf": gguf})  # a Hub model: its commit is what is checked
    gemma_daemon.cli("pull", "acme/e2e-hub-GGUF")
    again = gemma_daemon.cli("pull", "acme/e2e-hub-GGUF")
    assert again.stdout == "hf.co/acme/e2e-hub-GGUF:latest is up to date\n"
    assert "acme/e2e-hub-GGUF is still at commit " in again.stderr

    imported = gemma_daemon.cli("pull", "gemma")
    assert imported.stdout == "gemma:latest is in the store\n"
    assert "gemma:latest was imported from a file or made with `r1 create`, not pulled" in imported.stderr

    unknown = gemma_daemon.cli("pull", "acme/e2e-nosuch", check=False)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert (f"not in the store; no model repo 'acme/e2e-nosuch' on {hub.url}" in unknown.stderr
            and f"not in Ollama's registry at {session_registry.url} (as acme/e2e-nosuch:latest)" in unknown.stderr)
