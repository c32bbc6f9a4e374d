"""Sampling parameters are checked before anything reaches the engine."""

import math

import pytest

from jisu.types import InvalidRequest, SamplingParams


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -0.1), ("temperature", 2.5), ("temperature", math.nan),
        ("top_p", 0.0), ("top_p", 1.5), ("min_p", -1), ("top_k", -1), ("top_k", 1.5),
        ("repetition_penalty", 0.0), ("presence_penalty", 3), ("frequency_penalty", -3),
        ("seed", -1), ("seed", 2**32), ("max_tokens", 0), ("temperature", "hot"), ("top_k", True),
    ],
)
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(InvalidRequest) as error:
        SamplingParams(**{field: value})
    assert error.value.param == field
    assert field in error.value.message


def test_defaults_are_valid_and_sampled():
    params = SamplingParams()
    assert not params.greedy and params.max_tokens is None


def test_temperature_zero_means_greedy():
    assert SamplingParams(temperature=0).greedy


@pytest.mark.parametrize("stop", [[""], ["x" * 1000], ["a"] * 17])
def test_bad_stop_strings_are_refused(stop):
    with pytest.raises(InvalidRequest) as error:
        SamplingParams(stop=stop)
    assert error.value.param == "stop"
