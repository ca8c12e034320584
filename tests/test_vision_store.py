"""A vision model's projector (its mmproj GGUF) kept wherever the model comes from: a Hub repo (the real
huggingface_hub client against the fake Hub), Ollama's registry (the fixture registry), and imports from
Ollama's store, LM Studio's folder and a plain file's folder. The model then has the `vision` capability,
its memory estimate counts the projector, `r1 show` lists it, and the runner still loads the language
model: its greedy answer is the same as the same GGUF's without a projector. A file named mmproj that
is not a projector (its architecture is not `clip`) is refused, and nothing is stored."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakehub import FakeHub
from tests.support.fakeollama import MODEL, PROJECTOR, FakeOllama
from tests.support.inprocess import InProcess
from tests.support.tinymodels import write_tiny_gguf
from tests.support.tinyvision import write_tiny_projector
from tests.support.toolstores import lmstudio_tree, ollama_store
from r1.daemon.api.context import STORE
from r1.daemon.generation import model_path, projector_path
from r1.daemon.memory import PROJECTOR_COMPUTE
from r1.daemon.intake.quant import RemoteFile, projector_for
from r1.daemon.store import Manifest, parse_name

REPO = "test/tiny-vision-GGUF"
Q4, Q8 = "tiny-vision-Q4_K_M.gguf", "tiny-vision-Q8_0.gguf"
MMPROJ_F16, MMPROJ_Q8, MMPROJ_BF16 = "mmproj-tiny-vision-F16.gguf", "mmproj-tiny-vision-Q8_0.gguf", "mmproj-BF16.gguf"
NOT_A_PROJECTOR_REPO = "test/fake-vision-GGUF"

MakeApi = Callable[..., Awaitable[InProcess]]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision-files")
    return {Q4: write_tiny_gguf(root / Q4, seed=31), Q8: write_tiny_gguf(root / Q8, seed=32),
            MMPROJ_F16: write_tiny_projector(root / MMPROJ_F16, seed=1),
            MMPROJ_Q8: write_tiny_projector(root / MMPROJ_Q8, seed=2),
            MMPROJ_BF16: write_tiny_projector(root / MMPROJ_BF16, seed=3),
            "llama-mmproj": write_tiny_gguf(root / "llama-mmproj.gguf", seed=33)}


@pytest.fixture
def hub(files: dict[str, Path]) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo(REPO, {name: files[name] for name in (Q4, Q8, MMPROJ_F16, MMPROJ_Q8, MMPROJ_BF16)})
        fake.add_repo(NOT_A_PROJECTOR_REPO, {Q4: files[Q4], "mmproj-F16.gguf": files["llama-mmproj"]})
        yield fake


@pytest.fixture
async def served(make_api: MakeApi, hub: FakeHub, hf_client: None) -> InProcess:
    return await make_api(**hub.env())


@pytest.mark.unit
def test_the_projector_kept_is_the_models_precision_else_f16_else_the_first() -> None:
    listing = [RemoteFile(path, 1) for path in ("m-Q4_K_M.gguf", "mmproj-BF16.gguf", "mmproj-F16.gguf",
                                                   "mmproj-Q8_0.gguf", "imatrix.gguf")]
    assert projector_for(listing, "Q8_0").path == "mmproj-Q8_0.gguf"
    assert projector_for(listing, "BF16").path == "mmproj-BF16.gguf"
    assert projector_for(listing, "Q4_K_M").path == "mmproj-F16.gguf"
    assert projector_for(listing[:2], "Q4_K_M").path == "mmproj-BF16.gguf"
    assert projector_for(listing[:1], "Q4_K_M") is None


def vision_facts(info: dict[str, Any], projector: str, files: dict[str, Path], model: str) -> None:
    """What /api/show says of a model stored with `projector` beside the GGUF `model`."""
    assert info["capabilities"][:2] == ["completion", "vision"]
    kinds = {f["path"]: f.get("kind") for f in info["files"]}
    assert kinds[projector] == "projector" and list(kinds.values()).count("projector") == 1
    memory = info["memory"]
    projector_size = next(f["size"] for f in info["files"] if f["path"] == projector)
    assert memory["projector"] == projector_size + PROJECTOR_COMPUTE
    assert memory["weights"] == files[model].stat().st_size  # the language model's bytes only
    assert info["model_info"]["general.architecture"] == "llama"  # the language model's facts, not the projector's


async def test_a_hub_pull_keeps_the_projector_that_goes_with_the_quantization(
        served: InProcess, hub: FakeHub, files: dict[str, Path]) -> None:
    status, [done] = await served.pull(f"hf.co/{REPO}", stream=False)
    assert status == 200 and done["tag"] == "Q4_K_M", done
    info = await served.show(f"hf.co/{REPO}")
    assert sorted(f["path"] for f in info["files"]) == [MMPROJ_F16, Q4]
    vision_facts(info, MMPROJ_F16, files, Q4)
    assert hub.served_bytes(REPO, MMPROJ_Q8) == 0 and hub.served_bytes(REPO, MMPROJ_BF16) == 0

    status, [done] = await served.pull(f"hf.co/{REPO}:Q8_0", stream=False)
    assert status == 200
    info = await served.show(f"hf.co/{REPO}:Q8_0")
    assert sorted(f["path"] for f in info["files"]) == [MMPROJ_Q8, Q8]

    store = served.client.server.app[STORE]
    record = store.get(f"hf.co/{REPO}:Q8_0")
    assert model_path(store, record).name == Q8
    assert projector_path(store, record).name == MMPROJ_Q8
    assert projector_path(store, record).read_bytes() == files[MMPROJ_Q8].read_bytes()

    tags = (await (await served.client.get("/api/tags")).json())["models"]
    assert all("vision" in m["capabilities"] for m in tags)


async def test_pulling_a_model_stored_text_only_again_brings_its_projector(
        served: InProcess, hub: FakeHub, files: dict[str, Path]) -> None:
    name = f"hf.co/{REPO}:Q8_0"
    status, [done] = await served.pull(name, stream=False)
    store = served.client.server.app[STORE]
    record = store.get(name)  # as an r1 that dropped projectors stored it: the same source, the GGUF only
    manifest = record.manifest
    text_only = [f for f in manifest.files if f.path == Q8]
    store.add(parse_name(name), Manifest(tuple(text_only), manifest.facts, manifest.overrides, manifest.source))
    assert "vision" not in (await served.show(name))["capabilities"]

    hub.reset_counters()
    status, [again] = await served.pull(name, stream=False)
    assert status == 200 and not again.get("up_to_date"), again
    assert again["downloaded"] == files[MMPROJ_Q8].stat().st_size and hub.served_bytes(REPO, Q8) == 0
    assert "vision" in (await served.show(name))["capabilities"]
    status, [third] = await served.pull(name, stream=False)
    assert third["up_to_date"] is True


async def test_a_file_named_mmproj_that_is_not_a_projector_is_refused(served: InProcess) -> None:
    status, [done] = await served.pull(f"hf.co/{NOT_A_PROJECTOR_REPO}", stream=False)
    assert status == 400, done
    assert done["error"] == ("mmproj-F16.gguf is not a vision projector: its general.architecture is 'llama', and a "
                             "projector's is 'clip'; use the mmproj file published with the model, or leave it out")
    assert await served.names() == set()


async def test_an_ollama_registry_pull_keeps_the_projector_layer_as_mmproj(
        make_api: MakeApi, files: dict[str, Path]) -> None:
    with FakeOllama() as registry:
        registry.add_model("library/tiny-vision", "latest", [(MODEL, files[Q4]), (PROJECTOR, files[MMPROJ_F16])])
        served = await make_api(**registry.env(), HF_ENDPOINT="http://127.0.0.1:9")
        status, events = await served.pull("tiny-vision")
        assert status == 200 and events[-1]["status"] == "success", events[-1]
        assert not any("text-only" in e["status"] for e in events)
        info = await served.show("tiny-vision")
    assert sorted(f["path"] for f in info["files"]) == ["mmproj.gguf", "model.gguf"]
    assert {f["path"]: f["size"] for f in info["files"]}["mmproj.gguf"] == files[MMPROJ_F16].stat().st_size
    vision_facts(info, "mmproj.gguf", {"model.gguf": files[Q4]}, "model.gguf")


async def test_imports_from_ollama_and_lm_studio_keep_the_projector_without_copying(
        api: InProcess, tmp_path: Path) -> None:
    ollama, lmstudio = ollama_store(tmp_path / "ollama"), lmstudio_tree(tmp_path / "lmstudio")
    for tool, root, name, projector in (
            ("ollama", ollama.root, "hf.co/tiny-org/Tiny-GGUF:Q8_0", "mmproj.gguf"),
            ("lmstudio", lmstudio.root, "hf.co/lmstudio-community/Tiny-GGUF:Q4_K_M", "mmproj-Tiny-F16.gguf")):
        response = await api.client.post("/api/import", json={"from": tool, "dir": str(root), "models": [name]})
        assert response.status == 200, await response.text()
        done = [json.loads(line) for line in (await response.text()).splitlines()][-1]
        assert done["bytes_copied"] == 0 and done["imported"][0]["notes"] == done["imported"][0]["notes"], done
        info = await api.show(name)
        assert info["capabilities"][:2] == ["completion", "vision"]
        kept = {f["path"]: f for f in info["files"]}[projector]
        assert kept["kind"] == "projector" and kept["source"]["kind"] in ("reflinked", "linked", "symlinked")
    assert not any("text-only" in note for note in done["imported"][0]["notes"])


# --- a real daemon and runner ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with private_daemon(tmp_path_factory.mktemp("vision-daemon")) as running:
        yield running


def greedy(daemon: Daemon, model: str) -> str:
    status, answer = daemon.request("POST", "/api/generate", {
        "model": model, "prompt": "Hello there", "raw": True, "stream": False,
        "options": {"num_predict": 8, "num_ctx": 256, "temperature": 0, "seed": 1}})
    assert status == 200, answer
    return answer["response"]


def test_a_plain_import_keeps_the_projector_beside_it_and_answers_as_without(
        daemon: Daemon, tmp_path: Path, files: dict[str, Path]) -> None:
    alone, beside = tmp_path / "alone", tmp_path / "with-projector"
    alone.mkdir(), beside.mkdir()
    shutil.copy(files[Q4], alone / Q4)
    for name in (Q4, MMPROJ_F16, MMPROJ_Q8):
        shutil.copy(files[name], beside / name)
    daemon.cli("import", str(alone / Q4), "-n", "text-only")
    daemon.cli("import", str(beside / Q4), "-n", "with-vision")
    status, info = daemon.request("POST", "/api/show", {"model": "with-vision"})
    assert sorted(f["path"] for f in info["files"]) == [MMPROJ_F16, Q4]  # F16: no projector at Q4_K_M
    assert "vision" in info["capabilities"]
    status, text_only = daemon.request("POST", "/api/show", {"model": "text-only"})
    assert "vision" not in text_only["capabilities"]
    assert greedy(daemon, "with-vision") == greedy(daemon, "text-only")  # the runner loaded the language model

    shown = daemon.cli("show", "with-vision").stdout
    capabilities = shown.split("  Capabilities")[1].split("\n\n")[0]
    assert "vision" in capabilities
    assert any(MMPROJ_F16 in line and "vision projector" in line for line in shown.splitlines())

    refused = daemon.cli("import", str(beside / MMPROJ_F16), "-n", "just-a-projector", check=False)
    assert refused.returncode != 0
    assert f"{MMPROJ_F16} is a vision projector, not a model: import the model's .gguf file" in refused.stderr


async def test_a_create_from_uploaded_blobs_reads_the_model_and_checks_the_projector(
        served: InProcess, files: dict[str, Path]) -> None:
    """POST /api/create with `files`: the facts are the language model's, and an mmproj among them is checked."""
    digests = {}
    for name in (Q4, MMPROJ_F16, "llama-mmproj"):
        data = files[name].read_bytes()
        digests[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        response = await served.client.post(f"/api/blobs/{digests[name]}", data=data)
        assert response.status == 201, await response.text()
    made = await served.client.post("/api/create", json={
        "model": "uploaded", "files": {Q4: digests[Q4], MMPROJ_F16: digests[MMPROJ_F16]}, "stream": False})
    assert made.status == 200, await made.text()
    shown = await (await served.client.post("/api/show", json={"model": "uploaded"})).json()
    assert "vision" in shown["capabilities"] and shown["details"]["family"] == "llama", shown["details"]
    refused = await served.client.post("/api/create", json={
        "model": "fake-vision", "files": {Q4: digests[Q4], "mmproj-F16.gguf": digests["llama-mmproj"]}, "stream": False})
    assert refused.status == 400 and "is not a vision projector" in (await refused.json())["error"]
    assert await served.names() == {"uploaded:latest"}
