"""What the CLI commands share: model and sampling flags, loading, and error reporting."""

from __future__ import annotations

import functools
import sys
from contextlib import closing
from typing import TYPE_CHECKING, Callable

import click

from jisu.config import DEFAULT_CTX_SIZE, DEFAULT_PARALLEL, MAX_CTX_SIZE, EngineConfig
from jisu.types import (
    EventReader,
    ModelError,
    Failed,
    Finished,
    InvalidRequest,
    PrefillProgress,
    Queued,
    SamplingParams,
    TextDelta,
)

if TYPE_CHECKING:  # loading the runtime loads llama.cpp: only commands that run a model do
    from jisu.runtime import Prompt, Runtime

EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    """A one-line message and exit code 2: the user can fix this, no traceback needed."""

    exit_code = EXIT_USER_ERROR


def reports_user_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ModelError, InvalidRequest) as error:
            raise UserError(str(error)) from None
        except BrokenPipeError:  # `jisu ask ... | head`: the reader left, nothing is wrong
            sys.stderr.close()
            sys.exit(0)

    return wrapper


def model_options(command: Callable) -> Callable:
    options = [
        click.option("--model", "-m", "model", default=None, metavar="ALIAS|PATH",
                     help="Model alias (see `jisu models`) or a path to a .gguf file."),
        click.option("--quant", default=None, help="Quantization of an aliased model, e.g. q4_0."),
        click.option("--ctx-size", "-c", type=click.IntRange(256, MAX_CTX_SIZE), default=DEFAULT_CTX_SIZE,
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


def load_runtime(model: str | None, quant: str | None, ctx_size: int, threads: int,
                 kv_cache_type: str = "f16", flash_attn: str = "auto",
                 parallel: int = DEFAULT_PARALLEL, **runtime_options) -> Runtime:
    from jisu.engine.quantize import quantize
    from jisu.models.resolve import resolve_model
    from jisu.runtime import Runtime

    resolved = resolve_model(model, quant, quantizer=quantize)
    config = EngineConfig(model_path=resolved.path, ctx_size=ctx_size, threads=threads, parallel=parallel,
                          kv_cache_type=kv_cache_type, flash_attention=flash_attn)
    return Runtime.load(resolved, config, **runtime_options)


def print_answer(runtime: Runtime, prompt: Prompt, show_progress: bool = False,
                 pieces: list[str] | None = None) -> tuple[str, Finished | None]:
    """Stream an answer to stdout as it is generated; return its text and how it ended.

    Ctrl-C propagates as KeyboardInterrupt, after the request has been cancelled and freed;
    the text shown until then is in `pieces` when the caller passes a list.
    """
    printer = TerminalPrinter(show_progress, [] if pieces is None else pieces)
    with closing(runtime.stream(prompt)) as events:
        for event in events:
            printer.read(event)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(printer.pieces), printer.end


class TerminalPrinter(EventReader[None]):
    """The answer's text on stdout as it comes; prompt progress (on request) on stderr."""

    def __init__(self, show_progress: bool, pieces: list[str]) -> None:
        self.show_progress = show_progress
        self.pieces = pieces
        self.end: Finished | None = None
        self._progress_shown = False

    def queued(self, event: Queued) -> None:
        pass  # one request at a time: a CLI never waits behind anyone

    def progress(self, event: PrefillProgress) -> None:
        if self.show_progress:
            click.echo(f"\r[reading prompt: {event.processed}/{event.total} tokens]", err=True, nl=False)
            self._progress_shown = True

    def text(self, event: TextDelta) -> None:
        if self._progress_shown:
            click.echo("", err=True)
            self._progress_shown = False
        self.pieces.append(event.text)
        sys.stdout.write(event.text)
        sys.stdout.flush()

    def finished(self, event: Finished) -> None:
        self.end = event

    def failed(self, event: Failed) -> None:
        raise UserError(event.message)
