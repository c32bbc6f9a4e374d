"""Turn closing: a finished chat answer gets its turn's closing only when a next turn can
follow it exactly; otherwise the step would be spent on tokens no prompt will reuse."""

import pytest

from jisu.scheduler.request import Request
from jisu.scheduler.turns import NO_TURN_MARKERS, AnswerEnd, ChatTurns
from jisu.types import FinishReason, SamplingParams

OPENING, CLOSING = (90, 91), (80, 81, 82)
TURNS = ChatTurns(reply_opening=OPENING, closing=CLOSING)
CTX = 2048


def finished_answer(prompt, generated, last_token_run=False) -> Request:
    """A request whose answer just ended; the last sampled token has not run yet unless
    `last_token_run` (an end-of-turn token is sampled but never added to the answer)."""
    request = Request(list(prompt), SamplingParams(temperature=0), lambda event: None)
    request.generated = list(generated)
    request.n_past = len(prompt) + len(generated) - (0 if last_token_run else 1)
    return request


CHAT_PROMPT = [1, 2, 3, *OPENING]


def test_the_model_ending_its_turn_closes_it():
    request = finished_answer(CHAT_PROMPT, [10, 11, 12], last_token_run=True)
    assert TURNS.tokens_to_close(request, AnswerEnd.END_OF_TURN, CTX) == list(CLOSING)


def test_an_answer_cut_by_max_tokens_runs_its_last_token_then_the_closing():
    request = finished_answer(CHAT_PROMPT, [10, 11, 12])
    assert TURNS.tokens_to_close(request, AnswerEnd.MAX_TOKENS, CTX) == [12, *CLOSING], \
        "the KV must hold the whole answer, as the next prompt repeats it"


@pytest.mark.parametrize("end", [AnswerEnd.STOP_STRING, AnswerEnd.CONTEXT_FULL])
def test_no_closing_when_the_next_prompt_cannot_repeat_the_answer(end):
    request = finished_answer(CHAT_PROMPT, [10, 11, 12])
    assert TURNS.tokens_to_close(request, end, CTX) == []


def test_no_closing_after_a_raw_completion():
    request = finished_answer([1, 2, 3, 4], [10, 11], last_token_run=True)
    assert not TURNS.asks_for_answer(request.prompt_tokens)
    assert TURNS.tokens_to_close(request, AnswerEnd.END_OF_TURN, CTX) == [], \
        "a prompt that opened no assistant answer is followed by no next turn"


def test_no_closing_when_the_template_markers_are_unknown():
    request = finished_answer(CHAT_PROMPT, [10, 11], last_token_run=True)
    assert NO_TURN_MARKERS.tokens_to_close(request, AnswerEnd.END_OF_TURN, CTX) == []
    assert ChatTurns(reply_opening=OPENING).tokens_to_close(request, AnswerEnd.END_OF_TURN, CTX) == []


def test_no_closing_that_would_not_fit_in_the_context():
    request = finished_answer(CHAT_PROMPT, [10, 11], last_token_run=True)
    room = request.n_past + len(CLOSING)
    assert TURNS.tokens_to_close(request, AnswerEnd.END_OF_TURN, room + 1) == list(CLOSING)
    assert TURNS.tokens_to_close(request, AnswerEnd.END_OF_TURN, room) == []


@pytest.mark.parametrize(("end", "reason"), [
    (AnswerEnd.END_OF_TURN, FinishReason.STOP),
    (AnswerEnd.STOP_STRING, FinishReason.STOP),
    (AnswerEnd.MAX_TOKENS, FinishReason.LENGTH),
    (AnswerEnd.CONTEXT_FULL, FinishReason.LENGTH),
])
def test_what_the_client_is_told(end, reason):
    assert end.finish_reason is reason
