"""`r1 import --from ollama|hf|lmstudio` end to end: a real daemon imports from fixture stores laid out
as each tool lays them out, links every byte (0 copied), leaves the other tool's files exactly as they
were, refuses a file that changed after the import and a corrupt blob, and a pull takes a file the
Hugging Face cache already holds without downloading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakehub import FakeHub
from tests.support.toolstores import hf_cache, lmstudio_tree, ollama_store, tree_state


def home(tmp_path: Path) -> Path:
    """The private daemon's own folder, apart from the tool stores it imports from."""
    (tmp_path / "r1").mkdir()
    return tmp_path / "r1"


def imported(daemon: Daemon, *args: str) -> dict[str, Any]:
    return json.loads(daemon.cli("import", "--json", *args).stdout)


def generates(daemon: Daemon, model: str) -> tuple[int, Any]:
    # Greedy: sampling, a random tiny model now and then draws its end token first and answers nothing.
    return daemon.request("POST", "/api/generate", {"model": model, "prompt": "Hello", "raw": True, "stream": False,
                                                     "options": {"num_predict": 2, "num_ctx": 256, "temperature": 0}})


@pytest.fixture()
def stores(tmp_path: Path) -> dict[str, Path]:
    roots = {"ollama": tmp_path / "ollama", "hf": tmp_path / "hf", "lmstudio": tmp_path / "lmstudio"}
    ollama_store(roots["ollama"])
    (tmp_path / "scratch").mkdir()
    hf_cache(roots["hf"], tmp_path / "scratch")
    lmstudio_tree(roots["lmstudio"])
    return roots


@pytest.mark.parametrize(("tool", "model"), [("ollama", "tiny:latest"), ("hf", "hf.co/tiny-org/Tiny-GGUF:Q4_K_M"),
                                             ("lmstudio", None)])
def test_import_from_each_tool_links_every_byte_and_changes_nothing(tmp_path: Path, stores: dict[str, Path],
                                                                    tool: str, model: str | None) -> None:
    root = stores[tool]
    before = tree_state(root)
    with private_daemon(home(tmp_path)) as daemon:
        listed = imported(daemon, "--from", tool, "--dir", str(root))
        importable = [m["name"] for m in listed["models"] if "problem" not in m]
        assert importable and all(m["size"] > 0 for m in listed["models"] if "problem" not in m)
        assert daemon.cli("list").stdout.count("\n") == 1  # a listing imports nothing
        done = imported(daemon, "--from", tool, "--dir", str(root), "--all")
        assert [m["name"] for m in done["imported"]] == importable
        assert done["bytes_copied"] == 0 and done["bytes_linked"] > 0
        names = daemon.cli("list").stdout
        assert all(name.split(":")[0] in names for name in importable)
        gguf = model or next(n for n in importable if not n.endswith(":mlx"))
        status, answer = generates(daemon, gguf)
        assert status == 200 and answer["eval_count"] >= 1, answer
        shown = daemon.cli("show", gguf).stdout
        assert f"from {root}" in shown  # each file says which of the tool's files it is
        for name in importable:
            daemon.cli("rm", name)
        assert daemon.cli("list").stdout.count("\n") == 1
    assert tree_state(root) == before  # byte for byte and mode for mode, links and all, after rm too


def test_ollama_settings_come_along_and_a_changed_or_corrupt_blob_is_refused(tmp_path: Path,
                                                                            stores: dict[str, Path]) -> None:
    root = stores["ollama"]
    with private_daemon(home(tmp_path)) as daemon:
        imported(daemon, "--from", "ollama", "--dir", str(root), "tiny:latest")
        status, shown = daemon.request("POST", "/api/show", {"model": "tiny:latest"})
        assert shown["system"] and "temperature" in shown["parameters"]  # Ollama's system and params layers
        # The other tool rewrites its blob after the import: r1 refuses to serve what it did not import.
        blob = next(p for p in (root / "blobs").iterdir() if p.stat().st_size == shown["size"])
        blob.chmod(0o644)
        with blob.open("ab") as extra:
            extra.write(b"\0")
        status, refused = generates(daemon, "tiny:latest")
        assert status == 409 and "changed since it was imported from" in refused["error"], refused
        assert "cannot be served" in daemon.cli("list").stdout
        # A blob whose bytes do not match the sha256 it is named by is rejected at import (unless --trust).
        data = bytearray(blob.read_bytes()[:-1])
        data[100] ^= 0xFF
        blob.write_bytes(bytes(data))
        daemon.cli("rm", "tiny:latest")
        corrupt = daemon.cli("import", "--from", "ollama", "--dir", str(root), "tiny:latest", check=False)
        assert corrupt.returncode == 1 and "corrupt" in corrupt.stderr


def test_trust_skips_the_hash_and_says_so(tmp_path: Path, stores: dict[str, Path]) -> None:
    with private_daemon(home(tmp_path)) as daemon:
        done = daemon.cli("import", "--from", "ollama", "--dir", str(stores["ollama"]), "tiny:latest", "--trust").stdout
        assert "imported tiny:latest" in done and "not hashed (--trust" in done and "0 B copied" in done
        assert generates(daemon, "tiny:latest")[0] == 200


def test_a_pull_takes_a_file_the_hugging_face_cache_holds_without_downloading_it(
        tmp_path: Path, stores: dict[str, Path], hub: FakeHub) -> None:
    cache = stores["hf"]
    gguf = next((cache / "models--tiny-org--Tiny-GGUF" / "snapshots").glob("a*/tiny-Q4_K_M.gguf")).resolve()
    hub.add_repo("tiny-org/Tiny-GGUF", {"tiny-Q4_K_M.gguf": gguf.read_bytes()})
    before = tree_state(cache)
    with private_daemon(home(tmp_path), **hub.env(), HF_HUB_CACHE=str(cache)) as daemon:
        hub.reset_counters()
        pulled = daemon.cli("pull", "hf.co/tiny-org/Tiny-GGUF:Q4_K_M")
        assert "found tiny-Q4_K_M.gguf in the Hugging Face cache" in pulled.stderr + pulled.stdout
        assert hub.served_bytes("tiny-org/Tiny-GGUF", "tiny-Q4_K_M.gguf") == 0
        assert generates(daemon, "hf.co/tiny-org/Tiny-GGUF:Q4_K_M")[0] == 200
    assert tree_state(cache) == before
