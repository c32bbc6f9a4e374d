"""One step's batch: which tokens of which running requests go into the next llama_decode.

A step carries the next token of every decoding answer, plus as much prompt prefill as the
pacer's budget allows beside them, so people receiving answers keep receiving them while
someone pastes a long document. Two rules shape it:

- New turns first. A request with few prompt tokens to compute once its history was reused
  (the next message of a chat) is a new turn: it runs in a step of its own, ahead of the
  running answers, and new turns waiting together share that step. On a few cores a step is
  compute-bound: adding the running answers' tokens to a new turn's prefill makes the step
  as long as both done apart. Running the new turns first brings their first token one
  whole step sooner, and costs each running answer a single pause of about one step.
- Prefill order: new turns in the order they came, then longer prompts, the one with the
  least left first: a chat turn never waits behind a document.

Pure: the running requests' state in, a plan out; the engine loop runs it and records the
outcome (see loop.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jisu.engine.protocol import BatchSlice
from jisu.scheduler.request import Phase, Request

# A request with at most this many prompt tokens to compute (a chat turn after its prefix
# was reused) is a new turn; the tail of a long prompt is not, it keeps sharing steps.
NEW_TURN_MAX_TOKENS = 64
# New turns waiting together share one step up to this many prompt tokens.
NEW_TURNS_STEP_TOKENS = 2 * NEW_TURN_MAX_TOKENS


@dataclass(frozen=True)
class StepPlan:
    slices: list[BatchSlice]
    owners: list[Request]  # owners[i] is the request slices[i] belongs to
    n_decoding: int  # the first n_decoding slices are answers' next tokens; the rest prompt

    @property
    def interruptible(self) -> bool:
        """Only steps of running answers give way to a new turn (which never shares a step
        with them, and the pacer keeps them short); a step of prompts alone may be a long
        document's chunk, work that would be lost."""
        return self.n_decoding > 0

    @property
    def n_prefill(self) -> int:
        return sum(len(piece.tokens) for piece in self.slices) - self.n_decoding


def plan_step(
    running: Sequence[Request],
    batch_capacity: int,
    prefill_budget: Callable[[int], int],
) -> StepPlan:
    """The next step for `running` (requests in PREFILL or DECODE, each with a slot).

    `prefill_budget(n)`: prompt tokens that may share a step with n decoding answers (the
    pacer's).
    """
    decoding: list[Request] = []
    prefilling: list[Request] = []
    for request in running:
        if request.phase is Phase.DECODE:
            decoding.append(request)
        elif request.phase is Phase.PREFILL:
            prefilling.append(request)
    prefilling.sort(key=prefill_order)
    if decoding and prefilling and is_new_turn(prefilling[0]):  # new turns sort first
        prefilling, decoding = turns_for_one_step(prefilling), []

    slices = [BatchSlice(r.slot.seq_id, [r.next_token], r.n_past, True) for r in decoding]
    owners = list(decoding)
    capacity = batch_capacity - len(slices)
    if decoding:  # people are waiting for tokens: keep the step short
        capacity = min(capacity, prefill_budget(len(decoding)))
    for request in prefilling:
        if capacity <= 0:
            break
        take = min(capacity, request.prompt_remaining)
        slices.append(prompt_slice(request, take))
        owners.append(request)
        capacity -= take
    return StepPlan(slices, owners, len(decoding))


def prompt_slice(request: Request, take: int) -> BatchSlice:
    """The next `take` prompt tokens of `request`; logits only for the prompt's last one."""
    chunk = request.prompt_tokens[request.n_past : request.n_past + take]
    return BatchSlice(request.slot.seq_id, chunk, request.n_past, take == request.prompt_remaining)


def is_new_turn(request: Request) -> bool:
    """A chat turn after its history was reused (or any short prompt), not a document."""
    return request.new_prompt_tokens <= NEW_TURN_MAX_TOKENS


def could_start_as_new_turn(uncached_tokens: int | None) -> bool:
    """Whether a request that just arrived would run as a new turn if admitted now, so it is
    worth interrupting a step of running answers for. `uncached_tokens`: how many of its
    prompt tokens the best idle slot lacks; None when no slot is idle (it waits anyway)."""
    return uncached_tokens is not None and uncached_tokens <= NEW_TURN_MAX_TOKENS


def prefill_order(request: Request) -> tuple[int, float]:
    """New chat turns first, in the order they came; then longer prompts, the one with the
    least left first: a chat turn never waits behind a document."""
    if is_new_turn(request):
        return (0, request.submitted_at)
    return (1, request.prompt_remaining)


def turns_for_one_step(prefilling: Sequence[Request]) -> list[Request]:
    """The new turns at the head of `prefilling` (in prefill order), each whole, together up
    to NEW_TURNS_STEP_TOKENS (the first always). Turns that wait together share a step,
    which takes less than the two apart: the later answer starts much sooner, the earlier
    one a little later."""
    chosen: list[Request] = []
    total = 0
    for request in prefilling:
        if not is_new_turn(request) or (chosen and total + request.prompt_remaining > NEW_TURNS_STEP_TOKENS):
            break
        chosen.append(request)
        total += request.prompt_remaining
    return chosen
