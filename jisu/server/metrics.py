"""Prometheus metrics at /metrics: requests, tokens, latency, and what the engine is doing."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the route)

from jisu.types import Finished, FinishReason

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict[str, int]]) -> None:
        # One registry per app, so several servers (tests) never share counters.
        self.registry = CollectorRegistry()
        self.requests = Counter("jisu_requests", "Requests by endpoint and outcome",
                                ["endpoint", "status"], registry=self.registry)
        self.refusals = Counter("jisu_refusals", "Requests refused before they started, by reason "
                                "(the error code: server_busy, invalid_api_key, forbidden_origin, ...)",
                                ["reason"], registry=self.registry)
        self.prompt_tokens = Counter("jisu_prompt_tokens", "Prompt tokens received", registry=self.registry)
        self.cached_prompt_tokens = Counter("jisu_prompt_tokens_cached",
                                            "Prompt tokens served from the prefix cache", registry=self.registry)
        self.completion_tokens = Counter("jisu_completion_tokens", "Tokens generated", registry=self.registry)
        self.time_to_first_token = Histogram("jisu_time_to_first_token_seconds", "Time to first token",
                                             buckets=LATENCY_BUCKETS, registry=self.registry)
        self.time_per_token = Histogram("jisu_time_per_output_token_seconds",
                                        "Mean time between output tokens of a request",
                                        buckets=TOKEN_BUCKETS, registry=self.registry)
        running = Gauge("jisu_requests_running", "Requests being generated", registry=self.registry)
        queued = Gauge("jisu_requests_queued", "Requests waiting for a slot", registry=self.registry)
        slots = Gauge("jisu_slots_in_use", "Engine sequences held by a request", registry=self.registry)
        running.set_function(lambda: engine_stats()["running"])
        queued.set_function(lambda: engine_stats()["queued"])
        slots.set_function(lambda: engine_stats()["slots_in_use"])

    def request_finished(self, endpoint: str, finished: Finished) -> None:
        # Ended by the stop button, a client that left, or a server stop: not "ok".
        ended_early = finished.reason in (FinishReason.CANCELLED, FinishReason.SHUTDOWN)
        self.requests.labels(endpoint, finished.reason.value if ended_early else "ok").inc()
        self.prompt_tokens.inc(finished.usage.prompt_tokens)
        self.cached_prompt_tokens.inc(finished.usage.cached_tokens)
        self.completion_tokens.inc(finished.usage.completion_tokens)
        timings = finished.timings
        if timings.completion_tokens:
            self.time_to_first_token.observe(timings.time_to_first_token_s)
        if timings.completion_tokens > 1:
            self.time_per_token.observe(timings.decode_s / (timings.completion_tokens - 1))

    def request_failed(self, endpoint: str) -> None:
        self.requests.labels(endpoint, "error").inc()

    def request_cancelled(self, endpoint: str) -> None:
        self.requests.labels(endpoint, "cancelled").inc()

    def request_refused(self, endpoint: str, status: int, reason: str) -> None:
        """A request answered with an error before it started (bad input, queue full, ...)."""
        self.requests.labels(endpoint, str(status)).inc()
        self.refused(reason)

    def refused(self, reason: str) -> None:
        """Refused at the door (key, Host, Origin, body size), before any route ran."""
        self.refusals.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
