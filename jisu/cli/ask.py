"""`jisu ask`: one question, one streamed answer; piped stdin becomes part of the prompt.

It answers through a running `jisu serve` when there is one (jisu.cli.discovery), else it loads
the model itself; -x keeps only the answer's first fenced code block. With -c, --id or --save
the question and answer are a turn of a stored conversation (jisu.cli.conversation).
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, closing
from pathlib import Path

import click

from jisu.cli.common import (
    UserError,
    chat_model_options,
    check_conversation_options,
    conversation_options,
    describe_finish,
    load_runtime,
    make_sampling,
    print_answer,
    reports_user_errors,
    sampling_options,
    server_options,
    write_to_stdout,
)
from jisu.cli.discovery import find_server, open_backend, server_address
from jisu.cli.extract import FirstCodeBlock, Outcome
from jisu.types import ChatMessage, FinishReason


def _response_format(as_json: bool, schema_path: Path | None) -> dict | None:
    if schema_path is None:
        return {"type": "json_object"} if as_json else None
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"{schema_path}: cannot be read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{schema_path}: not valid JSON ({error})") from None
    return {"type": "json_schema", "json_schema": {"name": schema_path.stem, "schema": schema}}


def build_prompt(prompt: str | None, piped: str | None) -> str:
    """The question, then the piped text: `jisu ask "translate this" < file` reads well."""
    parts = [p for p in (prompt, piped) if p and p.strip()]
    if not parts:
        raise UserError('nothing to ask: give a prompt (jisu ask "...") or pipe text into stdin')
    return "\n\n".join(parts)


@click.command()
@click.argument("prompt", required=False)
@conversation_options
@click.option("--save", is_flag=True, help="Keep the question and answer as a new conversation in your history.")
@server_options
@chat_model_options
@sampling_options
@click.option("--json", "as_json", is_flag=True, help="Answer with one valid JSON object.")
@click.option("--schema", type=click.Path(dir_okay=False, path_type=Path),
              help="Answer with JSON valid against this JSON schema file.")
@click.option("--extract", "-x", is_flag=True,
              help="Print only the first fenced code block of the answer, without its fences.")
@click.option("--verbose", "-v", is_flag=True,
              help="Say what answers (server or in-process); speed figures and prompt progress on stderr.")
@reports_user_errors
def ask(prompt, continue_last, conversation_id, save, url, api_key, model, quant, ctx_size, threads, kv_cache_type,
        flash_attn, system, temperature, top_p, top_k, max_tokens, seed, as_json, schema, extract, verbose):
    """Answer PROMPT once; text piped into stdin is appended to it. Kept in your history only
    with -c (a turn of the last conversation), --id ID (of that one) or --save (a new one).

    \b
    Examples:  jisu ask "把这段JS转成TypeScript" < input.js > output.ts
               jisu ask -x "Convert to TypeScript" < in.js > out.ts   (only the code)
               jisu ask -c "And in Rust?"                             (the last conversation goes on)
    """
    if extract and (as_json or schema):
        raise click.UsageError("-x prints a fenced code block; a --json or --schema answer is JSON without one")
    check_conversation_options(continue_last, conversation_id)
    # A pipe through `jisu ask` (files converted, logs summarised) is not a conversation to keep.
    kept = save or continue_last or conversation_id is not None
    address = server_address(url, api_key)
    response_format = _response_format(as_json, schema)
    piped = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    question = build_prompt(prompt, piped)
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)

    def notice(line: str) -> None:
        if verbose:
            click.echo(line, err=True)

    load = lambda: load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=1)  # noqa: E731
    with ExitStack() as stack:
        server = find_server(address, notice)
        if server is not None:
            stack.callback(server.close)
        if kept:  # before the model loads: an unknown id is said at once
            from jisu.cli.conversation import open_conversation, start_turn  # the store: only when kept
            from jisu.cli.history_store import open_history

            history = stack.enter_context(closing(open_history(server, api_key)))
            conversation = open_conversation(history, continue_last, conversation_id, system)
        backend = stack.enter_context(closing(open_backend(server, load, notice)))
        if kept:
            events = start_turn(history, backend, conversation, question, sampling, response_format)
            notice(f"[kept in conversation {conversation.id}]")
        else:
            messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", question)]
            events = backend.answer(messages, sampling, response_format)
        block = FirstCodeBlock(write_to_stdout) if extract else None
        try:
            _, finished = print_answer(events, show_progress=verbose, write=block.feed if block else None)
        except KeyboardInterrupt:
            if block is None:
                sys.stdout.write("\n")
            sys.exit(130)
    if block is not None:
        _report_extraction(block.finish())
    if verbose and finished:
        click.echo(describe_finish(finished), err=True)
    if finished and finished.reason is FinishReason.LENGTH and not max_tokens:
        click.echo("jisu: the answer filled the context window and was cut off", err=True)


def _report_extraction(outcome: Outcome) -> None:
    if outcome is Outcome.NO_BLOCK:
        click.echo("jisu: the answer has no fenced code block; printed it whole", err=True)
    elif outcome is Outcome.UNCLOSED:
        click.echo("jisu: the answer ended inside its code block; printed the block up to there", err=True)
