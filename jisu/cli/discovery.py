"""Which backend answers `jisu ask` and `jisu chat` (and keeps the conversations of those and
`jisu history`: jisu.cli.history_store).

- `--url URL` or JISU_URL: that server, and it must answer (exit 1 otherwise): the user named it.
- Otherwise the default address (`jisu serve`'s own default) is probed for a moment: a server
  there answers at once; when none does, the model loads in-process (about 5 s) and the
  history file is opened directly.
- Flags that say how to load a model (--model, --ctx-size, ...) on the command line mean the
  model in-process: a running server has its model loaded already. With --url they contradict.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from jisu.cli.backend import Backend, LocalBackend
from jisu.cli.common import MODEL_FLAGS, RuntimeFailure
from jisu.cli.remote import RemoteBackend, ServerUnavailable, client_key
from jisu.config import DEFAULT_HOST, DEFAULT_PORT, jisu_home
from jisu.server.keys import GENERATED_KEY_FILE

if TYPE_CHECKING:
    from jisu.runtime import Runtime

DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


@dataclass(frozen=True)
class ServerAddress:
    url: str
    explicit: bool  # named by --url or JISU_URL: not answering is an error, not a reason to load
    api_key: str | None


def server_address(url: str | None, api_key: str | None) -> ServerAddress | None:
    """Where to look for a server, from the current command's flags; None: in-process."""
    context = click.get_current_context()

    def on_command_line(name: str) -> bool:
        return context.get_parameter_source(name) is ParameterSource.COMMANDLINE

    model_flags = [name for name in MODEL_FLAGS if on_command_line(name)]
    if model_flags:
        if on_command_line("url"):
            flag = "--" + model_flags[0].replace("_", "-")
            raise click.UsageError(f"{flag} is for a model loaded in-process; with --url the server's model "
                                   "answers: drop one of them")
        return None  # an exported JISU_URL is a default, and the model flags say otherwise
    if url is None:
        return ServerAddress(DEFAULT_URL, explicit=False, api_key=client_key(api_key))
    return ServerAddress(normalized_url(url), explicit=True, api_key=client_key(api_key))


def normalized_url(url: str) -> str:
    """http://host:port, also from the base URL an OpenAI client is given (…/v1/)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not an http:// or https:// address", param_hint="--url")
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def find_server(address: ServerAddress | None, notice: Callable[[str], None]) -> RemoteBackend | None:
    """The server at `address`; None when none answers there (or none is to be asked). One
    named by --url or JISU_URL must answer: RuntimeFailure otherwise."""
    if address is None:
        return None
    try:
        server = RemoteBackend.connect(address.url, address.api_key, kept_key=lambda: kept_server_key(address.url))
    except ServerUnavailable as why:
        if address.explicit:
            raise RuntimeFailure(f"no jisu server answers at {address.url} ({why})") from None
        notice(f"[no jisu server at {address.url} ({why}): loading the model in-process]")
        return None
    notice(f"[answering through {server.where}: {server.model.name} ({server.model.quantization})]")
    return server


def open_backend(server: RemoteBackend | None, load_model: Callable[[], Runtime],
                 notice: Callable[[str], None]) -> Backend:
    """The server find_server found, else the model loaded in-process (`load_model`); `notice`
    hears which (for -v). A stand-in answering is always said, in one line."""
    backend = server or _local_backend(load_model, notice)
    if backend.model.fallback_note:
        click.echo(f"jisu: {backend.model.fallback_note}", err=True)
        if backend.model.fallback_detail:
            notice(f"[why: {backend.model.fallback_detail}]")
    return backend


def _local_backend(load_model: Callable[[], Runtime], notice: Callable[[str], None]) -> Backend:
    local = LocalBackend(load_model())
    notice(f"[in-process: {local.model.name} ({local.model.quantization})]")
    return local


def kept_server_key(url: str) -> str | None:
    """The key `jisu serve --host 0.0.0.0` generated and kept when given none, for a server on
    this machine only: it is this user's secret, never sent to another host."""
    if not _is_loopback(urlsplit(url).hostname or ""):
        return None
    try:
        key = (jisu_home() / GENERATED_KEY_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
