"""Keeping the running sequences next to each other, so a step is one pass over the weights.

With one KV stream per sequence, llama.cpp splits a batch into micro-batches of sequences
with consecutive ids (llama_batch_allocr::split_equal, "sequential"), and every micro-batch
reads all the weights again. Four answers decoding in sequences 0, 2, 4 and 6 take four
passes: 70 ms a step on two cores, where 0-3 take 46 ms and all eight 65 ms.

So when the running sequences have holes between them, the ones outside the best window
move into the idle sequences inside it: their KV is swapped with whatever the idle one held
(a copy of each, in proportion to their tokens: a few ms against ~20 ms saved on every step
that follows). Pure: which moves; SlotTable.compact carries them out.
"""

from __future__ import annotations


def compaction_moves(busy: set[int], n_sequences: int) -> list[tuple[int, int]]:
    """(busy sequence, idle sequence) pairs whose swap leaves every busy sequence in one
    run of consecutive ids: the window of len(busy) ids that already holds the most busy
    ones (the lowest such window), filled from outside it. Empty when already one run."""
    width = len(busy)
    if width < 2 or max(busy) - min(busy) + 1 == width:
        return []
    start = max(range(n_sequences - width + 1),
                key=lambda first: (sum(first <= seq < first + width for seq in busy), -first))
    window = range(start, start + width)
    outside = sorted(seq for seq in busy if seq not in window)
    holes = [seq for seq in window if seq not in busy]
    return list(zip(outside, holes))
