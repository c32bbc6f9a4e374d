"""The stored conversation `jisu chat` (and `jisu ask -c/--id/--save`) is in: which one, what the
model reads of it, and each turn kept where the history is (jisu.cli.history_store).

A turn is kept as the web page's are:
- through a server, the request names the conversation (conversation_id) and carries only the
  new message: the server puts the conversation in front, keeps the message and records the
  answer, and starts from the conversation's cached state;
- in-process, the command keeps the message and records the answer as it streams
  (History.record_answer), so Ctrl-C or a killed process leaves what was written, cut short.
A turn refused before its answer starts (too long, a bad setting) keeps nothing, and a new
conversation is stored with its first turn: a chat left without a word leaves nothing either.

When a conversation outgrows the context, `jisu chat` drops its oldest turns from what the model
reads, and the turns kept are copied into a branch of their own beside the whole conversation,
as the page trims (its first message then shows "‹ 2/2 ›"): the branch on show is again what the
model reads, and later turns go on from there. The copy is made once the shorter request has
been admitted, so tries that are still too long leave no branches behind. A server asked that
turn is sent the kept turns as plain messages, since given the conversation's id it would send
the whole one; that turn's answer is kept without its figures, the server recording only the
answers it is asked for in a conversation.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Iterator

from jisu.cli.backend import Backend
from jisu.cli.common import RuntimeFailure
from jisu.cli.history_store import AnswerRecording, History, RemoteHistory
from jisu.history import Conversation
from jisu.types import ChatMessage, Event, Failed, Finished, SamplingParams, TextDelta

TITLE_CHARS = 40  # the page names a conversation after the first 40 characters of its first message


@dataclass
class ChatConversation:
    system: str | None
    id: str | None = None  # None until its first turn is stored
    title: str = ""
    turns: list[ChatMessage] = field(default_factory=list)  # what the model reads after the system prompt
    leaf_id: str | None = None  # the last message stored (in-process, the next turn follows it)
    trimmed: bool = False  # oldest turns dropped, the kept ones not yet copied into a branch of their own

    @classmethod
    def of(cls, stored: Conversation) -> ChatConversation:
        turns = [ChatMessage(message.role, message.content) for message in stored.messages]
        return cls(stored.system, stored.id, stored.title, turns, stored.active_leaf_id)

    def messages(self) -> list[ChatMessage]:
        head = [ChatMessage("system", self.system)] if self.system else []
        return head + self.turns

    def drop_oldest_exchange(self) -> list[ChatMessage]:
        """Forget the oldest user turn and the answer to it; the system prompt stays."""
        self.trimmed = True
        dropped = [self.turns.pop(0)]
        while self.turns and self.turns[0].role != "user":
            dropped.append(self.turns.pop(0))
        return dropped


def open_conversation(history: History, continue_last: bool, conversation_id: str | None,
                      system: str | None) -> ChatConversation:
    """-c: the most recently updated conversation; --id: that one; neither: a new one. A
    --system given with an existing one becomes its system prompt from now on (a server reads
    it from the conversation)."""
    if not continue_last and conversation_id is None:
        return ChatConversation(system)
    if conversation_id is None:
        latest = history.conversations(limit=1).items
        if not latest:
            raise RuntimeFailure("no conversation to continue yet: plain `jisu chat` starts one")
        conversation_id = latest[0].id
    conversation = ChatConversation.of(history.conversation(conversation_id))
    if system is not None and system != conversation.system:
        set_system(history, conversation, system)
    return conversation


def set_system(history: History, conversation: ChatConversation, system: str | None) -> None:
    if conversation.id is not None:
        history.set_system(conversation.id, system)
    conversation.system = system


def title_for(text: str) -> str:
    return " ".join(text.split())[:TITLE_CHARS]


def start_turn(history: History, backend: Backend, conversation: ChatConversation, text: str,
               sampling: SamplingParams, response_format: dict[str, Any] | None = None) -> Iterator[Event]:
    """The answer to `text` as the conversation's next turn, kept as the module says. A refused
    request raises here (as Backend.answer does) and keeps nothing."""
    if isinstance(history, RemoteHistory) and not conversation.trimmed:
        return _server_turn(history, conversation, text, sampling, response_format)
    return _kept_turn(history, backend, conversation, text, sampling, response_format)


def _server_turn(history: RemoteHistory, conversation: ChatConversation, text: str, sampling: SamplingParams,
                 response_format: dict[str, Any] | None) -> Iterator[Event]:
    created = conversation.id is None
    if created:  # the server needs the conversation's id before its first turn
        _create(history, conversation, text)
    try:
        return history.server.answer([ChatMessage("user", text)], sampling, response_format,
                                     conversation_id=conversation.id)
    except BaseException:
        if created:
            history.delete(conversation.id)
            conversation.id = None
        raise


def _kept_turn(history: History, backend: Backend, conversation: ChatConversation, text: str,
               sampling: SamplingParams, response_format: dict[str, Any] | None) -> Iterator[Event]:
    """A turn the command keeps itself: in-process, or a trimmed one through a server."""
    events = backend.answer(conversation.messages() + [ChatMessage("user", text)], sampling, response_format)
    if conversation.id is None:
        _create(history, conversation, text)
    if conversation.trimmed:
        conversation.leaf_id = _branch_of_kept_turns(history, conversation)
    asked = history.add_message(conversation.id, "user", text, parent_id=conversation.leaf_id)
    recording = history.record_answer(conversation.id, asked, backend.model)
    conversation.leaf_id = recording.message_id
    return _recorded(events, recording)


def _branch_of_kept_turns(history: History, conversation: ChatConversation) -> str | None:
    """The turns the model still reads, copied into a new branch (the module says why); the id of
    the last copy, None when no turn was kept. Only questions and answers are copied, as the
    page copies them (an imported conversation may hold others): the model reads them from now."""
    conversation.turns = [turn for turn in conversation.turns if turn.role in ("user", "assistant")]
    parent = None
    for turn in conversation.turns:
        parent = history.add_message(conversation.id, turn.role, turn.content, parent_id=parent)
    conversation.trimmed = False
    return parent


def _create(history: History, conversation: ChatConversation, first_message: str) -> None:
    conversation.title = title_for(first_message)
    conversation.id = history.create(conversation.title, conversation.system).id


def _recorded(events: Iterator[Event], recorder: AnswerRecording) -> Iterator[Event]:
    """The events, the answer recorded as they pass; an answer not read to its end (Ctrl-C, an
    error on the way) is kept as written so far, cut short."""
    ended = False
    try:
        with closing(events):  # stops the answer when its reader does
            for event in events:
                if isinstance(event, TextDelta):
                    recorder.add(event.text)
                elif isinstance(event, (Finished, Failed)):
                    recorder.finish_with(event)
                    ended = True
                yield event
    finally:
        if not ended:
            recorder.finish(None, cut_short=True)

