"""One set of sampling limits: the API's request schema and SamplingParams refuse the same
values, and a request becomes SamplingParams in one conversion."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jisu.server.protocol import COMPLETION_DEFAULT_MAX_TOKENS, ChatCompletionRequest, CompletionRequest
from jisu.types import SAMPLING_LIMITS, InvalidRequest, SamplingParams

API_FIELDS = [name for name in SAMPLING_LIMITS if name in ChatCompletionRequest.model_fields]
MESSAGES = [{"role": "user", "content": "hi"}]


def edges(name: str) -> tuple[list[float], list[float]]:
    """(allowed, refused) values at the ends of the field's range."""
    limit = SAMPLING_LIMITS[name]
    step = 1 if limit.integer else 1e-6
    allowed = [limit.high] + ([] if limit.low_open else [limit.low])
    refused = [limit.high + step, limit.low if limit.low_open else limit.low - step]
    return allowed, refused


def test_every_sampling_field_of_the_api_has_a_limit():
    assert set(API_FIELDS) == set(SAMPLING_LIMITS) - {"penalty_last_n"}, \
        "a sampling field the API takes without a shared limit would be checked twice, differently"


@pytest.mark.parametrize("name", API_FIELDS)
def test_the_api_and_sampling_params_agree_at_the_edges(name):
    allowed, refused = edges(name)
    for value in allowed:
        ChatCompletionRequest.model_validate({"messages": MESSAGES, name: value})
        SamplingParams(**{name: value})
    for value in refused:
        with pytest.raises(ValidationError):
            ChatCompletionRequest.model_validate({"messages": MESSAGES, name: value})
        with pytest.raises(InvalidRequest) as error:
            SamplingParams(**{name: value})
        assert error.value.param == name


def test_a_request_becomes_sampling_params_with_qwens_defaults_for_the_rest():
    request = ChatCompletionRequest.model_validate({
        "messages": MESSAGES, "temperature": 0, "seed": 7, "stop": "END", "max_tokens": 5,
        "max_completion_tokens": 9, "logit_bias": {"42": -100}})
    sampling, defaults = request.sampling_params(), SamplingParams()
    assert (sampling.temperature, sampling.seed, sampling.stop) == (0, 7, ["END"])
    assert sampling.max_tokens == 9, "max_completion_tokens is OpenAI's newer name and wins"
    assert sampling.logit_bias == {42: -100}
    assert (sampling.top_p, sampling.top_k, sampling.repetition_penalty, sampling.presence_penalty) == \
        (defaults.top_p, defaults.top_k, defaults.repetition_penalty, defaults.presence_penalty)


def test_a_completion_without_max_tokens_stops_at_openais_default():
    request = CompletionRequest.model_validate({"prompt": "Once upon a time"})
    assert request.sampling_params().max_tokens == COMPLETION_DEFAULT_MAX_TOKENS
    assert ChatCompletionRequest.model_validate({"messages": MESSAGES}).sampling_params().max_tokens is None
