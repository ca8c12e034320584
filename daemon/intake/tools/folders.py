"""The models in one folder of model files (a Hugging Face snapshot, an LM Studio repo folder): each
GGUF quantization (a split GGUF's shards together) and an MLX model, grouped as `r1 pull` groups a
repo's files, so a tag means the same files whether pulled or imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...metadata import is_mlx_model_file, model_files
from ...metadata.mlx_reader import is_mlx_folder
from ...metadata.projector import is_companion
from ...store import InvalidNameError, RefusedFileError, parse_name
from ..quant import MLX_TAG, SHARD, RemoteFile, gguf_variants, with_projector
from .found import Found, SourceFile, source_file


@dataclass(frozen=True)
class FolderModel:
    tag: str  # the quantization label ("Q4_K_M"), a file name where there is none, or "mlx"
    format: str  # "gguf" or "mlx"
    files: tuple[tuple[str, Path], ...]  # (path inside the model, the file in the folder)


def folder_models(folder: Path) -> list[FolderModel]:
    """The GGUF quantizations anywhere under `folder`, each with the folder's vision projector (as `r1 pull`
    chooses it) if it has one, then its MLX model if any."""
    ggufs = {
        path.relative_to(folder).as_posix(): path
        for path in folder.rglob("*")
        if path.suffix.lower() == ".gguf" and (path.is_file() or path.is_symlink())
        and not _hidden(path.relative_to(folder))
    }
    listing = [RemoteFile(relative, 0) for relative in ggufs]
    models = [
        FolderModel(tag, "gguf", tuple((f.path, ggufs[f.path]) for f in with_projector(group, listing, tag)))
        for tag, group in gguf_variants(listing).items()
    ]
    if is_mlx_folder(folder):
        _, files = model_files(folder)
        # a link whose blob is gone is no file to model_files(), but the model is incomplete without it
        files += [p for p in sorted(folder.iterdir()) if p.is_symlink() and not p.exists() and is_mlx_model_file(p.name)]
        models.append(FolderModel(MLX_TAG, "mlx", tuple((path.name, path) for path in files)))
    return models


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def found_in_folder(folder: Path, repo: str, sha256: Callable[[Path], str | None], inside: Path) -> list[Found]:
    """Each model of `folder` as r1 would import it, named `repo:TAG` (repo: "hf.co/org/repo"); each
    file must lead inside `inside` (the tool's folder for the model) to a regular file; `sha256` says
    what a file's real name tells of its hash."""
    found = []
    for model in folder_models(folder):
        name, problem = f"{repo}:{model.tag}", None
        try:
            name = str(parse_name(name))
        except InvalidNameError as exc:
            problem = str(exc)
        files: list[SourceFile] = []
        for path, file in model.files:
            try:
                files.append(source_file(path, file, inside, sha256))
            except RefusedFileError as exc:
                problem = problem or str(exc)
            except FileNotFoundError:
                problem = problem or (f"{file} is a link to a file that is missing ({file.resolve()}): "
                                      "an interrupted or deleted download; download it again with the tool")
            except OSError as exc:
                problem = problem or f"cannot read {file}: {exc.strerror or exc}"
        problem = problem or _missing_shards(folder, model)
        found.append(Found(name, model.format, tuple(files), where=str(folder), problem=problem))
    return found


def _missing_shards(folder: Path, model: FolderModel) -> str | None:
    """Why a split GGUF cannot be imported: fewer shards here than its names count."""
    shards = [path for path, _ in model.files if not is_companion(path)]
    counts = {int(match[2]) for path in shards if (match := SHARD.search(path))}
    if not counts or counts == {len(shards)}:
        return None
    return (f"the {model.tag} GGUF is split in {max(counts)} files, and {folder} holds {len(shards)} of them: "
            "finish the download with the tool first")
