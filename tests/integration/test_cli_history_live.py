"""`jisu chat`, `jisu ask -c` and `jisu history` keep conversations as users run them, on the real
model: through a `jisu serve` (which keeps and records them, as it does the page's) and in-process
(the commands record into the history file themselves).

Every process runs on a JISU_HOME of its own (the model file is passed by path), so no test
reads or writes the machine's history; --url or --model decides what answers, never a server
someone runs at the default address."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from jisu.history import ConversationStore
from jisu.server.access import LOCAL_USER
from live_server import running_server, served_model

JISU = [sys.executable, "-m", "jisu.cli"]
QUESTIONS = ("Name one fruit that is red. One word.", "And one that is yellow? One word.")
FOLLOW_UP = "Which of the two did you name first? One word."
GREEDY = ("--temperature", "0", "--max-tokens", "16")


def run(home, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in ("JISU_URL", "JISU_API_KEY")}
    result = subprocess.run(JISU + list(args), input=stdin, capture_output=True, text=True, timeout=300,
                            env={**env, "JISU_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def server(model_path, home):
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "2", name="cli-history",
                        env={"JISU_HOME": str(home)}) as url:
        yield url


def test_a_piped_chat_is_kept_shown_and_continued_with_ask_c(server, home):
    chat = run(home, "chat", "--url", server, *GREEDY, stdin="\n".join(QUESTIONS) + "\n")
    listed = run(home, "history", "--url", server).stdout.splitlines()
    assert len(listed) == 1 and listed[0].endswith(f"4 messages  {QUESTIONS[0]}"), listed
    conversation = listed[0].split()[0]

    shown = run(home, "history", "show", conversation, "--url", server).stdout
    for question in QUESTIONS:
        assert f"── user ──\n{question}\n" in shown
    model = served_model(server)
    # A one-token answer has no rate: tokens/s needs tokens after the first.
    answers = re.findall(rf"── assistant · {re.escape(model)} \S+ · \d+ tokens( · [\d.]+ tokens/s)? ──\n", shown)
    assert len(answers) == 2, f"each answer with the figures the server recorded: {shown}"
    for line in chat.stdout.splitlines():
        assert line in shown, "what the chat printed is what was kept"

    asked = run(home, "ask", "-c", FOLLOW_UP, "--url", server, *GREEDY)
    assert asked.stdout.strip()
    again = run(home, "history", "show", conversation, "--url", server).stdout
    assert f"{conversation} · 6 messages" in again and f"── user ──\n{FOLLOW_UP}\n" in again
    assert asked.stdout.strip() in again


def test_a_conversation_made_through_the_api_as_the_page_does_shows_in_the_history(server, home):
    created = httpx.post(f"{server}/v1/conversations", json={"title": "Made like the page does"}).json()
    turn = httpx.post(f"{server}/v1/chat/completions", json={
        "conversation_id": created["id"], "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0, "max_tokens": 8}, timeout=120)
    assert turn.status_code == 200, turn.text
    listed = run(home, "history", "--url", server).stdout
    assert re.search(rf"^{created['id']}  .*  2 messages  Made like the page does$", listed, re.MULTILINE), listed
    found = run(home, "history", "search", "hello", "--url", server).stdout
    assert created["id"] in found


def test_in_process_the_commands_record_into_the_history_file(model_path, tmp_path):
    run(tmp_path, "chat", "--model", str(model_path), *GREEDY, stdin="\n".join(QUESTIONS) + "\n")
    run(tmp_path, "ask", "-c", FOLLOW_UP, "--model", str(model_path), *GREEDY)
    with ConversationStore(tmp_path / "history.db") as store:
        [summary] = store.list_conversations(LOCAL_USER).items
        conversation = store.get_conversation(LOCAL_USER, summary.id)
    assert summary.title == QUESTIONS[0]
    assert [m.content for m in conversation.messages[::2]] == [*QUESTIONS, FOLLOW_UP]
    for answer in conversation.messages[1::2]:
        assert answer.content and answer.state == "complete" and answer.finish_reason in ("stop", "length")
        assert answer.model and answer.quantization and answer.completion_tokens > 0
        assert answer.time_to_first_token_s > 0 and answer.prompt_tokens > 0
