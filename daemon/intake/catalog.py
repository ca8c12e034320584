"""Short names (`deepseek-r1:7b`) for Hugging Face repos, from catalog.json shipped beside this file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..store import ModelName, parse_name
from .quant import QUALITY_ORDER

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class Entry:
    name: str
    repo: str
    tag: str | None  # the quantization to pull; None: r1's default pick
    description: str

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "repo": self.repo, "tag": self.tag, "description": self.description}


@cache
def entries() -> dict[str, Entry]:
    """Catalog entries by name key (case-insensitive)."""
    data = json.loads(CATALOG_FILE.read_text())
    out = {}
    for item in data["models"]:
        name = parse_name(item["name"])
        out[name.key] = Entry(str(name), item["repo"], item.get("tag"), item["description"])
    return out


def lookup(name: ModelName) -> Entry | None:
    """The entry for a short name; `name:size-quant` picks another quantization of `name:size`."""
    if name.org is not None:  # a Hub repo or a registry's namespaced model
        return None
    catalog = entries()
    if (entry := catalog.get(name.key)) is not None:
        return entry
    base, dash, quant = name.tag.rpartition("-")
    if dash and quant.upper().removeprefix("UD-") in QUALITY_ORDER:
        entry = catalog.get(ModelName(name.model, base).key)
        if entry is not None:
            return Entry(str(name), entry.repo, quant.upper(), entry.description)
    return None
