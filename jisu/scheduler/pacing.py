"""How much prompt a step may prefill while others are waiting for their next token.

A step runs one llama_decode for everyone. Its cost is roughly the decode of the running
answers (memory-bound: it grows slowly with their number) plus the prompt tokens added to it
(compute-bound). Both are measured as the server runs, so the prefill share of a step is
sized to keep the step near the budget on whatever machine this is: people receiving an
answer see no gap much longer than the budget while someone pastes a long document.
"""

from __future__ import annotations

STEP_BUDGET_S = 0.35  # keeps inter-token gaps under half a second
MIN_PREFILL_CHUNK = 8  # a long prompt always moves forward; also the smallest chunk
# learned from, so the speed keeps being learned however small the chunks get (a prompt
# slows down as it grows: each new token attends to all the ones before it)
SMOOTHING = 0.3


class StepPacer:
    def __init__(self, budget_s: float = STEP_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.prefill_tokens_per_s = 150.0  # first guesses; replaced by measurements
        self._decode_step_s: dict[int, float] = {}

    def decode_step_s(self, n_decoding: int) -> float:
        """Expected time of a step that only decodes `n_decoding` answers."""
        if n_decoding == 0:
            return 0.0
        if n_decoding in self._decode_step_s:
            return self._decode_step_s[n_decoding]
        known = [(n, t) for n, t in self._decode_step_s.items() if n < n_decoding]
        if known:  # more answers never make a step cheaper
            return max(t for _, t in known)
        return 0.05 + 0.015 * n_decoding

    def prefill_budget(self, n_decoding: int) -> int:
        """Prompt tokens that fit in the next step next to `n_decoding` decode tokens."""
        spare_s = self.budget_s - self.decode_step_s(n_decoding)
        return max(MIN_PREFILL_CHUNK, int(spare_s * self.prefill_tokens_per_s))

    def record(self, n_decoding: int, n_prefill: int, elapsed_s: float) -> None:
        if n_decoding == 0:
            # Only steps that people wait on teach the pace. A step of prompts alone runs
            # faster per token (no decode share, shallow context) and would mislead the next
            # step that shares a long prompt with running answers.
            return
        if n_prefill == 0:
            previous = self._decode_step_s.get(n_decoding, elapsed_s)
            self._decode_step_s[n_decoding] = previous + SMOOTHING * (elapsed_s - previous)
        elif n_prefill >= MIN_PREFILL_CHUNK:
            prefill_s = max(elapsed_s - self.decode_step_s(n_decoding), 1e-3)
            rate = n_prefill / prefill_s
            self.prefill_tokens_per_s += SMOOTHING * (rate - self.prefill_tokens_per_s)
