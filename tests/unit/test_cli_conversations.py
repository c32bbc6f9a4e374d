"""`jisu chat` and `jisu ask` keep their conversations: a chat is stored (titled after its first
message), -c continues the last one and --id a given one, `ask` keeps a turn only with -c, --id
or --save, /new starts another, /system changes the stored prompt. Each test runs through a
server (jisu's app on the fake engine: the server records) and in-process (the fake runtime:
the command records into the history file itself)."""

from __future__ import annotations

import pytest

from cli_runner import RecordingEngine, fake_jisu_serve, nothing_at_the_default_address, run_jisu
from fakes import fake_runtime
from jisu.cli.backend import LocalBackend, ServedModel
from jisu.cli.chat import ChatSession, _turn, recap
from jisu.cli.common import RuntimeFailure
from jisu.cli.conversation import ChatConversation, start_turn
from jisu.cli.history_store import LocalHistory
from jisu.history import ConversationStore
from jisu.server.access import LOCAL_USER
from jisu.types import ChatMessage, SamplingParams, TextDelta

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)

ANSWER = "Hello from the fake model!"


class Model:
    """What answers, whichever engine it loads, and every prompt it read (the fake's text:
    'user\nhi\n...')."""

    def __init__(self) -> None:
        self.requests: list = []
        self.loads = 0

    def engine(self) -> RecordingEngine:
        engine = RecordingEngine()
        engine.requests = self.requests
        return engine

    @property
    def prompts(self) -> list[str]:
        return [prompt for _, prompt in self.requests]


@pytest.fixture(params=["server", "in-process"])
def answering(request, monkeypatch):
    model = Model()
    if request.param == "server":
        def no_load(*args, **kwargs):
            raise AssertionError("the model was loaded in-process while a server runs")

        for command in ("chat", "ask"):
            monkeypatch.setattr(f"jisu.cli.{command}.load_runtime", no_load)
        with fake_jisu_serve(model.engine()) as (url, _):
            monkeypatch.setenv("JISU_URL", url)
            yield model
        return

    def load(*args, **kwargs):
        model.loads += 1
        return fake_runtime(model.engine(), parallel=1)

    for command in ("chat", "ask"):
        monkeypatch.setattr(f"jisu.cli.{command}.load_runtime", load)
    yield model


@pytest.fixture
def jisu(monkeypatch, capsys):
    return lambda *args, stdin="": run_jisu(monkeypatch, capsys, *args, stdin=stdin)


def stored(user: str = LOCAL_USER) -> list:
    """Every conversation of the user, newest first, with its active branch."""
    with ConversationStore() as store:
        return [store.get_conversation(user, summary.id) for summary in store.list_conversations(user).items]


def chat_lines(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


# ---- a chat is kept -----------------------------------------------------------------------


def test_a_chat_is_stored_with_its_title_and_answers(jisu, answering):
    first = "  Plan   two days in 北京, with museums and the Great Wall please  "
    result = jisu("chat", stdin=chat_lines(first, "And a third day?"))
    assert result.code == 0, result.err
    assert result.out == f"{ANSWER}\n{ANSWER}\n"
    [conversation] = stored()
    assert conversation.title == "Plan two days in 北京, with museums and th", \
        "as the page names it: its first 40 characters, spaces collapsed"
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", first.strip()), ("assistant", ANSWER), ("user", "And a third day?"), ("assistant", ANSWER)]
    for answer in conversation.messages[1::2]:
        assert (answer.state, answer.finish_reason, answer.model, answer.quantization) == (
            "complete", "stop", "fake-model", "q4_0")
        assert answer.completion_tokens > 0 and answer.prompt_tokens > 0 and answer.time_to_first_token_s > 0
    assert "user\nAnd a third day?" in answering.prompts[1] and ANSWER in answering.prompts[1], \
        "the second turn reads the first"


def test_a_chat_without_a_message_stores_nothing(jisu, answering):
    assert jisu("chat", stdin=chat_lines("/show", "/set temperature 0.2")).code == 0
    assert stored() == []


def test_a_refused_first_turn_stores_nothing(jisu, answering):
    result = jisu("chat", stdin=chat_lines("北京" * 400))  # 2,400 bytes: more than the fake's 2,048 tokens
    assert result.code == 0 and "tokens" in result.err
    assert stored() == [], "no conversation is left behind, empty"


def test_an_overflowing_chat_reads_the_turns_kept_from_a_branch_of_their_own(jisu, answering):
    first, second, third = "北京" * 150, "上海" * 150, "广州" * 150  # 900 bytes: the fake's 2,048 tokens hold two
    result = jisu("chat", stdin=chat_lines(first, second, third))
    assert result.code == 0, result.err
    assert "(dropped user: 北京" in result.err and "(dropped assistant: Hello" in result.err
    [conversation] = stored()
    assert [m.content for m in conversation.messages] == [second, ANSWER, third, ANSWER], \
        "the branch on show is what the model read: the turn kept, copied, and the new one"
    assert answering.prompts[-1].count("user\n") == 2 and first not in answering.prompts[-1]
    assert conversation.messages[0].siblings.count == 2, "the whole conversation is the other branch (‹ 1/2 ›)"
    with ConversationStore() as store:
        whole = store.switch_branch(LOCAL_USER, conversation.id, conversation.messages[0].siblings.ids[0])
    assert [m.content for m in whole.messages] == [first, ANSWER, second, ANSWER], "the history dropped nothing"


# ---- continuing -----------------------------------------------------------------------------


def test_chat_c_continues_the_last_conversation(jisu, answering):
    jisu("chat", stdin=chat_lines("the first chat"))
    jisu("chat", stdin=chat_lines("the second chat"))
    result = jisu("chat", "-c", stdin=chat_lines("go on"))
    assert result.code == 0, result.err
    second, first = stored()
    assert [m.content for m in second.messages[::2]] == ["the second chat", "go on"]
    assert len(first.messages) == 2
    assert "the second chat" in answering.prompts[-1] and "the first chat" not in answering.prompts[-1]


def test_chat_id_continues_that_conversation(jisu, answering):
    jisu("chat", stdin=chat_lines("the first chat"))
    jisu("chat", stdin=chat_lines("the second chat"))
    older = stored()[1].id
    assert jisu("chat", "--id", older, stdin=chat_lines("back to it")).code == 0
    latest = stored()[0]
    assert latest.id == older, "a new turn makes it the most recently updated"
    assert [m.content for m in latest.messages[::2]] == ["the first chat", "back to it"]


def test_ask_c_adds_one_turn_to_the_last_conversation(jisu, answering):
    jisu("chat", stdin=chat_lines("Name a fruit."))
    result = jisu("ask", "-c", "And another?")
    assert (result.code, result.out) == (0, ANSWER + "\n"), result.err
    [conversation] = stored()
    assert [m.content for m in conversation.messages] == ["Name a fruit.", ANSWER, "And another?", ANSWER]
    assert "Name a fruit." in answering.prompts[-1]


def test_ask_keeps_nothing_without_c_id_or_save(jisu, answering):
    assert jisu("ask", "hi", stdin="piped text").code == 0
    assert stored() == []
    result = jisu("ask", "--save", "Summarise:", stdin="piped text")
    assert result.code == 0, result.err
    [conversation] = stored()
    assert conversation.title == "Summarise: piped text"
    assert [m.content for m in conversation.messages] == ["Summarise:\n\npiped text", ANSWER]


def test_ask_id_and_system_change_the_stored_system_prompt(jisu, answering):
    jisu("ask", "--save", "hi")
    [conversation] = stored()
    result = jisu("ask", "--id", conversation.id, "--system", "Answer in French.", "again")
    assert result.code == 0, result.err
    assert stored()[0].system == "Answer in French."
    assert answering.prompts[-1].startswith("system\nAnswer in French.\n")


@pytest.mark.parametrize("command", ["chat", "ask"])
def test_an_unknown_id_is_exit_1_before_the_model_loads(jisu, answering, command):
    result = jisu(command, "--id", "conv_nope", *(["hi"] if command == "ask" else []), stdin="hi\n")
    assert (result.code, result.out) == (1, "")
    assert result.error_line() == "jisu: error: no conversation 'conv_nope'"
    assert answering.loads == 0 and answering.prompts == []


@pytest.mark.parametrize("command", ["chat", "ask"])
def test_c_without_any_conversation_is_exit_1(jisu, answering, command):
    result = jisu(command, "-c", *(["hi"] if command == "ask" else []), stdin="hi\n")
    assert result.code == 1
    assert result.error_line() == "jisu: error: no conversation to continue yet: plain `jisu chat` starts one"


@pytest.mark.parametrize("command", ["chat", "ask"])
def test_c_and_id_together_are_a_usage_error(jisu, command):
    result = jisu(command, "-c", "--id", "conv_x", *(["hi"] if command == "ask" else []))
    assert result.code == 2
    assert result.error_line() == ("jisu: error: -c continues the last conversation and --id a given one: "
                                   "use one of them")


def test_ctx_size_has_no_short_flag_in_chat_but_keeps_it_in_serve(jisu):
    from jisu.cli.serve import serve

    assert "-c" in next(p for p in serve.params if p.name == "ctx_size").opts
    result = jisu("chat", "-c", "512")
    assert result.code == 2 and "512" in result.error_line(), "-c is --continue, a flag"


# ---- chat commands -----------------------------------------------------------------------


def test_new_and_reset_start_another_conversation_with_the_same_system_prompt(jisu, answering):
    result = jisu("chat", "--system", "Be brief.", stdin=chat_lines("one", "/new", "two", "/reset", "three"))
    assert result.code == 0, result.err
    conversations = stored()
    assert [c.messages[0].content for c in conversations] == ["three", "two", "one"]
    assert {c.system for c in conversations} == {"Be brief."}
    assert f"(new conversation; {conversations[2].id} stays in jisu history)" in result.err
    assert answering.prompts[-1].count("user\n") == 1


def test_show_names_the_conversation_and_where_it_is_kept(jisu, answering):
    result = jisu("chat", stdin=chat_lines("/show", "hi", "/show"))
    assert result.code == 0, result.err
    [conversation] = stored()
    before, after = [line for line in result.err.splitlines() if line.startswith("conversation: ")]
    assert before.startswith("conversation: new, kept by ") and before.endswith(" from its first message")
    assert after.startswith(f"conversation: {conversation.id}, kept by ")
    if answering.loads:
        assert after.endswith("history.db")
    else:
        assert "the jisu server at http://127.0.0.1:" in after


def test_system_changes_the_stored_system_prompt(jisu, answering):
    assert jisu("chat", stdin=chat_lines("hi", "/system Be brief.", "again")).code == 0
    [conversation] = stored()
    assert conversation.system == "Be brief."
    assert answering.prompts[-1].startswith("system\nBe brief.\n") and "user\nhi\n" in answering.prompts[-1]
    assert jisu("chat", "-c", "--system", "Be kind.", stdin=chat_lines("more")).code == 0
    assert stored()[0].system == "Be kind."


# ---- whose conversations ------------------------------------------------------------------


def test_in_process_chat_is_kept_as_the_user_jisu_api_key_names(jisu, monkeypatch):
    monkeypatch.setattr("jisu.cli.chat.load_runtime", lambda *a, **k: fake_runtime(RecordingEngine(), parallel=1))
    monkeypatch.setenv("JISU_API_KEY", "alice:alice-key-123")
    assert jisu("chat", stdin=chat_lines("hi")).code == 0
    assert stored(LOCAL_USER) == [] and len(stored("alice")) == 1, "what a server with alice's key shows her"


# ---- recording and recap, directly --------------------------------------------------------


def test_an_answer_stopped_in_process_is_kept_cut_short(monkeypatch):
    engine = RecordingEngine(answer=lambda prompt: "a long answer " * 20)
    with fake_runtime(engine, parallel=1) as runtime:
        backend, history = LocalBackend(runtime), LocalHistory.open(LOCAL_USER)
        conversation = ChatConversation(None)
        events = start_turn(history, backend, conversation, "talk", SamplingParams())
        first = next(event for event in events if isinstance(event, TextDelta))
        events.close()  # what Ctrl-C does
        answer = history.conversation(conversation.id).messages[-1]
        history.close()
    assert answer.cut_short and answer.content == first.text
    assert conversation.leaf_id == answer.id


def test_an_interactive_chat_goes_on_when_a_turn_cannot_start(capsys):
    class Gone:
        model = ServedModel("Fake-0.5B", "fake-model", "q4_0", 2048)

        def answer(self, *args, **kwargs):
            raise RuntimeFailure("cannot reach the jisu server at http://127.0.0.1:9 (connection refused)")

    history = LocalHistory.open(LOCAL_USER)
    session = ChatSession(Gone(), history, ChatConversation(None), SamplingParams(), interactive=True)
    _turn(session, "hi")
    history.close()
    assert capsys.readouterr().err == "jisu: cannot reach the jisu server at http://127.0.0.1:9 (connection refused)\n"
    assert session.conversation.turns == [] and stored() == []


def test_recap_shows_the_last_exchange_and_where_the_rest_is(capsys):
    conversation = ChatConversation(None, "conv_x", "Trip", [
        ChatMessage("user", "old"), ChatMessage("assistant", "older answer"),
        ChatMessage("user", "Plan a day."), ChatMessage("assistant", "\n".join(f"line {n}" for n in range(20)))])
    recap(conversation)
    err = capsys.readouterr().err
    assert err.startswith("(continuing «Trip», conv_x)\n你 > Plan a day.\nline 0\n")
    assert "line 11\n… (8 more lines: jisu history show conv_x)\n" in err
    assert "old" not in err
