"""The parts of llama-cpp-python that r1 reaches past its public API, where r1 reaches for them.

r1's GGUF backends read a few private attributes (a `Llama`'s model, vocabulary and context handles, a
grammar's text and root rule, the loaded library's path, the log callback) and change two default-params
functions for the time of a `Llama()` call (daemon/backends/llama_cpp.py says why). pyproject.toml pins
llama-cpp-python to the versions this file passed on; a version that moved any of them fails here, by name,
before anything subtler fails elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest
from llama_cpp import Llama, LlamaGrammar

from r1.daemon.backends.llama_cpp import _extra_buffers, _sequences
from tests.support.tinymodels import write_tiny_gguf

MOVED = ("llama-cpp-python {version} no longer has {what}, which r1 reads ({where}); pyproject.toml pins the "
         "versions this test passed on: adapt the backend, then move the pin")


def moved(what: str, where: str) -> str:
    return MOVED.format(version=llama_cpp.__version__, what=what, where=where)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("surface") / "tiny.gguf")


def test_llama_is_made_from_the_default_params_r1_changes(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    low_level = llama_cpp.llama_cpp
    assert "use_extra_bufts" in dict(low_level.llama_model_params._fields_), moved(
        "llama_model_params.use_extra_bufts", "backends/llama_cpp.py _extra_buffers")
    called: list[str] = []
    model_defaults = low_level.llama_model_default_params

    def counted_model_defaults() -> object:
        called.append("model")
        return model_defaults()

    monkeypatch.setattr(low_level, "llama_model_default_params", counted_model_defaults)
    with _extra_buffers(False), _sequences(3):
        llm = Llama(model_path=str(tiny), n_ctx=96, verbose=False)
    try:
        assert called, moved("Llama() reading llama_model_default_params at call time",
                             "backends/llama_cpp.py _extra_buffers")
        assert llama_cpp.llama_n_seq_max(llm.ctx) == 3, moved(
            "Llama() reading llama_context_default_params at call time", "backends/llama_cpp.py _sequences")
    finally:
        llm.close()


def test_the_private_attributes_r1_reads_are_there(tiny: Path) -> None:
    with _extra_buffers(False):  # the kernels safe on every CPU (FACTS.md: AMX)
        llm = Llama(model_path=str(tiny), n_ctx=64, verbose=False)
    try:
        assert getattr(getattr(llm, "_model", None), "model", None), moved("Llama._model.model", "backends/llama_*")
        assert getattr(llm._model, "vocab", None), moved("Llama._model.vocab", "backends/llama_*")
        assert hasattr(getattr(llm, "_ctx", None), "memory"), moved("Llama._ctx.memory", "backends/llama_cpp.py")
    finally:
        llm.close()
    grammar = LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
    assert isinstance(getattr(grammar, "_grammar", None), str) and isinstance(getattr(grammar, "_root", None), str), \
        moved("LlamaGrammar._grammar and ._root", "backends/llama_cpp.py _grammar")
    library = getattr(getattr(llama_cpp.llama_cpp, "_lib", None), "_name", None)
    assert library and Path(library).exists(), moved("llama_cpp.llama_cpp._lib._name", "backends/devices.py")
    from llama_cpp import _logger

    assert callable(getattr(_logger, "llama_log_callback", None)), moved(
        "llama_cpp._logger.llama_log_callback", "backends/llama_vision.py")
