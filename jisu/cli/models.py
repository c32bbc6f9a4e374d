"""`jisu pull` and `jisu models`: fetch models into the cache and list what is there."""

from __future__ import annotations

from pathlib import Path

import click

from jisu.cli.common import UserError, reports_user_errors
from jisu.config import DEFAULT_MODEL_ALIAS, jisu_home
from jisu.models.fetch import pull as pull_model
from jisu.models.registry import KNOWN_MODELS, lookup
from jisu.models.store import ModelStore


@click.command()
@click.argument("alias", default=DEFAULT_MODEL_ALIAS)
@click.option("--quant", default=None, help="Which quantization to fetch (default: the model's default).")
@reports_user_errors
def pull(alias, quant):
    """Fetch a model into the cache (JISU_HOME, default ~/.cache/jisu) and verify it."""
    from jisu.engine.quantize import quantize

    model = lookup(alias)
    variant = model.variant(quant)
    path = pull_model(model, variant, ModelStore(jisu_home()), quantizer=quantize)
    click.echo(str(path))


@click.command("quantize")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--type", "quant", required=True, help="Target type, e.g. iq4_nl, q4_0, q8_0.")
@click.option("--threads", "-t", type=click.IntRange(0, 512), default=0)
@reports_user_errors
def quantize_command(source, target, quant, threads):
    """Convert a local GGUF (ideally fp16) to another quantization.

    TARGET defaults to SOURCE's name with the type swapped in, next to SOURCE.
    """
    from jisu.engine.quantize import QUANT_TYPES, quantize
    from jisu.models.store import check_gguf

    check_gguf(source)
    if quant.lower() not in QUANT_TYPES:
        raise UserError(f"unknown type {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    target = target or source.with_name(f"{_strip_quant(source.stem)}-{quant.lower()}.gguf")
    if target.resolve() == source.resolve():
        raise UserError(f"{target}: would overwrite the source file")
    scratch = target.with_name(target.name + ".partial")
    try:
        quantize(source, scratch, quant, threads)
        check_gguf(scratch)
        scratch.replace(target)
    finally:
        scratch.unlink(missing_ok=True)
    click.echo(f"{target}  ({target.stat().st_size / 1e6:.1f} MB)")


def _strip_quant(stem: str) -> str:
    """'qwen2.5-0.5b-instruct-fp16' -> 'qwen2.5-0.5b-instruct'."""
    from jisu.engine.quantize import QUANT_TYPES

    head, _, tail = stem.rpartition("-")
    return head if head and (tail.lower() in QUANT_TYPES or tail.lower() == "fp16") else stem


@click.command()
@reports_user_errors
def models():
    """List known models and what is cached, with sizes."""
    store = ModelStore(jisu_home())
    cached = {(m.alias, m.filename): m for m in store.list()}
    click.echo(f"models in {store.models_dir}:")
    for model in KNOWN_MODELS.values():
        for quant, variant in model.variants.items():
            entry = cached.pop((model.alias, variant.filename), None)
            default = " (default)" if quant == model.default_quant else ""
            status = f"{entry.size / 1e6:8.1f} MB  cached" if entry else "           -  not cached"
            click.echo(f"  {model.alias:30} {quant:8}{status}{default}")
    for entry in cached.values():  # files placed there by hand or by `jisu quantize`
        click.echo(f"  {entry.alias:30} {entry.filename}  {entry.size / 1e6:8.1f} MB  cached")
