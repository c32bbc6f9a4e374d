"""Convert a GGUF file to another quantization with llama.cpp's own quantizer."""

from __future__ import annotations

from pathlib import Path

import llama_cpp.llama_cpp as C

from jisu.config import physical_cores
from jisu.engine.llama import init_backend
from jisu.types import ModelError

# Types worth choosing for a 0.5B model on a CPU (llama.cpp repacks q4_0 and iq4_nl for
# AVX2/AVX-512/NEON at load, which is why they decode fastest).
QUANT_TYPES = {
    "f16": C.LLAMA_FTYPE_MOSTLY_F16,
    "bf16": C.LLAMA_FTYPE_MOSTLY_BF16,
    "q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q6_k": C.LLAMA_FTYPE_MOSTLY_Q6_K,
    "q5_k_m": C.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "q5_0": C.LLAMA_FTYPE_MOSTLY_Q5_0,
    "q4_k_m": C.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "q4_k_s": C.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0,
    "iq4_nl": C.LLAMA_FTYPE_MOSTLY_IQ4_NL,
    "iq4_xs": C.LLAMA_FTYPE_MOSTLY_IQ4_XS,
}


def quantize(source: Path, target: Path, quant: str, threads: int = 0) -> None:
    """Write `source` re-quantized to `quant` at `target` (which should be a scratch path:
    the caller moves it into place once it is complete)."""
    ftype = QUANT_TYPES.get(quant.lower())
    if ftype is None:
        raise ModelError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    init_backend()
    params = C.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or physical_cores()
    # Requantizing an already quantized file loses a little quality; it is allowed because
    # sometimes that file is all a user can get (the PyPI stand-in is one).
    params.allow_requantize = True
    status = C.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        target.unlink(missing_ok=True)
        raise ModelError(f"{source}: llama.cpp could not quantize it to {quant} (status {status})")
