"""logprobs and top_logprobs on the real model through a live `jisu serve`, read by the official
openai and ollama clients; and parameters jisu cannot honour refused by name."""

from __future__ import annotations

import math

import ollama
import openai
import pytest

from live_server import running_server, served_model

# Greedy with no repetition penalty (Qwen's default is 1.05): the chosen token is then the
# model's likeliest, which the top_logprobs must show first.
PLAIN_GREEDY = {"temperature": 0, "extra_body": {"repetition_penalty": 1.0}}
QUESTION = [{"role": "user", "content": "Name three primary colors, separated by commas."}]


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "2048", "--parallel", "2", name="logprobs") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def model(server) -> str:
    return served_model(server)


def check_entries(entries, content: str, top_n: int) -> None:
    """What holds for any answer's logprobs under plain greedy decoding."""
    assert entries, "one entry per token of the answer"
    assert b"".join(bytes(entry.bytes) for entry in entries) == content.encode(), \
        "the tokens are exactly the answer, byte for byte"
    for entry in entries:
        assert entry.logprob <= 0 and math.isfinite(entry.logprob)
        assert len(entry.top_logprobs) == top_n
        figures = [alternative.logprob for alternative in entry.top_logprobs]
        assert figures == sorted(figures, reverse=True), "alternatives come best first"
        assert sum(math.exp(lp) for lp in figures) <= 1 + 1e-4, "they are probabilities of one distribution"
        assert entry.top_logprobs[0].token == entry.token, "greedy picks the model's likeliest token"
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def test_chat_logprobs(client, model):
    response = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24, logprobs=True,
                                              top_logprobs=3, **PLAIN_GREEDY)
    choice = response.choices[0]
    check_entries(choice.logprobs.content, choice.message.content, top_n=3)
    assert "".join(entry.token for entry in choice.logprobs.content) == choice.message.content, \
        "an English answer has no token that splits a character: the token texts join to it too"


def test_streamed_chat_logprobs_are_those_of_each_chunks_text(client, model):
    stream = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24, logprobs=True,
                                            top_logprobs=3, stream=True, **PLAIN_GREEDY)
    entries, content = [], ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            piece = chunk.choices[0].logprobs.content
            assert b"".join(bytes(entry.bytes) for entry in piece) == chunk.choices[0].delta.content.encode()
            entries += piece
            content += chunk.choices[0].delta.content
    check_entries(entries, content, top_n=3)
    whole = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24, logprobs=True,
                                           top_logprobs=3, **PLAIN_GREEDY).choices[0]
    assert content == whole.message.content
    assert [entry.token for entry in entries] == [entry.token for entry in whole.logprobs.content]


def test_chinese_answers_report_every_byte(client, model):
    """Tokens that split a character carry its bytes (and \\x escapes as their text)."""
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "用一句话介绍长城。"}], max_tokens=32,
        logprobs=True, top_logprobs=1, stream=True, **PLAIN_GREEDY)
    entries, content = [], ""
    for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            entries += chunk.choices[0].logprobs.content
            content += chunk.choices[0].delta.content
    assert content and "\ufffd" not in content
    check_entries(entries, content, top_n=1)


def test_stop_string_tokens_are_not_reported(client, model):
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=40, stop=["5"], logprobs=True, top_logprobs=2, **PLAIN_GREEDY)
    choice = response.choices[0]
    assert "5" not in choice.message.content and choice.message.content.rstrip().endswith("4,")
    assert "5" not in "".join(entry.token for entry in choice.logprobs.content)
    check_entries(choice.logprobs.content, choice.message.content, top_n=2)


def test_legacy_completion_logprobs(client, model):
    response = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                         logprobs=2, **PLAIN_GREEDY)
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(logprobs.tokens)
    assert logprobs.text_offset == [len("".join(logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert logprob <= 0 and len(top) == 2, "greedy: the chosen token is among the two likeliest"
        assert max(top, key=top.get) == token and top[token] == pytest.approx(logprob)


def test_no_logprobs_unless_asked(client, model):
    response = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=4, temperature=0)
    assert response.choices[0].logprobs is None


@pytest.mark.parametrize("fields,param", [
    ({"n": 2}, "n"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"extra_body": {"mirostat": 2}}, "mirostat"),
])
def test_parameters_jisu_cannot_honour_are_refused_by_name(client, model, fields, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=QUESTION, max_tokens=4, **fields)
    assert refused.value.status_code == 400 and refused.value.body["param"] == param
    assert param in refused.value.body["message"]


def test_ollama_logprobs(server):
    client = ollama.Client(host=server, timeout=300)
    response = client.chat(model="any", messages=QUESTION, logprobs=True, top_logprobs=2,
                           options={"temperature": 0, "repeat_penalty": 1.0, "num_predict": 16})
    assert "".join(entry.token for entry in response.logprobs) == response.message.content
    for entry in response.logprobs:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token
    streamed = [part for part in client.generate(model="any", prompt="Say hello.", logprobs=True, stream=True,
                                                 options={"num_predict": 8}) if part.response]
    assert streamed and all(part.logprobs for part in streamed)
