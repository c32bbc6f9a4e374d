"""Conversations kept by a real `jisu serve` on the real model: the official openai client
takes several turns with `extra_body={"conversation_id": ...}`, each reusing the cached state
of the turns before; and a server killed with SIGKILL in the middle of an answer leaves a sound
database, its committed turns, and the answer cut short after a restart.

Each server gets a JISU_HOME of its own (the model file is passed by path), so no test reads or
writes the history of the machine's user."""

from __future__ import annotations

import signal
import sqlite3
import time

import httpx
import openai
import pytest

from live_server import launched_server, served_model

QUESTIONS = ("Name one fruit that is red. One word.", "And one that is yellow? One word.",
             "Which of the two did you name first? One word.")


def start(model_path, home, name: str):
    return launched_server(model_path, "--ctx-size", "4096", "--parallel", "2", name=name,
                           env={"JISU_HOME": str(home)})


def new_conversation(url: str, **fields) -> str:
    response = httpx.post(f"{url}/v1/conversations", json=fields)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def stored(url: str, conversation_id: str) -> dict:
    return httpx.get(f"{url}/v1/conversations/{conversation_id}").json()


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    with start(model_path, tmp_path_factory.mktemp("home"), "conversations") as live:
        yield live.url


def test_the_openai_client_takes_turns_of_a_stored_conversation(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    model = served_model(server)
    conversation = new_conversation(server, title="Fruit", system="You answer in one word.")
    responses = []
    for question in QUESTIONS:
        response = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=16,
            extra_body={"conversation_id": conversation})
        assert response.model_extra["conversation_id"] == conversation
        responses.append(response)

    first, second, third = (response.usage for response in responses)
    assert second.prompt_tokens_details.cached_tokens >= first.prompt_tokens, \
        "turn 2 starts from turn 1's cached state: only its new message is run"
    assert third.prompt_tokens_details.cached_tokens >= second.prompt_tokens
    assert third.prompt_tokens > second.prompt_tokens > first.prompt_tokens, "each turn reads the ones before"

    kept = stored(server, conversation)
    assert [m["role"] for m in kept["messages"]] == ["user", "assistant"] * 3
    assert [m["content"] for m in kept["messages"][::2]] == list(QUESTIONS)
    for response, answer in zip(responses, kept["messages"][1::2]):
        assert answer["id"] == response.model_extra["message_id"]
        assert answer["content"] == response.choices[0].message.content
        assert (answer["state"], answer["finish_reason"]) == ("complete", response.choices[0].finish_reason)
        assert answer["completion_tokens"] == response.usage.completion_tokens
        assert answer["model"] == model and answer["quantization"]
        assert answer["time_to_first_token_s"] > 0
        if answer["completion_tokens"] > 1:  # a rate needs tokens after the first
            assert answer["tokens_per_s"] > 0


def test_a_streamed_turn_through_the_openai_client_names_its_messages(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    conversation = new_conversation(server)
    chunks = list(client.chat.completions.create(
        model=served_model(server), messages=[{"role": "user", "content": "Say hello."}], temperature=0,
        max_tokens=12, stream=True, extra_body={"conversation_id": conversation}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finishing = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    question, answer = stored(server, conversation)["messages"]
    assert (chunks[0].model_extra["message_id"], finishing.model_extra["message_id"]) == (answer["id"],) * 2
    assert finishing.model_extra["parent_message_id"] == question["id"]
    assert answer["content"] == text and answer["state"] == "complete"


def test_sigkill_mid_answer_keeps_committed_turns_and_the_answer_cut_short(model_path, tmp_path):
    home = tmp_path / "home"
    with start(model_path, home, "conversations-killed") as live:
        conversation = new_conversation(live.url, title="Killed")
        done = httpx.post(f"{live.url}/v1/chat/completions", timeout=120, json={
            "conversation_id": conversation, "messages": [{"role": "user", "content": "Say hi."}],
            "temperature": 0, "max_tokens": 8}).json()
        shown, started = [], None
        with httpx.stream("POST", f"{live.url}/v1/chat/completions", timeout=120, json={
                "conversation_id": conversation, "stream": True, "temperature": 0, "max_tokens": 1000,
                "messages": [{"role": "user", "content": "Tell a long story about a lighthouse keeper."}]}) as response:
            for line in response.iter_lines():
                if '"content": "' in line and line.startswith("data: {"):
                    shown.append(openai.types.chat.ChatCompletionChunk.model_validate_json(
                        line[len("data: "):]).choices[0].delta.content or "")
                    started = started or time.monotonic()
                if started and time.monotonic() - started > 1.0 and len(shown) > 10:
                    break  # a second of tokens: several of the 0.25 s commits are behind us
            assert live.stop(signal.SIGKILL) == -signal.SIGKILL

    with sqlite3.connect(home / "history.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    with start(model_path, home, "conversations-restarted") as live:
        messages = stored(live.url, conversation)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    first_answer, cut = messages[1], messages[3]
    assert (first_answer["id"], first_answer["state"]) == (done["message_id"], "complete")
    assert first_answer["content"] == done["choices"][0]["message"]["content"]
    assert cut["state"] == "cut_short" and cut["cut_short"] and cut["content"]
    seen = "".join(shown)
    assert seen.startswith(cut["content"]) or cut["content"].startswith(seen), \
        "what was kept is the answer as it streamed, up to the last commit"
