"""`jisu chat`: an interactive, multi-turn terminal chat that streams as it goes.

With a terminal, input has line editing, history and wide (Chinese) characters through
prompt_toolkit. With a pipe, each input line is one user turn and only the answers go to
stdout, which makes the chat scriptable (and testable).
"""

from __future__ import annotations

import sys

import click

from jisu.cli.common import (
    UserError,
    load_runtime,
    make_sampling,
    model_options,
    print_answer,
    reports_user_errors,
    sampling_options,
)
from jisu.config import jisu_home
from jisu.types import ChatMessage, ContextOverflow

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /exit"


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


def _read_lines_from_terminal():
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    history = jisu_home() / "chat_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    session = PromptSession(history=FileHistory(str(history)))
    while True:
        try:
            yield session.prompt("你 > ")
        except KeyboardInterrupt:
            click.echo("(Ctrl-D or /exit leaves the chat)", err=True)
        except EOFError:
            return


def _read_lines_from_pipe():
    for line in sys.stdin:
        yield line.rstrip("\n")


@click.command()
@model_options
@sampling_options
@reports_user_errors
def chat(model, quant, ctx_size, threads, kv_cache_type, flash_attn, system, temperature, top_p, top_k, max_tokens, seed):
    """Chat in the terminal. Ctrl-C stops the current answer; /exit leaves."""
    interactive = sys.stdin.isatty()
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)
    conversation = Conversation(system)
    with load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=1) as runtime:
        if interactive:
            click.echo(f"jisu chat · {runtime.info.name} ({runtime.info.quantization}) · {HELP}", err=True)
        lines = _read_lines_from_terminal() if interactive else _read_lines_from_pipe()
        for line in lines:
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                conversation.reset()
                click.echo("(conversation cleared)", err=True)
                continue
            if text.startswith("/system"):
                conversation.system = text[len("/system"):].strip() or None
                click.echo(f"(system prompt: {conversation.system or 'default'})", err=True)
                continue
            if text in ("/help", "/?"):
                click.echo(HELP, err=True)
                continue
            conversation.turns.append(ChatMessage("user", text))
            answer = _answer(runtime, conversation, sampling, interactive)
            if answer is None:
                conversation.turns.pop()
            else:
                conversation.turns.append(ChatMessage("assistant", answer))


def _answer(runtime, conversation: Conversation, sampling, interactive: bool) -> str | None:
    """Stream one answer; returns its text (partial if stopped), or None if it failed."""
    while True:
        try:
            prompt = runtime.prepare_chat(conversation.messages(), sampling)
            break
        except ContextOverflow as overflow:
            if len(conversation.turns) <= 1:
                click.echo(f"jisu: {overflow.message}", err=True)
                return None
            if interactive and not click.confirm(
                f"The conversation ({overflow.prompt_tokens} tokens) no longer fits the "
                f"{overflow.context_size}-token context. Drop the oldest turns?", default=True, err=True
            ):
                return None
            for message in conversation.drop_oldest_exchange():
                click.echo(f"(dropped {message.role}: {_preview(message.content)})", err=True)

    shown: list[str] = []
    try:
        answer, _ = print_answer(runtime, prompt, pieces=shown)
        return answer
    except UserError as error:  # the engine failed this answer; the chat goes on
        click.echo(f"jisu: {error.format_message()}", err=True)
        return None
    except KeyboardInterrupt:
        click.echo("\n(stopped)", err=True)
        return "".join(shown)  # keep what was said: the user saw it


def _preview(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
