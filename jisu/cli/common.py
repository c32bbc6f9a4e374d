"""What the CLI commands share: model, sampling and server flags, loading, error reporting, and
printing an answer's events to the terminal."""

from __future__ import annotations

import functools
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import click

from jisu.config import DEFAULT_CTX_SIZE, DEFAULT_MODEL_ALIAS, DEFAULT_PARALLEL, MAX_CTX_SIZE, EngineConfig
from jisu.types import (
    Event,
    EventReader,
    Failed,
    Finished,
    InvalidRequest,
    ModelError,
    PrefillProgress,
    Queued,
    SamplingParams,
    TextDelta,
)

if TYPE_CHECKING:  # loading the runtime loads llama.cpp: only commands that run a model do
    from jisu.runtime import Runtime

# The usual split: 2 when the command line (or a value in it) is wrong and the user can fix it,
# 1 when a well-formed command failed while running.
EXIT_USER_ERROR = 2
EXIT_RUNTIME_FAILURE = 1


class UserError(click.ClickException):
    """A one-line message and exit code 2: the user can fix this, no traceback needed."""

    exit_code = EXIT_USER_ERROR


class RuntimeFailure(click.ClickException):
    """A one-line message and exit code 1: the command was right, running it failed (a server
    refused or went away, a model could not be fetched or loaded, the engine failed)."""

    exit_code = EXIT_RUNTIME_FAILURE


def reports_user_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from jisu.models.fetch import SourceUnreachable

        try:
            return command(*args, **kwargs)
        except SourceUnreachable as error:  # `jisu pull` offline: nothing the command line can fix
            raise RuntimeFailure(str(error)) from None
        except (ModelError, InvalidRequest) as error:
            raise UserError(str(error)) from None
        except BrokenPipeError:  # `jisu ask ... | head`: the reader left, nothing is wrong
            sys.stderr.close()
            sys.exit(0)
        except Exception as error:
            failure = _history_failure(error)
            if failure is None:
                raise
            raise failure from None

    return wrapper


def _history_failure(error: Exception) -> click.ClickException | None:
    """The conversation store's errors as the CLI reports them. Only a command that loaded the
    store can fail with them: a plain `jisu ask` (or `jisu pull`) never loads it, not even to
    report another error."""
    if "jisu.history" not in sys.modules:
        return None
    from jisu.history import HistoryError, HistoryImportError

    if isinstance(error, HistoryImportError):  # the file named is not an export: the user picks another
        return UserError(f"cannot import this file: {error}")
    if isinstance(error, HistoryError):  # an unknown conversation id, a history file jisu cannot open
        return RuntimeFailure(str(error))
    return None


# The flags that say how to load a model. A running server has its model loaded already, so
# `jisu ask`/`jisu chat` given any of them on the command line load the model themselves.
MODEL_FLAGS = ("model", "quant", "ctx_size", "threads", "kv_cache_type", "flash_attn")


def model_options(command: Callable, ctx_size_flags: tuple[str, ...] = ("--ctx-size", "-c")) -> Callable:
    options = [
        click.option("--model", "-m", "model", default=None, metavar="ALIAS|PATH",
                     help="Model alias (see `jisu models`) or a path to a .gguf file."),
        click.option("--quant", default=None, help="Quantization of an aliased model, e.g. q4_0."),
        click.option(*ctx_size_flags, "ctx_size", type=click.IntRange(256, MAX_CTX_SIZE), default=DEFAULT_CTX_SIZE,
                     show_default=True, help="Most tokens one conversation may hold."),
        click.option("--threads", "-t", type=click.IntRange(0, 512), default=0,
                     help="CPU threads (default: physical cores)."),
        click.option("--kv-cache-type", type=click.Choice(["f16", "q8_0"]), default="f16", show_default=True,
                     help="q8_0 halves the memory of long contexts."),
        click.option("--flash-attn", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                     help="auto: off (decodes long contexts ~3x faster on CPUs), on for a q8_0 KV cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def chat_model_options(command: Callable) -> Callable:
    """model_options for `jisu ask` and `jisu chat`, whose -c continues the last conversation
    (as in other chat CLIs); `jisu serve -c` stays the context size, as in llama-server."""
    return model_options(command, ctx_size_flags=("--ctx-size",))


def conversation_options(command: Callable) -> Callable:
    """-c and --id, for `jisu chat` and `jisu ask` (see jisu.cli.conversation)."""
    command = click.option("--id", "conversation_id", metavar="ID",
                           help="Continue the conversation ID (`jisu history` lists them).")(command)
    return click.option("--continue", "-c", "continue_last", is_flag=True,
                        help="Continue the last conversation (the most recently updated).")(command)


def check_conversation_options(continue_last: bool, conversation_id: str | None) -> None:
    if continue_last and conversation_id is not None:
        raise click.UsageError("-c continues the last conversation and --id a given one: use one of them")


def server_options(command: Callable) -> Callable:
    options = [
        click.option("--url", envvar="JISU_URL", default=None, metavar="URL",
                     help="The `jisu serve` to answer through (default: http://127.0.0.1:8080 if one "
                          "answers there, else the model loads in-process). Also: JISU_URL."),
        click.option("--api-key", envvar="JISU_API_KEY", default=None, metavar="KEY",
                     help="The server's API key. Also: JISU_API_KEY (NAME:KEY as `jisu serve` reads it)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def sampling_options(command: Callable) -> Callable:
    defaults = SamplingParams()
    options = [
        click.option("--system", "-s", default=None, help="System prompt."),
        click.option("--temperature", type=float, default=defaults.temperature, show_default=True,
                     help="0 answers greedily (deterministic)."),
        click.option("--top-p", type=float, default=defaults.top_p, show_default=True),
        click.option("--top-k", type=int, default=defaults.top_k, show_default=True),
        click.option("--max-tokens", "-n", type=int, default=None, help="Stop after this many tokens."),
        click.option("--seed", type=int, default=None, help="Same seed + same input = same answer."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_sampling(temperature: float, top_p: float, top_k: int, max_tokens: int | None,
                  seed: int | None) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k,
                          max_tokens=max_tokens, seed=seed)


def check_model_choice(model: str | None, quant: str | None, kv_cache_type: str = "f16",
                       flash_attn: str = "auto") -> None:
    """What the user named must exist before anything is fetched or loaded: an unknown alias or
    quantization, a missing or non-GGUF file, or flags that contradict each other are usage
    errors (exit 2); failing to fetch or load what exists is a runtime failure (exit 1)."""
    from jisu.models.registry import lookup
    from jisu.models.resolve import looks_like_path
    from jisu.models.store import check_gguf

    if kv_cache_type != "f16" and not EngineConfig(Path(), kv_cache_type=kv_cache_type,
                                                   flash_attention=flash_attn).uses_flash_attention():
        raise UserError(f"a {kv_cache_type} KV cache needs flash attention (drop --flash-attn off)")
    if model and looks_like_path(model):
        check_gguf(Path(model).expanduser().resolve())
    else:
        lookup(model or DEFAULT_MODEL_ALIAS).variant(quant)


def load_runtime(model: str | None, quant: str | None, ctx_size: int, threads: int,
                 kv_cache_type: str = "f16", flash_attn: str = "auto",
                 parallel: int = DEFAULT_PARALLEL, **runtime_options) -> Runtime:
    from jisu.engine.quantize import quantize
    from jisu.models.resolve import resolve_model
    from jisu.runtime import Runtime

    check_model_choice(model, quant, kv_cache_type, flash_attn)
    try:
        resolved = resolve_model(model, quant, quantizer=quantize)
        config = EngineConfig(model_path=resolved.path, ctx_size=ctx_size, threads=threads, parallel=parallel,
                              kv_cache_type=kv_cache_type, flash_attention=flash_attn)
        return Runtime.load(resolved, config, **runtime_options)
    except ModelError as error:
        raise RuntimeFailure(str(error)) from None


def write_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def print_answer(events: Iterator[Event], show_progress: bool = False, pieces: list[str] | None = None,
                 write: Callable[[str], None] | None = None) -> tuple[str, Finished | None]:
    """Pass an answer's text to `write` as it is generated (by default: to stdout, then a
    newline); return its text and how it ended.

    Ctrl-C propagates as KeyboardInterrupt, after the events are closed (which cancels the
    answer, in-process or on the server); the text shown until then is in `pieces` when the
    caller passes a list.
    """
    printer = TerminalPrinter(show_progress, [] if pieces is None else pieces, write or write_to_stdout)
    with closing(events):
        for event in events:
            printer.read(event)
    if write is None:
        write_to_stdout("\n")
    return "".join(printer.pieces), printer.end


class TerminalPrinter(EventReader[None]):
    """The answer's text as it comes; waiting and prompt progress (on request) on stderr."""

    def __init__(self, show_progress: bool, pieces: list[str],
                 write: Callable[[str], None] = write_to_stdout) -> None:
        self.show_progress = show_progress
        self.pieces = pieces
        self.write = write
        self.end: Finished | None = None
        self._progress_shown = False

    def queued(self, event: Queued) -> None:
        if self.show_progress:  # only a server makes the CLI wait behind others
            click.echo(f"\r[waiting: {event.position} ahead]", err=True, nl=False)
            self._progress_shown = True

    def progress(self, event: PrefillProgress) -> None:
        if self.show_progress:
            click.echo(f"\r[reading prompt: {event.processed}/{event.total} tokens]", err=True, nl=False)
            self._progress_shown = True

    def text(self, event: TextDelta) -> None:
        if self._progress_shown:
            click.echo("", err=True)
            self._progress_shown = False
        self.pieces.append(event.text)
        self.write(event.text)

    def finished(self, event: Finished) -> None:
        self.end = event

    def failed(self, event: Failed) -> None:
        raise RuntimeFailure(event.message)


def describe_finish(finished: Finished) -> str:
    """The figures `-v` prints after an answer, the same for both ways of answering."""
    t, usage = finished.timings, finished.usage
    cached = f" ({usage.cached_tokens} reused)" if usage.cached_tokens else ""
    return (f"[prompt {usage.prompt_tokens} tokens{cached}, time to first token {t.time_to_first_token_s:.2f} s, "
            f"{t.completion_tokens} tokens, {t.decode_tokens_per_s:.1f} tokens/s, "
            f"stopped by {finished.reason.value}]")
