"""A thinking budget: the tokens a model may spend inside its <think> block before the runner closes the
block for it, so that the answer starts (Anthropic's `budget_tokens`; Ollama's think levels on models
whose templates do not read a level themselves)."""

from __future__ import annotations

from ..reasoning import CLOSE_TAG, OPEN_TAG

# Where the model writes the block itself rather than the template opening it, the opening tag comes first.
LOOKBACK = len(CLOSE_TAG) + 8
CLOSING = f"\n{CLOSE_TAG}\n\n"  # what the runner writes for the model once the budget is spent


class ThinkBudget:
    def __init__(self, tokens: int, *, opened: bool) -> None:
        self.left = tokens
        self.thinking = opened  # the template left a <think> block open
        self.over = False  # no more to count: the block closed, never opened, or the budget was spent
        self._tail = ""

    def spent(self, text: str) -> bool:
        """Counts one token's text; True once, when the budget runs out inside the block."""
        if self.over:
            return False
        self._tail = (self._tail + text)[-LOOKBACK:]
        if not self.thinking:
            if OPEN_TAG in self._tail:
                self.thinking, self._tail = True, self._tail.split(OPEN_TAG)[-1]
            elif self._tail.strip() and not OPEN_TAG.startswith(self._tail.strip()[: len(OPEN_TAG)]):
                self.over = True  # it answers without thinking
            return False
        if CLOSE_TAG in self._tail:
            self.over = True
            return False
        self.left -= 1
        if self.left <= 0:
            self.over = True
            return True
        return False
