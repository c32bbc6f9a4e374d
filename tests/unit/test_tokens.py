"""POST /tokenize and /detokenize on the fake engine (its tokens are bytes plus three control
tokens): llama-server's shape, and every bad input a 400 that names the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, SPECIALS, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from jisu.server.tokens import MAX_DETOKENIZE_TOKENS

IM_END = SPECIALS["<|im_end|>"]


@pytest.fixture
def client():
    with fake_runtime(parallel=1) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


def test_tokenize_gives_the_ids(client):
    response = client.post("/tokenize", json={"content": "hi"})
    assert response.status_code == 200
    assert response.json() == {"tokens": [ord("h"), ord("i")]}


def test_control_markers_are_tokens_unless_parse_special_is_off(client):
    assert client.post("/tokenize", json={"content": "a<|im_end|>"}).json()["tokens"] == [ord("a"), IM_END]
    as_text = client.post("/tokenize", json={"content": "<|im_end|>", "parse_special": False}).json()["tokens"]
    assert IM_END not in as_text and len(as_text) == len("<|im_end|>")


def test_pieces_are_text_or_the_bytes_of_a_split_character(client):
    tokens = client.post("/tokenize", json={"content": "a你<|im_end|>", "with_pieces": True}).json()["tokens"]
    # The fake's tokens are bytes: 你 is three tokens, none of them UTF-8 on its own.
    assert tokens == [{"id": 97, "piece": "a"}, {"id": 0xE4, "piece": [0xE4]}, {"id": 0xBD, "piece": [0xBD]},
                      {"id": 0xA0, "piece": [0xA0]}, {"id": IM_END, "piece": "<|im_end|>"}]


@pytest.mark.parametrize("text", ["Hello, world", "你好，世界！", "<|im_start|>user\nhi<|im_end|>", ""])
def test_detokenize_gives_back_what_tokenize_read(client, text):
    tokens = client.post("/tokenize", json={"content": text}).json()["tokens"]
    response = client.post("/detokenize", json={"tokens": tokens})
    assert response.status_code == 200
    assert response.json() == {"content": text}


def assert_400(response, param: str):
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    return error


@pytest.mark.parametrize("tokens,param", [
    ([104, "105"], "tokens[1]"),  # a string, even of digits
    ([104, 1.5], "tokens[1]"),
    ([104, 105.0], "tokens[1]"),
    ([True], "tokens[0]"),
    ([None], "tokens[0]"),
    ([[104]], "tokens[0]"),
    ("104", "tokens"),
    ({"0": 104}, "tokens"),
])
def test_tokens_that_are_not_whole_numbers_are_400(client, tokens, param):
    assert_400(client.post("/detokenize", json={"tokens": tokens}), param)


@pytest.mark.parametrize("token", [-1, 259, 2**31, 10**40])
def test_ids_outside_the_vocabulary_are_400_naming_the_position(client, token):
    error = assert_400(client.post("/detokenize", json={"tokens": [104, 105, token]}), "tokens[2]")
    assert error["code"] == "invalid_token" and "0..258" in error["message"]


def test_missing_fields_are_400(client):
    assert_400(client.post("/tokenize", json={}), "content")
    assert_400(client.post("/detokenize", json={}), "tokens")


@pytest.mark.parametrize("body,param", [
    ({"content": 5}, "content"),
    ({"content": ["a"]}, "content"),
    ({"content": "a", "with_pieces": "yes"}, "with_pieces"),
    ({"content": "a", "add_special": 1}, "add_special"),
    ({"content": "a", "parse_special": None}, "parse_special"),
])
def test_bad_tokenize_fields_are_400(client, body, param):
    assert_400(client.post("/tokenize", json=body), param)


def test_huge_input_is_400_not_a_stall(client):
    assert_400(client.post("/tokenize", json={"content": "x" * 1_000_001}), "content")
    assert_400(client.post("/detokenize", json={"tokens": [104] * (MAX_DETOKENIZE_TOKENS + 1)}), "tokens")


def test_not_json_is_400(client):
    response = client.post("/tokenize", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_the_server_answers_after_every_bad_input(client):
    client.post("/detokenize", json={"tokens": [10**40]})
    assert client.post("/detokenize", json={"tokens": [104, 105]}).json() == {"content": "hi"}


def test_keys_apply_as_on_every_route():
    with fake_runtime(parallel=1) as runtime:
        app = create_app(runtime, AccessPolicy.build({"k-123": "alice"}))
        with TestClient(app, base_url=LOCAL_URL) as client:
            for path, body in (("/tokenize", {"content": "hi"}), ("/detokenize", {"tokens": [104]})):
                assert client.post(path, json=body).status_code == 401
                assert client.post(path, json=body, headers={"Authorization": "Bearer k-123"}).status_code == 200
            foreign = client.post("/tokenize", json={"content": "hi"}, headers={"Host": "evil.example"})
            assert foreign.status_code == 403
