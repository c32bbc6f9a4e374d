"""An answer's text as its client sees it: token bytes in, displayable text out.

Composes the two edge rules of text (see detok.py and stops.py): a character split over
tokens is shown once it is whole, and text that could still begin a stop string is held
back until the next piece decides it.
"""

from __future__ import annotations

from collections.abc import Sequence

from jisu.engine.detok import IncrementalDetokenizer
from jisu.engine.stops import StopStringMatcher


class TextAssembler:
    def __init__(self, stop_strings: Sequence[str]) -> None:
        self._detokenizer = IncrementalDetokenizer()
        self._stops = StopStringMatcher(stop_strings)

    @property
    def stopped(self) -> bool:
        """A stop string matched: the answer ends here."""
        return self._stops.stopped

    def feed(self, piece: bytes) -> str:
        """One token's bytes; returns the text that may be shown now."""
        return self._stops.feed(self._detokenizer.feed(piece))

    def finish(self) -> str:
        """The answer ended: whatever was held back and turned out to be real text."""
        return self._stops.feed(self._detokenizer.finish()) + self._stops.flush()
