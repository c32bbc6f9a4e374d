"""`jisu pull` and `jisu models`: fetch models into the cache and list what is there."""

from __future__ import annotations

import click

from jisu.cli.common import reports_user_errors
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
    model = lookup(alias)
    variant = model.variant(quant)
    path = pull_model(model, variant, ModelStore(jisu_home()))
    click.echo(str(path))


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
