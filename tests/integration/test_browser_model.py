"""The parts browser mode ships are the same model: llama.cpp loads them as a split model and
answers exactly what it answers from the original file."""

from __future__ import annotations

from dataclasses import replace

from helpers import run_chat
from jisu.config import EngineConfig
from jisu.models.shards import prepare_browser_model
from jisu.runtime import Runtime


def test_split_parts_answer_like_the_original_file(standin_model, runtime, tmp_path):
    folder, manifest = prepare_browser_model(standin_model.path, standin_model.display_name,
                                             standin_model.quant or "gguf", tmp_path)
    assert len(manifest.parts) >= 3, "the stand-in (~0.4 GB) in 128 MB parts"
    assert sum(part.size for part in manifest.parts) >= standin_model.path.stat().st_size, \
        "every byte of every tensor is in some part (each part adds its own header)"
    question = "用一句话介绍北京。"
    expected, _ = run_chat(runtime, question, temperature=0, max_tokens=32)
    split_model = replace(standin_model, path=folder / manifest.parts[0].file)
    # llama.cpp finds parts 2..N next to the first one by their gguf-split names.
    with Runtime.load(split_model, EngineConfig(model_path=split_model.path, ctx_size=1024, parallel=1)) as split:
        answer, _ = run_chat(split, question, temperature=0, max_tokens=32)
    assert answer == expected
