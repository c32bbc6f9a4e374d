"""`jisu chat`'s commands and input: /set (checked), /show, unknown /commands, \"\"\" blocks and
bracketed paste, through a server on the fake engine and in-process, driven through a pipe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from cli_runner import (RecordingEngine, fake_jisu_serve, foreign_http_server, nothing_at_the_default_address,
                        run_jisu)
from fakes import ByteTokenizer, fake_runtime
from jisu.cli.chat_input import Entry, entries, pipe_reader, terminal_reader
from jisu.engine.template import render_chat
from jisu.types import ChatMessage

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)

ANSWER = "Hello from the fake model!"


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def server(engine):
    with fake_jisu_serve(engine) as (url, _):
        yield url


@pytest.fixture
def chat(monkeypatch, capsys, server):
    """`jisu chat --url <the fake server>` with these lines piped in."""
    return lambda *lines, args=(): run_jisu(monkeypatch, capsys, "chat", "--url", server, *args,
                                            stdin="".join(line + "\n" for line in lines))


def user_turns(prompt: str) -> int:
    return prompt.count("user\n")


# ---- /set -----------------------------------------------------------------------------------


def test_set_changes_what_the_next_answers_ask_for(chat, engine):
    result = chat("/set temperature 0.3", "/set top_p 0.5", "/set top-k 7", "/set max_tokens 5", "/set seed 9",
                  "hi", "/set max_tokens none", "/set seed none", "again")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [ANSWER[:5], ANSWER]
    (first, _), (second, _) = engine.requests
    assert (first.temperature, first.top_p, first.top_k, first.max_tokens, first.seed) == (0.3, 0.5, 7, 5, 9)
    assert (second.max_tokens, second.seed) == (None, None)
    assert "(temperature: 0.3)" in result.err


def test_set_system_sets_the_system_prompt(chat, engine):
    result = chat("/set system 你是一位诗人。", "写一句诗")
    assert result.code == 0
    [(_, prompt)] = engine.requests
    assert prompt.startswith("system\n你是一位诗人。\n")


@pytest.mark.parametrize("command,error", [
    ("/set temperature hot", "jisu: /set temperature: 'hot' is not a number"),
    ("/set temperature 9", "jisu: /set temperature: temperature must be in [0.0, 2.0], got 9.0"),
    ("/set temperature nan", "jisu: /set temperature: temperature must be a number, got nan"),
    ("/set top_p 0", "jisu: /set top_p: top_p must be in (0.0, 1.0], got 0.0"),
    ("/set top_k 2.5", "jisu: /set top_k: '2.5' is not a whole number"),
    ("/set max_tokens 0", "jisu: /set max_tokens: max_tokens must be in [1, 1000000], got 0"),
    ("/set max_tokens lots", "jisu: /set max_tokens: 'lots' is not a whole number or none"),
    ("/set max_tokens", "jisu: /set max_tokens: give a value"),
    ("/set warmth 1", "jisu: /set warmth: no such setting; one of temperature, top_p, top_k, max_tokens, seed, system"),
    ("/set", "jisu: /set needs a setting and a value: temperature, top_p, top_k, max_tokens, seed, system"),
])
def test_a_bad_set_is_one_line_and_changes_nothing(chat, engine, command, error):
    result = chat(command, "hi")
    assert result.code == 0, "the chat goes on"
    assert result.err.strip().splitlines() == [error]
    [(params, prompt)] = engine.requests
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (0.7, 0.8, 20, None)
    assert user_turns(prompt) == 1, "the command was not sent to the model"


# ---- /show ----------------------------------------------------------------------------------


def conversation_tokens(*turns: tuple[str, str]) -> int:
    """The size of this conversation after its last answer, as the fake counts tokens."""
    messages = [ChatMessage(role, text) for role, text in turns]
    prompt = ByteTokenizer().tokenize_segments(render_chat(messages[:-1], None))
    return len(prompt) + len(messages[-1].content.encode())


def test_show_names_the_model_where_it_runs_and_the_context_used(chat, server):
    result = chat("/show", "hi", "/show", "/reset", "/show")
    assert result.code == 0, result.err
    used = conversation_tokens(("user", "hi"), ("assistant", ANSWER))
    shows = result.err.split("model: ")[1:]
    assert len(shows) == 3
    assert shows[0].startswith("Fake-0.5B (q4_0), context 2048 tokens\n")
    assert f"answered by: the jisu server at {server}\n" in shows[0]
    assert "context used: nothing yet" in shows[0]
    assert f"context used: {used} of 2048 tokens (after the last answer)" in shows[1]
    assert "context used: nothing yet" in shows[2], "/reset empties the conversation"
    assert "settings: temperature 0.7, top_p 0.8, top_k 20, max_tokens none, seed random" in shows[0]
    assert "system prompt: default" in shows[0]


def test_show_in_process_counts_the_same(monkeypatch, capsys):
    monkeypatch.setattr("jisu.cli.chat.load_runtime", lambda *a, **k: fake_runtime(RecordingEngine(), parallel=1))
    result = run_jisu(monkeypatch, capsys, "chat", "--temperature", "0", stdin="hi\n/show\n")
    assert result.code == 0, result.err
    used = conversation_tokens(("user", "hi"), ("assistant", ANSWER))
    assert "answered by: in-process" in result.err
    assert f"context used: {used} of 2048 tokens" in result.err
    assert "temperature 0.0" in result.err


# ---- other commands ----------------------------------------------------------------------


@pytest.mark.parametrize("line", ["/rest", "/temperature 0.5", "/usr/bin/env 是什么？"])
def test_an_unknown_command_is_an_error_not_a_message(chat, engine, line):
    result = chat(line)
    assert result.code == 0
    name = line.split()[0]
    assert result.err.startswith(f"jisu: unknown command {name}; /help lists the commands")
    assert engine.requests == [] and result.out == ""


def test_existing_commands_still_work(chat, engine):
    result = chat("/system Reply briefly.", "hi", "/reset", "/help", "/system", "hi", "/exit", "never sent")
    assert result.code == 0, result.err
    assert "(system prompt: Reply briefly.)" in result.err
    assert "(new conversation; conv_" in result.err and "stays in jisu history" in result.err
    assert "commands: /set temperature" in result.err
    first, second = (prompt for _, prompt in engine.requests)
    assert first.startswith("system\nReply briefly.\n")
    assert user_turns(second) == 1 and "Reply briefly." not in second
    assert len(engine.requests) == 2, "/exit ends the chat"


# ---- multi-line input ------------------------------------------------------------------------


def test_triple_quotes_send_several_lines_as_one_message(chat, engine):
    result = chat('"""', "第一行", "", "  /not a command", 'last line"""', "next")
    assert result.code == 0, result.err
    assert len(engine.requests) == 2
    first = engine.requests[0][1]
    assert "user\n第一行\n\n  /not a command\nlast line\n" in first
    assert result.out.splitlines() == [ANSWER, ANSWER]


@pytest.mark.parametrize("lines,message", [
    (['"""one line"""'], "one line"),
    (['"""starts here', "ends here\"\"\""], "starts here\nends here"),
    (['"""', "never closed"], "never closed"),  # the input ended: what was written is sent
])
def test_triple_quote_shapes(lines, message):
    read = iter(lines)

    def read_line(prompt):
        try:
            return next(read)
        except StopIteration:
            raise EOFError from None

    assert list(entries(read_line)) == [Entry(message, multiline=True)]


def test_a_bracketed_paste_is_one_message(isolated_jisu_home):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    pasted = "def add(a, b):\r\n    return a + b\r\n"  # terminals may send \r\n in a paste
    with create_pipe_input() as keyboard:
        read_line = terminal_reader(input=keyboard, output=DummyOutput())
        keyboard.send_text(f"\x1b[200~{pasted}\x1b[201~\r")  # ESC[200~ ... ESC[201~, then Enter
        keyboard.send_text('"""\rtyped\r  by hand"""\r')
        keyboard.send_text("/show\r")
        keyboard.close()
        # prompt_toolkit starts an event loop of its own; another test of this process may
        # have left one marked running on this thread, so read on a thread of its own.
        with ThreadPoolExecutor(1) as reader:
            got = reader.submit(lambda: list(entries(read_line))).result(timeout=30)
    assert got == [Entry("def add(a, b):\n    return a + b\n", multiline=True),
                   Entry("typed\n  by hand", multiline=True),
                   Entry("/show", multiline=False)]


def test_a_pasted_block_is_a_message_even_if_it_starts_with_a_slash(chat, engine):
    result = chat('"""/etc/hosts 是什么文件？"""')
    assert result.err == "" and len(engine.requests) == 1


def test_pipe_reader_reads_lines_without_their_endings():
    import io

    read_line = pipe_reader(io.StringIO("a\r\nb\n"))
    assert [read_line(""), read_line("")] == ["a", "b"]
    with pytest.raises(EOFError):
        read_line("")


# ---- overflow and failures through the server --------------------------------------------------


def test_a_conversation_outgrowing_the_servers_context_drops_its_oldest_turns(chat, engine):
    long = "北京" * 250  # 1,500 bytes: two of them do not fit the fake's 2,048 tokens
    result = chat(long, long + "?")
    assert result.code == 0, result.err
    assert "(dropped user: 北京" in result.err and "(dropped assistant: Hello" in result.err
    assert result.out.splitlines() == [ANSWER, ANSWER]
    assert user_turns(engine.requests[-1][1]) == 1


def test_a_piped_chat_stops_with_exit_1_when_the_connection_is_lost(monkeypatch, capsys):
    with foreign_http_server(jisu_like=True, stream=['data: {"choices": [{"delta": {"content": "Hal"}}]}']) as url:
        result = run_jisu(monkeypatch, capsys, "chat", "--url", url, stdin="hi\nthe second turn\n")
    assert result.code == 1, "a script's later turns were written expecting this answer"
    assert result.out == "Hal"
    assert result.error_line() == f"jisu: error: lost the connection to the jisu server at {url} mid-answer (the stream ended early)"


def test_a_chat_with_no_server_at_its_url_exits_1(monkeypatch, capsys):
    with fake_jisu_serve(RecordingEngine()) as (url, _):
        pass  # a server was at this address and has stopped
    result = run_jisu(monkeypatch, capsys, "chat", "--url", url, stdin="hi\n")
    assert result.code == 1
    assert result.error_line() == f"jisu: error: no jisu server answers at {url} (connection refused)"
