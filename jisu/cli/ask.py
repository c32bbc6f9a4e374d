"""`jisu ask`: one question, one streamed answer; piped stdin becomes part of the prompt."""

from __future__ import annotations

import sys

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
from jisu.types import ChatMessage, FinishReason


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
@click.option("--verbose", "-v", is_flag=True, help="Print speed figures and prompt progress to stderr.")
@reports_user_errors
def ask(prompt, model, quant, ctx_size, threads, system, temperature, top_p, top_k,
        max_tokens, seed, verbose):
    """Answer PROMPT once; text piped into stdin is appended to it.

    \b
    Example:  jisu ask "把这段JS转成TypeScript" < input.js > output.ts
    """
    piped = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    question = build_prompt(prompt, piped)
    sampling = make_sampling(temperature, top_p, top_k, max_tokens, seed)
    messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", question)]

    with load_runtime(model, quant, ctx_size, threads, parallel=1) as runtime:
        tokens = runtime.chat_tokens(messages)
        if verbose:
            click.echo(f"[{runtime.info.name} {runtime.info.quantization}, prompt {len(tokens)} tokens]", err=True)
        try:
            _, finished = print_answer(runtime, tokens, sampling, show_progress=verbose)
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
