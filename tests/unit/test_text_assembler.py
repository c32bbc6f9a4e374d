"""An answer's text: whole characters only, stop strings never shown, held text released."""

from jisu.engine.text_assembler import TextAssembler


def test_a_character_split_over_tokens_is_shown_once_whole():
    assembler = TextAssembler([])
    data = "极".encode()
    assert [assembler.feed(data[:1]), assembler.feed(data[1:2]), assembler.feed(data[2:])] == ["", "", "极"]


def test_a_stop_string_split_over_tokens_ends_the_answer_unseen():
    assembler = TextAssembler(["</a>"])
    shown = [assembler.feed(piece) for piece in (b"ok </", b"a", b"> more")]
    assert "".join(shown) == "ok " and assembler.stopped
    assert assembler.finish() == "", "nothing after a stop string reaches the client"


def test_text_held_back_for_a_stop_string_is_released_at_the_end():
    assembler = TextAssembler(["</a>"])
    assert assembler.feed(b"ok </") == "ok "
    assert not assembler.stopped
    assert assembler.finish() == "</", "held text that never became a stop string is real output"
