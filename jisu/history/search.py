"""Search: which of a user's conversations hold every word of a query, in a title or a message.

Words of 3 or more characters go to the trigram FTS5 indexes (MATCH), which find them anywhere,
the middle of a Chinese sentence included, and ignore case. Shorter words (a 2-character Chinese
word is the common case) have no trigram to look up, so they are matched with LIKE over the
text itself: among the index's candidates when the query also has a longer word, otherwise over
the user's own messages. Not with LIKE on the FTS5 table, although SQLite 3.34+ can answer that
from a trigram index: the SQLite this was written on (3.40.1) returns no rows for a LIKE pattern
of fewer than 3 characters that are more than 3 bytes ('%北京%'). LIKE ignores case for ASCII
letters only.

A message must hold every word (so must a title); answers still streaming are not searched.
"""

from __future__ import annotations

import re
import sqlite3

MIN_INDEXED_TERM = 3  # characters: the trigram tokenizer's smallest unit
MAX_TERMS = 16  # words of one query that count; more only slow the query down
SNIPPET_LEAD = 40  # characters shown before the first match
SNIPPET_LENGTH = 160


def query_terms(query: str) -> list[str]:
    """The query's words: split at white space, each once, at most MAX_TERMS."""
    return list(dict.fromkeys(query.split()))[:MAX_TERMS]


def _phrase(term: str) -> str:
    """A term as an FTS5 string: searched for as it is, whatever FTS5 syntax it contains."""
    return '"' + term.replace('"', '""') + '"'


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _hits(indexed: str, text: str, of_user: str, long_terms: list[str],
          short_terms: list[str], user: str) -> tuple[str, list[object]]:
    """SQL (and its parameters) for the messages or titles that hold every term, as
    (conversation id, message seq or NULL) rows: `indexed` when a long term can be looked up,
    else `of_user`, which reads the user's own rows."""
    likes = "".join(f" AND {text} LIKE ? ESCAPE '\\'" for _ in short_terms)
    like_parameters = [_like_pattern(term) for term in short_terms]
    if long_terms:
        match = " ".join(_phrase(term) for term in long_terms)
        return indexed.format(likes=likes), [match, *like_parameters]
    return of_user.format(likes=likes), [user, *like_parameters]


_MESSAGE_HITS = (
    "SELECT m.conversation_id, m.seq FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid "
    "WHERE messages_fts MATCH ?{likes}")
_MESSAGE_HITS_OF_USER = (
    "SELECT m.conversation_id, m.seq FROM conversations c JOIN messages m ON m.conversation_id = c.id "
    "WHERE c.user = ? AND m.state != 'streaming'{likes}")
_TITLE_HITS = (
    "SELECT c.id, NULL FROM conversations_fts JOIN conversations c ON c.seq = conversations_fts.rowid "
    "WHERE conversations_fts MATCH ?{likes}")
_TITLE_HITS_OF_USER = "SELECT c.id, NULL FROM conversations c WHERE c.user = ?{likes}"


def matching_conversations(connection: sqlite3.Connection, user: str,
                           terms: list[str]) -> list[tuple[int, int | None]]:
    """(conversation seq, latest matching message's seq or None) for each of the user's
    conversations that match, the most recently updated first."""
    long_terms = [term for term in terms if len(term) >= MIN_INDEXED_TERM]
    short_terms = [term for term in terms if len(term) < MIN_INDEXED_TERM]
    message_sql, message_parameters = _hits(_MESSAGE_HITS, "m.content", _MESSAGE_HITS_OF_USER,
                                            long_terms, short_terms, user)
    title_sql, title_parameters = _hits(_TITLE_HITS, "c.title", _TITLE_HITS_OF_USER,
                                        long_terms, short_terms, user)
    sql = (f"WITH hits (conversation_id, message_seq) AS ({message_sql} UNION ALL {title_sql}) "
           "SELECT c.seq, MAX(hits.message_seq) FROM hits JOIN conversations c ON c.id = hits.conversation_id "
           "WHERE c.user = ? GROUP BY c.seq ORDER BY c.updated_at DESC, c.seq DESC")
    rows = connection.execute(sql, [*message_parameters, *title_parameters, user]).fetchall()
    return [(row[0], row[1]) for row in rows]


def snippet(text: str, terms: list[str]) -> str:
    """The text around the first match of any term, on one line, with … where it was cut."""
    alternatives = sorted(terms, key=len, reverse=True)  # the longest term wins where they overlap
    found = re.search("|".join(map(re.escape, alternatives)), text, re.IGNORECASE) if terms else None
    start = max(0, found.start() - SNIPPET_LEAD) if found else 0
    end = start + SNIPPET_LENGTH
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")
