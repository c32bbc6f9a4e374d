"""Stop strings: end the answer at the first stop string, and never print any of it.

Text that could still turn out to be the start of a stop string is held back until the
next piece decides it; at the end of generation whatever is held is released.
"""

from __future__ import annotations

from typing import Sequence


class StopStringMatcher:
    def __init__(self, stop_strings: Sequence[str]) -> None:
        self._stops = [s for s in stop_strings if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what can be shown now. Sets `stopped` on a match."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        pending = self._held + text
        first_match = min(
            (index for index in (pending.find(s) for s in self._stops) if index >= 0),
            default=-1,
        )
        if first_match >= 0:
            self.stopped = True
            self._held = ""
            return pending[:first_match]
        keep = self._longest_partial_match(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """Generation ended without a match: the held text was real output after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial_match(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
