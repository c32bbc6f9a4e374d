"""Ids for conversations and messages: unguessable, so knowing one id never reveals another.

Another user's id must answer exactly like a missing one; that only protects anything if ids
cannot be enumerated, hence 128 random bits rather than a counter. The prefix says what an id
names when it shows up in a log or a URL.
"""

from __future__ import annotations

import secrets

CONVERSATION_PREFIX = "conv_"
MESSAGE_PREFIX = "msg_"


def new_conversation_id() -> str:
    return CONVERSATION_PREFIX + secrets.token_urlsafe(16)


def new_message_id() -> str:
    return MESSAGE_PREFIX + secrets.token_urlsafe(16)


def native_source_key(conversation_id: str) -> str:
    """Where a conversation made in a jisu store comes from: it and its exports carry this key."""
    return "jisu:" + conversation_id
