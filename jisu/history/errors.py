"""What can go wrong with the conversation store, one class per outcome a caller handles.

Every message is one line, fit to show a user as it is.
"""

from __future__ import annotations


class HistoryError(Exception):
    """Any problem with the conversation store."""


class NotFound(HistoryError):
    """A missing id, or one that belongs to another user: the two are never told apart (404)."""


class ConversationNotFound(NotFound):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {_shown(conversation_id)}")
        self.conversation_id = conversation_id


class MessageNotFound(NotFound):
    def __init__(self, message_id: str | None) -> None:
        super().__init__(f"no message {_shown(message_id)} in this conversation")
        self.message_id = message_id


class AnswerNotStreaming(HistoryError):
    """Text was appended to, or a finish recorded for, an answer that is no longer streaming."""

    def __init__(self, message_id: str, state: str) -> None:
        super().__init__(f"the answer {_shown(message_id)} is {state.replace('_', ' ')}, not streaming")
        self.message_id = message_id


class SchemaError(HistoryError):
    """The database file cannot be used by this jisu: newer, foreign, or not a database."""


class StoreClosed(HistoryError):
    """The store was used after close()."""


class HistoryImportError(HistoryError):
    """A file to import is not a conversation export jisu reads; nothing was imported."""


def _shown(identifier: str | None) -> str:
    """An id as it may appear in a message: quoted, and short even when a client sent a novel."""
    text = repr(identifier)
    return text if len(text) <= 60 else text[:57] + "..."
