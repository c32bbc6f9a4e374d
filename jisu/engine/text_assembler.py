"""An answer's text as its client sees it: token bytes in, displayable text out.

Composes the two edge rules of text (see detok.py and stops.py): a character split over
tokens is shown once it is whole, and text that could still begin a stop string is held
back until the next piece decides it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from jisu.engine.detok import IncrementalDetokenizer
from jisu.engine.stops import StopStringMatcher
from jisu.types import TokenLogprob


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

    def take_logprobs(self) -> list[TokenLogprob] | None:
        """The logprobs of the tokens whose text was shown since the last call (None: none
        were asked for)."""
        return None


class ScoredTextAssembler(TextAssembler):
    """The same text, and each token's logprobs handed out with the text it produced: a
    token is reported in the delta that shows its first character, so a client reading the
    deltas gets exactly the tokens of the text it was shown.

    Tokens that only begin a character (one Chinese character or emoji can be two or three
    tokens) go out with the token that completes it; tokens whose text is never shown (a stop
    string, a character left unfinished at the end) are never reported. A token the stop
    string cuts through is reported whole, as the text it began was shown."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        super().__init__(stop_strings)
        self._decoded = 0  # characters the tokens so far decode to
        self._shown = 0  # of those, characters handed out (always a prefix of them)
        self._waiting: deque[TokenLogprob] = deque()  # reported once their first character is shown
        self._released: list[TokenLogprob] = []

    def feed_scored(self, piece: bytes, logprob: float, top: list[tuple[bytes, float]]) -> str:
        """feed() for a token with its logprob and the likeliest tokens at its place."""
        self._waiting.append(TokenLogprob(piece, logprob, top, text_offset=self._decoded))
        decoded = self._detokenizer.feed(piece)
        self._decoded += len(decoded)
        return self._show(self._stops.feed(decoded))

    def finish(self) -> str:
        return self._show(super().finish())

    def take_logprobs(self) -> list[TokenLogprob]:
        released, self._released = self._released, []
        return released

    def _show(self, text: str) -> str:
        self._shown += len(text)
        while self._waiting and self._waiting[0].text_offset < self._shown:
            self._released.append(self._waiting.popleft())
        return text
