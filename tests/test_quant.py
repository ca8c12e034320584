import pytest

from r1.daemon.intake import catalog
from r1.daemon.intake.quant import RemoteFile, UnknownTagError, choose, gguf_variants, quant_label
from r1.daemon.store import parse_name

GIB = 1024**3


@pytest.mark.parametrize(
    "path, label",
    [
        ("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("gemma-3-270m-it-F16.gguf", "F16"),
        ("Llama-3.2-1B-Instruct-bf16.gguf", "BF16"),
        ("DeepSeek-R1-Distill-Llama-70B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("Q4_K_M/DeepSeek-R1-Distill-Llama-70B-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"),
        ("Q8_0/model-00002-of-00003.gguf", "Q8_0"),
        ("Qwen2.5-7B-Instruct.gguf", None),
        ("phi-4-q4.gguf", "Q4"),
    ],
)
def test_quant_labels(path: str, label: str | None) -> None:
    assert quant_label(path) == label


def files(*specs: tuple[str, int]) -> list[RemoteFile]:
    return [RemoteFile(path, size, "sha256:" + "0" * 64) for path, size in specs]


REPO = files(
    ("model-Q8_0.gguf", 8 * GIB),
    ("model-Q4_K_M.gguf", 4 * GIB),
    ("model-F16.gguf", 15 * GIB),
    ("Q2_K/model-Q2_K-00001-of-00002.gguf", GIB),
    ("Q2_K/model-Q2_K-00002-of-00002.gguf", GIB),
    ("mmproj-model-f16.gguf", GIB // 2),
    ("README.md", 100),
    ("config.json", 10),
)


@pytest.mark.unit
def test_variants_group_shards_and_skip_companions() -> None:
    variants = gguf_variants(REPO)
    assert set(variants) == {"Q8_0", "Q4_K_M", "F16", "Q2_K"}
    assert [f.path for f in variants["Q2_K"]] == ["Q2_K/model-Q2_K-00001-of-00002.gguf", "Q2_K/model-Q2_K-00002-of-00002.gguf"]


@pytest.mark.unit
def test_explicit_tags_any_case_and_file_names() -> None:
    assert choose("o/r", REPO, "q8_0", GIB).tag == "Q8_0"
    assert choose("o/r", REPO, "Q8_0", GIB).note is None
    assert choose("o/r", REPO, "model-F16.gguf", GIB).tag == "F16"
    shards = choose("o/r", REPO, "model-Q2_K-00002-of-00002.gguf", GIB)
    assert shards.tag == "Q2_K" and len(shards.files) == 2 and shards.size == 2 * GIB


@pytest.mark.unit
def test_unknown_tag_lists_the_tags_best_first() -> None:
    with pytest.raises(UnknownTagError) as info:
        choose("org/repo", REPO, "Q9_X", GIB)
    assert str(info.value) == "org/repo has no GGUF file for tag 'Q9_X'; its tags are: F16, Q8_0, Q4_K_M, Q2_K"
    assert info.value.status == 404


@pytest.mark.unit
def test_default_is_q4_k_m_else_the_best_that_fits() -> None:
    assert choose("o/r", REPO, None, GIB).tag == "Q4_K_M"
    without = [f for f in REPO if "Q4_K_M" not in f.path]
    roomy = choose("o/r", without, None, 20 * GIB)
    assert roomy.tag == "F16" and "picked F16, the best quantization that fits the 20.0 GiB" in roomy.note
    assert choose("o/r", without, None, 10 * GIB).tag == "Q8_0"
    tight = choose("o/r", without, None, GIB)
    assert tight.tag == "Q2_K" and "fits" in tight.note and "smallest" in tight.note
    with pytest.raises(UnknownTagError, match="no GGUF files"):
        choose("o/r", files(("README.md", 1)), None, GIB)


def test_catalog_names() -> None:
    entry = catalog.lookup(parse_name("deepseek-r1:7b"))
    assert entry.repo == "unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF" and entry.tag == "Q4_K_M"
    assert catalog.lookup(parse_name("DeepSeek-R1:7B")) == entry
    assert catalog.lookup(parse_name("deepseek-r1")).repo == entry.repo
    q8 = catalog.lookup(parse_name("deepseek-r1:7b-q8_0"))
    assert q8.repo == entry.repo and q8.tag == "Q8_0" and q8.name == "deepseek-r1:7b-q8_0"
    assert catalog.lookup(parse_name("deepseek-r1:7b-mlx-4bit")).repo == "mlx-community/DeepSeek-R1-Distill-Qwen-7B-4bit"
    assert catalog.lookup(parse_name("nosuch:1b")) is None
    assert catalog.lookup(parse_name("unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF")) is None
    sizes = {"1.5b", "7b", "8b", "14b", "32b", "70b"}
    assert all(catalog.lookup(parse_name(f"deepseek-r1:{size}")) for size in sizes)
