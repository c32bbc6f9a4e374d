"""Token logprobs (jisu.types.TokenLogprob) in the wire shapes that report them: OpenAI's chat
completions, OpenAI's legacy completions, and Ollama's /api/chat and /api/generate.

A token's `token` is its own bytes as text. Bytes that are only part of a character (one
Chinese character or emoji can be split over two or three tokens) are written as `\\xNN`
escapes, as OpenAI writes them: "\\xe4\\xbd" for the first two bytes of 你. `bytes` is always
exact, so the bytes of all the tokens join to the answer's UTF-8.
"""

from __future__ import annotations

from typing import Any

from jisu.types import TokenLogprob


def token_text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="backslashreplace")


def _token(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": token_text(piece), "logprob": logprob, "bytes": list(piece)}


def token_entries(logprobs: list[TokenLogprob]) -> list[dict[str, Any]]:
    """[{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}]:
    OpenAI's chat `logprobs.content`, and Ollama's `logprobs`."""
    return [{**_token(entry.piece, entry.logprob), "top_logprobs": [_token(*alternative) for alternative in entry.top]}
            for entry in logprobs]


def chat_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's (or chunk's) `logprobs`."""
    return {"content": token_entries(logprobs), "refusal": None}


def completion_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    """A legacy completion choice's `logprobs`: parallel lists. Each `top_logprobs` dict holds
    the likeliest tokens and, as OpenAI's does, the chosen token even when it is not among them.
    `text_offset` counts characters from the start of the completion's text."""
    tops = []
    for entry in logprobs:
        top = {token_text(piece): logprob for piece, logprob in entry.top}
        top.setdefault(token_text(entry.piece), entry.logprob)
        tops.append(top)
    return {
        "tokens": [token_text(entry.piece) for entry in logprobs],
        "token_logprobs": [entry.logprob for entry in logprobs],
        "top_logprobs": tops,
        "text_offset": [entry.text_offset for entry in logprobs],
    }
