"""Discovery of the models other tools keep (daemon/intake/tools): fixture stores laid out as Ollama, the
Hugging Face cache and LM Studio lay them out; names, files, sizes, sha256s, settings and notes, the
default locations, clear errors, and never a change to the tool's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1.daemon.config import OLLAMA_SERVICE_STORE, first_existing, tool_roots
from r1.daemon.errors import BadRequest
from r1.daemon.intake.tools import Found, NoStoreError, discover
from r1.daemon.options.check import check_options
from tests.support.fakeollama import MODEL, SYSTEM
from tests.support.toolstores import (GO_TEMPLATE, PARAMS_JSON, SYSTEM_PROMPT, HFCache, LMStudioTree, OllamaStore,
                                      file_sha256, hf_cache, hf_snapshot_file, lmstudio_tree, ollama_blob,
                                      ollama_manifest, ollama_store, tree_state)

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)


def by_name(found: list[Found]) -> dict[str, Found]:
    return {model.name: model for model in found}


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory) -> OllamaStore:
    return ollama_store(tmp_path_factory.mktemp("ollama") / "models")


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> HFCache:
    return hf_cache(tmp_path_factory.mktemp("hf") / "hub", tmp_path_factory.mktemp("scratch"))


@pytest.fixture(scope="module")
def lmstudio(tmp_path_factory: pytest.TempPathFactory) -> LMStudioTree:
    return lmstudio_tree(tmp_path_factory.mktemp("lmstudio") / "models")


# --- Ollama ------------------------------------------------------------------------------------------


def test_ollama_tags_share_one_blob_and_bring_their_settings(ollama: OllamaStore) -> None:
    found = by_name(discover("ollama", ollama.root))
    assert sorted(found) == ["hf.co/tiny-org/Tiny-GGUF:Q8_0", "registry.ollama.ai/someone/adapted:v1",
                             "tiny:1b", "tiny:latest"]
    latest, one_b = found["tiny:latest"], found["tiny:1b"]
    blob = ollama.root / "blobs" / f"sha256-{ollama.gguf_sha256}"
    for model in (latest, one_b):
        assert model.format == "gguf" and model.importable and model.size == ollama.gguf_size
        (file,) = model.files
        assert (file.path, file.source, file.size, file.sha256) == ("model.gguf", blob, ollama.gguf_size, ollama.gguf_sha256)
        assert file_sha256(file.source) == file.sha256
        assert model.settings["system"] == SYSTEM_PROMPT
        # r1's options as a request's are checked; penalize_newline is not one of them
        assert model.settings["parameters"] == check_options({k: PARAMS_JSON[k] for k in ("temperature", "stop")})
        assert model.notes[0] == "left out parameters r1 does not use: penalize_newline"
    assert latest.where == str(ollama.manifests["tiny:latest"])
    assert "template" not in latest.settings
    assert one_b.settings["template"].startswith("{# r1: converted from an Ollama Go template")
    assert "<|user|>" in one_b.settings["template"] and "<|user|>" in GO_TEMPLATE


def test_ollama_template_r1_cannot_convert_is_left_out_and_the_projector_kept(ollama: OllamaStore) -> None:
    model = by_name(discover("ollama", ollama.root))["hf.co/tiny-org/Tiny-GGUF:Q8_0"]
    assert model.importable and model.settings == {} and model.files[0].sha256 != ollama.gguf_sha256
    gguf, projector = model.files
    assert gguf.sha256 == file_sha256(gguf.source)
    assert (projector.path, projector.sha256) == ("mmproj.gguf", ollama.projector_sha256)
    assert projector.source == ollama.root / "blobs" / f"sha256-{ollama.projector_sha256}"
    (template_note,) = model.notes
    assert template_note.startswith("kept the model file's own chat template: Ollama's template could not be converted")
    assert "{{ template }} is not supported" in template_note


def test_ollama_adapter_model_is_listed_as_not_importable(ollama: OllamaStore) -> None:
    model = by_name(discover("ollama", ollama.root))["registry.ollama.ai/someone/adapted:v1"]
    assert not model.importable and model.files == () and "LoRA adapter" in model.problem


def test_ollama_missing_or_truncated_blob_and_foreign_registry_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "models"
    system = ollama_blob(root, b"Be brief.")
    gone = ollama_blob(root, b"GGUF that was deleted")
    (root / "blobs" / f"sha256-{gone['digest'][7:]}").unlink()
    cut = ollama_blob(root, b"GGUF cut short")
    ollama_manifest(root, "registry.ollama.ai", "library", "gone", "latest", [(MODEL, gone), (SYSTEM, system)])
    ollama_manifest(root, "registry.ollama.ai", "library", "cut", "latest", [(MODEL, {**cut, "size": 1000})])
    ollama_manifest(root, "example.com", "team", "model", "v2", [(MODEL, system)])
    (root / "manifests" / "registry.ollama.ai" / "library" / "junk").mkdir()
    (root / "manifests" / "registry.ollama.ai" / "library" / "junk" / "latest").write_text("{not json")
    found = by_name(discover("ollama", root))
    assert sorted(found) == ["cut:latest", "example.com/team/model:v2", "gone:latest", "junk:latest"]
    assert "is missing from Ollama's store" in found["gone:latest"].problem
    assert f"sha256-{gone['digest'][7:]}" in found["gone:latest"].problem
    assert "holds 14 bytes where the manifest says 1000" in found["cut:latest"].problem
    assert "invalid model name" in found["example.com/team/model:v2"].problem
    assert "is not one r1 can read" in found["junk:latest"].problem
    assert all(model.files == () for model in found.values())


# --- the Hugging Face cache ---------------------------------------------------------------------------


def test_hf_cache_snapshots_gguf_and_mlx(hf: HFCache) -> None:
    found = by_name(discover("hf", hf.root))
    old_name = f"hf.co/tiny-org/Tiny-GGUF:Q4_K_M-{hf.old_commit[:8]}"
    # bert has neither GGUF nor MLX; the third snapshot's GGUF is main's blob: no new model
    assert sorted(found) == ["hf.co/mlx-community/tiny-mlx:mlx", "hf.co/tiny-org/Tiny-GGUF:Q4_K_M", old_name]
    main, old = found["hf.co/tiny-org/Tiny-GGUF:Q4_K_M"], found[old_name]
    repo = hf.root / "models--tiny-org--Tiny-GGUF"
    for model, (sha, size), commit in ((main, hf.main_gguf, hf.main_commit), (old, hf.old_gguf, hf.old_commit)):
        (file,) = model.files
        assert model.format == "gguf" and model.importable and model.size == size
        assert (file.path, file.source, file.size, file.sha256) == ("tiny-Q4_K_M.gguf", repo / "blobs" / sha, size, sha)
        assert file_sha256(file.source) == sha and model.where == str(repo / "snapshots" / commit)
    assert main.notes == () and old.notes == (f"from the older snapshot {hf.old_commit}: "
                                              "hf.co/tiny-org/Tiny-GGUF:Q4_K_M is the one refs/main points at",)
    mlx = found["hf.co/mlx-community/tiny-mlx:mlx"]
    assert mlx.format == "mlx" and mlx.settings == {}
    assert {f.path: (f.sha256, f.size) for f in mlx.files} == hf.mlx_files
    assert "model.safetensors" in hf.mlx_files and hf.mlx_files["config.json"][0] is None
    for file in mlx.files:
        assert file.source.parent.name == "blobs" and not file.source.is_symlink()
        if file.sha256:
            assert file_sha256(file.source) == file.sha256


def test_hf_cache_link_to_a_missing_blob_is_reported(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--Broken-GGUF"
    sha = hf_snapshot_file(repo, "f" * 40, "broken-Q4_0.gguf", b"GGUF partial", lfs=True)
    (repo / "blobs" / sha).unlink()
    (model,) = discover("hf", tmp_path / "hub")
    assert model.name == "hf.co/org/Broken-GGUF:Q4_0" and not model.importable
    assert "is a link to a file that is missing" in model.problem and "broken-Q4_0.gguf" in model.problem


# --- LM Studio ---------------------------------------------------------------------------------------


def test_lmstudio_ggufs_split_shards_and_mlx(lmstudio: LMStudioTree) -> None:
    found = by_name(discover("lmstudio", lmstudio.root))
    assert sorted(found) == sorted([*lmstudio.ggufs, "hf.co/mlx-community/tiny-mlx:mlx"])  # no mmproj model
    for name, paths in lmstudio.ggufs.items():
        model = found[name]
        assert model.format == "gguf" and model.importable and model.where == str(paths[0].parent)
        assert [(f.path, f.source, f.size, f.sha256) for f in model.files] == \
            [(p.name, p, p.stat().st_size, None) for p in paths]
        assert model.size == sum(p.stat().st_size for p in paths)
    assert len(found["hf.co/lmstudio-community/Split-GGUF:Q8_0"].files) == 2
    mlx = found["hf.co/mlx-community/tiny-mlx:mlx"]
    assert mlx.format == "mlx" and {f.path for f in mlx.files} == \
        {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    assert all(f.source == lmstudio.mlx_folder / f.path and f.sha256 is None for f in mlx.files)


# --- read only, clear errors ----------------------------------------------------------------------------


def test_discovery_changes_nothing_in_the_tools_stores(ollama: OllamaStore, hf: HFCache, lmstudio: LMStudioTree) -> None:
    roots = {"ollama": ollama.root, "hf": hf.root, "lmstudio": lmstudio.root}
    before = {tool: tree_state(root) for tool, root in roots.items()}
    assert all(len(state) > 10 for state in before.values())
    for tool, root in roots.items():
        assert discover(tool, root)
    assert {tool: tree_state(root) for tool, root in roots.items()} == before


@pytest.mark.parametrize(("tool", "expected"), [
    ("ollama", "Ollama's store holds manifests/"),
    ("hf", "a Hugging Face cache holds models--{org}--{repo} folders"),
    ("lmstudio", "LM Studio's models folder holds {publisher}/{repo}/ folders"),
])
def test_a_missing_or_empty_root_is_a_clear_error(tmp_path: Path, tool: str, expected: str) -> None:
    with pytest.raises(NoStoreError) as missing:
        discover(tool, tmp_path / "nowhere")
    assert str(missing.value).startswith(f"{tmp_path / 'nowhere'} does not exist: ") and expected in str(missing.value)
    assert missing.value.status == 400 and isinstance(missing.value, BadRequest)
    (tmp_path / "empty" / "manifests").mkdir(parents=True)
    with pytest.raises(NoStoreError) as empty:
        discover(tool, tmp_path / "empty")
    assert str(empty.value).startswith(f"{tmp_path / 'empty'} ") and expected in str(empty.value)
    assert "does not exist" not in str(empty.value)


def test_an_unknown_tool_is_refused() -> None:
    with pytest.raises(BadRequest, match="unknown tool 'gpt4all': r1 imports from ollama, hf, lmstudio"):
        discover("gpt4all", Path("/"))


# --- default locations ------------------------------------------------------------------------------


def test_default_roots_follow_each_tools_variables() -> None:
    home = Path("/home/ann")
    plain = tool_roots({}, home, "linux")
    assert plain == {"ollama": [home / ".ollama/models", OLLAMA_SERVICE_STORE],
                     "hf": [home / ".cache/huggingface/hub"],
                     "lmstudio": [home / ".lmstudio/models", home / ".cache/lm-studio/models"]}
    assert tool_roots({}, home, "darwin")["ollama"] == [home / ".ollama/models"]
    assert tool_roots({"OLLAMA_MODELS": "/data/ollama"}, home, "linux")["ollama"] == [Path("/data/ollama")]
    assert tool_roots({"HF_HOME": "/data/hf"}, home)["hf"] == [Path("/data/hf/hub")]
    assert tool_roots({"XDG_CACHE_HOME": "/c"}, home)["hf"] == [Path("/c/huggingface/hub")]
    assert tool_roots({"HF_HUB_CACHE": "/hub", "HF_HOME": "/data/hf"}, home)["hf"] == [Path("/hub")]
    assert tool_roots({"HUGGINGFACE_HUB_CACHE": "/old", "HF_HOME": "/data/hf"}, home)["hf"] == [Path("/old")]


def test_config_reads_the_users_environment_and_the_first_existing_root_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "o"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    roots = tool_roots()  # os.environ and its HOME
    assert roots["ollama"] == [tmp_path / "o"] and roots["hf"] == [tmp_path / "hf" / "hub"]
    lms = roots["lmstudio"]
    assert first_existing(lms) == tmp_path / ".lmstudio" / "models"  # neither exists: where r1 looked first
    (tmp_path / ".cache" / "lm-studio" / "models").mkdir(parents=True)
    assert first_existing(lms) == tmp_path / ".cache" / "lm-studio" / "models"


def test_incomplete_split_gguf_and_mlx_with_a_missing_blob_are_reported(tmp_path: Path) -> None:
    lms = tmp_path / "lms"
    tree = lmstudio_tree(lms)
    shards = tree.ggufs["hf.co/lmstudio-community/Split-GGUF:Q8_0"]
    shards[1].unlink()
    repo = tmp_path / "hub" / "models--mlx-community--tiny-mlx"
    for file in sorted(tree.mlx_folder.iterdir()):
        hf_snapshot_file(repo, "1" * 40, file.name, file.read_bytes(), lfs=file.suffix == ".safetensors")
    (repo / "snapshots" / ("1" * 40) / "tokenizer.json").resolve().unlink()
    split = by_name(discover("lmstudio", lms))["hf.co/lmstudio-community/Split-GGUF:Q8_0"]
    assert split.problem == (f"the Q8_0 GGUF is split in 2 files, and {shards[0].parent} holds 1 of them: "
                             "finish the download with the tool first")
    (mlx,) = discover("hf", tmp_path / "hub")
    assert mlx.name == "hf.co/mlx-community/tiny-mlx:mlx" and "tokenizer.json is a link to a file that is missing" in mlx.problem
