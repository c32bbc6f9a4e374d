"""`jisu ask`: one question, one streamed answer; piped stdin becomes part of the prompt."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from jisu.cli.common import (
    UserError,
    load_runtime,
    make_sampling,
    model_options,
    print_answer,
    reports_user_errors,
    sampling_options,
)
from jisu.structured.plan import plan_output
from jisu.structured.response_format import with_schema_instruction
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
@model_options
@sampling_options
@click.option("--json", "as_json", is_flag=True, help="Answer with one valid JSON object.")
@click.option("--schema", type=click.Path(dir_okay=False, path_type=Path),
              help="Answer with JSON valid against this JSON schema file.")
@click.option("--verbose", "-v", is_flag=True, help="Print speed figures and prompt progress to stderr.")
@reports_user_errors
def ask(prompt, model, quant, ctx_size, threads, kv_cache_type, flash_attn, system, temperature, top_p, top_k,
        max_tokens, seed, as_json, schema, verbose):
    """Answer PROMPT once; text piped into stdin is appended to it.

    \b
    Example:  jisu ask "把这段JS转成TypeScript" < input.js > output.ts
    """
    plan = plan_output(_response_format(as_json, schema), None, None)
    piped = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    question = build_prompt(prompt, piped)
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)
    sampling.grammar = plan.grammar
    messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", question)]
    messages = with_schema_instruction(messages, plan.schema_instruction)

    with load_runtime(model, quant, ctx_size, threads, kv_cache_type, flash_attn, parallel=1) as runtime:
        prepared = runtime.prepare_chat(messages, sampling)
        if verbose:
            click.echo(f"[{runtime.info.name} {runtime.info.quantization}, prompt {len(prepared.tokens)} tokens]",
                       err=True)
        try:
            _, finished = print_answer(runtime, prepared, show_progress=verbose)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            sys.exit(130)
    if verbose and finished:
        t = finished.timings
        click.echo(
            f"[time to first token {t.time_to_first_token_s:.2f} s, {t.completion_tokens} tokens, "
            f"{t.decode_tokens_per_s:.1f} tokens/s, stopped by {finished.reason.value}]",
            err=True,
        )
    if finished and finished.reason is FinishReason.LENGTH and not max_tokens:
        click.echo("jisu: the answer filled the context window and was cut off", err=True)
