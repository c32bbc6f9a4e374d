"""Engine settings derived from the user's choices."""

import io
from pathlib import Path

import jisu.config
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


def test_threads_default_to_physical_cores(monkeypatch):
    # An unlikely count, so a default hard-coded to this machine's cores cannot pass by chance.
    monkeypatch.setattr(jisu.config, "physical_cores", lambda: 37)
    assert config().resolved_threads() == 37
    assert config(threads=3).resolved_threads() == 3


def cpuinfo(*cores: tuple[int, int]) -> str:
    """/proc/cpuinfo text with one block per logical CPU, as (physical id, core id)."""
    return "".join(f"processor\t: {n}\nphysical id\t: {socket}\ncore id\t\t: {core}\n\n"
                   for n, (socket, core) in enumerate(cores))


def test_physical_cores_count_cores_not_hyperthreads(monkeypatch):
    two_cores_four_threads = cpuinfo((0, 0), (0, 1), (0, 0), (0, 1))
    monkeypatch.setattr(jisu.config, "open", lambda *a, **k: io.StringIO(two_cores_four_threads), raising=False)
    monkeypatch.setattr(jisu.config.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert physical_cores() == 2, "hyper-threads share a core's matmul units: they are not counted"
    monkeypatch.setattr(jisu.config.os, "sched_getaffinity", lambda pid: {0})
    assert physical_cores() == 1, "no more threads than the CPUs this process may run on"
