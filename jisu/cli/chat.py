"""`jisu chat`: an interactive, multi-turn terminal chat that streams as it goes.

It answers through a running `jisu serve` when there is one (jisu.cli.discovery), else it loads
the model itself. Every chat is a stored conversation (jisu.cli.conversation): a new one, or
with -c the last one, with --id a given one; the web page and `jisu history` show it. With a
terminal, input is read by prompt_toolkit (jisu.cli.chat_input); with a pipe, each input line is
one user turn and only the answers go to stdout, which makes the chat scriptable (and testable).
A piped chat stops at the first answer that fails (exit 1): its later turns were written
expecting that answer.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Iterator

import click

from jisu.cli.backend import Backend
from jisu.cli.chat_commands import CommandError, run_command
from jisu.cli.chat_input import PROMPT, entries, pipe_reader, terminal_reader
from jisu.cli.common import (
    RuntimeFailure,
    chat_model_options,
    check_conversation_options,
    conversation_options,
    describe_finish,
    load_runtime,
    make_sampling,
    print_answer,
    reports_user_errors,
    sampling_options,
    server_options,
)
from jisu.cli.conversation import ChatConversation, open_conversation, start_turn
from jisu.cli.discovery import find_server, open_backend, server_address
from jisu.cli.history_store import History, open_history
from jisu.types import ChatMessage, ContextOverflow, Event, InvalidRequest, SamplingParams, Usage

RECAP_LINES = 12  # of each message shown when a chat continues; `jisu history show` has the rest


@dataclass
class ChatSession:
    backend: Backend
    history: History
    conversation: ChatConversation
    sampling: SamplingParams
    interactive: bool
    verbose: bool = False
    last_usage: Usage | None = None  # the conversation's size after the last answer (/show)


@click.command()
@conversation_options
@server_options
@chat_model_options
@sampling_options
@click.option("--verbose", "-v", is_flag=True, help="Say what answers (server or in-process); speed figures.")
@reports_user_errors
def chat(continue_last, conversation_id, url, api_key, model, quant, ctx_size, threads, kv_cache_type, flash_attn,
         system, temperature, top_p, top_k, max_tokens, seed, verbose):
    """Chat in the terminal, kept in your history. Ctrl-C stops the current answer; /help lists
    commands; /exit leaves."""
    check_conversation_options(continue_last, conversation_id)
    interactive = sys.stdin.isatty()
    address = server_address(url, api_key)
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)

    def notice(line: str) -> None:
        if verbose:
            click.echo(line, err=True)

    load = lambda: load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=1)  # noqa: E731
    with ExitStack() as stack:
        server = find_server(address, notice)
        if server is not None:
            stack.callback(server.close)
        history = stack.enter_context(closing(open_history(server, api_key)))
        # Before the model loads: an unknown id is said at once.
        conversation = open_conversation(history, continue_last, conversation_id, system)
        backend = stack.enter_context(closing(open_backend(server, load, notice)))
        session = ChatSession(backend, history, conversation, sampling, interactive, verbose)
        if interactive:
            click.echo(f"jisu chat · {backend.model.name} ({backend.model.quantization}) · {backend.where} · "
                       "/help lists the commands", err=True)
            recap(conversation)
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
            _turn(session, text)


def recap(conversation: ChatConversation) -> None:
    """Where a continued conversation stands: its last exchange, as the chat showed it."""
    if conversation.id is None:
        return
    click.echo(f"(continuing «{conversation.title or 'untitled'}», {conversation.id})", err=True)
    for message in conversation.turns[-2:]:
        lines = message.content.splitlines() or [""]
        shown = "\n".join(lines[:RECAP_LINES])
        if len(lines) > RECAP_LINES:
            shown += f"\n… ({len(lines) - RECAP_LINES} more lines: jisu history show {conversation.id})"
        click.echo(f"{PROMPT}{shown}" if message.role == "user" else shown, err=True)


def _turn(session: ChatSession, text: str) -> None:
    """Answer `text` as the conversation's next turn. Once the turn is stored (its request was
    not refused), the model reads it next time with whatever answer it got, as the history
    shows it."""
    conversation = session.conversation
    try:
        events = _start(session, text)
    except RuntimeFailure as error:
        _failed(session, error)
        return
    if events is None:
        return
    conversation.turns.append(ChatMessage("user", text))
    shown: list[str] = []
    finished = None
    try:
        _, finished = print_answer(events, pieces=shown)
    except RuntimeFailure as error:
        _failed(session, error)
    except KeyboardInterrupt:
        click.echo("\n(stopped)", err=True)
    conversation.turns.append(ChatMessage("assistant", "".join(shown)))  # what the user saw
    if finished:
        session.last_usage = finished.usage
        if session.verbose:
            click.echo(describe_finish(finished), err=True)


def _start(session: ChatSession, text: str) -> Iterator[Event] | None:
    """The answer's events; None when the request was refused (and why was said). A conversation
    that no longer fits the context loses its oldest turns, if the user agrees."""
    conversation = session.conversation
    while True:
        try:
            return start_turn(session.history, session.backend, conversation, text, session.sampling)
        except ContextOverflow as overflow:
            if not conversation.turns:
                click.echo(f"jisu: {overflow.message}", err=True)
                return None
            if session.interactive and not click.confirm(
                f"The conversation ({overflow.prompt_tokens} tokens) no longer fits the "
                f"{overflow.context_size}-token context. Drop the oldest turns? (the history keeps them)",
                default=True, err=True
            ):
                return None
            for message in conversation.drop_oldest_exchange():
                click.echo(f"(dropped {message.role}: {_preview(message.content)})", err=True)
        except InvalidRequest as error:
            click.echo(f"jisu: {error.message}", err=True)
            return None


def _failed(session: ChatSession, error: RuntimeFailure) -> None:
    """A piped chat stops (its next lines expected this answer); a person decides what comes next."""
    if not session.interactive:
        raise error
    click.echo(f"jisu: {error.format_message()}", err=True)


def _preview(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
