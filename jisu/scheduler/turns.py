"""Chat turns: how the template marks them, and closing a turn as soon as its answer ends.

A conversation's next prompt repeats the answer token for token, then the end of the turn
and the start of the next user message (`<|im_end|>\\n<|im_start|>user\\n` in ChatML). Run
into the finished answer's KV at once, those tokens are already computed when the next
message arrives, so it only runs its own words. That is worth a step only when a next turn
can follow the answer exactly: the whole answer reached the client, the prompt asked for a
chat answer, and the closing fits in the context.

Pure: tokens and request state in, tokens out; the engine loop runs what this decides.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jisu.engine.protocol import Tokenizer
from jisu.engine.template import turn_markers
from jisu.types import FinishReason

if TYPE_CHECKING:
    from jisu.scheduler.request import Request


class AnswerEnd(enum.Enum):
    """Why a running answer ended, as its conversation's next turn sees it."""

    END_OF_TURN = "end_of_turn"  # the model ended its turn
    MAX_TOKENS = "max_tokens"  # the client's max_tokens
    STOP_STRING = "stop_string"  # one of the client's stop strings matched
    CONTEXT_FULL = "context_full"  # the conversation filled the context window

    @property
    def finish_reason(self) -> FinishReason:
        if self in (AnswerEnd.MAX_TOKENS, AnswerEnd.CONTEXT_FULL):
            return FinishReason.LENGTH
        return FinishReason.STOP

    @property
    def next_turn_may_follow(self) -> bool:
        """Whether the conversation's next prompt can repeat this answer token for token:
        not after a stop string (the client never saw what was generated past it), nor in
        a full context (no next prompt fits)."""
        return self in (AnswerEnd.END_OF_TURN, AnswerEnd.MAX_TOKENS)


@dataclass(frozen=True)
class ChatTurns:
    """How the chat template marks turns, in tokens: a prompt ending with `reply_opening`
    asks for an assistant's answer, and `closing` follows that answer in the chat's next
    prompt."""

    reply_opening: tuple[int, ...] = ()
    closing: tuple[int, ...] = ()

    @classmethod
    def of_template(cls, tokenizer: Tokenizer) -> ChatTurns:
        """The chat template's markers, in this tokenizer's tokens."""
        reply_opening, closing = turn_markers(tokenizer)
        return cls(tuple(reply_opening), tuple(closing))

    def asks_for_answer(self, prompt: Sequence[int]) -> bool:
        """Whether `prompt` ends by opening an assistant's answer (a chat prompt, not a raw
        completion, which no next turn follows)."""
        opening = self.reply_opening
        return bool(opening) and tuple(prompt[-len(opening):]) == opening

    def tokens_to_close(self, request: Request, end: AnswerEnd, ctx_size: int) -> list[int]:
        """What to run into a finished answer's KV before its slot is freed: the answer's
        last token if it was sampled but not yet run, then the turn's closing. Empty when
        no next turn can follow this answer exactly (see the module doc)."""
        if not (self.closing and end.next_turn_may_follow and self.asks_for_answer(request.prompt_tokens)):
            return []
        tokens = (request.prompt_tokens + request.generated)[request.n_past:] + list(self.closing)
        return tokens if request.n_past + len(tokens) < ctx_size else []


NO_TURN_MARKERS = ChatTurns()  # markers unknown, or no prefix reuse to speed up: no turn is closed
