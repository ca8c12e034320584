"""`r1 launch TOOL`: what a coding agent needs to use a model through r1 (base URL, key, model), in the
variables and flags each tool documents, with r1's TCP listener opened for it if it is off.

- Claude Code (code.claude.com/docs/en/env-vars): ANTHROPIC_BASE_URL (without /v1: it appends
  /v1/messages), ANTHROPIC_AUTH_TOKEN (sent as a Bearer token), ANTHROPIC_MODEL, and the model each of
  its tiers (haiku, sonnet, opus) uses for its background work: ANTHROPIC_DEFAULT_*_MODEL.
- Codex CLI (developers.openai.com/codex/config-advanced): a custom model provider given with `-c`
  (base_url ending in /v1, env_key naming the variable that holds the key, wire_api "responses"); its
  built-in provider ids (openai, ollama, lmstudio) are reserved, so r1's is "r1".
- opencode (opencode.ai/docs/config): OPENCODE_CONFIG_CONTENT, a config merged over the user's, with
  an @ai-sdk/openai-compatible provider whose baseURL ends in /v1, and model "r1/MODEL".
"""

from __future__ import annotations

import json
import os
import shlex

from .api import Api
from .errors import CliError
from .listener import tcp_address

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import ModelInfo

KEY_VARIABLE = "R1_API_KEY"  # Codex reads the key from the variable its provider's env_key names

# The context each tool needs, in tokens. Its first request, measured with SmolLM2's tokenizer
# (tests/agents/: Claude Code 2.1.332 about 10K in `claude -p` with 12 tools, 22-31K in interactive
# sessions with 24; Codex 0.171 about 9K; opencode 1.18 about 5.4K), with room for the session to grow.
CONTEXT_NEEDED = {"claude": 32768, "codex": 16384, "opencode": 16384}


def plan(tool: str, address: str, key: str, model: str) -> tuple[dict[str, str], list[str]]:
    """The environment and the command line that start `tool` on `model` through r1 at http://address."""
    base = f"http://{address}"
    if tool == "claude":
        tiers = {f"ANTHROPIC_DEFAULT_{tier}_MODEL": model for tier in ("HAIKU", "SONNET", "OPUS")}
        return {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_AUTH_TOKEN": key, "ANTHROPIC_MODEL": model, **tiers}, ["claude"]
    if tool == "codex":
        provider = (f'{{ name = "r1", base_url = "{base}/v1", env_key = "{KEY_VARIABLE}", '
                    'wire_api = "responses" }')
        return {KEY_VARIABLE: key}, ["codex", "-c", "model_provider=r1", "-c", f"model_providers.r1={provider}",
                                     "-m", model]
    config = {"$schema": "https://opencode.ai/config.json", "model": f"r1/{model}", "provider": {"r1": {
        "npm": "@ai-sdk/openai-compatible", "name": "r1",
        "options": {"baseURL": f"{base}/v1", "apiKey": key}, "models": {model: {"name": model}}}}}
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(config)}, ["opencode"]


def context_length(shown: ModelInfo) -> tuple[int | None, bool]:
    """The context a model can hold (its num_ctx PARAMETER, or its trained context), and whether a
    PARAMETER set it."""
    for line in (shown.get("parameters") or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "num_ctx" and value.strip().isdigit():
            return int(value), True
    trained = [v for k, v in (shown.get("model_info") or {}).items()
               if k.endswith(".context_length") and isinstance(v, (int, float)) and v]
    return (int(trained[0]) if trained else None), False


def check_model(tool: str, model: str, shown: ModelInfo) -> None:
    """Refuse, saying what to do, a model that cannot serve `tool`: one without a chat template, without
    tools, or with a context too short for the tool's prompt (/api/show's answer is `shown`)."""
    if "remote" in shown:
        return  # its upstream applies its own template and context
    remake = f"`r1 create NEW -f Modelfile` with `FROM {model}` and"
    if not shown.get("template"):
        raise CliError(f"{model} has no chat template, and {tool} chats; give it one ({remake} a TEMPLATE line), "
                       "or choose an instruct model")
    if "tools" not in shown.get("capabilities", []):
        raise CliError(f"{model}'s chat template does not show the model any tools, and {tool} works through "
                       f"tools; give it a template that renders them ({remake} a TEMPLATE line), or choose a "
                       "model trained to call tools")
    needed = CONTEXT_NEEDED[tool]
    context, set_by_parameter = context_length(shown)
    if context is not None and context < needed:
        fix = (f"raise its num_ctx ({remake} `PARAMETER num_ctx {needed}`)" if set_by_parameter
               else "choose a model with a longer context")
        raise CliError(f"{model} holds {context} tokens of context, and {tool}'s prompt and session need about "
                       f"{needed}; {fix}")


def launch(tool: str, model: str, run: bool, arguments: list[str] | None = None) -> None:
    api = Api.from_env()
    # A model the store lacks fails here, with the daemon's words.
    check_model(tool, model, api.read("POST", "/api/show", {"model": model}))
    address = tcp_address(api)
    # Without R1_API_KEY a loopback listener takes any key; the tools insist on having one.
    key = api.settings.api_key or "r1"
    env, command = plan(tool, address, key, model)
    command += arguments or []
    if run:
        try:
            os.execvpe(command[0], command, {**os.environ, **env})
        except FileNotFoundError:
            raise CliError(f"{command[0]} is not installed (or not on PATH); install it, or run "
                           f"`r1 launch {tool}` without --exec to see what to set") from None
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    print(shlex.join(command))
