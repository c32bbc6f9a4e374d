"""Incremental, UTF-8 safe detokenization.

A token is a byte string, and one Chinese character or emoji is often split over two or
three tokens. Decoding each token on its own would print U+FFFD; instead we keep the
incomplete tail of a character until the byte that completes it arrives.
"""

from __future__ import annotations

import codecs


class IncrementalDetokenizer:
    def __init__(self) -> None:
        # "replace" only fires for bytes that can never become valid UTF-8; an incomplete
        # multi-byte sequence at the end of the input is buffered, not replaced.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now complete."""
        return self._decoder.decode(piece)

    def finish(self) -> str:
        """End of generation: an unfinished character is dropped rather than shown as U+FFFD."""
        self._decoder.reset()
        return ""
