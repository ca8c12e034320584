"""Prompt caches across turns for the MLX backend: the KV cache of a finished sequence, kept so that
the next request that starts with the same tokens (a chat's next turn) evaluates only the rest.

The caches stand in for llama.cpp's idle slots: finished sequences keep their cache only while a
slot is free, so active sequences and kept caches together never hold more than `slots` caches,
the KV memory the scheduler budgets for (slots x num_ctx). A cache is taken out when reused, never
copied.
"""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

from .base import shared_prefix


class PromptCaches:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._kept: list[tuple[list[int], list[Any]]] = []  # (tokens in the cache, cache), oldest first

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, tokens: list[int]) -> tuple[list[Any] | None, int]:
        """The kept cache sharing the longest prefix with `tokens`, cut to that prefix, and the prefix's
        length; (None, 0) when none shares one. At least the last token is left to evaluate: its logits
        give the first new token."""
        best, best_len = None, 0
        for i, (kept, cache) in enumerate(self._kept):
            shared = min(shared_prefix(kept, tokens), len(tokens) - 1)
            # A cache holding more than the shared prefix must be cut back, which not every cache allows
            # (recurrent layers, a rotating window that has wrapped).
            if shared > best_len and (shared == len(kept) or can_trim_prompt_cache(cache)):
                best, best_len = i, shared
        if best is None:
            return None, 0
        kept, cache = self._kept.pop(best)
        trim_prompt_cache(cache, len(kept) - best_len)
        return cache, best_len

    def keep(self, tokens: list[int], cache: list[Any], active: int) -> None:
        """Keep the cache of a finished sequence while `active` sequences run; the oldest go first."""
        if tokens:
            self._kept.append((tokens, cache))
        self.fit(active)

    def fit(self, active: int) -> None:
        """Drop the oldest kept caches until they and `active` running sequences fit the slots."""
        del self._kept[: max(0, len(self._kept) + active - self.slots)]
