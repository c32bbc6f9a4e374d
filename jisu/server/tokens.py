"""POST /tokenize and /detokenize in llama-server's shape, so apps count tokens with the
served model's own vocabulary.

The work runs in a worker thread, never on the engine thread: llama.cpp's tokenizer only
reads the vocabulary, so any thread may call it, and ctypes lets go of the GIL while it
runs, so a megabyte of text holds up neither the event loop nor the answers being written.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool

from jisu.engine.protocol import Tokenizer
from jisu.server.errors import ApiError, error_responses
from jisu.server.protocol import MAX_CONTENT_CHARS
from jisu.server.routes import BODY, DOOR

# About as many tokens as MAX_CONTENT_CHARS of text can become, so every text /tokenize
# takes can be sent back whole.
MAX_DETOKENIZE_TOKENS = 1_000_000

router = APIRouter()


class TokenizeRequest(BaseModel):
    content: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
    add_special: StrictBool = False  # the tokens the model adds around every text (Qwen: none)
    parse_special: StrictBool = True  # "<|im_end|>" in the text is that control token
    with_pieces: StrictBool = False  # each token with the text it stands for


class DetokenizeRequest(BaseModel):
    tokens: Annotated[list[StrictInt], Field(max_length=MAX_DETOKENIZE_TOKENS)]


class TokenPiece(BaseModel):
    id: int
    piece: str | list[int] = Field(description="The token's text, or its bytes when they are not UTF-8 on their "
                                               "own (one character split over several tokens)")


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


class DetokenizeResponse(BaseModel):
    content: str


def _tokenizer(request: Request) -> Tokenizer:
    return request.app.state.serving.runtime.tokenizer


@router.post("/tokenize", responses={200: {"model": TokenizeResponse}, **error_responses(*DOOR, *BODY)})
async def tokenize(body: TokenizeRequest, request: Request) -> JSONResponse:
    tokenizer = _tokenizer(request)
    tokens = await run_in_threadpool(tokenizer.tokenize, body.content, body.parse_special, body.add_special)
    if body.with_pieces:
        return JSONResponse({"tokens": await run_in_threadpool(_with_pieces, tokenizer, tokens)})
    return JSONResponse({"tokens": tokens})


@router.post("/detokenize", responses={200: {"model": DetokenizeResponse}, **error_responses(*DOOR, *BODY)})
async def detokenize(body: DetokenizeRequest, request: Request) -> JSONResponse:
    tokenizer = _tokenizer(request)
    return JSONResponse({"content": await run_in_threadpool(_detokenized, tokenizer, body.tokens)})


def _with_pieces(tokenizer: Tokenizer, tokens: list[int]) -> list[dict[str, Any]]:
    return [{"id": token, "piece": _readable(tokenizer.piece(token, special=True))} for token in tokens]


def _readable(piece: bytes) -> str | list[int]:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:  # part of a character: its bytes, as llama-server gives them
        return list(piece)


def _detokenized(tokenizer: Tokenizer, tokens: list[int]) -> str:
    # Checked before llama.cpp sees them: it aborts the whole process on an unknown id.
    vocabulary = tokenizer.n_vocab
    for index, token in enumerate(tokens):
        if not 0 <= token < vocabulary:
            raise ApiError(400, f"Invalid 'tokens[{index}]': {token} is not a token of this model "
                                f"(0..{vocabulary - 1}).", param=f"tokens[{index}]", code="invalid_token")
    return tokenizer.detokenize(tokens, special=True)
