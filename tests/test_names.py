import pytest

from r1.daemon.store.names import InvalidNameError, ModelName, parse_name, safe_relpath


@pytest.mark.parametrize(
    "text, expected",
    [
        ("smollm2", "smollm2:latest"),
        ("smollm2:135m", "smollm2:135m"),
        ("deepseek-r1:7b", "deepseek-r1:7b"),
        ("bartowski/Qwen2.5-7B-Instruct-GGUF", "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:latest"),
        ("hf.co/unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:Q4_K_M", "hf.co/unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:Q4_K_M"),
        ("huggingface.co/org/repo:Q8_0", "hf.co/org/repo:Q8_0"),
        ("HF.CO/org/repo", "hf.co/org/repo:latest"),
        ("org/repo:model-Q4_K_M.gguf", "hf.co/org/repo:model-Q4_K_M.gguf"),
        ("  padded:tag  ", "padded:tag"),
        ("llama3.1", "llama3.1:latest"),  # Ollama's library names are local names
        ("registry.ollama.ai/library/llama3.1:8b", "llama3.1:8b"),  # as Ollama shows its own namespace
        ("Registry.Ollama.AI/jmorganca/Model:q4", "registry.ollama.ai/jmorganca/Model:q4"),
    ],
)
def test_valid_names_have_one_canonical_form(text: str, expected: str) -> None:
    assert str(parse_name(text)) == expected


@pytest.mark.unit
def test_hf_names_expose_the_repo() -> None:
    name = parse_name("hf.co/Org/Repo:Q4_K_M")
    assert name.is_hf and name.repo_id == "Org/Repo" and name.tag == "Q4_K_M"
    assert parse_name("Org/Repo:Q4_K_M") == name
    local = parse_name("gemma3:270m")
    assert not local.is_hf
    with pytest.raises(ValueError):
        _ = local.repo_id


@pytest.mark.unit
def test_registry_names_are_neither_hub_repos_nor_library_names() -> None:
    name = parse_name("registry.ollama.ai/jmorganca/model:q4")
    assert not name.is_hf and (name.org, name.model, name.tag, name.registry) == ("jmorganca", "model", "q4", "registry.ollama.ai")
    assert name.key != parse_name("jmorganca/model:q4").key  # that one is a Hub repo, hf.co/jmorganca/model:q4
    with pytest.raises(ValueError):
        _ = name.repo_id


@pytest.mark.unit
def test_matching_is_case_insensitive() -> None:
    assert parse_name("hf.co/Unsloth/Repo:Q4_K_M").key == parse_name("unsloth/repo:q4_k_m").key
    assert parse_name("MyModel").key == parse_name("mymodel:latest").key
    # The display keeps what the user typed.
    assert str(parse_name("hf.co/Unsloth/Repo")) == "hf.co/Unsloth/Repo:latest"


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, reason",
    [
        ("../../etc/passwd", "'..'"),
        ("hf.co/a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("./model", "'..'"),
        ("/etc/passwd", "name"),
        ("a/b/c", "use 'name[:tag]'"),
        ("hf.co/onlyorg", "expected hf.co/"),
        ("model:../x", "'..'"),
        ("model:", "tag"),
        ("model:bad tag", "spaces"),
        ("with space", "spaces"),
        ("back\\slash", "backslashes"),
        ("nul\x00byte", "control"),
        ("-leading-dash", "must be 1-96"),
        ("x" * 97, "must be 1-96"),
        ("m:" + "t" * 129, "tag"),
        ("a:b:c", "must be 1-96"),
        ("registry.ollama.ai/llama3.1", "expected registry.ollama.ai/{namespace}/{model}"),
        ("registry.ollama.ai/../x/y", "'..'"),
        ("a/b/c", "or 'registry.ollama.ai/namespace/model[:tag]'"),
        ("", "required"),
        ("   ", "required"),
        ("a" * 400, "longer than"),
    ],
)
def test_invalid_names_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_name(text)
    assert reason in str(info.value)
    assert info.value.status == 400


@pytest.mark.unit
def test_non_string_name_is_refused() -> None:
    with pytest.raises(InvalidNameError):
        parse_name(None)  # type: ignore[arg-type]


@pytest.mark.unit
def test_model_name_defaults() -> None:
    assert ModelName("x") == parse_name("x")


@pytest.mark.unit
@pytest.mark.parametrize("path", ["model.gguf", "sub/dir/model-00001-of-00002.gguf", "tokenizer.json"])
def test_safe_relpaths(path: str) -> None:
    assert str(safe_relpath(path)) == path


@pytest.mark.unit
@pytest.mark.parametrize("path", ["", "/abs", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\x00b", "a/"])
def test_unsafe_relpaths_are_refused(path: str) -> None:
    with pytest.raises(InvalidNameError):
        safe_relpath(path)
