"""Engine settings derived from the user's choices."""

from pathlib import Path

from jisu.config import EngineConfig, physical_cores


def config(**overrides) -> EngineConfig:
    return EngineConfig(model_path=Path("m.gguf"), **overrides)


def test_flash_attention_is_off_unless_asked_or_needed():
    assert not config().uses_flash_attention()
    assert not config(ctx_size=32768).uses_flash_attention()
    assert config(flash_attention="on").uses_flash_attention()
    assert config(kv_cache_type="q8_0").uses_flash_attention(), "llama.cpp needs it for a quantized V cache"


def test_long_contexts_get_smaller_compute_passes_without_flash_attention():
    assert config(ctx_size=4096).micro_batch() == 512
    assert config(ctx_size=8192).micro_batch() == 256
    assert config(ctx_size=16384).micro_batch() == 128
    assert config(ctx_size=32768).micro_batch() == 64
    assert config(ctx_size=32768, flash_attention="on").micro_batch() == 512
    assert config(ctx_size=2048).micro_batch() == 512


def test_threads_default_to_physical_cores():
    assert config().resolved_threads() == physical_cores() >= 1
    assert config(threads=3).resolved_threads() == 3
