"""From a model name to the exact files to pull: catalog, Hub metadata, quantization choice.

huggingface_hub does the talking (endpoint, auth, errors); it is imported only when a pull
resolves, so the daemon starts without it. This runs in a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..errors import NotFound, R1Error
from ..metadata import is_mlx_model_file
from ..store import ModelName
from . import catalog
from .quant import Choice, RemoteFile, UnknownTagError, choose

log = logging.getLogger(__name__)


class UnknownModelError(NotFound):
    pass


class RepoAccessError(R1Error):
    status = 403


class HubUnavailableError(R1Error):
    status = 502


class OfflineError(R1Error):
    status = 503


@dataclass(frozen=True)
class PullPlan:
    name: ModelName  # what the model is stored as
    repo_id: str
    commit: str
    format: str  # "gguf" or "mlx"
    choice: Choice

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return self.choice.files

    def source(self) -> dict[str, str]:
        return {"repo": self.repo_id, "commit": self.commit, "tag": self.choice.tag}


def repo_and_tag(name: ModelName) -> tuple[str, str | None]:
    """Where a name points: a catalog entry's repo and quant, or the Hub repo it names."""
    entry = catalog.lookup(name)
    if entry is not None:
        return entry.repo, entry.tag
    if name.is_hf:
        return name.repo_id, None if name.tag == "latest" else name.tag
    raise UnknownModelError(
        f"model '{name}' is neither in the store nor in r1's catalog; `r1 search` lists the catalog, "
        "and any Hugging Face repo works as org/repo[:quant]"
    )


def resolve(name: ModelName, settings: Settings, token: str | None) -> PullPlan:
    repo_id, tag = repo_and_tag(name)
    if settings.hf_offline:
        raise OfflineError(f"HF_HUB_OFFLINE is set, so r1 cannot pull {name} from {repo_id}; unset it, or `r1 import` a local file")
    files, commit = _repo_files(repo_id, settings.hf_endpoint, token)
    top_level = {f.path for f in files if "/" not in f.path}
    has_gguf = any(f.path.lower().endswith(".gguf") for f in files)
    is_mlx = "config.json" in top_level and any(path.endswith(".safetensors") for path in top_level)
    if is_mlx and not has_gguf:
        if tag is not None:
            raise UnknownTagError(f"{repo_id} is an MLX model with a single variant; pull it without a tag (not ':{tag}')")
        mlx_files = tuple(f for f in files if f.path in top_level and is_mlx_model_file(f.path))
        return PullPlan(name, repo_id, commit, "mlx", Choice("mlx", mlx_files))
    return PullPlan(name, repo_id, commit, "gguf", choose(repo_id, files, tag, settings.memory_budget))


def _repo_files(repo_id: str, endpoint: str, token: str | None) -> tuple[list[RemoteFile], str]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, files_metadata=True)
    except GatedRepoError as exc:
        raise RepoAccessError(
            f"{repo_id} is gated: accept its terms on {endpoint}/{repo_id}, then set HF_TOKEN to a token "
            "of an account with access (the daemon reads it when it starts)"
        ) from exc
    except RepositoryNotFoundError as exc:
        hint = "" if token else " (if it is private, set HF_TOKEN)"
        raise UnknownModelError(f"no model repo '{repo_id}' on {endpoint}{hint}") from exc
    except RevisionNotFoundError as exc:
        raise UnknownModelError(f"{repo_id} has no main revision on {endpoint}") from exc
    except HfHubHTTPError as exc:
        raise HubUnavailableError(f"the Hub at {endpoint} answered {exc.response.status_code} for {repo_id}: {exc}") from exc
    except Exception as exc:  # refused, DNS, TLS, timeouts: the client's transport errors have no public base
        raise HubUnavailableError(f"cannot reach the Hub at {endpoint}: {exc}") from exc
    files = [
        RemoteFile(s.rfilename, s.size or 0, f"sha256:{s.lfs.sha256}" if s.lfs else None)
        for s in info.siblings or []
    ]
    return files, info.sha or "main"
