"""/tokenize and /detokenize with the real Qwen tokenizer, system_fingerprint and x-request-id
through the official openai client, against a live `jisu serve` on the stand-in model."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from jisu.models.store import sha256_of
from live_server import launched_server
from streams import wait_until

TEXTS = [
    "What is the capital of France?",
    "用一句话介绍北京。",
    "混合 text, 数字 42 and emoji 🤗🙂",
    "<|im_start|>user\n你好<|im_end|>\n",
]


@pytest.fixture(scope="module")
def server(model_path):
    with launched_server(model_path, "--ctx-size", "2048", "--parallel", "1", name="tokens") as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0)


def tokenize(server, text: str, **options) -> list:
    response = httpx.post(f"{server.url}/tokenize", json={"content": text, **options}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


@pytest.mark.parametrize("text", TEXTS)
def test_detokenize_gives_back_what_tokenize_read(server, text):
    tokens = tokenize(server, text)
    assert tokens and all(isinstance(t, int) for t in tokens)
    response = httpx.post(f"{server.url}/detokenize", json={"tokens": tokens}, timeout=30)
    assert response.json() == {"content": text}


def test_chinese_is_a_few_tokens_not_bytes(server):
    tokens = tokenize(server, "用一句话介绍北京。")
    assert len(tokens) < len("用一句话介绍北京。".encode()) / 2, "Qwen's vocabulary has whole Chinese words"


def test_chat_markers_are_control_tokens_unless_parse_special_is_off(server):
    assert len(tokenize(server, "<|im_end|>")) == 1
    assert len(tokenize(server, "<|im_end|>", parse_special=False)) > 1


def test_pieces_put_together_are_the_text(server):
    text = "混合 text, 数字 42 and emoji 🤗🙂"
    pieces = tokenize(server, text, with_pieces=True)
    assert [p["id"] for p in pieces] == tokenize(server, text)
    joined = b"".join(p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces)
    assert joined.decode() == text


def test_tokenize_counts_what_a_completion_reads(server, client):
    """What apps use /tokenize for: the count the server itself will charge."""
    prompt = "请把下面这句话翻译成英文：今天天气很好。"
    completion = client.completions.create(model="any", prompt=prompt, max_tokens=1, temperature=0)
    assert completion.usage.prompt_tokens == len(tokenize(server, prompt))


@pytest.mark.parametrize("tokens", [[151936], [-1], [2**31], [9, "9"], [1.5]])
def test_bad_ids_are_400_and_llama_cpp_never_sees_them(server, tokens):
    response = httpx.post(f"{server.url}/detokenize", json={"tokens": tokens}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith("tokens")
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200, "an unknown id would abort llama.cpp"


def expected_fingerprint(server, model_path) -> str:
    quantization = httpx.get(f"{server.url}/v1/models").json()["data"][0]["quantization"]
    format_ = re.sub(r"[^a-z0-9]+", "_", quantization.lower()).strip("_")
    return f"fp_{sha256_of(model_path)[:10]}_{format_}"


def test_system_fingerprint_names_the_model_file(server, client, model_path):
    expected = expected_fingerprint(server, model_path)
    messages = [{"role": "user", "content": "你好"}]
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=4, temperature=0)
    assert whole.system_fingerprint == expected
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=4,
                                                 temperature=0, stream=True))
    assert chunks and {chunk.system_fingerprint for chunk in chunks} == {expected}


def test_request_ids_reach_the_client_and_the_server_log(server, client):
    answer = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert re.fullmatch(r"req_[0-9a-f]{24}", answer._request_id)
    mine = client.with_options(default_headers={"X-Request-Id": "trace-from-my-app-7"}).models.list()
    assert mine._request_id == "trace-from-my-app-7"
    # The server writes a request's log line once the response has gone out: the client may
    # read the response before the line reaches the log.
    expected = [rf'"POST /v1/chat/completions" 200 \S+ {answer._request_id}$',
                r'"GET /v1/models" 200 \S+ trace-from-my-app-7$']
    wait_until(lambda: all(re.search(line, server.log(), re.M) for line in expected),
               "both requests' lines, with their ids, in the server log", describe=lambda: server.log()[-2000:])
