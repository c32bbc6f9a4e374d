"""logprobs: the numbers (a log-softmax of the raw logits) and which tokens are reported
(exactly those whose text the client was shown, in the delta that shows it)."""

from __future__ import annotations

import numpy as np
import pytest

from jisu.engine.logprobs import scored_token
from jisu.engine.text_assembler import ScoredTextAssembler


def reference_log_softmax(logits: np.ndarray) -> np.ndarray:
    wide = logits.astype(np.float64)
    return wide - (wide.max() + np.log(np.exp(wide - wide.max()).sum()))


# ---- the numbers ------------------------------------------------------------------------


def test_a_scored_token_is_a_log_softmax_over_the_whole_vocabulary():
    logits = np.random.default_rng(7).normal(0, 4, 151_936).astype(np.float32)
    expected = reference_log_softmax(logits)
    scored = scored_token(logits, 123, top_n=20)
    assert scored.logprob == pytest.approx(expected[123], abs=1e-5)
    best = np.argsort(-expected)[:20]
    assert [token for token, _ in scored.top] == list(best), "the likeliest tokens, best first"
    assert [lp for _, lp in scored.top] == pytest.approx(expected[best], abs=1e-5)
    assert scored.top[0][1] <= 0


def test_no_alternatives_asked_none_computed():
    logits = np.array([1.0, 2.0, 3.0], np.float32)
    assert scored_token(logits, 2, top_n=0).top == ()
    assert len(scored_token(logits, 2, top_n=20).top) == 3, "never more alternatives than tokens"


def test_the_logits_are_left_as_they_were():
    logits = np.array([1.0, 2.0, 3.0], np.float32)
    scored_token(logits, 0, 2)
    assert logits.tolist() == [1.0, 2.0, 3.0], "the sampler reads the same buffer afterwards"


# ---- which tokens are reported ----------------------------------------------------------


def feed_all(assembler: ScoredTextAssembler, pieces: list[bytes]) -> list[tuple[str, list[bytes]]]:
    """(text shown, pieces of the tokens reported with it) after each token and at the end."""
    steps = [(assembler.feed_scored(piece, -0.5, []), assembler.take_logprobs()) for piece in pieces]
    steps.append((assembler.finish(), assembler.take_logprobs()))
    return [(text, [entry.piece for entry in entries]) for text, entries in steps]


def test_each_token_is_reported_with_its_text():
    steps = feed_all(ScoredTextAssembler([]), [b"Hel", b"lo", b"!"])
    assert steps == [("Hel", [b"Hel"]), ("lo", [b"lo"]), ("!", [b"!"]), ("", [])]


def test_tokens_of_a_split_character_go_out_with_the_token_that_completes_it():
    steps = feed_all(ScoredTextAssembler([]), [b"a", "你".encode()[:2], "你".encode()[2:]])
    assert steps == [("a", [b"a"]), ("", []), ("你", [b"\xe4\xbd", b"\xa0"]), ("", [])]


def test_text_offsets_count_characters_of_the_answer():
    assembler = ScoredTextAssembler([])
    for piece in (b"ab", "你".encode()[:1], "你".encode()[1:], b"c"):
        assembler.feed_scored(piece, -1.0, [])
    assert [entry.text_offset for entry in assembler.take_logprobs()] == [0, 2, 2, 3]


def test_the_tokens_of_a_stop_string_are_not_reported():
    steps = feed_all(ScoredTextAssembler(["END"]), [b"ok ", b"E", b"N", b"D", b" more"])
    assert steps == [("ok ", [b"ok "]), ("", []), ("", []), ("", []), ("", []), ("", [])]


def test_tokens_held_back_for_a_stop_string_are_reported_when_their_text_is():
    steps = feed_all(ScoredTextAssembler(["END"]), [b"ok ", b"E", b"x"])
    assert steps[1] == ("", []), "E could still begin END: neither its text nor its logprob goes out"
    assert steps[2] == ("Ex", [b"E", b"x"])


def test_held_tokens_that_never_became_a_stop_string_are_reported_at_the_end():
    steps = feed_all(ScoredTextAssembler(["END"]), [b"ok ", b"EN"])
    assert steps[-1] == ("EN", [b"EN"])


def test_a_token_the_stop_string_cuts_through_is_reported_whole():
    steps = feed_all(ScoredTextAssembler(["END"]), [b"ok", b" EN", b"D"])
    assert steps[1] == (" ", [b" EN"]), "its first character was shown: the client saw this token begin"
    assert steps[2] == ("", [])


def test_a_character_left_unfinished_at_the_end_is_not_reported():
    steps = feed_all(ScoredTextAssembler([]), [b"a", "你".encode()[:2]])
    assert steps[-1] == ("", [])
