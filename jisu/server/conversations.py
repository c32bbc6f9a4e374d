"""/v1/conversations: the conversations the server keeps for each user (the store: jisu.history).

The user is whoever the request's key names (without keys, everyone is the local user). Another
user's conversation or message id answers 404 exactly as a missing one: never 403, never its
data. Every store call runs in a worker thread (ServerHistory.run), exports are encoded there
too, so a big one does not hold up the tokens streaming to everyone else.

A turn of a conversation is not made here but by POST /v1/chat/completions (or the WebSocket)
with `conversation_id`: see conversation_turns.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from jisu.history import ConversationStore
from jisu.history.formats import encode_json
from jisu.history.records import DEFAULT_PAGE, MAX_PAGE
from jisu.server.conversation_protocol import (
    MAX_QUERY_CHARS,
    AddMessageRequest,
    ConversationList,
    ConversationObject,
    CreateConversationRequest,
    DeletedConversation,
    ImportedConversations,
    MessageObject,
    SwitchBranchRequest,
    UpdateConversationRequest,
)
from jisu.server.errors import error_responses
from jisu.server.history import ServerHistory
from jisu.server.protocol import MAX_ID_CHARS

router = APIRouter(tags=["Conversations"])

PREFIX = "/v1/conversations"
IMPORT_PATH = f"{PREFIX}/import"
DOOR = (401, 403)  # every route, when keys are set or the Host/Origin is foreign
BODY = (400, 408, 413)  # every route that takes a body
STORE = (503,)  # the store could not be opened, or the server is stopping
MAX_OFFSET = 2**31  # far beyond any real history; bigger numbers do not fit SQLite's integers

ConversationId = Annotated[str, Path(max_length=MAX_ID_CHARS)]
MARKDOWN = "text/markdown; charset=utf-8"


def _history(request: Request) -> ServerHistory:
    return request.app.state.history


def _user(request: Request) -> str:
    return request.state.user  # set by the Guard: the key's user, or the local user


def _attachment(content: bytes | str, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _json_bytes(document: dict[str, Any]) -> bytes:
    return encode_json(document).encode()


@router.get(PREFIX, response_model=ConversationList, responses=error_responses(*DOOR, 400, *STORE))
async def list_conversations(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description=(
        "Words to search for (every one must be found) in titles and messages, inactive branches "
        "included; Chinese is found mid-sentence"))] = None,
) -> ConversationList:
    """Your conversations, the most recently updated first; with `q`, those that match, each
    with where (`match`)."""
    user = _user(request)
    if q is not None and q.strip():
        page = await _history(request).run(lambda store: store.search(user, q, limit=limit, offset=offset))
    else:
        page = await _history(request).run(lambda store: store.list_conversations(user, limit=limit, offset=offset))
    return ConversationList.of(page)


@router.post(PREFIX, response_model=ConversationObject, responses=error_responses(*DOOR, *BODY, *STORE))
async def create_conversation(body: CreateConversationRequest, request: Request) -> ConversationObject:
    """A new, empty conversation (200, as OpenAI's create calls answer). Its turns are chat
    completions with `conversation_id`."""
    user = _user(request)
    created = await _history(request).run(
        lambda store: store.create_conversation(user, title=body.title, system=body.system))
    return ConversationObject.model_validate(created)


@router.get(f"{PREFIX}/export", response_class=Response, responses={
    200: {"content": {"application/json": {}}, "description": "Every conversation of yours, every branch, "
                                                              "as jisu's JSON (format jisu.conversations)"},
    **error_responses(*DOOR, *STORE)})
async def export_all(request: Request) -> Response:
    user = _user(request)
    document = await _history(request).run(lambda store: _json_bytes(store.export_all_json(user)))
    return _attachment(document, "application/json", "jisu-conversations.json")


@router.post(IMPORT_PATH, response_model=ImportedConversations, openapi_extra={"requestBody": {
    "required": True,
    "description": "The file itself as the body: jisu's JSON export (one conversation or all) or "
                   "ChatGPT's conversations.json. A conversation imported before is skipped.",
    "content": {"application/json": {"schema": {"type": ["object", "array"]}}}}},
    responses=error_responses(*DOOR, *BODY, *STORE))
async def import_conversations(request: Request) -> ImportedConversations:
    """All or nothing: a file jisu cannot read is a 400 saying why, and adds nothing."""
    user, data = _user(request), await request.body()
    result = await _history(request).run(lambda store: store.import_file(user, data))
    return ImportedConversations.of(result)


@router.get(f"{PREFIX}/{{conversation_id}}", response_model=ConversationObject,
            responses=error_responses(*DOOR, 400, 404, *STORE))
async def get_conversation(conversation_id: ConversationId, request: Request) -> ConversationObject:
    """The conversation with its active branch; each message says its siblings (other branches)."""
    user = _user(request)
    found = await _history(request).run(lambda store: store.get_conversation(user, conversation_id))
    return ConversationObject.model_validate(found)


@router.patch(f"{PREFIX}/{{conversation_id}}", response_model=ConversationObject,
              responses=error_responses(*DOOR, *BODY, 404, *STORE))
async def update_conversation(conversation_id: ConversationId, body: UpdateConversationRequest,
                              request: Request) -> ConversationObject:
    """Rename it, or set its system prompt (null removes it); fields left out stay as they are."""
    user = _user(request)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    updated = await _history(request).run(lambda store: store.update_conversation(user, conversation_id, **changes))
    return ConversationObject.model_validate(updated)


@router.delete(f"{PREFIX}/{{conversation_id}}", response_model=DeletedConversation,
               responses=error_responses(*DOOR, 400, 404, *STORE))
async def delete_conversation(conversation_id: ConversationId, request: Request) -> DeletedConversation:
    user = _user(request)
    await _history(request).run(lambda store: store.delete_conversation(user, conversation_id))
    return DeletedConversation(id=conversation_id)


@router.post(f"{PREFIX}/{{conversation_id}}/messages", response_model=MessageObject,
             responses=error_responses(*DOOR, *BODY, 404, *STORE))
async def add_message(conversation_id: ConversationId, body: AddMessageRequest, request: Request) -> MessageObject:
    """Add a message without an answer: an edit kept as a new branch (the old one stays, as its
    sibling), or a turn written elsewhere. To have it answered, send a chat completion with
    `conversation_id` and no messages."""
    user = _user(request)

    def add(store: ConversationStore):
        parent = body.parent_id
        if "parent_id" not in body.model_fields_set:
            parent = store.get_conversation(user, conversation_id).active_leaf_id
        return store.add_message(user, conversation_id, parent_id=parent, role=body.role, content=body.content)

    return MessageObject.model_validate(await _history(request).run(add))


@router.post(f"{PREFIX}/{{conversation_id}}/switch", response_model=ConversationObject,
             responses=error_responses(*DOOR, *BODY, 404, *STORE))
async def switch_branch(conversation_id: ConversationId, body: SwitchBranchRequest,
                        request: Request) -> ConversationObject:
    """Show another branch: the one through `message_id`, to its latest reply (what "‹ 2/3 ›"
    does). The next turn continues it."""
    user = _user(request)
    switched = await _history(request).run(
        lambda store: store.switch_branch(user, conversation_id, body.message_id))
    return ConversationObject.model_validate(switched)


@router.get(f"{PREFIX}/{{conversation_id}}/export", response_class=Response, responses={
    200: {"content": {"application/json": {}, "text/markdown": {}},
          "description": "json: jisu's format, every branch (format jisu.conversation); md: the active "
                         "branch to read. Sent as a file to save."},
    **error_responses(*DOOR, 400, 404, *STORE)})
async def export_conversation(conversation_id: ConversationId, request: Request,
                              as_format: Annotated[Literal["json", "md"], Query(alias="format")] = "json") -> Response:
    user = _user(request)
    if as_format == "md":
        text = await _history(request).run(lambda store: store.export_markdown(user, conversation_id))
        return _attachment(text, MARKDOWN, f"{conversation_id}.md")
    document = await _history(request).run(lambda store: _json_bytes(store.export_json(user, conversation_id)))
    return _attachment(document, "application/json", f"{conversation_id}.json")
