"""r1.daemon.metadata against real files: the Gemma 3 GGUF, tiny GGUFs (whole and split), MLX folders, corrupt inputs."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.inprocess import InProcess
from r1.daemon.errors import R1Error
from r1.daemon.metadata import (
    MetadataError,
    ModelFacts,
    model_files,
    read_gguf_metadata,
    read_metadata,
    read_mlx_metadata,
)
from tests.support.tinymodels import (DEFAULT_TEMPLATE, THINK_TEMPLATE, gemma_gguf, mlx_parameter_count,
                                      tiny_gguf_parameter_count, write_split_gguf, write_tiny_gguf,
                                      write_tiny_mlx_folder)


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    # The same cache directory conftest.py uses, so the 253 MB file is assembled once.
    return gemma_gguf(Path(os.environ.get("R1_TEST_CACHE", Path(tempfile.gettempdir()) / "r1-test-models")))


# --- the real Gemma 3 270M Q4_K_M ----------------------------------------------------------


def test_gemma_metadata(gemma_path: Path) -> None:
    assert gemma_path.stat().st_size == 253_113_024
    assert model_files(gemma_path) == ("gguf", [gemma_path])
    meta = read_metadata("gguf", [gemma_path])
    assert meta == ModelFacts(
        format="gguf",
        architecture="gemma3",
        parameter_count=268_098_176,
        parameter_size="268.10M",
        quantization="Q4_K_M",
        context_length=32768,
        chat_template=None,  # this GGUF ships without one (FACTS.md)
        name="Gemma 3 270m",
        license="gemma",
        family="gemma3",
        embedding_length=640,
        block_count=18,
        head_count=4,
        head_count_kv=1,
        key_length=256,
        value_length=256,
        vocab_size=262_144,
        # The tied output matrix (token_embd, Q8_0) counts: llama.cpp multiplies by a second copy of it.
        matmul_weights={"Q8_0": 179_824_640, "Q5_0": 43_591_680, "Q4_K": 13_271_040, "Q6_K": 9_676_800},
        fim_tokens=False,  # a chat model: no fill-in-the-middle tokens (and no pooling_type: not an embedder)
    )
    assert ModelFacts.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta, "facts survive the index's JSON"


def test_gemma_header_is_read_quickly(gemma_path: Path) -> None:
    # Reading it with gguf.GGUFReader takes ~26 s (its 262k-token vocabulary); ours ~0.1 s.
    start = time.perf_counter()
    read_gguf_metadata([gemma_path])
    assert time.perf_counter() - start < 3


def test_truncated_gguf_header(gemma_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with gemma_path.open("rb") as f:
        cut.write_bytes(f.read(100))
    with pytest.raises(MetadataError, match=r"cut\.gguf is truncated"):
        read_gguf_metadata([cut])


# --- tiny GGUFs ----------------------------------------------------------------------------


@pytest.mark.unit
def test_tiny_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", name="tiny-a", context_length=128)
    meta = read_gguf_metadata([path])
    assert meta.format == "gguf"
    assert meta.architecture == meta.family == "llama"
    assert meta.quantization == "F32"
    assert meta.chat_template == DEFAULT_TEMPLATE
    assert meta.name == "tiny-a"
    assert meta.license is None
    assert meta.context_length == 128
    assert (meta.embedding_length, meta.block_count, meta.head_count, meta.head_count_kv) == (64, 2, 4, 2)
    # The file carries no key/value length: the default is width / heads, as in llama.cpp.
    assert (meta.key_length, meta.value_length) == (16, 16)
    assert meta.parameter_count == tiny_gguf_parameter_count() == 107_200
    assert meta.parameter_size == "0.11M"


@pytest.mark.unit
def test_tiny_gguf_options(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=1)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=2, chat_template=THINK_TEMPLATE, n_layers=3)
    none = write_tiny_gguf(tmp_path / "none.gguf", chat_template=None)
    assert a.read_bytes() != write_tiny_gguf(tmp_path / "a2.gguf", seed=2).read_bytes()
    meta = read_gguf_metadata([b])
    assert meta.chat_template == THINK_TEMPLATE
    assert meta.chat_template.endswith("{{ '<｜Assistant｜><think>\\n' }}{% endif %}")
    assert meta.block_count == 3
    assert meta.parameter_count == tiny_gguf_parameter_count(n_layers=3)
    assert read_gguf_metadata([none]).chat_template is None


@pytest.mark.unit
def test_gguf_without_file_type_names_the_main_tensor_type(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "t.gguf")
    data = bytearray(path.read_bytes())
    key = b"general.file_type"
    at = data.index(key) + len(key)
    assert data[at : at + 8] == (4).to_bytes(4, "little") + (0).to_bytes(4, "little")  # UINT32, ALL_F32
    data[at + 4 : at + 8] = (1024).to_bytes(4, "little")  # LLAMA_FTYPE_GUESSED
    path.write_bytes(bytes(data))
    assert read_gguf_metadata([path]).quantization == "F32"


@pytest.mark.unit
def test_gguf_with_truncated_tensor_data(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "t.gguf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MetadataError, match=r"t\.gguf is truncated: its tensors need"):
        read_metadata(*model_files(path))


# --- split GGUFs ---------------------------------------------------------------------------


@pytest.mark.unit
def test_split_gguf(tmp_path: Path) -> None:
    shards = write_split_gguf(tmp_path, "model", shards=3, seed=7)
    assert [p.name for p in shards] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for shard in shards:
        assert model_files(shard) == ("gguf", shards)
    whole = read_gguf_metadata([write_tiny_gguf(tmp_path / "whole.gguf", seed=7)])
    split = read_metadata("gguf", shards)
    assert split.parameter_count == whole.parameter_count == tiny_gguf_parameter_count()
    # Every shard holds some tensors: each alone counts less than the whole.
    assert all(0 < _elements_in(s) < whole.parameter_count for s in shards)
    assert split == whole


def _elements_in(shard: Path) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(shard).tensors)


@pytest.mark.unit
def test_split_gguf_carries_split_keys(tmp_path: Path) -> None:
    from gguf import GGUFReader

    shards = write_split_gguf(tmp_path, "m", shards=2)
    for number, shard in enumerate(shards):
        fields = GGUFReader(shard).fields
        assert fields["split.no"].contents() == number
        assert fields["split.count"].contents() == 2
        assert fields["split.tensors.count"].contents() == 21
    assert "tokenizer.chat_template" in GGUFReader(shards[0]).fields


@pytest.mark.unit
def test_split_gguf_missing_shard(tmp_path: Path) -> None:
    shards = write_split_gguf(tmp_path, "m", shards=3)
    shards[1].unlink()
    with pytest.raises(MetadataError, match=r"m-00002-of-00003\.gguf is missing"):
        model_files(shards[0])
    with pytest.raises(MetadataError, match=r"first of 3 GGUF shards, but 1 file"):
        read_gguf_metadata([shards[0]])


@pytest.mark.unit
def test_gguf_name_that_only_looks_split(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m-1-of-2.gguf")
    assert model_files(path) == ("gguf", [path])
    with pytest.raises(MetadataError, match="impossible shard number"):
        model_files(write_tiny_gguf(tmp_path / "m-00003-of-00002.gguf"))


# --- MLX folders ---------------------------------------------------------------------------


@pytest.mark.unit
def test_mlx_folder_float(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "float")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.safetensors").write_bytes(b"not part of the model")
    (folder / "logo.png").write_bytes(b"\x89PNG")
    fmt, files = model_files(folder)
    assert fmt == "mlx"
    assert [p.name for p in files] == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    meta = read_metadata(fmt, files)
    assert meta.format == "mlx"
    assert meta.architecture == meta.family == "llama"
    assert meta.quantization == "F32"
    assert meta.context_length == 512
    assert meta.chat_template == DEFAULT_TEMPLATE
    assert (meta.name, meta.license) == (None, None)
    assert (meta.embedding_length, meta.block_count, meta.head_count, meta.head_count_kv) == (64, 2, 4, 2)
    assert (meta.key_length, meta.value_length) == (16, 16)
    assert meta.parameter_count == mlx_parameter_count() == 107_200


@pytest.mark.unit
@pytest.mark.parametrize("bits", [4, 8])
def test_mlx_folder_quantized(tmp_path: Path, bits: int) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "q", seed=3, quantized_bits=bits)
    fmt, files = model_files(folder)
    assert "README.md" not in [p.name for p in files] and ".gitattributes" not in [p.name for p in files]
    meta = read_metadata(fmt, files)
    assert meta.quantization == f"{bits}bit"
    assert meta.context_length == 512
    # Packed U32 weights are unpacked; scales and biases are not parameters.
    assert meta.parameter_count == mlx_parameter_count()


@pytest.mark.unit
def test_mlx_per_layer_quantization_bits(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "q", quantized_bits=4)
    config = json.loads((folder / "config.json").read_text())
    config["quantization"]["lm_head"] = {"group_size": 64, "bits": 8}  # mlx-lm's mixed recipes
    (folder / "config.json").write_text(json.dumps(config))
    # lm_head holds 259 x 64 values but was packed at 4 bits: read as 8 bits, it counts half.
    assert read_mlx_metadata(folder).parameter_count == mlx_parameter_count() - 259 * 64 // 2


@pytest.mark.unit
def test_mlx_chat_template_sources(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert read_mlx_metadata(folder).chat_template == "D"
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": "J"}))
    assert read_mlx_metadata(folder).chat_template == "J"
    (folder / "chat_template.jinja").write_text("JINJA")
    assert read_mlx_metadata(folder).chat_template == "JINJA"
    assert [p.name for p in model_files(folder)[1]][:2] == ["chat_template.jinja", "chat_template.json"]


@pytest.mark.unit
def test_mlx_text_config(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    text = {k: config.pop(k) for k in ("max_position_embeddings", "hidden_size", "num_attention_heads")}
    config["text_config"] = text | {"head_dim": 32}
    (folder / "config.json").write_text(json.dumps(config))
    meta = read_mlx_metadata(folder)
    assert (meta.context_length, meta.embedding_length, meta.head_count, meta.key_length) == (512, 64, 4, 32)


@pytest.mark.unit
def test_mlx_folder_without_config(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(MetadataError, match="config.json is missing"):
        model_files(folder)
    with pytest.raises(MetadataError, match="config.json is missing"):
        read_mlx_metadata(folder)


# --- what cannot be imported ---------------------------------------------------------------


@pytest.mark.unit
def test_text_file_named_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("just some text, not a model\n")
    with pytest.raises(MetadataError, match=r"notes\.gguf is not a GGUF file \(bad magic\)") as info:
        read_metadata(*model_files(path))
    assert isinstance(info.value, ValueError) and not isinstance(info.value, R1Error), "not an HTTP error"
    (tmp_path / "empty.gguf").touch()
    with pytest.raises(MetadataError, match=r"empty\.gguf is empty"):
        read_gguf_metadata([tmp_path / "empty.gguf"])


@pytest.mark.unit
def test_safetensors_with_huge_header_length(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "m")
    bad = folder / "model.safetensors"
    bad.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(MetadataError, match=r"model\.safetensors is not a valid safetensors file"):
        read_metadata(*model_files(folder))
    bad.write_bytes((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(MetadataError, match=r"model\.safetensors is truncated"):
        read_mlx_metadata(folder)
    bad.write_bytes((4).to_bytes(8, "little") + b"{no}")
    with pytest.raises(MetadataError, match=r"model\.safetensors is not a valid safetensors file: its header is not JSON"):
        read_mlx_metadata(folder)


@pytest.mark.unit
def test_safetensors_with_cut_data(tmp_path: Path) -> None:
    folder = write_tiny_mlx_folder(tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(MetadataError, match=r"model\.safetensors is truncated: tensor 'lm_head\.weight'"):
        read_mlx_metadata(folder)


@pytest.mark.unit
def test_folder_of_gguf_files(tmp_path: Path) -> None:
    for i in range(7):
        write_tiny_gguf(tmp_path / f"model-q{i}.gguf", seed=i)
    with pytest.raises(MetadataError, match=r"pass the \.gguf file itself \(model-q0\.gguf, .*model-q4\.gguf and 2 more\)"):
        model_files(tmp_path)


@pytest.mark.unit
def test_other_things_r1_cannot_import(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="r1 imports a .gguf file"):
        model_files(tmp_path)  # an empty folder
    (tmp_path / "model.bin").write_bytes(b"pytorch")
    with pytest.raises(MetadataError, match=r"model\.bin is not a model file r1 can import"):
        model_files(tmp_path / "model.bin")
    with pytest.raises(MetadataError, match="no such file or folder"):
        model_files(tmp_path / "absent.gguf")
    folder = write_tiny_mlx_folder(tmp_path / "m")
    with pytest.raises(MetadataError, match=rf"pass its folder, {folder}"):
        model_files(folder / "model.safetensors")
    with pytest.raises(MetadataError, match="unknown model format"):
        read_metadata("onnx", [folder / "model.safetensors"])


@pytest.mark.unit
def test_gguf_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "Model.GGUF")
    assert model_files(path) == ("gguf", [path])


async def test_the_api_answers_a_metadata_error_with_a_400(api: InProcess) -> None:
    """MetadataError knows nothing of HTTP; where the API meets it, it is the client's 400."""
    data = b"just some text, not a model\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await api.client.post(f"/api/blobs/{digest}", data=data)).status == 201
    body = {"model": "broken", "files": {"notes.gguf": digest}}
    response = await api.client.post("/api/create", json={**body, "stream": False})
    assert response.status == 400 and "notes.gguf is not a GGUF file (bad magic)" in (await response.json())["error"]
    response = await api.client.post("/api/create", json=body)
    last = json.loads((await response.text()).splitlines()[-1])  # the stream had started: the error comes in-band
    assert response.status == 200 and "notes.gguf is not a GGUF file (bad magic)" in last["error"]
