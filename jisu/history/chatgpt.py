"""Reading ChatGPT's data export (conversations.json) into conversations jisu can store.

The file is a list of conversations: {"id", "title", "create_time", "update_time", "current_node",
"mapping": {node id: {"id", "parent", "children", "message"}}}. The mapping is the conversation's
tree (regenerated answers and edited messages are siblings, as in jisu) and current_node is the
leaf of the branch the user last saw, which becomes the active branch.

Nodes with nothing to show are left out and their children attached to the nearest node kept:
the empty root, the hidden system message, hidden context (custom instructions), empty messages.
Text is kept; images and other attachments become a short placeholder such as "[image]".
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from jisu.history.errors import HistoryImportError
from jisu.history.records import COMPLETE, CUT_SHORT, MESSAGE_ROLES, ImportedConversation, ImportedMessage
from jisu.history.tree import parents_first

SOURCE_PREFIX = "chatgpt:"
_TEXT_CONTENT = ("text", "multimodal_text")


def looks_like_export(document: Any) -> bool:
    return (isinstance(document, list) and len(document) > 0
            and all(isinstance(item, dict) and "mapping" in item for item in document))


def read_export(document: list[Any]) -> list[ImportedConversation]:
    conversations = []
    for number, item in enumerate(document, 1):
        title = item.get("title")
        where = f"ChatGPT conversation {number}" + (f" ({title[:40]!r})" if isinstance(title, str) else "")
        try:
            conversations.append(_read_conversation(item))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise HistoryImportError(f"{where}: {_reason(error)}") from None
    return conversations


def _reason(error: Exception) -> str:
    if isinstance(error, ValueError):
        return str(error)
    return f"unexpected shape ({type(error).__name__}: {error})"


def _read_conversation(item: dict[str, Any]) -> ImportedConversation:
    mapping = item["mapping"]
    if not isinstance(mapping, dict):
        raise ValueError('"mapping" must be an object')
    kept: dict[str, ImportedMessage] = {}
    for node_id, node in mapping.items():
        message = _read_node(node_id, node, mapping, _number(item.get("create_time")))
        if message is not None:
            kept[node_id] = message
    # Attach each kept message to its nearest kept ancestor, in creation order.
    placed = [_with_parent(message, _kept_ancestor(mapping, message.id, kept)) for message in kept.values()]
    placed.sort(key=lambda message: message.created_at)
    messages = parents_first(placed)
    created_at = _number(item.get("create_time")) or (messages[0].created_at if messages else 0.0)
    current = item.get("current_node")
    active_leaf_id = None
    if isinstance(current, str) and current in mapping:
        active_leaf_id = current if current in kept else _kept_ancestor(mapping, current, kept)
    if active_leaf_id is None and messages:  # no current node (or only hidden ones above it)
        active_leaf_id = messages[-1].id
    return ImportedConversation(
        source_key=SOURCE_PREFIX + _conversation_key(item),
        title=item.get("title") if isinstance(item.get("title"), str) else "",
        system=None, created_at=created_at, updated_at=_number(item.get("update_time")) or created_at,
        messages=tuple(messages), active_leaf_id=active_leaf_id)


def _read_node(node_id: str, node: Any, mapping: dict[str, Any],
               default_time: float | None) -> ImportedMessage | None:
    """The node's message as jisu keeps it, or None when there is nothing to show."""
    if not isinstance(node, dict):
        raise ValueError(f"node {node_id[:60]!r} must be an object")
    parent = node.get("parent")
    if parent is not None and (not isinstance(parent, str) or parent not in mapping):
        raise ValueError(f"node {node_id[:60]!r} has parent {str(parent)[:60]!r}, which is not in the mapping")
    message = node.get("message")
    if message is None:
        return None
    role = message["author"]["role"]
    metadata = message.get("metadata") or {}
    if role not in MESSAGE_ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None
    content = _text_of(message.get("content") or {})
    if not content.strip():
        return None
    finish = (metadata.get("finish_details") or {}).get("type")
    return ImportedMessage(
        id=node_id, parent_id=parent, role=role, content=content,
        created_at=_number(message.get("create_time")) or default_time or 0.0,
        # ChatGPT marks an answer stopped by the user "interrupted".
        state=CUT_SHORT if finish == "interrupted" else COMPLETE,
        model=metadata.get("model_slug") if isinstance(metadata.get("model_slug"), str) else None,
        finish_reason=finish if isinstance(finish, str) else None)


def _text_of(content: dict[str, Any]) -> str:
    kind = content.get("content_type", "text")
    if kind in _TEXT_CONTENT:
        parts = content.get("parts") or []
        if not isinstance(parts, list):
            raise ValueError('"parts" must be a list')
        return "\n\n".join(part if isinstance(part, str) else _placeholder(part) for part in parts if part != "")
    if isinstance(content.get("text"), str):  # code and its output: text, though not in parts
        return content["text"]
    return f"[{kind}]"


def _placeholder(part: Any) -> str:
    kind = part.get("content_type") if isinstance(part, dict) else None
    if kind == "image_asset_pointer":
        return "[image]"
    return f"[{kind}]" if isinstance(kind, str) else "[attachment]"


def _kept_ancestor(mapping: dict[str, Any], node_id: str, kept: dict[str, ImportedMessage]) -> str | None:
    """The nearest ancestor of `node_id` that is kept (None: it becomes a first message)."""
    seen = {node_id}
    parent = mapping[node_id].get("parent")
    while parent is not None:
        if parent in kept:
            return parent
        if parent in seen:
            raise ValueError(f"node {parent[:60]!r} is its own ancestor")
        seen.add(parent)
        parent = mapping[parent].get("parent")
    return None


def _with_parent(message: ImportedMessage, parent_id: str | None) -> ImportedMessage:
    return ImportedMessage(**{**vars(message), "parent_id": parent_id})


def _number(value: Any) -> float | None:
    """A time from the file, or None when it is missing or not a finite number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _conversation_key(item: dict[str, Any]) -> str:
    """ChatGPT's id for the conversation, or, in a file without one, a digest of its content:
    either way the same for the same conversation, so importing it again adds nothing."""
    for name in ("conversation_id", "id"):
        if isinstance(item.get(name), str) and item[name]:
            return item[name]
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False).encode()
    return "sha256-" + hashlib.sha256(canonical).hexdigest()
