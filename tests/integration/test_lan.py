"""A real `jisu serve` shared the way people share it: bound to every address with a generated
key, a small queue under a burst, and a stop (SIGTERM) while answers stream."""

from __future__ import annotations

import json
import os
import re
import stat
import threading

import httpx
import openai
import pytest
from websockets.sync.client import connect as ws_connect

from live_server import launched_server, refusal_count, served_model
from streams import receive_event, receive_until


def ask(url: str, key: str | None = None, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=120,
                      json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **body})


def test_a_lan_bind_without_keys_gets_a_generated_key_that_survives_restarts(model_path, tmp_path):
    home = {"JISU_HOME": str(tmp_path / "home")}
    with launched_server(model_path, "--ctx-size", "1024", host="0.0.0.0", env=home, name="lan") as server:
        link = re.search(r"http://\S+:\d+/#key=(\S+)", server.log())
        assert link, f"the server prints a link that carries the key:\n{server.log()}"
        key = link.group(1)
        key_file = tmp_path / "home" / "server-key"
        assert key_file.read_text().strip() == key
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert ask(server.url).status_code == 401
        assert ask(server.url, "wrong-key-000").status_code == 401
        assert httpx.get(f"{server.url}/health").status_code == 200, "health checks need no key"
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", max_tokens=4,
                                                messages=[{"role": "user", "content": "hi"}])
        assert answer.model == client.models.list().data[0].id and answer.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope-nope-nope", max_retries=0).models.list()
        with ws_connect(server.url.replace("http", "ws") + "/v1/ws") as socket_:
            socket_.send(json.dumps({"type": "auth", "api_key": key}))
            assert receive_event(socket_, timeout=10)["type"] == "ready"
    with launched_server(model_path, "--ctx-size", "1024", host="0.0.0.0", env=home, name="lan-again") as server:
        assert f"#key={key}" in server.log(), "the same key after a restart: saved links keep working"
        assert ask(server.url, key).status_code == 200


def test_insecure_no_auth_is_an_explicit_opt_out(model_path, tmp_path):
    with launched_server(model_path, "--ctx-size", "1024", "--insecure-no-auth", host="0.0.0.0",
                         env={"JISU_HOME": str(tmp_path)}, name="lan-open") as server:
        assert "WARNING" in server.log() and "#key=" not in server.log()
        assert ask(server.url).status_code == 200


def test_named_keys_from_a_file(model_path, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("alice:alice-key-123\nbob:bob-key-4567\n")
    with launched_server(model_path, "--ctx-size", "1024", "--api-key-file", str(keys),
                         env={"JISU_HOME": str(tmp_path)}, name="keyfile") as server:
        assert ask(server.url, "alice-key-123").status_code == 200
        assert ask(server.url, "bob-key-4567").status_code == 200
        assert ask(server.url, "carol-key-000").status_code == 401



def test_queue_of_two_under_a_burst_of_eight(model_path):
    """--parallel 1 --max-queue 2: one answers, two wait, five get 503 with Retry-After, and
    each refusal is an exception in the openai client, not an empty answer."""
    with launched_server(model_path, "--ctx-size", "1024", "--parallel", "1", "--max-queue", "2",
                         name="queue") as server:
        # The third answer waits for two others: on a busy machine that is minutes, not seconds.
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
        model = served_model(server.url)
        outcomes, lock = [], threading.Lock()
        start = threading.Barrier(8)

        def one() -> None:
            start.wait()
            try:
                stream = client.chat.completions.create(
                    model=model, stream=True, max_tokens=48, extra_body={"ignore_eos": True},
                    messages=[{"role": "user", "content": "Count to one hundred."}])
                text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
                outcome = ("answered", text)
            except openai.APIStatusError as error:
                outcome = (error.status_code, error.response.headers.get("retry-after"))
            except openai.APIError as error:  # e.g. a timeout: shown in the assertion, not lost with the thread
                outcome = ("failed", repr(error))
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        answered = [o for o in outcomes if o[0] == "answered"]
        refused = [o for o in outcomes if o[0] == 503]
        assert (len(answered), len(refused)) == (3, 5), outcomes
        assert all(text for _, text in answered)
        assert all(retry and retry.isdigit() for _, retry in refused)
        assert refusal_count(server.url, "server_busy") == 5


def read_stream(url: str, into: list, first_token: threading.Event, body: dict) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
    try:
        for chunk in client.chat.completions.create(model=served_model(url), stream=True, **body):
            if chunk.choices and chunk.choices[0].delta.content:
                into.append(chunk.choices[0].delta.content)
                first_token.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                into.append(("finish", chunk.choices[0].finish_reason))
        into.append("stream ended")
    except openai.APIError as error:
        into.append(("error", str(error)))


def test_sigterm_lets_short_answers_finish_ends_long_ones_and_exits_0(model_path):
    grace = 10.0  # ample for a 12-token answer beside three long ones, on a busy machine too
    with launched_server(model_path, "--ctx-size", "2048", "--parallel", "4", "--shutdown-grace", str(grace),
                         name="sigterm") as server:
        long_body = {"max_tokens": 1500, "extra_body": {"ignore_eos": True},
                     "messages": [{"role": "user", "content": "Write a very long story."}]}
        short_body = {"max_tokens": 12, "messages": [{"role": "user", "content": "Say hello."}]}
        streams = [([], threading.Event(), long_body), ([], threading.Event(), long_body),
                   ([], threading.Event(), short_body)]
        threads = [threading.Thread(target=read_stream, args=(server.url, *stream)) for stream in streams]
        for thread in threads:
            thread.start()
        with ws_connect(server.url.replace("http", "ws") + "/v1/ws") as socket_:
            socket_.send(json.dumps({"type": "chat", **long_body["extra_body"], "max_tokens": 1500,
                                     "messages": long_body["messages"]}))
            receive_until(socket_, ("token",), timeout=60)
            assert all(event.wait(60) for _, event, _ in streams[:2])
            # No stopwatch: the long answers' errors show the grace was enforced, and a server
            # that did not exit by itself would be killed by stop() (a non-zero exit code).
            exit_code: list[int] = []
            stopper = threading.Thread(target=lambda: exit_code.append(server.stop(timeout=grace + 20)))
            stopper.start()
            ws_events = receive_until(socket_, timeout=grace + 20)
        for thread in threads:
            thread.join(timeout=grace + 20)
        stopper.join(timeout=grace + 25)
    assert exit_code == [0], f"exit code {exit_code}:\n{server.log()[-2000:]}"
    for received, _, _ in streams[:2]:
        assert received[-1][0] == "error" and "stopped before the answer was complete" in received[-1][1], received[-3:]
    short = streams[2][0]
    assert ("finish", "stop") in short or ("finish", "length") in short, short[-3:]
    assert ws_events[-1]["type"] == "done" and ws_events[-1]["finish_reason"] == "shutdown", ws_events[-2:]
