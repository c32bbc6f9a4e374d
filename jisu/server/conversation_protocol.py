"""/v1/conversations wire format: request schemas (validated, with limits) and the objects
returned, built from the conversation store's records (jisu.history.records).

Times are unix seconds as numbers, as the store keeps them. Unknown fields are refused
(`unrecognized_request_argument`), as on the OpenAI routes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from jisu.history import ConversationSummary, ImportResult, Page, SearchHit
from jisu.server.protocol import MAX_CONTENT_CHARS, MAX_ID_CHARS

MAX_TITLE_CHARS = 500
MAX_QUERY_CHARS = 500

Title = Annotated[StrictStr, Field(max_length=MAX_TITLE_CHARS)]
SystemPrompt = Annotated[StrictStr, Field(max_length=MAX_CONTENT_CHARS)]
Id = Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- requests -------------------------------------------------------------------------


class CreateConversationRequest(_Strict):
    title: Title = ""
    system: SystemPrompt | None = Field(None, description="The system prompt sent before every turn; "
                                                          "null: the model's own")


class UpdateConversationRequest(_Strict):
    """Only the fields sent change; `system: null` removes the system prompt."""

    title: Title | None = None
    system: SystemPrompt | None = None

    @model_validator(mode="after")
    def title_is_text(self) -> UpdateConversationRequest:
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title: a string (empty for none), not null")
        return self


class AddMessageRequest(_Strict):
    role: Literal["user", "assistant"] = "user"
    content: Annotated[StrictStr, Field(max_length=MAX_CONTENT_CHARS)]
    parent_id: Id | None = Field(None, description=(
        "The message it follows; left out: the end of the active branch; null: a first message. "
        "A message that already has a reply gets a sibling (an edit) and the new branch shows."))


class SwitchBranchRequest(_Strict):
    message_id: Id = Field(description="Show the branch through this message, to its latest reply")


# ---- responses: read from the store's records (from_attributes) ------------------------


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SiblingsObject(_Record):
    """The messages sharing this one's parent, oldest first: what "‹ 2/3 ›" shows (index 1 of 3)."""

    ids: list[str]
    index: int
    count: int


class MessageObject(_Record):
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    created_at: float
    state: Literal["streaming", "complete", "cut_short"]
    cut_short: bool
    siblings: SiblingsObject
    # Answers only; null for other messages and for what is not known.
    model: str | None = None
    quantization: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None


class ConversationSummaryObject(_Record):
    object: Literal["conversation"] = "conversation"
    id: str
    title: str
    system: str | None
    created_at: float
    updated_at: float
    active_leaf_id: str | None


class ConversationObject(ConversationSummaryObject):
    messages: list[MessageObject] = Field(description="The active branch, first message to the active leaf")


class SearchMatch(BaseModel):
    message_id: str | None = Field(description="The latest matching message (it may be on another branch: "
                                               "switch to it); null when only the title matched")
    snippet: str


class ConversationListItem(ConversationSummaryObject):
    match: SearchMatch | None = Field(None, description="With ?q=: where the words were found")


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationListItem]
    total: int
    limit: int
    offset: int
    has_more: bool

    @classmethod
    def of(cls, page: Page[ConversationSummary] | Page[SearchHit]) -> ConversationList:
        items = [_list_item(item) for item in page.items]
        return cls(data=items, total=page.total, limit=page.limit, offset=page.offset,
                   has_more=page.offset + len(items) < page.total)


def _list_item(item: ConversationSummary | SearchHit) -> ConversationListItem:
    if isinstance(item, SearchHit):
        found = ConversationListItem.model_validate(item.conversation)
        found.match = SearchMatch(message_id=item.message_id, snippet=item.snippet)
        return found
    return ConversationListItem.model_validate(item)


class DeletedConversation(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ImportedConversations(BaseModel):
    object: Literal["conversation.import"] = "conversation.import"
    imported: list[str] = Field(description="The new conversations' ids")
    skipped: int = Field(description="Conversations already here (imported before, or exported from here)")

    @classmethod
    def of(cls, result: ImportResult) -> ImportedConversations:
        return cls(imported=list(result.imported), skipped=result.skipped)
