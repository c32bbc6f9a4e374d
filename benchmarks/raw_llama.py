"""The reference: llama.cpp driven directly through llama-cpp-python's low-level API.

No scheduler, no HTTP, no text handling: a prompt per sequence, then a loop of one
llama_decode holding every sequence's next token and a greedy pick per sequence. This is
the speed jisu's serving path is measured against (same file, same threads).
"""

from __future__ import annotations

import ctypes
import time

import llama_cpp.llama_cpp as C


def _silence_logs():
    callback = C.llama_log_callback(lambda level, text, data: None)
    C.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def raw_decode(model_path: str, threads: int, n_sequences: int, prompt_text: str, new_tokens: int,
               n_ctx_per_sequence: int = 2048) -> dict:
    """Greedy-decode `new_tokens` for `n_sequences` copies of a prompt, in one batch per step."""
    keep_alive = _silence_logs()
    C.llama_backend_init()
    model_params = C.llama_model_default_params()
    model = C.llama_model_load_from_file(model_path.encode(), model_params)
    vocab = C.llama_model_get_vocab(model)
    params = C.llama_context_default_params()
    params.n_ctx = n_ctx_per_sequence * n_sequences
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = n_sequences
    params.n_threads = params.n_threads_batch = threads
    ctx = C.llama_init_from_model(model, params)

    data = prompt_text.encode()
    tokens = (C.llama_token * (len(data) + 8))()
    n_prompt = C.llama_tokenize(vocab, data, len(data), tokens, len(data) + 8, False, True)
    prompt = list(tokens[:n_prompt])
    batch = C.llama_batch_init(max(512, n_prompt * n_sequences), 0, 1)
    samplers = []
    for _ in range(n_sequences):
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
        samplers.append(chain)

    def fill(entries):
        batch.n_tokens = 0
        outputs = []
        for seq, toks, start in entries:
            for i, token in enumerate(toks):
                n = batch.n_tokens
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + i, 1
                batch.seq_id[n][0], batch.logits[n] = seq, int(i == len(toks) - 1)
                batch.n_tokens += 1
            outputs.append(batch.n_tokens - 1)
        return outputs

    started = time.perf_counter()
    outputs = fill([(seq, prompt, 0) for seq in range(n_sequences)])
    assert C.llama_decode(ctx, batch) == 0
    next_tokens = [C.llama_sampler_sample(samplers[s], ctx, outputs[s]) for s in range(n_sequences)]
    first_token_s = time.perf_counter() - started

    decode_started = time.perf_counter()
    for step in range(new_tokens - 1):
        outputs = fill([(s, [next_tokens[s]], n_prompt + step) for s in range(n_sequences)])
        assert C.llama_decode(ctx, batch) == 0
        next_tokens = [C.llama_sampler_sample(samplers[s], ctx, outputs[s]) for s in range(n_sequences)]
    decode_s = time.perf_counter() - decode_started

    for chain in samplers:
        C.llama_sampler_free(chain)
    C.llama_batch_free(batch)
    C.llama_free(ctx)
    C.llama_model_free(model)
    del keep_alive
    return {
        "prompt_tokens": n_prompt,
        "time_to_first_token_s": first_token_s,
        # decode steps only, and end to end (prompts included) like a server's output rate
        "aggregate_tokens_per_s": n_sequences * (new_tokens - 1) / decode_s,
        "end_to_end_tokens_per_s": n_sequences * new_tokens / (first_token_s + decode_s),
        "per_stream_tokens_per_s": (new_tokens - 1) / decode_s,
    }
