"""Settings and their defaults. CLI flags are built from these, so a default lives in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_ALIAS = "qwen2.5-0.5b-instruct"
DEFAULT_CTX_SIZE = 8192
MAX_CTX_SIZE = 32768  # Qwen2.5's trained context
DEFAULT_BATCH_SIZE = 512  # most tokens one llama_decode call may carry
DEFAULT_PARALLEL = 4
DEFAULT_MAX_QUEUE = 64  # requests that may wait when every slot is busy
DEFAULT_HOST_CACHE_MB = 512  # conversations kept in RAM when they no longer fit a slot
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The format browser mode ships to pages. In WebAssembly q8_0 reads prompts and decodes
# fastest (no 4-bit unpacking; README: Browser mode); the CPU server's iq4_nl is the slowest there.
DEFAULT_BROWSER_QUANT = "q8_0"


def jisu_home() -> Path:
    """Where models and other downloads are kept; JISU_HOME overrides ~/.cache/jisu."""
    configured = os.environ.get("JISU_HOME")
    if configured:
        return Path(configured).expanduser()
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "jisu"


def physical_cores() -> int:
    """Threads default to physical cores: hyper-threads only slow llama.cpp's matmuls down."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            pairs = set()
            physical_id = core_id = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical_id = value.strip()
                elif key == "core id":
                    core_id = value.strip()
                elif not line.strip() and core_id is not None:
                    pairs.add((physical_id, core_id))
                    physical_id = core_id = None
            if core_id is not None:
                pairs.add((physical_id, core_id))
        usable = len(os.sched_getaffinity(0))
        if pairs:
            return max(1, min(len(pairs), usable))
    except (OSError, AttributeError):
        pass
    return max(1, os.cpu_count() or 1)


@dataclass
class EngineConfig:
    model_path: Path
    ctx_size: int = DEFAULT_CTX_SIZE  # the most tokens one conversation may hold
    threads: int = 0  # 0: physical cores
    parallel: int = DEFAULT_PARALLEL  # conversations generated together, each with its own KV
    batch_size: int = DEFAULT_BATCH_SIZE
    flash_attention: str = "auto"  # "on", "off", or "auto" (see uses_flash_attention)
    kv_cache_type: str = "f16"  # or "q8_0": half the KV memory for long contexts

    def resolved_threads(self) -> int:
        return self.threads if self.threads > 0 else physical_cores()

    def uses_flash_attention(self) -> bool:
        """Off unless asked for (or needed by a quantized V cache, which llama.cpp requires).
        On CPUs llama.cpp's flash attention re-reads K/V once per query head (Qwen2.5
        shares each KV head among 7), so decoding deep in a long context is several
        times slower with it (README: Long contexts). It needs less memory."""
        if self.flash_attention == "auto":
            return self.kv_cache_type != "f16"
        return self.flash_attention == "on"

    def micro_batch(self) -> int:
        """Tokens per llama.cpp compute pass. Without flash attention a pass holds a
        tokens x context x heads score matrix and its softmax, so long contexts get smaller
        passes: each stays ~117 MB (256 tokens at 8k context, 64 at 32k). Prompt speed
        hardly changes: at these sizes a pass is compute-bound either way."""
        if self.uses_flash_attention():
            return self.batch_size
        return max(64, min(self.batch_size, self.batch_size * 4096 // self.ctx_size))
