"""r1's app in-process for HTTP-level tests (conftest's `api` and `make_api` fixtures build it): a test
server on loopback over a temp store, with scripted runners instead of models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scripted import ScriptedRunners
from .tinymodels import write_tiny_gguf


@dataclass
class InProcess:
    """r1's app on a test server (TCP on loopback), over a temp store, with scripted runners."""

    client: Any  # aiohttp.test_utils.TestClient
    runners: ScriptedRunners
    home: Path
    tmp: Path

    async def add_model(self, name: str, **tiny: Any) -> None:
        """A tiny GGUF in the store under `name` (the scripted runners never read it)."""
        path = write_tiny_gguf(self.tmp / f"{name.replace(':', '-').replace('/', '-')}.gguf", **tiny)
        response = await self.client.post("/api/import", json={"path": str(path), "model": name, "stream": False})
        assert response.status == 200, await response.text()

    async def pull(self, model: str, **fields: Any) -> tuple[int, list[dict[str, Any]]]:
        """POST /api/pull (streamed unless stream=False): the status and every event (one when not streamed)."""
        response = await self.client.post("/api/pull", json={"model": model, **fields})
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, [json.loads(text)]
        assert response.content_type == "application/x-ndjson", text
        return response.status, [json.loads(line) for line in text.splitlines()]

    async def show(self, model: str) -> dict[str, Any]:
        response = await self.client.post("/api/show", json={"model": model})
        assert response.status == 200, await response.text()
        return await response.json()

    async def names(self) -> set[str]:
        """The names /api/tags lists."""
        response = await self.client.get("/api/tags")
        assert response.status == 200
        return {m["name"] for m in (await response.json())["models"]}
