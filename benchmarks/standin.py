"""What the benchmarks share: the model they run on and a bare ChatML prompt."""

from __future__ import annotations


def standin_path(model: str | None = None) -> str:
    """The GGUF file of `model` (an alias or a path), by default the stand-in in jisu's
    default format: fetched and quantized on first use, as `jisu pull` does."""
    from jisu.engine.quantize import quantize
    from jisu.models.registry import STANDIN_ALIAS
    from jisu.models.resolve import resolve_model

    return str(resolve_model(model or STANDIN_ALIAS, quiet=True, quantizer=quantize).path)


def chatml(user_text: str) -> str:
    """One user turn and no system prompt: the same tokens for jisu and the reference."""
    return f"<|im_start|>user\n{user_text}<|im_end|>\n<|im_start|>assistant\n"
