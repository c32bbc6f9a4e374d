"""How the app is served: uvicorn with jisu's connection limits, and a clean stop.

On SIGTERM or Ctrl-C no answer is cut off without a final word.

uvicorn on its own closes WebSockets at once (code 1012) and cancels streaming responses
after its timeout, mid-chunk; it also re-raises the signal when it is done, so the process
exits 143 instead of 0. Here the server first stops accepting connections, refuses new
requests with 503, lets running answers finish for up to the grace period, then ends the
rest so each stream gets its final event (SSE: an error event and [DONE]; WebSocket: "done"
with finish_reason "shutdown"), and only then lets uvicorn close the connections.
"""

from __future__ import annotations

import signal

import click
import uvicorn

from jisu.server.limits import MAX_BODY_BYTES, LimitedHttpToolsProtocol
from jisu.server.request_id import log_requests
from jisu.server.serving import Serving

DEFAULT_SHUTDOWN_GRACE_S = 10.0


def build_server(app, grace_s: float = DEFAULT_SHUTDOWN_GRACE_S) -> GracefulServer:
    """The server `jisu serve` runs (tests run the same one in a thread)."""
    log_requests()  # uvicorn's own access log stays off: ours carries each request's id
    config = uvicorn.Config(
        app, log_level="warning", http=LimitedHttpToolsProtocol.reporting_to(app.state.serving.metrics.refused),
        ws="websockets-sansio",
        ws_max_size=MAX_BODY_BYTES,  # a bigger WebSocket message is closed with 1009
        timeout_graceful_shutdown=5,  # after drain(): only idle connections are left
    )
    return GracefulServer(config, app.state.serving, grace_s)


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, serving: Serving, grace_s: float = DEFAULT_SHUTDOWN_GRACE_S) -> None:
        super().__init__(config)
        self.serving = serving
        self.grace_s = grace_s

    def handle_exit(self, sig: int, frame) -> None:
        # As uvicorn's, minus recording the signal: a stop we were asked for is a clean exit.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for answers
        else:
            self.should_exit = True

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()  # no new connections; requests on open ones get 503
        for sock in sockets or []:
            sock.close()
        running = len(self.serving.active)
        if running:
            click.echo(f"jisu: stopping; letting {running} running answer(s) finish "
                       f"(up to {self.grace_s:g} s, Ctrl-C again to cut them short)", err=True)
        await self.serving.drain(self.grace_s, stop_waiting=lambda: self.force_exit)
        await super().shutdown(sockets)
