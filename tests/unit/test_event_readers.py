"""Each wire format reads every kind of event, through one dispatch."""

from __future__ import annotations

import json
import typing

import pytest

from jisu.cli.common import RuntimeFailure, TerminalPrinter
from jisu.server.errors import ApiError
from jisu.server.ollama import AnswerLines
from jisu.server.ollama_protocol import AnswerWriter
from jisu.server.protocol import ChunkWriter
from jisu.server.serving import WholeAnswer
from jisu.server.sse import ChunkStream
from jisu.server.websocket import SocketMessages
from jisu.types import (
    Event,
    EventReader,
    Failed,
    Finished,
    FinishReason,
    PrefillProgress,
    Queued,
    TextDelta,
    Timings,
    Usage,
)

ONE_OF_EACH = [Queued(1), PrefillProgress(10, 20), TextDelta("你好", [1]),
               Finished(FinishReason.STOP, Usage(3, 1), Timings()), Failed("engine error: boom")]


def readers() -> list[EventReader]:
    return [SocketMessages(), ChunkStream(ChunkWriter("m"), ["get_weather"], include_usage=True),
            ChunkStream(ChunkWriter("m", kind="text"), [], include_usage=False), WholeAnswer(),
            TerminalPrinter(show_progress=True, pieces=[]), AnswerLines(AnswerWriter("m", "chat"), ["get_weather"]),
            AnswerLines(AnswerWriter("m", "generate"), [])]


def test_every_kind_of_event_has_a_reading():
    assert {type(event) for event in ONE_OF_EACH} == set(typing.get_args(Event))


@pytest.mark.parametrize("reader", readers(), ids=lambda reader: type(reader).__name__)
def test_each_format_reads_each_kind_of_event(reader, capsys):
    for event in ONE_OF_EACH:
        try:
            reader.read(event)
        except (ApiError, RuntimeFailure):  # how a non-streaming answer or the CLI reports Failed
            assert isinstance(event, Failed)


def test_the_socket_and_the_stream_say_the_same_failure():
    failure = Failed("engine error: boom", code="internal_error")
    socket_error = SocketMessages().read(failure)
    [stream_line] = ChunkStream(ChunkWriter("m"), [], include_usage=False).read(failure)
    assert socket_error["type"] == "error" and socket_error["error"]["message"] == "engine error: boom"
    assert '"message": "engine error: boom"' in stream_line and '"code": "internal_error"' in stream_line
    with pytest.raises(ApiError) as raised:
        WholeAnswer().read(failure)
    assert raised.value.status == 500 and raised.value.body["error"] == socket_error["error"]


def test_an_answer_cut_by_a_stop_is_an_error_not_an_ending():
    cut = Finished(FinishReason.SHUTDOWN, Usage(3, 1), Timings())
    [line] = ChunkStream(ChunkWriter("m"), [], include_usage=True).read(cut)
    assert '"code": "server_shutdown"' in line and "finish_reason" not in line
    assert SocketMessages().read(cut)["finish_reason"] == "shutdown"
    [ndjson_line] = AnswerLines(AnswerWriter("m", "chat"), []).read(cut)
    assert json.loads(ndjson_line) == {"error": "The server stopped before the answer was complete; retry."}
    with pytest.raises(ApiError) as raised:
        WholeAnswer().read(cut)
    assert raised.value.status == 503
