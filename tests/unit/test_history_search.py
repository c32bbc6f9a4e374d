"""Search finds Chinese words in the middle of a sentence, short Chinese words, English words, and
follows every edit: a deleted or renamed conversation is found by what it holds now only."""

from __future__ import annotations

import sqlite3

import pytest

from jisu.history import ConversationStore
from jisu.history.search import query_terms, snippet

USER = "local"


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "history.db") as store:
        yield store


def say(store, text, title="", user=USER):
    conversation = store.create_conversation(user, title=title)
    store.add_message(user, conversation.id, parent_id=None, role="user", content=text)
    return conversation.id


def found(store, query, user=USER):
    return [hit.conversation.id for hit in store.search(user, query).items]


def assert_index_matches_content(store):
    """FTS5's own check that each index holds exactly what its content table says."""
    with sqlite3.connect(store.path) as connection:
        for table in ("messages_fts", "conversations_fts"):
            connection.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")


def test_a_chinese_word_in_the_middle_of_a_sentence(store):
    beijing = say(store, "我昨天去了北京的故宫，人很多。")
    say(store, "我喜欢上海的夜景。")
    assert found(store, "北京的故宫") == [beijing], "3+ characters: the trigram index"
    assert found(store, "北京") == [beijing], "2 characters: too short for a trigram, found all the same"
    assert found(store, "故宫") == [beijing]
    assert found(store, "京") == [beijing], "even one character"
    assert found(store, "广州") == []


def test_english_words_ignore_case_and_all_must_match(store):
    python = say(store, "How do I read a CSV file in Python?")
    say(store, "How do I write a CSV file in Rust?")
    assert found(store, "python") == [python]
    assert found(store, "csv PYTHON") == [python], "every word, in any case"
    assert set(found(store, "csv")) == {python, found(store, "rust")[0]}
    assert found(store, "csv java") == []
    assert found(store, "of") == [], "a 2-letter word is a substring search, and no message holds 'of'"


def test_mixed_short_and_long_words(store):
    trip = say(store, "明天去北京出差, bring the laptop")
    say(store, "明天去上海出差, bring the laptop")
    assert found(store, "北京 laptop") == [trip], "the index finds 'laptop', LIKE checks 北京 among those"
    assert found(store, "去北 出差") == [trip]


def test_titles_are_searched_too(store):
    titled = say(store, "hello", title="周末计划")
    assert found(store, "周末") == [titled]
    assert found(store, "周末计划") == [titled]
    hit = store.search(USER, "周末").items[0]
    assert (hit.message_id, hit.snippet) == (None, "周末计划")


def test_newest_first_with_a_snippet_around_the_match(store):
    older = say(store, "x" * 300 + " the word kangaroo is here " + "y" * 300)
    newer = say(store, "a kangaroo again")
    page = store.search(USER, "kangaroo")
    assert [hit.conversation.id for hit in page.items] == [newer, older]
    assert page.total == 2
    snippet_text = page.items[1].snippet
    assert "kangaroo" in snippet_text and snippet_text.startswith("…") and snippet_text.endswith("…")
    assert len(snippet_text) <= 170
    assert [hit.conversation.id for hit in store.search(USER, "kangaroo", limit=1, offset=1).items] == [older]


def test_an_edit_is_found_by_its_new_words(store):
    conversation_id = say(store, "original words: 苹果")
    question = store.get_conversation(USER, conversation_id).messages[0]
    store.add_message(USER, conversation_id, parent_id=None, role="user", content="edited words: 香蕉")
    assert found(store, "香蕉") == [conversation_id]
    assert found(store, "苹果") == [conversation_id], "the branch before the edit is kept, and searched"
    hit = store.search(USER, "苹果").items[0]
    assert hit.message_id == question.id, "the hit names the message, to switch to its branch"
    store.update_conversation(USER, conversation_id, title="水果清单")
    store.update_conversation(USER, conversation_id, title="蔬菜清单")
    assert found(store, "水果清单") == [] and found(store, "蔬菜清单") == [conversation_id]
    assert_index_matches_content(store)


def test_a_deleted_conversation_is_gone_from_the_index(store):
    gone = say(store, "ephemeral 临时内容", title="to delete")
    kept = say(store, "durable 临时内容")
    store.delete_conversation(USER, gone)
    assert found(store, "临时内容") == [kept]
    assert found(store, "ephemeral") == [] and found(store, "delete") == []
    assert_index_matches_content(store)


def test_a_streaming_answer_is_indexed_when_it_ends(store):
    conversation_id = say(store, "question")
    parent = store.get_conversation(USER, conversation_id).active_leaf_id
    answer = store.begin_answer(USER, conversation_id, parent_id=parent)
    store.append_answer(USER, answer.id, "a streaming 长颈鹿 answer")
    assert found(store, "长颈鹿") == [] and found(store, "颈鹿") == []
    assert_index_matches_content(store)
    store.finish_answer(USER, answer.id, finish_reason="stop", text=" ends")
    assert found(store, "长颈鹿") == [conversation_id] and found(store, "颈鹿") == [conversation_id]
    assert found(store, "answer ends") == [conversation_id]
    assert_index_matches_content(store)


def test_recovered_answers_are_indexed(store):
    conversation_id = say(store, "question")
    parent = store.get_conversation(USER, conversation_id).active_leaf_id
    answer = store.begin_answer(USER, conversation_id, parent_id=parent)
    store.append_answer(USER, answer.id, "interrupted 斑马")
    store.recover()
    assert found(store, "斑马") == [conversation_id]
    assert_index_matches_content(store)


@pytest.mark.parametrize("query", ['"', "AND", "a*", "NEAR(x y)", "100%", "_", "\\", "'; DROP TABLE", "(", "^x"])
def test_query_syntax_is_text(store, query):
    literal = say(store, f"the text {query} is literal")
    say(store, "something else entirely")
    assert literal in found(store, query), "FTS5 and LIKE syntax in a query is searched for as text"


def test_an_empty_query_finds_nothing(store):
    say(store, "anything")
    assert store.search(USER, "   ").total == 0


def test_query_terms_and_snippets():
    assert query_terms("  北京  故宫 北京 ") == ["北京", "故宫"]
    assert snippet("short text", ["text"]) == "short text"
    assert snippet("line one\nline two", ["two"]) == "line one line two"
