"""`jisu history` (list, show, search, export, import, rm) against both places conversations are
kept: a running server (jisu's app on the fake engine, reached through JISU_URL, the file
never opened by the command) and the history file when no server runs. The conversations are
made with the store itself, which is the file the server opens too."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from cli_runner import RecordingEngine, fake_jisu_serve, nothing_at_the_default_address, run_jisu
from jisu.history import AnswerStats, ConversationStore
from jisu.server.access import LOCAL_USER, AccessPolicy
from live_server import free_port

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)

CHATGPT_EXPORT = Path(__file__).parent / "data" / "chatgpt_conversations.json"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d"


@pytest.fixture(params=["server", "file"])
def kept_by(request, monkeypatch):
    """Where the commands find the history: "server" (the file opened by the server only) or
    "file" (no server answers)."""
    if request.param == "file":
        yield "file"
        return

    def no_file(user):
        raise AssertionError("the command opened the history file while a server runs")

    monkeypatch.setattr("jisu.cli.history_store.LocalHistory.open", no_file)
    with fake_jisu_serve(RecordingEngine()) as (url, _):
        monkeypatch.setenv("JISU_URL", url)
        yield "server"


@pytest.fixture
def jisu(monkeypatch, capsys):
    return lambda *args, stdin="", terminal=False: run_jisu(monkeypatch, capsys, *args, stdin=stdin,
                                                            terminal=terminal)


@pytest.fixture
def store():
    with ConversationStore() as opened:  # JISU_HOME/history.db: the test's own
        yield opened


class Clock:
    """Time for the store: each conversation a minute after the one before, in order."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        self.now += 60
        return self.now


def make(store: ConversationStore, title: str, *turns: str, user: str = LOCAL_USER, system: str | None = None,
         cut_short: bool = False) -> str:
    """A conversation of (question, answer) pairs, the answers recorded as the server records them."""
    conversation = store.create_conversation(user, title=title, system=system)
    for question, answer in zip(turns[::2], turns[1::2]):
        asked = store.add_message(user, conversation.id, parent_id=store.get_conversation(
            user, conversation.id).active_leaf_id, role="user", content=question)
        begun = store.begin_answer(user, conversation.id, parent_id=asked.id, model="fake-model", quantization="q4_0")
        store.finish_answer(user, begun.id, finish_reason="stop", text=answer, cut_short=cut_short,
                            stats=AnswerStats(prompt_tokens=12, completion_tokens=7, time_to_first_token_s=0.1,
                                              tokens_per_s=25.0))
    return conversation.id


@pytest.fixture
def three(kept_by):
    """Three conversations, the newest last; their ids."""
    with ConversationStore(clock=Clock()) as store:
        return [make(store, "Trip to Beijing", "Plan two days in Beijing.", "Day one: the Forbidden City."),
                make(store, "代码", "写一个排序函数", "def sort(items): return sorted(items)",
                     "再写测试", "def test(): assert sort([2, 1]) == [1, 2]"),
                make(store, "", "hi", "Hello!")]


# ---- list ------------------------------------------------------------------------------


def test_list_is_newest_first_with_date_size_and_title(jisu, three):
    result = jisu("history")
    assert result.code == 0 and result.err == "", result.err
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines] == three[::-1]
    assert re.fullmatch(rf"{three[2]}  {DATE}    2 messages  \(untitled\)", lines[0]), lines[0]
    assert re.fullmatch(rf"{three[1]}  {DATE}    4 messages  代码", lines[1]), lines[1]
    assert lines[2].endswith("  Trip to Beijing")
    assert jisu("history", "list").out == result.out, "`jisu history` is `jisu history list`"


def test_list_says_when_there_is_more(jisu, three):
    result = jisu("history", "-n", "2")
    assert result.code == 0
    assert [line.split()[0] for line in result.out.splitlines()] == [three[2], three[1]]
    assert result.err == "(2 of 3; --limit shows more)\n"


def test_an_empty_history_says_so(jisu, kept_by):
    result = jisu("history")
    assert (result.code, result.out, result.err) == (0, "", "no conversations yet\n")


# ---- show ------------------------------------------------------------------------------


def test_show_prints_the_active_branch_to_read(jisu, kept_by, store):
    conversation = make(store, "Trip", "Plan two days.", "Day one: walk.", system="Be brief.", cut_short=True)
    store.add_message(LOCAL_USER, conversation, parent_id=None, role="user", content="Plan three days.")
    result = jisu("history", "show", conversation)
    assert result.code == 0, result.err
    head, *messages = result.out.split("\n── ")
    assert re.fullmatch(rf"Trip\n{conversation} · 1 message · created {DATE} · updated {DATE}\nsystem: Be brief.\n",
                        head), head
    assert messages == ["user · version 2 of 2 ──\nPlan three days.\n"], "the branch on show: the edit"
    first = store.get_conversation(LOCAL_USER, conversation).messages[0].siblings.ids[0]
    store.switch_branch(LOCAL_USER, conversation, first)
    _, question, answer = jisu("history", "show", conversation).out.split("\n── ")
    assert question == "user · version 1 of 2 ──\nPlan two days.\n"
    assert answer == "assistant · fake-model q4_0 · 7 tokens · 25.0 tokens/s ──\nDay one: walk.\n(cut short)\n"


def test_show_of_an_unknown_id_is_exit_1(jisu, kept_by):
    result = jisu("history", "show", "conv_nope")
    assert result.code == 1 and result.out == ""
    assert result.error_line() == "jisu: error: no conversation 'conv_nope'"


def test_show_without_an_id_is_a_usage_error(jisu, kept_by):
    result = jisu("history", "show")
    assert result.code == 2
    assert result.error_line() == "jisu: error: Missing argument 'ID'."


# ---- search ----------------------------------------------------------------------------


@pytest.mark.parametrize("words,index,snippet", [
    (["Forbidden", "city"], 0, "Day one: the Forbidden City."),
    (["排序"], 1, "写一个排序函数"),  # a word in the middle of a Chinese sentence
])
def test_search_finds_english_and_chinese_words(jisu, three, words, index, snippet):
    result = jisu("history", "search", *words)
    assert result.code == 0, result.err
    line, found = result.out.splitlines()
    assert line.startswith(three[index] + "  ")
    assert snippet in found and found.startswith("    ")


def test_a_search_that_finds_nothing_says_so(jisu, three):
    result = jisu("history", "search", "nowhere")
    assert (result.code, result.out, result.err) == (0, "", "no conversation matches\n")


def test_search_needs_words(jisu, kept_by):
    assert jisu("history", "search").code == 2
    blank = jisu("history", "search", " ")
    assert (blank.code, blank.error_line()) == (2, "jisu: error: nothing to search for: WORDS are blank")


# ---- export and import -----------------------------------------------------------------


def test_export_one_as_json_and_markdown(jisu, three):
    document = json.loads(jisu("history", "export", three[1]).out)
    assert (document["format"], document["id"], document["title"]) == ("jisu.conversation", three[1], "代码")
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"] * 2
    markdown = jisu("history", "export", three[1], "--format", "md").out
    assert markdown.startswith("# 代码\n") and "## User\n\n再写测试\n" in markdown


def test_export_all_then_import_restores_them(jisu, three, tmp_path):
    exported = jisu("history", "export")
    document = json.loads(exported.out)
    assert document["format"] == "jisu.conversations"
    assert [c["id"] for c in document["conversations"]] == three[::-1]
    for conversation in three:
        assert jisu("history", "rm", "-y", conversation).code == 0
    saved = tmp_path / "all.json"
    saved.write_text(exported.out, encoding="utf-8")

    imported = jisu("history", "import", str(saved))
    assert imported.code == 0, imported.err
    assert len(imported.out.split()) == 3 and all(line.startswith("conv_") for line in imported.out.split())
    assert imported.err == "imported 3 conversation(s)\n"
    assert "代码" in jisu("history").out
    again = jisu("history", "import", "-", stdin=exported.out)
    assert (again.out, again.err) == ("", "imported 0 conversation(s), 3 already here\n")


def test_import_a_chatgpt_export(jisu, kept_by):
    result = jisu("history", "import", str(CHATGPT_EXPORT))
    assert result.code == 0, result.err
    assert result.err == "imported 2 conversation(s)\n"
    listed = jisu("history").out
    assert "Weekend in Kyoto" in listed and "用Python统计词频" in listed


@pytest.mark.parametrize("content,why", [
    ("{not json", "not a JSON file: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "not a jisu export or a ChatGPT conversations.json"),
])
def test_a_file_that_is_not_an_export_is_a_usage_error(jisu, kept_by, tmp_path, content, why):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = jisu("history", "import", str(bad))
    assert result.code == 2
    assert result.error_line().startswith(f"jisu: error: cannot import this file: {why}")
    assert jisu("history").err == "no conversations yet\n", "nothing was imported"


def test_import_of_a_missing_file_is_a_usage_error(jisu, kept_by, tmp_path):
    result = jisu("history", "import", str(tmp_path / "nothing.json"))
    assert result.code == 2 and "nothing.json" in result.error_line()


@pytest.mark.parametrize("args,code,error", [
    (["export", "--format", "md"], 2, "jisu: error: --format md writes one conversation: give its ID"),
    (["export", "conv_nope"], 1, "jisu: error: no conversation 'conv_nope'"),
    (["export", "conv_nope", "--format", "md"], 1, "jisu: error: no conversation 'conv_nope'"),
])
def test_export_errors(jisu, kept_by, args, code, error):
    result = jisu("history", *args)
    assert result.code == code and result.error_line() == error


# ---- rm --------------------------------------------------------------------------------


def test_rm_from_a_script_deletes_without_asking(jisu, three):
    result = jisu("history", "rm", three[0])
    assert (result.code, result.err) == (0, f"deleted {three[0]}\n")
    assert three[0] not in jisu("history").out
    assert jisu("history", "show", three[0]).code == 1


@pytest.mark.parametrize("answer,deleted", [("n\n", False), ("\n", False), ("y\n", True)])
def test_rm_on_a_terminal_asks_first(jisu, three, answer, deleted):
    result = jisu("history", "rm", three[1], stdin=answer, terminal=True)
    assert "Delete «代码» (4 messages)? [y/N]" in result.err
    assert (three[1] in jisu("history").out) is not deleted
    assert result.code == (0 if deleted else 1)
    if not deleted:
        assert result.err.strip().endswith("jisu: error: nothing deleted")


def test_rm_y_does_not_ask_on_a_terminal(jisu, three):
    assert jisu("history", "rm", "-y", three[1], terminal=True).code == 0
    assert three[1] not in jisu("history").out


def test_rm_of_an_unknown_id_is_exit_1(jisu, kept_by):
    result = jisu("history", "rm", "-y", "conv_nope")
    assert result.code == 1 and result.error_line() == "jisu: error: no conversation 'conv_nope'"


# ---- whose history, and which server ---------------------------------------------------


KEY = "alice-key-12345"


def test_through_a_server_with_keys_each_user_sees_their_own(jisu, store):
    mine = make(store, "alice's", "q", "a", user="alice")
    make(store, "bob's", "q", "a", user="bob")
    with fake_jisu_serve(RecordingEngine(), AccessPolicy.build({KEY: "alice"})) as (url, _):
        listed = jisu("history", "--url", url, "--api-key", KEY)
        assert [line.split()[0] for line in listed.out.splitlines()] == [mine]
        refused = jisu("history", "--url", url)
    assert refused.code == 1
    assert refused.error_line() == (f"jisu: error: the jisu server at {url} needs an API key: "
                                    "pass --api-key or set JISU_API_KEY")


def test_the_file_is_read_as_the_user_jisu_api_key_names(jisu, store, monkeypatch):
    mine = make(store, "alice's", "q", "a", user="alice")
    local = make(store, "nobody's", "q", "a")
    monkeypatch.setenv("JISU_API_KEY", f"alice:{KEY}")
    assert jisu("history").out.split()[0] == mine, "alice's, as a server with her key would show"
    monkeypatch.setenv("JISU_API_KEY", KEY)
    assert jisu("history").out.split()[0] == local, "an unnamed key is the local user's"


def test_a_key_jisu_serve_would_refuse_names_no_one_s_history(jisu, store, monkeypatch):
    monkeypatch.setenv("JISU_API_KEY", "alice:short")
    result = jisu("history")
    assert result.code == 2, "read as `jisu serve` reads it, where it names no user"
    assert result.error_line() == ("jisu: error: the API key (--api-key, JISU_API_KEY): "
                                   "a key must have at least 8 characters")


def test_a_conversation_made_through_the_api_shows_in_the_history(jisu):
    with fake_jisu_serve(RecordingEngine()) as (url, _):
        created = httpx.post(f"{url}/v1/conversations", json={"title": "From the page"}).json()
        turn = httpx.post(f"{url}/v1/chat/completions", json={
            "conversation_id": created["id"], "messages": [{"role": "user", "content": "hi"}]})
        assert turn.status_code == 200, turn.text
        listed = jisu("history", "--url", url)
        shown = jisu("history", "show", created["id"], "--url", url)
    assert re.fullmatch(rf"{created['id']}  {DATE}    2 messages  From the page\n", listed.out)
    assert "── assistant · fake-model q4_0" in shown.out and "Hello from the fake model!" in shown.out
    assert jisu("history").out == listed.out, "and in the file once the server has stopped"


def test_a_named_server_that_does_not_answer_is_exit_1(jisu):
    url = f"http://127.0.0.1:{free_port()}"
    result = jisu("history", "--url", url)
    assert result.code == 1
    assert result.error_line() == f"jisu: error: no jisu server answers at {url} (connection refused)"


def test_a_history_file_from_a_newer_jisu_is_exit_1(jisu, store):
    store.close()
    with sqlite3.connect(store.path) as connection:
        connection.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ('from_the_future', 0)")
    result = jisu("history")
    assert result.code == 1 and "newer" in result.error_line()

