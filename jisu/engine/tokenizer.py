"""Text <-> token ids through llama.cpp's vocabulary."""

from __future__ import annotations

import ctypes
import functools
import threading
from array import array
from collections import OrderedDict
from typing import Sequence

import llama_cpp.llama_cpp as C
import numpy as np

from jisu.engine.template import Segment


# Segments of chat history remembered by tokenize_segments, in tokens (4 bytes each).
SEGMENT_CACHE_TOKENS = 1_000_000


class Tokenizer:
    """Text <-> token ids. Reads only the vocabulary, so any thread may call it."""

    def __init__(self, vocab: C.llama_vocab_p) -> None:
        self.vocab = vocab
        self.n_vocab = C.llama_vocab_n_tokens(vocab)
        self._pieces: dict[int, bytes] = {}
        self._segments = _SegmentCache(SEGMENT_CACHE_TOKENS)

    def tokenize(self, text: str, special: bool = False, add_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (C.llama_token * capacity)()
        count = C.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add_special, special)
        if count < 0:  # buffer too small: llama.cpp reports the size it needs
            capacity = -count
            buffer = (C.llama_token * capacity)()
            count = C.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add_special, special)
        return list(buffer[:count])

    def tokenize_segments(self, segments: Sequence[Segment]) -> list[int]:
        """A chat resends its whole history every turn, and tokenizing all of it again would
        hold the server's event loop for milliseconds each time: segments seen before
        come from a cache, so a turn tokenizes little more than its new message."""
        tokens: list[int] = []
        for segment in segments:
            key = (segment.text, segment.special)
            known = self._segments.get(key)
            if known is None:
                known = array("i", self.tokenize(segment.text, special=segment.special))
                self._segments.put(key, known)
            tokens.extend(known)
        return tokens

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token; control tokens render as nothing unless `special`
        (then as their markers, "<|im_end|>"). `token` must be in the vocabulary:
        llama.cpp aborts the process on any other id."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._render(token, special=False)
        if special and not cached:  # only control tokens render differently
            return self._render(token, special=True)
        return cached

    def _render(self, token: int, special: bool) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        length = C.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if length < 0:
            buffer = ctypes.create_string_buffer(-length)
            length = C.llama_token_to_piece(self.vocab, token, buffer, -length, 0, special)
        return buffer.raw[:length]

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        return b"".join(self.piece(t, special) for t in tokens).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(C.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def end_of_generation_tokens(self) -> np.ndarray:
        """Every token that ends a turn (Qwen has several); found once (a pass over the vocabulary)."""
        return np.array([t for t in range(self.n_vocab) if C.llama_vocab_is_eog(self.vocab, t)], dtype=np.int64)


class _SegmentCache:
    """Least recently used token lists, within a budget of tokens; thread-safe."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[str, bool], array] = OrderedDict()
        self._tokens = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bool]) -> array | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, bool], tokens: array) -> None:
        if len(tokens) > self.max_tokens:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = tokens
            self._tokens += len(tokens)
            while self._tokens > self.max_tokens:
                _, evicted = self._entries.popitem(last=False)
                self._tokens -= len(evicted)
