"""Remote models: ordinary store names whose manifest has no files and the format "remote"; its source
says which remote and which upstream model answer for it."""

from __future__ import annotations

from ..metadata.facts import ModelFacts
from ..store import Manifest, Overrides


def remote_manifest(remote: str, upstream_id: str, context_length: int | None,
                    overrides: Overrides | None = None) -> Manifest:
    return Manifest((), ModelFacts(format="remote", context_length=context_length), overrides or Overrides(),
                    {"remote": remote, "model": upstream_id})


def remote_of(manifest: Manifest) -> tuple[str, str] | None:
    """(remote, upstream model id) of a remote model; None for a local one."""
    if manifest.format != "remote" or not manifest.source:
        return None
    return manifest.source["remote"], manifest.source["model"]
