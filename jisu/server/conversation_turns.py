"""A chat completion that is a turn of a stored conversation (`conversation_id`), over HTTP or
the WebSocket: the stored history goes in front of the prompt, the user's message is kept, and
the answer is recorded as it streams.

In order, all before the first byte of the response:
  1. the conversation's system prompt and branch up to the parent are read (a missing id, or
     another user's: 404),
  2. the prompt is prepared (too long: 400) and admitted (busy: 503), as the conversation's
     own, so it starts from that conversation's cached state; nothing is stored yet, so a
     refused turn leaves no trace,
  3. the user's message and an empty answer, streaming, are stored; their ids go to the client.
The answer is recorded from the engine's events, whoever reads them: a client that leaves
mid-answer cancels it, and that end is recorded like any other, as cut short after the text
written so far (answer_recording.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from jisu.history import ConversationNotFound, ConversationStore, MessageNotFound
from jisu.runtime import CacheOwner
from jisu.server.answer_recording import AnswerRecording
from jisu.server.errors import ApiError, as_api_error
from jisu.server.history import ServerHistory
from jisu.server.protocol import ChatCompletionRequest
from jisu.server.serving import Answer, PreparedRequest, Serving
from jisu.types import ChatMessage


@dataclass(frozen=True)
class StartedChat:
    prepared: PreparedRequest
    answer: Answer
    stored: dict[str, str]  # a stored turn's ids (StoredTurn.ids()); empty for a plain completion


async def start_chat(serving: Serving, history: ServerHistory, user: str, body: ChatCompletionRequest,
                     endpoint: str) -> StartedChat:
    """A chat completion admitted from `user`'s cached state: a turn of a stored conversation
    when the body names one (steps 1-3 of the module's note), else the plain OpenAI request.
    Raises the ApiError to answer with instead."""
    if body.conversation_id is not None:
        return await _start_turn(serving, history, user, body, endpoint)
    try:
        prepared = serving.prepare_chat(body, endpoint)
    except Exception as error:
        raise serving.refuse(endpoint, error) from None
    return StartedChat(prepared, serving.start(prepared, CacheOwner(user)), {})


async def _start_turn(serving: Serving, history: ServerHistory, user: str, body: ChatCompletionRequest,
                      endpoint: str) -> StartedChat:
    conversation_id = body.conversation_id
    question = body.messages[0].text() if body.messages else None
    parent_given = "parent_message_id" in body.model_fields_set  # null: a first message
    try:
        parent_id, stored_history = await history.run(
            lambda store: _read_history(store, user, conversation_id, body.parent_message_id, parent_given))
        if question is None and (not stored_history or stored_history[-1].role != "user"):
            raise ApiError(400, "Nothing to answer: send the new user message, or as parent_message_id the "
                                "user message to answer again.", param="parent_message_id")
        prepared = serving.prepare_chat(body, endpoint, stored_history)
    except Exception as error:
        raise serving.refuse(endpoint, _naming_the_field(error)) from None
    recording = AnswerRecording(history, user, conversation_id, serving.runtime.info.id,
                                serving.runtime.info.quantization)
    answer = serving.start(prepared, CacheOwner(user, conversation_id), recording)
    try:
        stored = await recording.begin(parent_id, question)
    except BaseException as error:
        answer.cancel()  # nobody will read it: the conversation went away, or the client did
        if isinstance(error, Exception):
            raise serving.refuse(endpoint, _naming_the_field(error)) from None
        raise
    return StartedChat(prepared, answer, stored.ids())


def _read_history(store: ConversationStore, user: str, conversation_id: str, parent_id: str | None,
                  parent_given: bool) -> tuple[str | None, list[ChatMessage]]:
    """The message to continue from (not given: the end of the active branch) and the
    messages the model reads before the new one."""
    if parent_given and parent_id is not None:  # another branch than the one on show
        messages = store.history_for_model(user, conversation_id, up_to=parent_id)
        return parent_id, [ChatMessage(message["role"], message["content"]) for message in messages]
    conversation = store.get_conversation(user, conversation_id)
    system = [] if conversation.system is None else [ChatMessage("system", conversation.system)]
    if parent_given:  # null: a first message, only the system prompt before it
        return None, system
    return conversation.active_leaf_id, [*system, *(ChatMessage(m.role, m.content) for m in conversation.messages)]


def _naming_the_field(error: Exception) -> Exception:
    """A missing id of the request's body names its field."""
    param = {ConversationNotFound: "conversation_id", MessageNotFound: "parent_message_id"}.get(type(error))
    if param is None:
        return error
    api = as_api_error(error)
    api.body["error"]["param"] = param
    return api
