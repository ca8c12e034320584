"""Which files of a GGUF repo a tag means: quantization labels, split shards, the default pick.

Repos name files after their quantization: `DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf`,
`model.Q8_0.gguf`, or a folder per quant holding split shards
(`Q4_K_M/model-Q4_K_M-00001-of-00002.gguf`). A tag is a label (any case) or a file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NotFound
from ..metadata.projector import is_projector

# Best quality first: with no tag, r1 takes Q4_K_M where it exists, else the first of these that fits.
QUALITY_ORDER = (
    "F32", "BF16", "F16", "Q8_0", "Q6_K_L", "Q6_K", "Q5_K_L", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0",
    "Q4_K_L", "Q4_K_M", "Q4_K_S", "Q4_1", "IQ4_NL", "IQ4_XS", "Q4_0", "MXFP4", "Q3_K_XL", "Q3_K_L",
    "Q3_K_M", "IQ3_M", "IQ3_S", "Q3_K_S", "IQ3_XS", "IQ3_XXS", "Q2_K_L", "Q2_K", "IQ2_M", "IQ2_S",
    "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
)
DEFAULT_QUANT = "Q4_K_M"
MLX_TAG = "mlx"  # what an MLX repo's one variant is recorded as: its tag, where a GGUF repo's is a quantization
# What loading takes beyond the file itself (KV cache, compute buffers), for the default pick only;
# the scheduler's estimate is the one that decides about loading.
LOAD_OVERHEAD = 1.2

_LABEL = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q[1-8](?:_[0-9A-Z]{1,3}){0,2}|BF16|F16|F32|MXFP4))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# Vision projectors and similar companions are not the language model.
_COMPANION = re.compile(r"(^|/)(mmproj|imatrix)[^/]*$", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None  # "sha256:<hex>" for LFS files: known before downloading
    url: str = ""  # where its bytes are


@dataclass(frozen=True)
class Choice:
    tag: str  # the label (or file name) chosen
    files: tuple[RemoteFile, ...]
    note: str | None = None  # said to the user when r1 chose for them

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


class UnknownTagError(NotFound):
    pass


def quant_label(path: str) -> str | None:
    """The quantization label in a GGUF path (last one in the file name, else in its folders)."""
    name = SHARD.sub(".gguf", path)
    for part in reversed(name.split("/")):
        labels = _LABEL.findall(part)
        if labels:
            return labels[-1].upper()
    return None


def gguf_variants(files: list[RemoteFile]) -> dict[str, tuple[RemoteFile, ...]]:
    """Tag -> the files it means (shards in order); files without a label are tagged by name."""
    variants: dict[str, list[RemoteFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        if not f.path.lower().endswith(".gguf") or _COMPANION.search(f.path):
            continue
        variants.setdefault(quant_label(f.path) or f.path.rsplit("/", 1)[-1], []).append(f)
    return {tag: tuple(group) for tag, group in variants.items()}


def projector_for(files: list[RemoteFile], tag: str) -> RemoteFile | None:
    """The vision projector (`mmproj*.gguf`) to keep with the quantization `tag`, if the repo has any."""
    projectors = sorted((f for f in files if is_projector(f.path)), key=lambda f: f.path)
    # The one at the model's own precision where there is one (an F16 model, its F16 projector); else F16,
    # the precision repos publish projectors at by default (quantizing one costs image understanding for
    # few bytes); else the first.
    for wanted in (tag.upper(), "F16"):
        for projector in projectors:
            if quant_label(projector.path) == wanted:
                return projector
    return projectors[0] if projectors else None


def with_projector(group: tuple[RemoteFile, ...], listing: list[RemoteFile], tag: str) -> tuple[RemoteFile, ...]:
    """A quantization's files, and the vision projector r1 keeps with it if the listing has one."""
    projector = projector_for(listing, tag)
    return (*group, projector) if projector else group


def _rank(tag: str) -> int:
    base = tag.upper().removeprefix("UD-")
    return QUALITY_ORDER.index(base) if base in QUALITY_ORDER else len(QUALITY_ORDER)


def choose(repo_id: str, files: list[RemoteFile], tag: str | None, budget: int) -> Choice:
    """The files for `tag`, or with no tag Q4_K_M / the best quantization that fits `budget` bytes."""
    variants = gguf_variants(files)
    if tag is not None:
        wanted = tag.lower()
        for label, group in variants.items():
            if label.lower() == wanted:
                return Choice(label, group)
        for label, group in variants.items():  # a file name: that file, with its sibling shards
            if any(f.path.lower() == wanted or f.path.rsplit("/", 1)[-1].lower() == wanted for f in group):
                return Choice(label, group)
        tags = ", ".join(sorted(variants, key=_rank)) or "none"
        raise UnknownTagError(f"{repo_id} has no GGUF file for tag '{tag}'; its tags are: {tags}")
    if not variants:
        raise UnknownTagError(f"{repo_id} has no GGUF files and no MLX model (config.json with *.safetensors)")
    for label, group in variants.items():
        if label.upper() == DEFAULT_QUANT:
            return Choice(label, group)
    ranked = sorted(variants.items(), key=lambda item: (_rank(item[0]), item[0]))
    budget_text = f"{budget / 1024**3:.1f} GiB"
    for label, group in ranked:
        if sum(f.size for f in group) * LOAD_OVERHEAD <= budget:
            return Choice(label, group, f"no {DEFAULT_QUANT} in {repo_id}: picked {label}, the best quantization that fits the {budget_text} memory budget")
    label, group = min(variants.items(), key=lambda item: sum(f.size for f in item[1]))
    return Choice(label, group, f"no quantization of {repo_id} fits the {budget_text} memory budget: picked the smallest, {label}")
