"""`jisu chat`: an interactive, multi-turn terminal chat that streams as it goes.

It answers through a running `jisu serve` when there is one (jisu.cli.discovery), else it loads
the model itself. With a terminal, input is read by prompt_toolkit (jisu.cli.chat_input); with a
pipe, each input line is one user turn and only the answers go to stdout, which makes the chat
scriptable (and testable). A piped chat stops at the first answer that fails (exit 1): its
later turns were written expecting that answer.
"""

from __future__ import annotations

import sys
from contextlib import closing
from dataclasses import dataclass

import click

from jisu.cli.backend import Backend
from jisu.cli.chat_commands import CommandError, run_command
from jisu.cli.chat_input import entries, pipe_reader, terminal_reader
from jisu.cli.common import (
    RuntimeFailure,
    describe_finish,
    load_runtime,
    make_sampling,
    model_options,
    print_answer,
    reports_user_errors,
    sampling_options,
    server_options,
)
from jisu.cli.discovery import open_backend, server_address
from jisu.types import ChatMessage, ContextOverflow, InvalidRequest, SamplingParams, Usage


class Conversation:
    def __init__(self, system: str | None) -> None:
        self.system = system
        self.turns: list[ChatMessage] = []

    def messages(self) -> list[ChatMessage]:
        head = [ChatMessage("system", self.system)] if self.system else []
        return head + self.turns

    def reset(self) -> None:
        self.turns.clear()

    def drop_oldest_exchange(self) -> list[ChatMessage]:
        """Forget the oldest user turn and the answer to it; the system prompt stays."""
        dropped = [self.turns.pop(0)]
        while self.turns and self.turns[0].role != "user":
            dropped.append(self.turns.pop(0))
        return dropped


@dataclass
class ChatSession:
    backend: Backend
    conversation: Conversation
    sampling: SamplingParams
    interactive: bool
    verbose: bool = False
    last_usage: Usage | None = None  # the conversation's size after the last answer (/show)


@click.command()
@server_options
@model_options
@sampling_options
@click.option("--verbose", "-v", is_flag=True, help="Say what answers (server or in-process); speed figures.")
@reports_user_errors
def chat(url, api_key, model, quant, ctx_size, threads, kv_cache_type, flash_attn, system, temperature, top_p,
         top_k, max_tokens, seed, verbose):
    """Chat in the terminal. Ctrl-C stops the current answer; /help lists commands; /exit leaves."""
    interactive = sys.stdin.isatty()
    address = server_address(url, api_key)
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)

    def notice(line: str) -> None:
        if verbose:
            click.echo(line, err=True)

    load = lambda: load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=1)  # noqa: E731
    with closing(open_backend(address, load, notice)) as backend:
        session = ChatSession(backend, Conversation(system), sampling, interactive, verbose)
        if interactive:
            click.echo(f"jisu chat · {backend.model.name} ({backend.model.quantization}) · {backend.where} · "
                       "/help lists the commands", err=True)
        for entry in entries(terminal_reader() if interactive else pipe_reader()):
            text = entry.text if entry.multiline else entry.text.strip()
            if not text.strip():
                continue
            if not entry.multiline and text.startswith("/"):
                try:
                    if not run_command(session, text):
                        break
                except CommandError as error:
                    click.echo(f"jisu: {error}", err=True)
                continue
            session.conversation.turns.append(ChatMessage("user", text))
            answer = _answer(session)
            if answer is None:
                session.conversation.turns.pop()
            else:
                session.conversation.turns.append(ChatMessage("assistant", answer))


def _answer(session: ChatSession) -> str | None:
    """Stream one answer; returns its text (partial if stopped), or None if there was none."""
    conversation = session.conversation
    shown: list[str] = []
    try:
        while True:
            try:
                events = session.backend.answer(conversation.messages(), session.sampling)
                break
            except ContextOverflow as overflow:
                if len(conversation.turns) <= 1:
                    click.echo(f"jisu: {overflow.message}", err=True)
                    return None
                if session.interactive and not click.confirm(
                    f"The conversation ({overflow.prompt_tokens} tokens) no longer fits the "
                    f"{overflow.context_size}-token context. Drop the oldest turns?", default=True, err=True
                ):
                    return None
                for message in conversation.drop_oldest_exchange():
                    click.echo(f"(dropped {message.role}: {_preview(message.content)})", err=True)
            except InvalidRequest as error:
                click.echo(f"jisu: {error.message}", err=True)
                return None
        answer, finished = print_answer(events, pieces=shown)
    except RuntimeFailure as error:
        if not session.interactive:
            raise
        click.echo(f"jisu: {error.format_message()}", err=True)  # a person decides what comes next
        return None
    except KeyboardInterrupt:
        click.echo("\n(stopped)", err=True)
        return "".join(shown)  # keep what was said: the user saw it
    if finished:
        session.last_usage = finished.usage
        if session.verbose:
            click.echo(describe_finish(finished), err=True)
    return answer


def _preview(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
