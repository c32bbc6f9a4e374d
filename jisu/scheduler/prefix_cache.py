"""Which idle KV sequences are kept, and which one a new prompt should start from.

A pure data structure: it knows token lists and sequence ids, not llama.cpp. When a
request finishes, its sequence (prompt + answer) stays in the KV cache as an entry here;
the next turn of the same conversation starts with exactly those tokens, so only the new
message needs a forward pass. Entries are evicted least-recently-used first when their
total size passes the budget or a running request needs the sequence slot or the cells.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np


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


class PrefixCache:
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, list[int]] = OrderedDict()  # seq_id -> tokens, LRU first

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._entries

    @property
    def total_tokens(self) -> int:
        return sum(len(tokens) for tokens in self._entries.values())

    def add(self, seq_id: int, tokens: list[int]) -> list[int]:
        """Keep a finished sequence; returns the seq ids evicted to stay within budget."""
        if not tokens or self.max_tokens <= 0:
            return [seq_id]
        self._entries[seq_id] = tokens
        self._entries.move_to_end(seq_id)
        evicted = []
        while self.total_tokens > self.max_tokens and self._entries:
            evicted.append(self.pop_oldest())
        return evicted

    def best_match(self, prompt: Sequence[int]) -> tuple[int | None, int]:
        """The entry sharing the longest token prefix with `prompt`, and that length."""
        best_seq, best_length = None, 0
        for seq_id, tokens in self._entries.items():
            length = common_prefix_length(tokens, prompt)
            if length > best_length:
                best_seq, best_length = seq_id, length
        return best_seq, best_length

    def tokens(self, seq_id: int) -> list[int]:
        return self._entries[seq_id]

    def touch(self, seq_id: int) -> None:
        self._entries.move_to_end(seq_id)

    def take(self, seq_id: int) -> list[int]:
        """Remove an entry because a request now owns its sequence."""
        return self._entries.pop(seq_id)

    def pop_oldest(self) -> int:
        seq_id, _ = self._entries.popitem(last=False)
        return seq_id
