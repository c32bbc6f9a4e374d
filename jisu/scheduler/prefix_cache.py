"""Prefix reuse: conversations whose KV we keep, and how much of a new prompt they cover.

A pure data structure: token lists and saved bytes, no llama.cpp. Each engine sequence
(slot) keeps the KV of the last conversation it served; when a slot is needed for a
different conversation, what it held is saved here, in host memory, so that the next turn
of that conversation can be restored instead of recomputed. Entries are evicted least
recently used first once their total size passes the budget. Each entry keeps its owner: a
prompt is matched only against its own user's entries (see CacheOwner).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import count
from typing import Any, Sequence

import numpy as np

from jisu.scheduler.request import CacheOwner


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    if n < 64:
        for i in range(n):
            if a[i] != b[i]:
                return i
        return n
    mismatch = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(mismatch[0]) if mismatch.size else n


@dataclass(frozen=True)
class PromptEnd:
    """The logits a prompt's last token gave (the engine's copy), kept with the KV that holds
    that prompt: the same prompt sent again (a regenerated answer, a retried request) then
    starts answering at once, from exactly the logits its first answer started from, instead
    of running its last token again in a batch of another shape, whose logits differ in the
    last bits (and greedy answers could then differ)."""

    length: int  # the prompt's tokens: the first `length` tokens of the KV
    logits: Any  # what engine.copy_logits returned (a numpy array)

    @property
    def nbytes(self) -> int:
        return getattr(self.logits, "nbytes", 0)


@dataclass(frozen=True)
class SavedSequence:
    tokens: list[int]
    state: bytes | bytearray  # the engine's serialized KV for exactly these tokens
    prompt_end: PromptEnd | None = None
    owner: CacheOwner = CacheOwner()

    @property
    def nbytes(self) -> int:
        return len(self.state) + (self.prompt_end.nbytes if self.prompt_end else 0)


class HostCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, SavedSequence] = OrderedDict()  # LRU first
        self._keys = count()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def put(self, saved: SavedSequence) -> None:
        """Keep a saved sequence, unless a kept one of the same user already covers it."""
        if saved.nbytes > self.max_bytes or not saved.tokens:
            return
        for key, entry in list(self._entries.items()):
            if not saved.owner.may_reuse(entry.owner):
                continue
            shared = common_prefix_length(entry.tokens, saved.tokens)
            if shared == len(saved.tokens):
                self._entries.move_to_end(key)
                return  # an entry already holds all of this
            if shared == len(entry.tokens):
                del self._entries[key]  # the new one extends it
        self._entries[next(self._keys)] = saved
        while self.total_bytes > self.max_bytes:
            self._entries.popitem(last=False)

    def best_match(self, prompt: Sequence[int], owner: CacheOwner = CacheOwner()) -> tuple[int | None, int]:
        """The entry of `owner`'s user sharing the longest token prefix with `prompt` (of
        those, one of `owner`'s conversation), and that length."""
        best_key, best_rank = None, (0, False)
        for key, entry in self._entries.items():
            if owner.may_reuse(entry.owner):
                rank = (common_prefix_length(entry.tokens, prompt), owner.continues(entry.owner))
                if rank[0] and rank > best_rank:
                    best_key, best_rank = key, rank
        return best_key, best_rank[0]

    def take(self, key: int) -> SavedSequence:
        return self._entries.pop(key)
