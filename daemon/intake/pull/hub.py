"""Pulls from the Hugging Face Hub: which repo a name means (r1's catalog or org/repo), and the
exact files to pull from it (Hub metadata, quantization choice).

huggingface_hub does the talking (endpoint, auth, errors); it is imported only when a pull
resolves, so the daemon starts without it. This runs in a worker thread.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from ...config import Settings
from ...errors import BadGateway, Forbidden, NotFound, ServiceUnavailable
from ...metadata import is_mlx_model_file
from ...store import ModelName
from .. import catalog
from ..quant import MLX_TAG, Choice, RemoteFile, UnknownTagError, choose, with_projector
from .plan import PullPlan


class UnknownModelError(NotFound):
    pass


class RepoAccessError(Forbidden):
    """A gated or private repo the token (or no token) does not open."""


class HubUnavailableError(BadGateway):
    """The Hub could not be reached, or answered with an error."""


class OfflineError(ServiceUnavailable):
    """HF_HUB_OFFLINE is set: nothing is looked up or fetched."""


def hub_repo(name: ModelName) -> tuple[str, str | None] | None:
    """The Hub repo and quantization a name means (a catalog entry or an org/repo name); None for other names."""
    entry = catalog.lookup(name)
    if entry is not None:
        return entry.repo, entry.tag
    if name.is_hf:
        return name.repo_id, None if name.tag == "latest" else name.tag
    return None


def hub_plan(name: ModelName, repo_id: str, tag: str | None, settings: Settings) -> PullPlan:
    """The files of `repo_id` that `tag` means, to be stored as `name`."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import build_hf_headers

    token = get_token()
    files, commit = _repo_files(repo_id, settings.hf_endpoint, token)
    top_level = {f.path for f in files if "/" not in f.path}
    has_gguf = any(f.path.lower().endswith(".gguf") for f in files)
    is_mlx = "config.json" in top_level and any(path.endswith(".safetensors") for path in top_level)
    if is_mlx and not has_gguf:
        if tag not in (None, MLX_TAG):
            raise UnknownTagError(f"{repo_id} is an MLX model with a single variant; pull it without a tag (not ':{tag}')")
        fmt, choice = "mlx", Choice(MLX_TAG, tuple(f for f in files if f.path in top_level and is_mlx_model_file(f.path)))
    else:
        fmt, choice = "gguf", choose(repo_id, files, tag, settings.memory_budget)
        choice = replace(choice, files=with_projector(choice.files, files, choice.tag))
    source = {"repo": repo_id, "commit": commit, "tag": choice.tag}
    notes = (choice.note,) if choice.note else ()
    return PullPlan(name, repo_id, fmt, choice, source, build_hf_headers(token=token, library_name="r1"), notes=notes)


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
    commit = info.sha or "main"
    files = [
        RemoteFile(s.rfilename, s.size or 0, f"sha256:{s.lfs.sha256}" if s.lfs else None,
                   f"{endpoint}/{repo_id}/resolve/{commit}/{quote(s.rfilename)}")
        for s in info.siblings or []
    ]
    return files, commit
