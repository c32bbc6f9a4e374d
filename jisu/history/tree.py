"""A conversation's messages as a tree: a message's parent is the message it answers or follows.

Editing a message or regenerating an answer adds a sibling (a message with the same parent)
instead of overwriting, so every version stays; the branch on show runs from a first message
down to the conversation's active leaf. Pure functions of ids, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from jisu.history.records import Siblings


class Tree:
    """The shape of one conversation, built from (id, parent_id) pairs in the order written."""

    def __init__(self, pairs: Iterable[tuple[str, str | None]]) -> None:
        self.parent_of: dict[str, str | None] = {}
        self.children: dict[str | None, list[str]] = {}  # None: the first messages
        for message_id, parent_id in pairs:
            self.parent_of[message_id] = parent_id
            self.children.setdefault(parent_id, []).append(message_id)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.parent_of

    def branch_to(self, leaf_id: str | None) -> list[str]:
        """The ids from the first message down to `leaf_id` (empty for None)."""
        branch: list[str] = []
        current = leaf_id
        while current is not None:
            branch.append(current)
            current = self.parent_of[current]
        branch.reverse()
        return branch

    def siblings(self, message_id: str) -> Siblings:
        ids = tuple(self.children[self.parent_of[message_id]])
        return Siblings(ids=ids, index=ids.index(message_id))

    def latest_leaf_under(self, message_id: str) -> str:
        """The message written last among `message_id` and everything below it. It is a leaf
        (an answer to it would have been written later still), and its branch is the one last
        worked on: switching to a sibling shows that sibling's most recent continuation."""
        latest = message_id
        pending = [message_id]
        order = {identifier: position for position, identifier in enumerate(self.parent_of)}
        while pending:
            for child in self.children.get(pending.pop(), ()):
                if order[child] > order[latest]:
                    latest = child
                pending.append(child)
        return latest


class _Node(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def parent_id(self) -> str | None: ...


N = TypeVar("N", bound=_Node)


def parents_first(nodes: Sequence[N]) -> list[N]:
    """`nodes` in their own order, except that a node listed before its parent moves to just
    after it: the store keeps messages in the order written, which decides sibling order and
    the latest branch. Raises ValueError for a repeated id, a missing parent, or a cycle."""
    ids = [node.id for node in nodes]
    if len(set(ids)) != len(ids):
        repeated = next(identifier for identifier in ids if ids.count(identifier) > 1)
        raise ValueError(f"message {repeated!r} appears twice")
    known = set(ids)
    ordered: list[N] = []
    placed: set[str] = set()
    waiting: dict[str, list[N]] = {}  # parent id -> children listed before it
    for node in nodes:
        if node.parent_id is not None and node.parent_id not in known:
            raise ValueError(f"message {node.id!r} follows {node.parent_id!r}, which is not there")
        if node.parent_id is not None and node.parent_id not in placed:
            waiting.setdefault(node.parent_id, []).append(node)
            continue
        pending = [node]
        while pending:
            ready = pending.pop()
            ordered.append(ready)
            placed.add(ready.id)
            pending.extend(reversed(waiting.pop(ready.id, [])))
    if waiting:  # what no first message leads to hangs in a cycle
        stuck = next(iter(waiting.values()))[0]
        raise ValueError(f"message {stuck.id!r} is its own ancestor")
    return ordered
