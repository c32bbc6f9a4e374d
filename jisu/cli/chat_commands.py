"""The /commands of `jisu chat`. Each checks its argument before changing anything; a bad one
is a one-line CommandError and the chat goes on. An unknown /command is an error too, never a
message for the model: a typo such as /rest must not become a question."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import click

from jisu.cli.conversation import ChatConversation, set_system
from jisu.types import InvalidRequest

if TYPE_CHECKING:
    from jisu.cli.chat import ChatSession

HELP = ("commands: /set temperature|top_p|top_k|max_tokens|seed|system VALUE, /show, "
        "/new or /reset (a new conversation; jisu history keeps this one), /system TEXT, /exit; "
        '""" starts and ends a multi-line message')

NUMBER_SETTINGS = {"temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "seed": int}
CLEARABLE = ("max_tokens", "seed")  # "none" lifts the limit / picks a random seed
NO_VALUE = ("none", "off", "default")


class CommandError(Exception):
    """A command that cannot be done as typed; the message is one line."""


def run_command(session: ChatSession, line: str) -> bool:
    """Do one /command; False when the chat should end."""
    name, _, argument = line.strip().partition(" ")
    if name in ("/exit", "/quit", "/bye"):
        return False
    command = COMMANDS.get(name)
    if command is None:
        raise CommandError(f"unknown command {name}; /help lists the commands "
                           '(to send text that starts with "/", put it between """ lines)')
    command(session, argument.strip())
    return True


def _new(session: ChatSession, argument: str) -> None:
    """A new conversation, with the same system prompt; the one left stays in the history."""
    left = session.conversation.id
    session.conversation = ChatConversation(session.conversation.system)
    session.last_usage = None
    _say(f"(new conversation; {left} stays in jisu history)" if left else "(new conversation)")


def _system(session: ChatSession, argument: str) -> None:
    set_system(session.history, session.conversation, argument or None)  # the stored one too
    _say(f"(system prompt: {session.conversation.system or 'default'})")


def _set(session: ChatSession, argument: str) -> None:
    name, _, value = argument.partition(" ")
    name, value = name.lower().replace("-", "_"), value.strip()
    known = ", ".join([*NUMBER_SETTINGS, "system"])
    if not name:
        raise CommandError(f"/set needs a setting and a value: {known}")
    if name == "system":
        _system(session, value)
        return
    if name not in NUMBER_SETTINGS:
        raise CommandError(f"/set {name}: no such setting; one of {known}")
    if not value:
        raise CommandError(f"/set {name}: give a value")
    parsed = _number(name, value)
    try:
        session.sampling = replace(session.sampling, **{name: parsed})  # SamplingParams checks the range
    except InvalidRequest as error:
        raise CommandError(f"/set {name}: {error.message}") from None
    _say(f"({name}: {'none' if parsed is None else parsed})")


def _number(name: str, value: str) -> float | int | None:
    if name in CLEARABLE and value.lower() in NO_VALUE:
        return None
    kind = NUMBER_SETTINGS[name]
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        hint = " or none" if name in CLEARABLE else ""
        raise CommandError(f"/set {name}: {value!r} is not {what}{hint}") from None


def _show(session: ChatSession, argument: str) -> None:
    model, sampling = session.backend.model, session.sampling
    used = session.last_usage
    _say(f"model: {model.name} ({model.quantization}), context {model.context_size} tokens")
    _say(f"answered by: {session.backend.where}")
    if used is None:
        _say("context used: nothing yet")
    else:
        _say(f"context used: {used.total_tokens} of {model.context_size} tokens (after the last answer)")
    _say(f"settings: temperature {sampling.temperature}, top_p {sampling.top_p}, top_k {sampling.top_k}, "
         f"max_tokens {sampling.max_tokens or 'none'}, seed {'random' if sampling.seed is None else sampling.seed}")
    _say(f"system prompt: {session.conversation.system or 'default'}")
    conversation, where = session.conversation, session.history.where
    _say(f"conversation: {conversation.id}, kept by {where}" if conversation.id
         else f"conversation: new, kept by {where} from its first message")


def _help(session: ChatSession, argument: str) -> None:
    _say(HELP)


def _say(line: str) -> None:
    click.echo(line, err=True)  # stdout carries only the answers, so a piped chat stays scriptable


COMMANDS: dict[str, Callable[[ChatSession, str], None]] = {
    "/new": _new,
    "/reset": _new,  # its name before conversations were stored: it also started afresh
    "/system": _system,
    "/set": _set,
    "/show": _show,
    "/help": _help,
    "/?": _help,
}
