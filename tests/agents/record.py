"""Record what a coding agent sends to r1: a proxy between the agent and a running daemon that saves each
request (method, path, a few headers, never a key, and the JSON body) with the status r1 answered.

The recordings are the protocol tests' fixtures (tests/test_agent_protocols.py): real requests from the
real agents, kept under tests/agents/<agent>-<version>/ as NN-<route>.json, one file per request in the
order the agent sent them.

To record again (for a new version of an agent):
1. Set the version in tests/agents/versions.json; tests/test_agents.py installs it into its cache folder
   (~/.cache/r1-tests/agents/...) on its next run, or `npm install --prefix DIR PACKAGE@VERSION`.
2. Start a daemon with a model whose template renders tools and whose context holds the agent's prompt.
   The fixtures were recorded with tests/test_agents.py's scripted models (tinymodels.write_quiet_gguf
   with `answers`): the model calls the agent's shell tool (`ls`) first and says "Done." after the
   tool's result, so a session holds the first request and the follow-up turn.
3. Run, with R1_SOCKET naming that daemon (the recorder opens its TCP listener as `r1 launch` does):
       python tests/agents/record.py claude --model MODEL --bin DIR/node_modules/.bin \\
           --out tests/agents/claude-VERSION -- -p "List the files in this folder"
   TOOL is claude, codex or opencode; what follows `--` goes to the agent (its non-interactive
   arguments, as `r1 launch TOOL --exec -- ...` passes them: `exec --skip-git-repo-check "..."` for
   Codex, `run "..."` for opencode). The agent runs with the settings `r1 launch` gives it
   (cli/launch.py's `plan`), pointed at the proxy, with HOME in a temp folder and its telemetry and
   updates off. The folder's earlier NN-route.json files are replaced.
4. `--strip` removes from the forwarded body (not from the recording) what an r1 before issue 26 refused,
   so that a whole session got recorded before the fixes: see STRIPPED. The fixtures here were recorded
   with it; "status" is what r1 answered to the stripped body.

Used as a library, `Recorder` is the proxy alone, its `entries` the requests it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# What a recording keeps of the headers: what says which dialect and features the agent speaks.
KEPT_HEADERS = ("content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta", "openai-beta",
                "x-app", "originator", "session_id", "version")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding"}
# What an r1 before issue 26 refused (field: why): --strip drops them before forwarding.
STRIPPED = {
    "context_management": "Anthropic's context editing",
    "thinking": "only when {'type': 'adaptive'}",
    "system-role messages": "Anthropic messages with role 'system'",
    "tools": "OpenAI Responses hosted tools (web_search, ...) and namespace tools, flattened into their functions",
}
RESPONSES_FUNCTION = "function"


def strip_refused(body: Any) -> Any:
    """`body` without what r1 refused before issue 26 (STRIPPED); a copy, the recording keeps the original."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    body.pop("context_management", None)
    if isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "adaptive":
        body.pop("thinking")
    if isinstance(body.get("messages"), list) and "max_tokens" in body:  # Anthropic's shape
        body["messages"] = [m for m in body["messages"] if not (isinstance(m, dict) and m.get("role") == "system")]
    if isinstance(body.get("tools"), list) and "input" in body:  # OpenAI Responses' shape
        body["tools"] = list(_functions(body["tools"]))
    return body


def _functions(tools: list[Any]) -> Any:
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":
            yield from _functions(tool.get("tools") or [])
        elif kind in (RESPONSES_FUNCTION, "custom"):
            yield tool


@dataclass
class Recorder:
    """The proxy: forwards every request to `upstream` (http://HOST:PORT) and keeps an entry for each."""
    upstream: str
    strip: bool = False
    entries: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self.forward)
        return app

    async def forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        entry: dict[str, Any] = {
            "method": request.method, "path": request.path, "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() in KEPT_HEADERS},
            "body": body}
        self.entries.append(entry)
        sent = json.dumps(strip_refused(body)).encode() if self.strip and isinstance(body, dict) else raw
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
                    session.request(request.method, self.upstream + request.path_qs, data=sent,
                                    headers=headers) as answer):
            entry["status"] = answer.status
            response = web.StreamResponse(status=answer.status, headers={
                k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}})
            await response.prepare(request)
            kept = bytearray()
            async for chunk in answer.content.iter_any():
                if answer.status >= 400:
                    kept += chunk
                await response.write(chunk)
            if answer.status >= 400:
                entry["error"] = kept.decode(errors="replace")
            await response.write_eof()
            return response


def fixture_name(number: int, entry: dict[str, Any]) -> str:
    """NN-route.json: 01-messages.json, 02-responses.json, ..."""
    route = re.sub(r"[^a-z0-9]+", "-", entry["path"].removeprefix("/v1/").lower()).strip("-") or "root"
    return f"{number:02d}-{route}.json"


def save(entries: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9]*-*.json"):  # an earlier recording's: the folder holds one session
        old.unlink()
    paths = []
    for number, entry in enumerate(entries, 1):
        path = out / fixture_name(number, entry)
        path.write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


# The agents' own switches for a quiet, local run (FACTS.md).
QUIET = {"DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
         "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_SHARE": "1", "NO_COLOR": "1"}


def agent_environment(home: Path, bin_dir: Path | None, extra: dict[str, str],
                      base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The agent's environment, `base` with HOME (and XDG folders) in `home`, its binaries first on PATH."""
    path = f"{bin_dir}{os.pathsep}{base['PATH']}" if bin_dir else base["PATH"]
    folders = {f"XDG_{name}_HOME": str(home / name.lower()) for name in ("CONFIG", "DATA", "CACHE", "STATE")}
    return {**base, "HOME": str(home), **folders, "PATH": path, **QUIET, **extra}


async def record(tool: str, model: str, arguments: list[str], *, upstream: str, bin_dir: Path | None,
                 strip: bool, timeout: float, workdir: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run `tool` on `model` through a Recorder in front of `upstream`; its exit code and the entries."""
    from r1.cli.launch import plan

    recorder = Recorder(upstream, strip)
    runner = web.AppRunner(recorder.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="r1-agent-") as home:
            env, command = plan(tool, f"127.0.0.1:{port}", "r1", model)
            process = await asyncio.create_subprocess_exec(
                *command, *arguments, env=agent_environment(Path(home), bin_dir, env),
                cwd=workdir or home, stdin=subprocess.DEVNULL)
            try:
                code = await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                code = await process.wait()
    finally:
        await runner.cleanup()
    return code, recorder.entries


def daemon_address() -> str:
    """http://HOST:PORT of the daemon on R1_SOCKET, its TCP listener opened if it is off."""
    from r1.cli.api import Api
    from r1.cli.listener import tcp_address

    return f"http://{tcp_address(Api.from_env())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=["claude", "codex", "opencode"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True, help="the folder for NN-route.json files")
    parser.add_argument("--upstream", help="http://HOST:PORT of r1 (default: the daemon on R1_SOCKET)")
    parser.add_argument("--bin", type=Path, help="the folder of the agents' binaries (node_modules/.bin)")
    parser.add_argument("--strip", action="store_true", help="forward without what an older r1 refused")
    parser.add_argument("--timeout", type=float, default=600)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:cut])  # what follows `--` is the agent's own arguments
    code, entries = asyncio.run(record(options.tool, options.model, argv[cut + 1:],
                                       upstream=options.upstream or daemon_address(), bin_dir=options.bin,
                                       strip=options.strip, timeout=options.timeout))
    for path, entry in zip(save(entries, options.out), entries):
        print(f"{entry.get('status', '-')} {entry['method']} {entry['path']} -> {path}")
    print(f"{options.tool} exited with {code}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
