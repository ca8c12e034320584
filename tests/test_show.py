"""`r1 show` as an Ollama user knows it: its sections, its one-field flags, an embedding model named as
one, an aligned files table; and /api/tags listing each model's capabilities. Each through the real `r1`
against one real daemon holding Gemma (base), a tiny BERT embedder, a tiny MLX folder and a variant
made with a Modelfile."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.tinymodels import TEST_CACHE, gemma_gguf, write_tiny_bert, write_tiny_mlx_folder

MODELFILE = '''FROM gemma3:270m
TEMPLATE """{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}
{{ m.content }}<end_of_turn>
{% endfor %}<start_of_turn>model
"""
SYSTEM """You are Mario.
You answer in one sentence.
You never give up."""
PARAMETER stop "<end_of_turn>"
PARAMETER temperature 0.5
PARAMETER num_keep 24
LICENSE """MIT License
Copyright (c) the authors
Permission is hereby granted"""
'''


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("show")
    with private_daemon(root) as daemon:
        daemon.cli("import", str(gemma_gguf(TEST_CACHE)), "--name", "gemma3:270m")
        daemon.cli("import", str(write_tiny_bert(root / "bert.gguf")), "--name", "bert")
        daemon.cli("import", str(write_tiny_mlx_folder(root / "mlx", quantized_bits=4)), "--name", "tiny-mlx:4bit")
        (root / "Modelfile").write_text(MODELFILE)
        daemon.cli("create", "mario", "-f", str(root / "Modelfile"))
        yield daemon


def sections(text: str) -> dict[str, list[str]]:
    """`r1 show`'s output as {section title: its rows, indentation stripped}."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if re.match(r"^  \S", line):
            found[line.strip()] = rows = []
        elif line.strip():
            rows.append(line[4:])
    return found


def test_tags_list_each_models_capabilities(shown: Daemon) -> None:
    status, tags = shown.request("GET", "/api/tags")
    assert status == 200
    capabilities = {m["name"]: m["capabilities"] for m in tags["models"]}
    assert capabilities == {"gemma3:270m": ["completion"], "bert:latest": ["embedding"],
                            "tiny-mlx:4bit": ["completion"], "mario:latest": ["completion"]}
    for name, listed in capabilities.items():  # the same list as /api/show's
        assert shown.request("POST", "/api/show", {"model": name})[1]["capabilities"] == listed


def test_show_has_ollamas_sections_then_r1s(shown: Daemon) -> None:
    text = shown.cli("show", "mario").stdout
    found = sections(text)
    assert [title.split(" (")[0] for title in found] == [
        "Model", "Capabilities", "Parameters", "System", "License", "Memory", "Files"]
    model = dict(row.rsplit(None, 1) for row in found["Model"])
    assert {key: model[key] for key in ("architecture", "parameters", "quantization")} == {
        "architecture": "gemma3", "parameters": "268.10M", "quantization": "Q4_K_M"}
    assert model["context length"] == "32768" and model["embedding length"] == "640"
    assert found["Capabilities"] == ["completion"]
    assert sorted(row.split() for row in found["Parameters"]) == [
        ["num_keep", "24"], ["stop", '"<end_of_turn>"'], ["temperature", "0.5"]]
    # The first lines, as Ollama shows them, and "..." for the rest.
    assert found["System"] == ["You are Mario.", "You answer in one sentence.", "..."]
    assert found["License"] == ["MIT License", "Copyright (c) the authors", "..."]
    assert found["Memory"][0].startswith("about ") and "at num_ctx 4096" in found["Memory"][0]


def test_an_embedding_model_is_named_as_one(shown: Daemon) -> None:
    found = sections(shown.cli("show", "bert").stdout)
    assert found["Capabilities"] == ["embedding"]
    assert not any("chat template" in row for row in found["Model"])  # it chats with nothing: no template to miss
    assert any(re.fullmatch(r"embedding length +32", row) for row in found["Model"])


def test_the_files_table_lines_up(shown: Daemon) -> None:
    found = sections(shown.cli("show", "tiny-mlx:4bit").stdout)
    [files] = [rows for title, rows in found.items() if title.startswith("Files")]
    assert [row.split()[0] for row in files] == ["config.json", "model.safetensors", "tokenizer.json",
                                                 "tokenizer_config.json"]
    # Each column starts at the same place on every row: the sizes, the digests, where each file came from.
    for column in (r"\d", "sha256:", "linked from"):
        starts = {re.search(column, row).start() for row in files}
        assert len(starts) == 1, f"{column!r} starts at {starts}:\n" + "\n".join(files)


def test_one_field_flags_print_that_field_alone(shown: Daemon, tmp_path: Path) -> None:
    system = shown.cli("show", "mario", "--system").stdout
    assert system == "You are Mario.\nYou answer in one sentence.\nYou never give up.\n"
    assert shown.cli("show", "mario", "--license").stdout.startswith("MIT License\nCopyright (c) the authors\n")
    assert shown.cli("show", "mario", "--template").stdout.startswith("{{ bos_token }}{% for m in messages %}")
    parameters = shown.cli("show", "mario", "--parameters").stdout
    assert ["stop", '"<end_of_turn>"'] in [line.split() for line in parameters.splitlines()]
    assert shown.cli("show", "gemma3:270m", "--template").stdout == ""  # none: nothing printed, as Ollama's
    both = shown.cli("show", "mario", "--system", "--license", check=False)
    assert both.returncode == 1 and "only one of --modelfile" in both.stderr and both.stdout == ""
    # The Modelfile makes the same model again, as `ollama show --modelfile` does.
    (tmp_path / "Modelfile").write_text(shown.cli("show", "mario", "--modelfile").stdout)
    shown.cli("create", "mario-again", "-f", str(tmp_path / "Modelfile"))
    original, again = (json.loads(shown.cli("show", name, "--json").stdout) for name in ("mario", "mario-again"))
    for field in ("template", "system", "license", "parameters", "capabilities", "details"):
        assert again[field] == original[field], field


def test_search_tells_an_imported_model_from_the_catalogs(shown: Daemon) -> None:
    # The store's gemma3:270m is the base model imported from a file; the catalog's is the instruction-tuned
    # one from the Hub: the PULLED column must not claim it is here.
    [row] = [line for line in shown.cli("search", "gemma3:270m").stdout.splitlines() if line.startswith("gemma3:270m")]
    assert row.split()[:4] == ["gemma3:270m", "unsloth/gemma-3-270m-it-GGUF", "Q4_K_M", "imported"]
    [entry] = [m for m in json.loads(shown.cli("search", "--json").stdout) if m["name"] == "gemma3:270m"]
    assert entry["installed"] and entry["imported"]
