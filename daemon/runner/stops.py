"""Stop strings on a stream: text is released as soon as it cannot be the start of one."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        """The text that is surely output; after a stop string, nothing more."""
        if not self.stops:
            return text
        buf = self._held + text
        found = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return buf[: min(found)]
        keep = max((self._partial(buf, s) for s in self.stops), default=0)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def finish(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @staticmethod
    def _partial(text: str, stop: str) -> int:
        """Length of the longest end of `text` that starts `stop`."""
        for size in range(min(len(text), len(stop) - 1), 0, -1):
            if text.endswith(stop[:size]):
                return size
        return 0
