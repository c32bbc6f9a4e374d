"""Incremental detokenization never shows U+FFFD for characters split across tokens."""

from jisu.engine.detok import IncrementalDetokenizer


def feed_all(pieces):
    detok = IncrementalDetokenizer()
    shown = [detok.feed(p) for p in pieces]
    return shown, detok


def test_chinese_character_split_over_three_tokens():
    data = "极速".encode()  # two characters, three bytes each
    shown, _ = feed_all([data[:1], data[1:2], data[2:4], data[4:]])
    assert shown == ["", "", "极", "速"]


def test_emoji_split_byte_by_byte():
    data = "ok 😀!".encode()
    shown, _ = feed_all([bytes([b]) for b in data])
    assert shown == ["o", "k", " ", "", "", "", "😀", "!"], "the emoji appears whole, with its fourth byte"


def test_ascii_passes_straight_through():
    shown, _ = feed_all([b"Hello", b" world"])
    assert shown == ["Hello", " world"]


def test_unfinished_character_at_the_end_is_dropped_not_replaced():
    shown, detok = feed_all(["好".encode()[:2]])
    assert shown == [""], "two of the character's three bytes are held back"
    assert detok.finish() == ""
    assert detok.feed(b"ok") == "ok", "the dropped bytes do not reach the next text"


def test_truly_invalid_bytes_are_replaced_once():
    shown, _ = feed_all([b"a\xffb"])
    assert shown == ["a\ufffdb"]
