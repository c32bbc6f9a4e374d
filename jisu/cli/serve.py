"""`jisu serve`: the OpenAI-compatible API and the web chat UI."""

from __future__ import annotations

import socket

import click

from jisu.cli.common import UserError, load_runtime, model_options, reports_user_errors
from jisu.config import DEFAULT_HOST, DEFAULT_PARALLEL, DEFAULT_PORT
from jisu.scheduler.loop import DEFAULT_HOST_CACHE_MB, DEFAULT_MAX_QUEUE


def bind(host: str, port: int) -> socket.socket:
    """Bind before loading anything, so a busy port is a one-line error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); try --port {port + 1}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on; 0.0.0.0 shares on the LAN.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@model_options
@click.option("--parallel", "-np", type=click.IntRange(1, 64), default=DEFAULT_PARALLEL, show_default=True,
              help="Answers generated at the same time.")
@click.option("--max-queue", type=click.IntRange(0, 100_000), default=DEFAULT_MAX_QUEUE, show_default=True,
              help="Requests allowed to wait; more get 503 with Retry-After.")
@click.option("--cache-ram", type=click.IntRange(0, 1_000_000), default=DEFAULT_HOST_CACHE_MB, show_default=True,
              metavar="MB", help="Host memory for conversations moved out of the KV cache.")
@reports_user_errors
def serve(host, port, model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel, max_queue, cache_ram):
    """Start the API server and web UI."""
    import uvicorn

    from jisu.server.app import create_app

    sock = bind(host, port)
    runtime = load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=parallel,
                           max_queue=max_queue, host_cache_mb=cache_ram)
    try:
        app = create_app(runtime)
        actual_port = sock.getsockname()[1]
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        info = runtime.info
        click.echo(f"jisu: {info.name} ({info.quantization}, context {info.context_size}) ready at "
                   f"http://{shown_host}:{actual_port}/  (Ctrl-C to stop)", err=True)
        config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", timeout_graceful_shutdown=3)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        runtime.close()
        sock.close()
