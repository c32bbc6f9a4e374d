"""Answering through a running `jisu serve`: its OpenAI-compatible API over HTTP, the streamed
chunks read back as the events an in-process answer gives (jisu.server.sse writes them).

Closing an answer's events closes the connection, and the server stops an answer whose client
hung up within one step: Ctrl-C stops the model there as it does in-process.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Sequence

import httpx

from jisu.cli.backend import ServedModel
from jisu.cli.common import RuntimeFailure
from jisu.types import (
    ChatMessage,
    ContextOverflow,
    Event,
    Failed,
    Finished,
    FinishReason,
    InvalidRequest,
    PrefillProgress,
    Queued,
    SamplingParams,
    TextDelta,
    Timings,
    Usage,
)

# Connecting to a local server takes microseconds, and a refused port fails at once: 0.3 s
# only matters for an address that drops packets. A server still loading its model accepts
# the connection and answers within seconds, which is worth waiting for.
PROBE_TIMEOUT = httpx.Timeout(connect=0.3, read=3.0, write=3.0, pool=3.0)
# No read deadline while answering: a queue or a long prompt may keep the stream quiet, and
# Ctrl-C is the way out.
ANSWER_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=5.0)
# The conversation routes answer in milliseconds, but exporting or importing a whole history
# may move many megabytes.
HISTORY_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=5.0)

# The sampling fields the CLI sets; the server's defaults are the CLI's (SamplingParams).
_SENT_SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "seed")
_FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "tool_calls": FinishReason.STOP}


class ServerUnavailable(Exception):
    """No jisu server answers at the address; the message says why, for people."""


class RemoteBackend:
    def __init__(self, url: str, client: httpx.Client, model: ServedModel, api_key: str | None) -> None:
        self.url = url
        self.where = f"the jisu server at {url}"
        self.model = model
        self._client = client
        self._api_key = api_key

    @classmethod
    def connect(cls, url: str, api_key: str | None, kept_key: Callable[[], str | None] = lambda: None
                ) -> RemoteBackend:
        """The server at `url`, once it has answered /health and accepted the key.

        ServerUnavailable when nothing (or nothing like jisu) answers; RuntimeFailure when a
        server answers but refuses this client. Without a key, a server that demands one is
        tried with `kept_key()`: the key `jisu serve` generated and kept on this machine.
        """
        # A proxy from the environment would only get in the way of a server on this machine
        # or the LAN (and most proxies cannot reach 127.0.0.1 at all).
        client = httpx.Client(trust_env=False)
        try:
            _check_health(client, url)
            models = client.get(f"{url}/v1/models", headers=_bearer(api_key), timeout=PROBE_TIMEOUT)
            if models.status_code == 401 and not api_key and (api_key := kept_key()):
                models = client.get(f"{url}/v1/models", headers=_bearer(api_key), timeout=PROBE_TIMEOUT)
            if models.status_code != 200:
                raise refusal(models.status_code, _json(models), url, api_key)
            return cls(url, client, _served_model(_json(models)), api_key)
        except httpx.HTTPError as error:
            client.close()
            raise ServerUnavailable(_why(error)) from None
        except BaseException:
            client.close()
            raise

    def answer(self, messages: Sequence[ChatMessage], sampling: SamplingParams,
               response_format: dict[str, Any] | None = None, conversation_id: str | None = None
               ) -> Iterator[Event]:
        """With `conversation_id`, `messages` is only the new user message: the server puts the
        conversation in front of it, keeps it and records the answer."""
        body = request_body(self.model.id, messages, sampling, response_format)
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        request = self._client.build_request("POST", f"{self.url}/v1/chat/completions", json=body,
                                             headers=_bearer(self._api_key), timeout=ANSWER_TIMEOUT)
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise RuntimeFailure(f"cannot reach {self.where} ({_why(error)})") from None
        if response.status_code != 200:
            try:
                response.read()
            finally:
                response.close()
            raise refusal(response.status_code, _json(response), self.url, self._api_key)
        return self._events(response)

    def _events(self, response: httpx.Response) -> Iterator[Event]:
        reader = ChunkReader()
        try:
            for line in response.iter_lines():
                yield from reader.read_line(line)
                if reader.done:
                    return
        except httpx.HTTPError as error:
            raise RuntimeFailure(f"lost the connection to {self.where} mid-answer ({_why(error)})") from None
        finally:
            response.close()
        raise RuntimeFailure(f"lost the connection to {self.where} mid-answer (the stream ended early)")

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One call to the server's API with this client's key, whatever its answer (the
        conversations: jisu.cli.history_store); RuntimeFailure when the server cannot be reached."""
        try:
            headers = {**_bearer(self._api_key), **options.pop("headers", {})}
            return self._client.request(method, f"{self.url}{path}", headers=headers, timeout=HISTORY_TIMEOUT,
                                        **options)
        except httpx.HTTPError as error:
            raise RuntimeFailure(f"cannot reach {self.where} ({_why(error)})") from None

    def refused(self, response: httpx.Response) -> Exception:
        """The exception for a request the server refused (see refusal)."""
        return refusal(response.status_code, _json(response), self.url, self._api_key)

    def close(self) -> None:
        self._client.close()


def request_body(model: str, messages: Sequence[ChatMessage], sampling: SamplingParams,
                 response_format: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},  # /show's context used, -v's figures
    }
    body.update({name: getattr(sampling, name) for name in _SENT_SAMPLING if getattr(sampling, name) is not None})
    if response_format is not None:
        body["response_format"] = response_format
    return body


class ChunkReader:
    """A chat completion's SSE lines -> jisu events: text chunks, the `: queued` and
    `: prefill` comments, the finish chunk's timings and the usage chunk (one Finished at
    [DONE]), an error event (Failed)."""

    def __init__(self) -> None:
        self.done = False
        self._reason: FinishReason | None = None
        self._timings = Timings()
        self._usage = Usage()

    def read_line(self, line: str) -> list[Event]:
        if line.startswith(": queued "):
            return [Queued(int(line.split()[2]))]
        if line.startswith(": prefill "):
            processed, _, total = line.split()[2].partition("/")
            return [PrefillProgress(int(processed), int(total))]
        if not line.startswith("data: "):
            return []
        payload = line[len("data: "):]
        if payload == "[DONE]":
            self.done = True
            if self._reason is None:  # neither an ending nor an error came before [DONE]
                return [Failed("the server ended the answer without finishing it")]
            return [Finished(self._reason, self._usage, self._timings)]
        chunk = json.loads(payload)
        if "error" in chunk:
            self.done = True
            error = chunk["error"]
            return [Failed(error.get("message", "the server could not finish the answer"),
                           error.get("code") or "internal_error")]
        if chunk.get("usage"):
            usage = chunk["usage"]
            self._usage = Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
        events: list[Event] = []
        for choice in chunk.get("choices", []):
            text = choice.get("delta", {}).get("content")
            if text:
                events.append(TextDelta(text, []))
            if choice.get("finish_reason"):
                self._reason = _FINISH_REASONS.get(choice["finish_reason"], FinishReason.STOP)
                self._timings = _timings(chunk.get("timings") or {})
        return events


def refusal(status: int, body: dict[str, Any], url: str, api_key: str | None) -> Exception:
    """The exception for a request the server refused before answering: the user's input
    (400, 413) is a usage error as it is in-process; the rest are runtime failures."""
    error = body.get("error")
    detail = error if isinstance(error, dict) else {"message": str(error or f"HTTP {status}")}
    message = detail.get("message") or f"HTTP {status}"
    if status == 400 and detail.get("code") == "context_length_exceeded" and "prompt_tokens" in detail:
        return ContextOverflow(detail["prompt_tokens"], detail.get("max_tokens"), detail["context_size"])
    if status in (400, 413):
        return InvalidRequest(message, detail.get("param"))
    if status == 401:
        if api_key:
            return RuntimeFailure(f"the jisu server at {url} refused the API key (--api-key, JISU_API_KEY)")
        return RuntimeFailure(f"the jisu server at {url} needs an API key: pass --api-key or set JISU_API_KEY")
    if status == 403:
        return RuntimeFailure(f"the jisu server at {url} refused this client: {message}")
    if status == 503:
        return RuntimeFailure(f"the jisu server at {url} cannot answer now: {message}")
    return RuntimeFailure(f"the jisu server at {url} answered {status}: {message}")


def client_key(value: str | None) -> str | None:
    """The key to send. JISU_API_KEY may hold NAME:KEY, as `jisu serve` reads it (a key has
    no ':' of its own there), so one exported variable serves both."""
    if not value or not value.strip():
        return None
    return value.strip().partition(":")[2].strip() if ":" in value else value.strip()


def _check_health(client: httpx.Client, url: str) -> None:
    response = client.get(f"{url}/health", timeout=PROBE_TIMEOUT)
    body = _json(response)
    if response.status_code == 503:
        raise ServerUnavailable(f"it is {str(body.get('status', 'unavailable')).replace('_', ' ')}")
    if response.status_code == 403:
        raise RuntimeFailure(f"the jisu server at {url} refused this client: "
                             f"{(body.get('error') or {}).get('message', 'HTTP 403')}")
    if response.status_code != 200 or body.get("status") != "ok":
        raise ServerUnavailable(f"/health answered HTTP {response.status_code}: not a jisu server")


def _served_model(body: dict[str, Any]) -> ServedModel:
    entries = body.get("data") or [{}]
    entry = entries[0]
    model_id = str(entry.get("id", ""))
    return ServedModel(name=str(entry.get("name") or model_id), id=model_id,
                       quantization=str(entry.get("quantization") or "?"),
                       context_size=int(entry.get("context_size") or 0),
                       fallback_note=entry.get("fallback_note"), fallback_detail=entry.get("fallback_detail"))


def _timings(sent: dict[str, Any]) -> Timings:
    seconds = lambda name: float(sent.get(name, 0.0)) / 1000  # noqa: E731
    return Timings(queued_s=seconds("queued_ms"), time_to_first_token_s=seconds("time_to_first_token_ms"),
                   prefill_s=seconds("prefill_ms"), decode_s=seconds("decode_ms"),
                   completion_tokens=int(sent.get("completion_tokens", 0)))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _why(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return "no answer to connecting"
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        reason = str(error).rpartition("] ")[2] or str(error)
        return reason[0].lower() + reason[1:] if reason else "cannot connect"
    return str(error) or type(error).__name__
