"""Reading what an answer says about its prompt."""

from __future__ import annotations

from typing import Any


def prompt_tokens(answer: dict[str, Any]) -> int:
    """The whole prompt of an Ollama-style answer: the tokens evaluated and those its slot held already."""
    return answer["prompt_eval_count"] + answer.get("prompt_cached", 0)
