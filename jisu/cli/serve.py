"""`jisu serve`: the OpenAI-compatible API and the web chat UI."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from jisu.cli.common import UserError, load_runtime, model_options, reports_user_errors
from jisu.config import (
    DEFAULT_BROWSER_QUANT,
    DEFAULT_HOST,
    DEFAULT_HOST_CACHE_MB,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PARALLEL,
    DEFAULT_PORT,
    jisu_home,
)
from jisu.server.access import LOCAL_USER, AccessPolicy, is_loopback, split_host_port
from jisu.server.keys import GENERATED_KEY_FILE, KeyConfigError, collect_keys, generated_key
from jisu.server.runner import DEFAULT_SHUTDOWN_GRACE_S


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


def lan_addresses() -> list[str]:
    """IPv4 addresses colleagues can reach this machine at (none when only loopback)."""
    found = []
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            if not is_loopback(address[0]) and address[0] not in found:
                found.append(address[0])
    except OSError:
        pass
    return found


def choose_keys(host: str, cli_keys: tuple[str, ...], key_files: tuple[Path, ...],
                insecure_no_auth: bool) -> tuple[dict[str, str], str | None]:
    """The keys the server requires, and the generated key to show in a URL (if one was
    made). Loopback without keys stays open; any other address needs a key unless the
    user opted out, as Jupyter does."""
    try:
        keys = collect_keys(cli_keys, key_files)
    except KeyConfigError as error:
        raise UserError(str(error)) from None
    if insecure_no_auth:
        if keys:
            raise UserError("--insecure-no-auth and an API key contradict each other; drop one")
        if not is_loopback(host):
            click.echo(f"jisu: WARNING: --insecure-no-auth: anyone who can reach {host} can use this "
                       "server and read its answers", err=True)
        return {}, None
    if keys or is_loopback(host):
        return keys, None
    key, _ = generated_key(jisu_home())
    return {key: LOCAL_USER}, key


def announce(info, host: str, port: int, shown_key: str | None, needs_key: bool, verbose: bool = False) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if info.fallback_note:
        click.echo(f"jisu: {info.fallback_note}", err=True)
        if verbose and info.fallback_detail:
            click.echo(f"jisu: why: {info.fallback_detail}", err=True)
    click.echo(f"jisu: {info.name} ({info.quantization}, context {info.context_size}) ready at "
               f"http://{shown_host}:{port}/  (Ctrl-C to stop)", err=True)
    if shown_key:
        fragment = f"#key={shown_key}"  # a fragment never reaches a server log or a Referer
        hosts = lan_addresses() if host in ("0.0.0.0", "::") else [host]
        for address in hosts or [socket.gethostname()]:
            click.echo(f"jisu: on your network: http://{address}:{port}/{fragment}", err=True)
        click.echo(f"jisu: API clients send 'Authorization: Bearer {shown_key}' (kept in "
                   f"{jisu_home() / GENERATED_KEY_FILE}; --api-key sets your own)", err=True)
    elif needs_key:
        click.echo("jisu: API keys are required (the page asks for one)", err=True)


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on; 0.0.0.0 shares on the LAN (with an API key).")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@model_options
@click.option("--parallel", "-np", type=click.IntRange(1, 64), default=DEFAULT_PARALLEL, show_default=True,
              help="Answers generated at the same time.")
@click.option("--max-queue", type=click.IntRange(0, 100_000), default=DEFAULT_MAX_QUEUE, show_default=True,
              help="Requests allowed to wait when every slot is busy; more get 503 with Retry-After.")
@click.option("--cache-ram", type=click.IntRange(0, 1_000_000), default=DEFAULT_HOST_CACHE_MB, show_default=True,
              metavar="MB", help="Host memory for conversations moved out of the KV cache.")
@click.option("--api-key", "api_keys", multiple=True, metavar="[NAME:]KEY",
              help="Require this key (repeatable; NAME is the user it stands for). Also: JISU_API_KEY.")
@click.option("--api-key-file", "api_key_files", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Keys, one per line, as KEY or NAME:KEY.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another name this server is reached by (repeatable; '*' turns the Host check off).")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="A web origin whose pages may call the API, e.g. https://app.example (repeatable).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve a non-loopback address without any key (anyone on the network may use it).")
@click.option("--browser-quant", default=DEFAULT_BROWSER_QUANT, show_default=True, metavar="TYPE",
              help="Format of the model pages get when they run it themselves (browser mode).")
@click.option("--no-browser-mode", is_flag=True,
              help="Do not offer the model to pages that would run it in the browser.")
@click.option("--shutdown-grace", type=click.FloatRange(0, 3600), default=DEFAULT_SHUTDOWN_GRACE_S,
              show_default=True, metavar="SECONDS",
              help="On SIGTERM/Ctrl-C, how long running answers may finish before they are ended.")
@click.option("--verbose", "-v", is_flag=True, help="Say why when a stand-in model answers.")
@reports_user_errors
def serve(host, port, model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel, max_queue, cache_ram,
          api_keys, api_key_files, allowed_hosts, cors_origins, insecure_no_auth, browser_quant, no_browser_mode,
          shutdown_grace, verbose):
    """Start the API server and web UI."""
    from jisu.cli.export_web import locate_browser_model
    from jisu.server.app import create_app, web_dir
    from jisu.server.browser import BrowserModelFiles, wllama_installed
    from jisu.server.runner import build_server

    keys, shown_key = choose_keys(host, api_keys, api_key_files, insecure_no_auth)
    bound = split_host_port(host)[0]
    access = AccessPolicy.build(keys, allowed_hosts, cors_origins,
                                bound_host=None if bound in ("0.0.0.0", "::") else bound)
    sock = bind(host, port)
    runtime = load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=parallel,
                           max_queue=max_queue, host_cache_mb=cache_ram)
    # Prepared on the first page that asks (a fetch or quantization, then ~0.5 GB written).
    browser_model = None
    if not no_browser_mode and not wllama_installed(Path(str(web_dir()))):
        click.echo("jisu: browser mode is off: wllama is not installed (scripts/fetch_wllama.sh needs npm)",
                   err=True)
    elif not no_browser_mode:
        browser_model = BrowserModelFiles(lambda: locate_browser_model(model, browser_quant), jisu_home(),
                                          announce=lambda line: click.echo(f"jisu: {line}", err=True))
    try:
        app = create_app(runtime, access, browser_model=browser_model)
        announce(runtime.info, host, sock.getsockname()[1], shown_key, bool(keys), verbose)
        build_server(app, shutdown_grace).run(sockets=[sock])
    finally:
        runtime.close()
        sock.close()
