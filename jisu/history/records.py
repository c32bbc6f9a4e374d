"""The plain values the conversation store returns and takes: frozen dataclasses, no database.

Times are unix seconds as floats (UTC, `time.time()`), everywhere: in the database, in these
values and in jisu's export format. A JSON client can turn them into dates without parsing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jisu.types import ROLES

T = TypeVar("T")

# The life of an answer: recorded while it streams, then complete, or cut short when it did not
# end by itself (stop button, client gone, server stopped or died).
STREAMING = "streaming"
COMPLETE = "complete"
CUT_SHORT = "cut_short"
MESSAGE_STATES = (STREAMING, COMPLETE, CUT_SHORT)
MESSAGE_ROLES = ROLES
# A page of a list or a search, for the API and the CLI alike.
DEFAULT_PAGE = 20
MAX_PAGE = 100


@dataclass(frozen=True)
class AnswerStats:
    """How an answer was generated, as the scheduler measured it; None when not known."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class Siblings:
    """The messages that share a message's parent, oldest first, the message among them: what a
    page needs to show "‹ 2/3 ›" (index 1 of 3) and which ids the arrows switch to."""

    ids: tuple[str, ...]
    index: int  # 0-based

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None  # None: a first message (a conversation may have several, as branches)
    role: str
    content: str
    created_at: float
    state: str  # streaming | complete | cut_short
    siblings: Siblings
    # Answers only (None for other messages and unknown values):
    model: str | None = None
    quantization: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None

    @property
    def cut_short(self) -> bool:
        return self.state == CUT_SHORT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with "siblings": {"ids", "index", "count"} and "cut_short"."""
        data = dataclasses.asdict(self)
        data["siblings"]["count"] = self.siblings.count
        data["cut_short"] = self.cut_short
        return data


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    system: str | None  # the system prompt sent in front of every turn; None: the model's default
    created_at: float
    updated_at: float  # the last change: a message, an answer's end, a new title or system prompt
    active_leaf_id: str | None  # the last message of the branch on show; None: no messages yet

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Conversation(ConversationSummary):
    messages: tuple[Message, ...]  # the active branch, first message to active leaf

    def to_dict(self) -> dict[str, Any]:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(ConversationSummary)}
        data["messages"] = [message.to_dict() for message in self.messages]
        return data


@dataclass(frozen=True)
class ConversationTree:
    """A whole conversation, every branch: what an export holds."""

    conversation: ConversationSummary
    source_key: str  # where it was first made (see ImportedConversation)
    messages: tuple[Message, ...]  # in the order written, so parents before their children


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int  # across all pages
    limit: int
    offset: int


@dataclass(frozen=True)
class SearchHit:
    conversation: ConversationSummary
    message_id: str | None  # the latest matching message; None when only the title matched
    snippet: str  # the text around the first match (the title when only the title matched)


@dataclass(frozen=True)
class ImportedMessage:
    """A message read from an export file. Its ids are the file's; the store gives new ones."""

    id: str
    parent_id: str | None
    role: str
    content: str
    created_at: float
    state: str = COMPLETE
    model: str | None = None
    quantization: str | None = None
    finish_reason: str | None = None
    stats: AnswerStats = AnswerStats()


@dataclass(frozen=True)
class ImportedConversation:
    # Where the conversation was first made ("jisu:conv_...", "chatgpt:<id>"): the same however
    # often it is imported, so a second import of one file finds it and adds nothing.
    source_key: str
    title: str
    system: str | None
    created_at: float
    updated_at: float
    messages: tuple[ImportedMessage, ...]  # parents before their children
    active_leaf_id: str | None  # the file's id of the active branch's last message


@dataclass(frozen=True)
class ImportResult:
    imported: tuple[str, ...]  # the new conversations' ids
    skipped: int  # conversations already in the store (imported before, or exported from it)
