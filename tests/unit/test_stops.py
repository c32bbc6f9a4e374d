"""Stop strings are held back until they can no longer match, and never printed."""

from jisu.engine.stops import StopStringMatcher


def run(stops, pieces):
    matcher = StopStringMatcher(stops)
    shown = [matcher.feed(p) for p in pieces]
    return shown, matcher


def test_stop_string_split_over_pieces_is_never_shown():
    shown, matcher = run(["STOP"], ["Hello S", "TO", "P world"])
    assert "".join(shown) == "Hello "
    assert matcher.stopped


def test_partial_match_is_released_when_it_turns_out_not_to_match():
    shown, matcher = run(["STOP"], ["a ST", "ART"])
    assert shown == ["a ", "START"]
    assert not matcher.stopped


def test_held_text_is_released_at_the_end():
    shown, matcher = run(["</answer>"], ["x </ans"])
    assert shown == ["x "]
    assert matcher.flush() == "</ans"


def test_earliest_of_several_stop_strings_wins():
    shown, _ = run(["world", "lo"], ["hello world"])
    assert shown == ["hel"]


def test_nothing_after_a_stop():
    matcher = StopStringMatcher(["\n\n"])
    assert matcher.feed("a\n\nb") == "a"
    assert matcher.feed("more") == ""
    assert matcher.flush() == ""


def test_no_stop_strings_passes_everything():
    shown, matcher = run([], ["a", "b"])
    assert shown == ["a", "b"] and matcher.flush() == ""


def test_chinese_stop_string():
    shown, matcher = run(["。"], ["北京是中国的首都", "。还有"])
    assert "".join(shown) == "北京是中国的首都" and matcher.stopped
