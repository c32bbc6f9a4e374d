"""Export and import documents: jisu's own JSON, Markdown to read, and reading import files.

jisu's JSON keeps everything: every branch, the active leaf, the answers' stats, the times
(unix seconds). One conversation is {"format": "jisu.conversation", "version": 1, "id", "source_key",
"title", "system", "created_at", "updated_at", "active_leaf_id", "messages": [...]} with the
messages in the order written (parents first); all of a user's are {"format":
"jisu.conversations", "version": 1, "exported_at", "conversations": [the former, ...]}.
Importing one gives new ids and keeps everything else, so an export of the import equals the
original but for ids.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from jisu.history import chatgpt
from jisu.history.errors import HistoryImportError
from jisu.history.ids import native_source_key
from jisu.history.records import (
    COMPLETE, MESSAGE_ROLES, MESSAGE_STATES, AnswerStats, Conversation, ConversationTree, ImportedConversation,
    ImportedMessage, Message,
)
from jisu.history.tree import parents_first

FORMAT_ONE = "jisu.conversation"
FORMAT_ALL = "jisu.conversations"
FORMAT_VERSION = 1
_MESSAGE_FIELDS = ("id", "parent_id", "role", "content", "created_at", "state", "model", "quantization",
                   "finish_reason", "prompt_tokens", "completion_tokens", "time_to_first_token_s", "tokens_per_s")


def conversation_document(tree: ConversationTree) -> dict[str, Any]:
    conversation = tree.conversation
    return {
        "format": FORMAT_ONE, "version": FORMAT_VERSION,
        "id": conversation.id, "source_key": tree.source_key, "title": conversation.title,
        "system": conversation.system, "created_at": conversation.created_at,
        "updated_at": conversation.updated_at, "active_leaf_id": conversation.active_leaf_id,
        "messages": [{name: getattr(message, name) for name in _MESSAGE_FIELDS} for message in tree.messages],
    }


def conversations_document(trees: list[ConversationTree], exported_at: float) -> dict[str, Any]:
    return {"format": FORMAT_ALL, "version": FORMAT_VERSION, "exported_at": exported_at,
            "conversations": [conversation_document(tree) for tree in trees]}


def encode_json(document: dict[str, Any]) -> str:
    """An export as text, as the server sends it and the CLI writes it: readable, non-ASCII
    characters as themselves."""
    return json.dumps(document, ensure_ascii=False, indent=1)


def conversation_markdown(conversation: Conversation) -> str:
    """The active branch as Markdown: a heading per message, its text as written."""
    lines = [f"# {conversation.title or 'Untitled conversation'}", "",
             f"Created {_date(conversation.created_at)}, updated {_date(conversation.updated_at)}.", ""]
    if conversation.system is not None:
        lines += ["## System", "", conversation.system, ""]
    for message in conversation.messages:
        lines += [f"## {message.role.capitalize()}{_answer_note(message)}", "", message.content, ""]
        if message.cut_short:
            lines += ["*(cut short)*", ""]
    return "\n".join(lines)


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _answer_note(message: Message) -> str:
    parts = answer_figures(message)
    return f" ({', '.join(parts)})" if parts else ""


def answer_figures(message: Message) -> list[str]:
    """What an answer says of itself, where known: model and quantization, tokens, tokens/s."""
    parts = [" ".join(filter(None, (message.model, message.quantization)))]
    if message.completion_tokens is not None:
        parts.append(f"{message.completion_tokens} tokens")
    if message.tokens_per_s is not None:
        parts.append(f"{message.tokens_per_s:.1f} tokens/s")
    return [part for part in parts if part]


def read_import(data: bytes | str | dict[str, Any] | list[Any]) -> list[ImportedConversation]:
    """The conversations in an import file: jisu's JSON (one or all) or ChatGPT's
    conversations.json. Raises HistoryImportError, one line, for anything else."""
    document = _parse_json(data) if isinstance(data, (bytes, str)) else data
    if isinstance(document, dict) and "format" in document:
        return _read_jisu(document)
    if chatgpt.looks_like_export(document):
        return chatgpt.read_export(document)
    raise HistoryImportError("not a jisu export or a ChatGPT conversations.json: expected a JSON object with "
                             f"\"format\": \"{FORMAT_ONE}\" or a list of conversations with a \"mapping\"")


def _parse_json(data: bytes | str) -> Any:
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError:
        raise HistoryImportError("not a JSON file: it is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise HistoryImportError(f"not a JSON file: {error}") from None


def _read_jisu(document: dict[str, Any]) -> list[ImportedConversation]:
    kind, version = document.get("format"), document.get("version")
    if kind not in (FORMAT_ONE, FORMAT_ALL):
        raise HistoryImportError(f"unknown format {str(kind)[:60]!r}: jisu reads {FORMAT_ONE!r} "
                                 f"and {FORMAT_ALL!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HistoryImportError(f"{kind}: \"version\" must be a whole number from 1")
    if version > FORMAT_VERSION:
        raise HistoryImportError(f"{kind} version {version} was written by a newer jisu; "
                                 f"this one reads version {FORMAT_VERSION}")
    if kind == FORMAT_ONE:
        return [_read_jisu_conversation(document, "the conversation")]
    conversations = document.get("conversations")
    if not isinstance(conversations, list):
        raise HistoryImportError(f"{FORMAT_ALL}: \"conversations\" must be a list")
    return [_read_jisu_conversation(item, f"conversation {number}")
            for number, item in enumerate(conversations, 1)]


def _read_jisu_conversation(item: Any, where: str) -> ImportedConversation:
    if not isinstance(item, dict):
        raise HistoryImportError(f"{where}: must be a JSON object")
    fields = _Fields(item, where)
    conversation_id = fields.text("id")
    raw_messages = item.get("messages")
    if not isinstance(raw_messages, list):
        raise HistoryImportError(f"{where}: \"messages\" must be a list")
    messages = [_read_jisu_message(message, f"{where}, message {number}")
                for number, message in enumerate(raw_messages, 1)]
    try:
        messages = parents_first(messages)
    except ValueError as error:
        raise HistoryImportError(f"{where}: {error}") from None
    active_leaf_id = fields.text("active_leaf_id", optional=True)
    if active_leaf_id is not None and active_leaf_id not in {message.id for message in messages}:
        raise HistoryImportError(f"{where}: its active leaf {active_leaf_id[:60]!r} is not one of its messages")
    if active_leaf_id is None and messages:  # a file written by hand: show the last message written
        active_leaf_id = messages[-1].id
    return ImportedConversation(
        source_key=fields.text("source_key", optional=True) or native_source_key(conversation_id),
        title=fields.text("title", optional=True) or "", system=fields.text("system", optional=True),
        created_at=fields.number("created_at"), updated_at=fields.number("updated_at"),
        messages=tuple(messages), active_leaf_id=active_leaf_id)


def _read_jisu_message(item: Any, where: str) -> ImportedMessage:
    if not isinstance(item, dict):
        raise HistoryImportError(f"{where}: must be a JSON object")
    fields = _Fields(item, where)
    role = fields.text("role")
    if role not in MESSAGE_ROLES:
        raise HistoryImportError(f"{where}: role must be one of {', '.join(MESSAGE_ROLES)}, not {role[:30]!r}")
    state = fields.text("state", optional=True) or COMPLETE
    if state not in MESSAGE_STATES:
        raise HistoryImportError(f"{where}: state must be one of {', '.join(MESSAGE_STATES)}, not {state[:30]!r}")
    return ImportedMessage(
        id=fields.text("id"), parent_id=fields.text("parent_id", optional=True), role=role,
        content=fields.text("content", empty=True), created_at=fields.number("created_at"), state=state,
        model=fields.text("model", optional=True), quantization=fields.text("quantization", optional=True),
        finish_reason=fields.text("finish_reason", optional=True),
        stats=AnswerStats(prompt_tokens=fields.count("prompt_tokens"),
                          completion_tokens=fields.count("completion_tokens"),
                          time_to_first_token_s=fields.number("time_to_first_token_s", optional=True),
                          tokens_per_s=fields.number("tokens_per_s", optional=True)))


class _Fields:
    """Typed reads of one JSON object's fields, each failure a one-line HistoryImportError."""

    def __init__(self, item: dict[str, Any], where: str) -> None:
        self.item = item
        self.where = where

    def _get(self, name: str, optional: bool, kinds: tuple[type, ...], expected: str) -> Any:
        value = self.item.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise HistoryImportError(f"{self.where}: \"{name}\" must be {expected}")
        return value

    def text(self, name: str, optional: bool = False, empty: bool = False) -> Any:
        value = self._get(name, optional, (str,), "a string" if empty or optional else "a non-empty string")
        if value == "" and not (empty or optional):
            raise HistoryImportError(f"{self.where}: \"{name}\" must be a non-empty string")
        return value

    def number(self, name: str, optional: bool = False) -> Any:
        value = self._get(name, optional, (int, float), "a number")
        if value is not None and not math.isfinite(value):  # Python's json reads NaN and Infinity
            raise HistoryImportError(f"{self.where}: \"{name}\" must be a finite number")
        return value

    def count(self, name: str) -> Any:
        value = self._get(name, True, (int,), "a whole number")
        if value is not None and value < 0:
            raise HistoryImportError(f"{self.where}: \"{name}\" must not be negative")
        return value
