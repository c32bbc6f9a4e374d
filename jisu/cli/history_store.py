"""Where the CLI finds the conversations (`jisu history`, and those of `jisu chat` and `jisu ask
-c`): the running `jisu serve`'s store through its API when one answers (jisu.cli.discovery),
else the history file under JISU_HOME, opened by the command itself.

Through a server when there is one: it records the answers it streams and keeps each
conversation's cached state, and its users are the ones its keys name. A command that opens the
file while a server writes to it (`jisu chat --model ...`) is safe too: SQLite's WAL and busy
timeout make two writers wait for each other (jisu.history.db).

Both kinds give the store's own records (jisu.history.records) and raise its errors (NotFound
for an unknown id, HistoryImportError for a file that is not an export), so the commands print
and fail the same way whichever answered.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any, Protocol

import httpx

from jisu.cli.backend import ServedModel
from jisu.cli.common import RuntimeFailure, UserError
from jisu.cli.remote import RemoteBackend
from jisu.history import (
    AnswerRecorder, Conversation, ConversationNotFound, ConversationStore, ConversationSummary, HistoryImportError,
    ImportResult, Message, Page, SearchHit, Siblings, default_history_path,
)
from jisu.history.formats import encode_json
from jisu.server.access import LOCAL_USER
from jisu.server.keys import KeyConfigError, parse_key
from jisu.types import Failed, Finished

CONVERSATIONS = "/v1/conversations"


class History(Protocol):
    where: str  # for people: "the jisu server at http://...", "the file ~/.cache/jisu/history.db"

    def conversations(self, limit: int) -> Page[ConversationSummary]:
        """The most recently updated first."""
        ...

    def search(self, words: str, limit: int) -> Page[SearchHit]: ...

    def conversation(self, conversation_id: str) -> Conversation:
        """With its active branch."""
        ...

    def create(self, title: str, system: str | None) -> Conversation: ...

    def set_system(self, conversation_id: str, system: str | None) -> None: ...

    def add_message(self, conversation_id: str, role: str, content: str, parent_id: str | None) -> str:
        """A message without an answer after `parent_id` (None: a first message, a new branch),
        as the end of the active branch; its id."""
        ...

    def record_answer(self, conversation_id: str, question_id: str, model: ServedModel) -> AnswerRecording:
        """The answer to `question_id` that this command streams, to be kept as it comes."""
        ...

    def delete(self, conversation_id: str) -> None: ...

    def export_json(self, conversation_id: str | None) -> str:
        """jisu's JSON of one conversation, or of all (None)."""
        ...

    def export_markdown(self, conversation_id: str) -> str: ...

    def import_file(self, data: bytes) -> ImportResult: ...

    def close(self) -> None: ...


class AnswerRecording(Protocol):
    """An answer being kept (jisu.history.AnswerRecorder's verbs): its text as it streams, then
    how it ended; finish(None, cut_short=True) for one not read to its end."""

    message_id: str | None  # None until it is kept

    def add(self, text: str) -> None: ...

    def finish_with(self, end: Finished | Failed) -> object: ...

    def finish(self, finish_reason: str | None, *, cut_short: bool = False) -> object: ...


def open_history(server: RemoteBackend | None, api_key: str | None) -> History:
    """The server's history when a server answers, else the file's, as the user `api_key`
    names (NAME:KEY), so that the server shows that user what was written without it."""
    if server is not None:
        return RemoteHistory(server)
    return LocalHistory.open(key_user(api_key))


def key_user(api_key: str | None) -> str:
    """Whose conversations the CLI reads and writes when it opens the history file itself: the
    user the key names as `jisu serve` reads it (NAME:KEY; a bare key, or none, is the local user)."""
    if not api_key or not api_key.strip():
        return LOCAL_USER
    try:
        return parse_key(api_key, "the API key (--api-key, JISU_API_KEY)")[1]
    except KeyConfigError as error:  # a key no server takes names no one's history
        raise UserError(str(error)) from None


class LocalHistory:
    """The history file, opened by this process."""

    def __init__(self, store: ConversationStore, user: str) -> None:
        self.store = store
        self.user = user
        self.where = f"the file {store.path}"

    @classmethod
    def open(cls, user: str) -> LocalHistory:
        path = default_history_path()
        try:
            return cls(ConversationStore(path), user)
        except (sqlite3.Error, OSError) as error:  # SchemaError (a newer jisu's file) is a HistoryError
            raise RuntimeFailure(f"cannot open the conversation history {path} ({error})") from None

    def conversations(self, limit: int) -> Page[ConversationSummary]:
        return self.store.list_conversations(self.user, limit=limit)

    def search(self, words: str, limit: int) -> Page[SearchHit]:
        return self.store.search(self.user, words, limit=limit)

    def conversation(self, conversation_id: str) -> Conversation:
        return self.store.get_conversation(self.user, conversation_id)

    def create(self, title: str, system: str | None) -> Conversation:
        return self.store.create_conversation(self.user, title=title, system=system)

    def set_system(self, conversation_id: str, system: str | None) -> None:
        self.store.update_conversation(self.user, conversation_id, system=system)

    def add_message(self, conversation_id: str, role: str, content: str, parent_id: str | None) -> str:
        return self.store.add_message(self.user, conversation_id, parent_id=parent_id, role=role, content=content).id

    def record_answer(self, conversation_id: str, question_id: str, model: ServedModel) -> AnswerRecording:
        """Recorded as it streams, with its model and figures: Ctrl-C or a killed process leaves
        what was written, cut short."""
        return AnswerRecorder.begin(self.store, self.user, conversation_id, parent_id=question_id,
                                    model=model.id, quantization=model.quantization)

    def delete(self, conversation_id: str) -> None:
        self.store.delete_conversation(self.user, conversation_id)

    def export_json(self, conversation_id: str | None) -> str:
        document = (self.store.export_all_json(self.user) if conversation_id is None
                    else self.store.export_json(self.user, conversation_id))
        return encode_json(document)  # as the server sends it

    def export_markdown(self, conversation_id: str) -> str:
        return self.store.export_markdown(self.user, conversation_id)

    def import_file(self, data: bytes) -> ImportResult:
        return self.store.import_file(self.user, data)

    def close(self) -> None:
        self.store.close()


class RemoteHistory:
    """A running server's history: /v1/conversations, with the client's key."""

    def __init__(self, server: RemoteBackend) -> None:
        self.server = server
        self.where = server.where

    def conversations(self, limit: int) -> Page[ConversationSummary]:
        listed = self._json("GET", CONVERSATIONS, params={"limit": limit})
        return Page(tuple(map(_summary, listed["data"])), listed["total"], listed["limit"], listed["offset"])

    def search(self, words: str, limit: int) -> Page[SearchHit]:
        found = self._json("GET", CONVERSATIONS, params={"q": words, "limit": limit})
        hits = tuple(SearchHit(_summary(item), item["match"]["message_id"], item["match"]["snippet"])
                     for item in found["data"])
        return Page(hits, found["total"], found["limit"], found["offset"])

    def conversation(self, conversation_id: str) -> Conversation:
        return _conversation(self._json("GET", f"{CONVERSATIONS}/{conversation_id}", conversation_id))

    def create(self, title: str, system: str | None) -> Conversation:
        return _conversation(self._json("POST", CONVERSATIONS, json={"title": title, "system": system}))

    def set_system(self, conversation_id: str, system: str | None) -> None:
        self._json("PATCH", f"{CONVERSATIONS}/{conversation_id}", conversation_id, json={"system": system})

    def add_message(self, conversation_id: str, role: str, content: str, parent_id: str | None) -> str:
        return self._json("POST", f"{CONVERSATIONS}/{conversation_id}/messages", conversation_id,
                          json={"role": role, "content": content, "parent_id": parent_id})["id"]

    def record_answer(self, conversation_id: str, question_id: str, model: ServedModel) -> AnswerRecording:
        """Kept once it ends, however it ends, as its text without figures: the API takes whole
        messages. (A server records the answers it is asked for in a conversation itself.)"""
        return _WholeAnswer(self, conversation_id, question_id)

    def delete(self, conversation_id: str) -> None:
        self._json("DELETE", f"{CONVERSATIONS}/{conversation_id}", conversation_id)

    def export_json(self, conversation_id: str | None) -> str:
        if conversation_id is None:
            return self._call("GET", f"{CONVERSATIONS}/export").text
        return self._call("GET", f"{CONVERSATIONS}/{conversation_id}/export", conversation_id).text

    def export_markdown(self, conversation_id: str) -> str:
        return self._call("GET", f"{CONVERSATIONS}/{conversation_id}/export", conversation_id,
                          params={"format": "md"}).text

    def import_file(self, data: bytes) -> ImportResult:
        imported = self._json("POST", f"{CONVERSATIONS}/import", content=data,
                              headers={"Content-Type": "application/json"})
        return ImportResult(tuple(imported["imported"]), imported["skipped"])

    def close(self) -> None:
        pass  # the server's client belongs to whoever connected it

    def _json(self, method: str, path: str, conversation_id: str | None = None, **options: Any) -> Any:
        return self._call(method, path, conversation_id, **options).json()

    def _call(self, method: str, path: str, conversation_id: str | None = None, **options: Any) -> httpx.Response:
        """The server's answer; its refusals as the store's errors where the store has them."""
        response = self.server.request(method, path, **options)
        if response.status_code == 200:
            return response
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {}
        code = error.get("code") if isinstance(error, dict) else None
        if code == "conversation_not_found" and conversation_id is not None:
            raise ConversationNotFound(conversation_id)
        if code == "invalid_import":
            raise HistoryImportError(str(error.get("message", "")).removeprefix("Cannot import this file: "))
        raise self.server.refused(response)


@dataclasses.dataclass
class _WholeAnswer:
    history: RemoteHistory
    conversation_id: str
    question_id: str
    message_id: str | None = None
    pieces: list[str] = dataclasses.field(default_factory=list)

    def add(self, text: str) -> None:
        self.pieces.append(text)

    def finish_with(self, end: Finished | Failed) -> None:
        self.finish(None)

    def finish(self, finish_reason: str | None, *, cut_short: bool = False) -> None:
        self.message_id = self.history.add_message(self.conversation_id, "assistant", "".join(self.pieces),
                                                   parent_id=self.question_id)


def _summary(item: dict[str, Any]) -> ConversationSummary:
    return ConversationSummary(**{field.name: item[field.name] for field in dataclasses.fields(ConversationSummary)})


def _conversation(item: dict[str, Any]) -> Conversation:
    return Conversation(**vars(_summary(item)), messages=tuple(map(_message, item["messages"])))


def _message(item: dict[str, Any]) -> Message:
    values = {field.name: item.get(field.name) for field in dataclasses.fields(Message) if field.name != "siblings"}
    siblings = item["siblings"]
    return Message(**values, siblings=Siblings(tuple(siblings["ids"]), siblings["index"]))
