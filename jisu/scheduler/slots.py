"""Engine sequences ("slots"), the conversation each one holds, and picking one for a prompt.

Every slot is one llama.cpp sequence with its own KV stream. After a request ends, its slot
keeps the KV, so the next turn of that conversation (which starts with exactly those
tokens) only runs its new message. A new prompt goes to the idle slot that already holds
the longest part of it; a slot's contents are saved to the host cache before they are
overwritten, and restored from there when that conversation comes back. A slot also keeps
the logits its last prompt ended with (see PromptEnd), so the same prompt sent again needs
no step at all before its first token.

Every slot and saved copy remembers whose KV it holds (CacheOwner): a prompt is matched only
against its own user's, and a known conversation prefers its own slot, even for a branch of
it (a regenerated answer, an edited message), rather than taking over another conversation's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from jisu.scheduler.placement import compaction_moves
from jisu.scheduler.prefix_cache import HostCache, PromptEnd, SavedSequence, common_prefix_length
from jisu.scheduler.request import CacheOwner

# Shorter contents are cheaper to recompute than to save and restore.
MIN_TOKENS_WORTH_SAVING = 64
MIN_TOKENS_WORTH_COPYING = 16
# Restore from the host cache only when it saves at least this many tokens of prefill.
MIN_RESTORE_GAIN = 32


@dataclass(eq=False)
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV holds (when idle)
    busy: bool = False
    idle_since: float = 0.0
    prompt_end: PromptEnd | None = None  # of a prompt the KV holds, when known
    owner: CacheOwner = CacheOwner()  # of the request that left the KV


class Acquired(NamedTuple):
    slot: Slot
    reuse: int  # leading prompt tokens the slot's KV already holds
    prompt_end_logits: Any  # when it holds the whole prompt: the logits to answer from; else None


class SlotTable:
    def __init__(self, engine, host_cache: HostCache, reuse_prefixes: bool = True) -> None:
        self.engine = engine
        self.host_cache = host_cache
        self.reuse_prefixes = reuse_prefixes
        self.slots = [Slot(seq_id) for seq_id in range(engine.n_sequences)]

    def idle(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.busy]

    def new_tokens_hint(self, prompt: list[int], owner: CacheOwner = CacheOwner()) -> int | None:
        """About how many of `prompt`'s tokens the best idle slot lacks; None when no slot is
        idle. Any thread may ask: it only reads (slots replace their token lists, never
        change them in place), and a stale answer costs a needless or a missed
        interruption, never a wrong result."""
        idle = [slot for slot in self.slots if not slot.busy]
        if not idle:
            return None
        if not self.reuse_prefixes:
            return len(prompt)
        return len(prompt) - max(_held(slot, prompt, owner) for slot in idle)

    def acquire(self, prompt: list[int], owner: CacheOwner = CacheOwner()) -> Acquired | None:
        """Reserve an idle slot for `prompt`, with how much of it the slot's KV holds: all of
        it only when the logits of its last token were kept too, else at most len(prompt) - 1
        (the last token must run to give logits). Only KV `owner` may reuse counts. None when
        every slot is busy."""
        idle = self.idle()
        if not idle:
            return None
        if not self.reuse_prefixes:
            slot = idle[0]
            self.engine.forget(slot.seq_id)
            slot.tokens, slot.prompt_end, slot.busy, slot.owner = [], None, True, owner
            return Acquired(slot, 0, None)

        donor = max(idle, key=lambda s: (_held(s, prompt, owner), owner.continues(s.owner), s.idle_since))
        match = _held(donor, prompt, owner)
        key, saved_match = self.host_cache.best_match(prompt, owner)
        restore = key is not None and saved_match >= match + MIN_RESTORE_GAIN
        # The next turn of the conversation a slot holds; or a new branch of this request's
        # own conversation, whose old branch it replaces rather than another conversation.
        if (owner.continues(donor.owner) or match and match == len(donor.tokens)) and not restore:
            slot = donor
        else:
            # Keep other conversations where they are: take an empty or long-idle slot,
            # saving what it held, and bring the best prefix into it.
            slot = self._least_valuable(idle)
            self._stash(slot)
            if restore:
                saved = self.host_cache.take(key)
                self.engine.restore_sequence(slot.seq_id, saved.state)
                slot.tokens, slot.prompt_end, match = list(saved.tokens), saved.prompt_end, saved_match
            elif donor is not slot and match >= MIN_TOKENS_WORTH_COPYING:
                # e.g. a system prompt the user's chats share: copying KV beats recomputing it
                self.engine.restore_sequence(slot.seq_id, self.engine.save_sequence(donor.seq_id))
                slot.tokens, slot.prompt_end = list(donor.tokens), donor.prompt_end
            elif donor is not slot:
                match = 0

        end = slot.prompt_end
        whole_prompt_known = end is not None and end.length == len(prompt) <= match
        reuse = len(prompt) if whole_prompt_known else min(match, len(prompt) - 1)
        self.engine.forget(slot.seq_id, start=reuse)
        slot.tokens = slot.tokens[:reuse]
        slot.prompt_end = None  # the request on it keeps its own (see release)
        slot.busy, slot.owner = True, owner
        return Acquired(slot, reuse, end.logits if whole_prompt_known else None)

    def release(self, slot: Slot, tokens_in_kv: list[int] | None, prompt_end: PromptEnd | None = None) -> None:
        """The request on `slot` ended; None means its KV cannot be trusted (an error).
        `prompt_end`: the logits its prompt ended with, if it got that far."""
        slot.busy = False
        slot.idle_since = time.monotonic()
        if tokens_in_kv is None or not self.reuse_prefixes:
            self.engine.forget(slot.seq_id)
            slot.tokens, slot.prompt_end = [], None
        else:
            slot.tokens = tokens_in_kv
            slot.prompt_end = prompt_end if prompt_end and prompt_end.length <= len(tokens_in_kv) else None

    def compact(self) -> int:
        """Move busy slots' KV so the busy sequences have consecutive ids (see placement.py);
        a slot keeps its contents and owner, only its sequence id changes. Returns the number
        of moves."""
        by_seq = {slot.seq_id: slot for slot in self.slots}
        moves = compaction_moves({slot.seq_id for slot in self.slots if slot.busy}, len(self.slots))
        for busy_seq, idle_seq in moves:
            busy, idle = by_seq[busy_seq], by_seq[idle_seq]
            busy_kv = self.engine.save_sequence(busy_seq)
            idle_kv = self.engine.save_sequence(idle_seq) if idle.tokens else None
            self.engine.restore_sequence(idle_seq, busy_kv)
            if idle_kv is None:
                self.engine.forget(busy_seq)
            else:
                self.engine.restore_sequence(busy_seq, idle_kv)
            busy.seq_id, idle.seq_id = idle_seq, busy_seq
        return len(moves)

    def _least_valuable(self, idle: list[Slot]) -> Slot:
        """An empty slot, else the one idle the longest."""
        return min(idle, key=lambda s: (bool(s.tokens), s.idle_since))

    def _stash(self, slot: Slot) -> None:
        if len(slot.tokens) >= MIN_TOKENS_WORTH_SAVING and self.host_cache.max_bytes > 0:
            self.host_cache.put(SavedSequence(list(slot.tokens), self.engine.save_sequence(slot.seq_id),
                                              slot.prompt_end, slot.owner))


def _held(slot: Slot, prompt: list[int], owner: CacheOwner) -> int:
    """How many leading tokens of `prompt` the slot's KV holds that `owner` may reuse."""
    return common_prefix_length(slot.tokens, prompt) if owner.may_reuse(slot.owner) else 0
