"""What a model can do, as Ollama's /api/show lists it, and the 400s for requests that ask for more.

Computed from the model's files and the template in effect, as Ollama does:

* `embedding`: the GGUF names a pooling type (`{arch}.pooling_type`) or the architecture is an
  encoder; such a model embeds and does not generate. Every other model has `completion`.
* `rerank` (r1's, in place of `embedding`): the pooling type is llama.cpp's RANK (a classification head,
  as bge-reranker and Qwen3-Reranker have); such a model scores documents against a query (reranking.py).
* `tools`: the chat template reads `tools` (it renders the tools offered).
* `thinking`: the template writes a think block (`<think>`, the tag r1's reasoning splitter
  reads) or reads a think switch (`enable_thinking`, as Qwen3's does).
* `insert` (fill in the middle): the tokenizer has FIM tokens, or the template reads `suffix`.
* `vision`: the model was stored with a vision projector (an `mmproj` file, metadata/projector.py).

The refusals use Ollama's words ("... does not support tools"), so clients that match them work,
then say what to do instead, naming the field as the request's dialect calls it.
"""

from __future__ import annotations

import functools
import json

from .errors import BadRequest
from .metadata import ModelFacts
from .reasoning import OPEN_TAG

COMPLETION, TOOLS, THINKING, INSERT, EMBEDDING = "completion", "tools", "thinking", "insert", "embedding"
RERANK = "rerank"
RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK
VISION = "vision"
# llama.cpp's names of encoder architectures: embedding models, whether or not their GGUF names a pooling.
ENCODERS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
                      "modern-bert", "t5encoder"})


# What a Go template's fields are called in r1's Jinja context.
GO_FIELDS = {"think": "enable_thinking"}


@functools.lru_cache(maxsize=256)
def template_variables(source: str) -> frozenset[str]:
    """The variables a Jinja template reads from its context (none if it does not parse); for one
    converted from Ollama's Go, the fields it reads, as Ollama's own capability check sees them."""
    from jinja2 import TemplateSyntaxError  # imported when a template is looked at

    from .templates.go import converted_uses
    from .templates.sandbox import reading_environment, variables_read

    if go_fields := converted_uses(source):
        return frozenset(GO_FIELDS.get(name, name) for name in go_fields)

    try:
        parsed = reading_environment().parse(source)
    except (TemplateSyntaxError, RecursionError):  # nested too deeply for Python: the renderer refuses it too
        return frozenset()
    return frozenset(variables_read(parsed))


def capabilities(facts: ModelFacts, template: str | None, *, projector: bool = False) -> list[str]:
    """Ollama's capability names for a model with these facts and this template in effect, and a
    vision projector or not."""
    found = [RERANK if facts.pooling_type == RANK_POOLING
             else EMBEDDING if facts.pooling_type is not None or facts.architecture in ENCODERS else COMPLETION]
    if projector and COMPLETION in found:
        found.append(VISION)
    variables = template_variables(template) if template else frozenset()
    if "tools" in variables:
        found.append(TOOLS)
    if facts.fim_tokens or "suffix" in variables:
        found.append(INSERT)
    if template and (OPEN_TAG in template or "enable_thinking" in variables):
        found.append(THINKING)
    return found


def fill_in_middle(facts: ModelFacts, template: str | None, raw: bool) -> str:
    """How the runner builds a prompt with a suffix: "template" (the template reads `suffix`; not for
    raw prompts, which skip it) or "tokens" (the GGUF's FIM tokens, as llama.cpp's server does)."""
    if not raw and template and "suffix" in template_variables(template):
        return "template"
    if facts.fim_tokens:
        return "tokens"
    raise BadRequest("a raw prompt cannot take a suffix on this model: its template fills in the middle, "
                     "and raw prompts skip the template; send the prompt without raw")


def check(model: str, name: str, found: list[str], *, chat: bool, tools: bool, think: bool | None,
          suffix: bool, think_field: str = "think", images: bool = False) -> None:
    """Refuse, as Ollama does, a request that needs what the model cannot do. `model` is the name
    the request gave, `name` the stored one (Ollama's messages use one or the other); `think_field` what
    the request called its thinking switch (Ollama's think, Anthropic's thinking, OpenAI's reasoning_effort)."""
    if COMPLETION not in found:
        route = "chat" if chat else "generate"
        if RERANK in found:
            raise BadRequest(f"{json.dumps(model)} does not support {route}: it is a reranker; "
                             "send its query and documents to /api/rerank or /v1/rerank")
        raise BadRequest(f"{json.dumps(model)} does not support {route}: it is an embedding model; "
                         "send its input to /api/embed or /v1/embeddings")
    if tools and TOOLS not in found:
        raise BadRequest(f"{name} does not support tools: its chat template does not show the model any tools; "
                         "leave 'tools' out, or give it a template that renders them (`r1 create`, TEMPLATE)")
    if think and THINKING not in found:
        raise BadRequest(f"{json.dumps(model)} does not support thinking: its template has no think block; "
                         f"leave '{think_field}' out, or give it a template with a think block (`r1 create`, TEMPLATE)")
    if images and VISION not in found:
        raise BadRequest(f"{name} has no vision projector, so it cannot take images; send text, or use a model "
                         "with the vision capability (pulled or imported with its mmproj file)")
    if suffix and INSERT not in found:
        raise BadRequest(f"{name} does not support insert: it has no fill-in-the-middle tokens and its template "
                         "reads no suffix; leave 'suffix' out")
