"""The one place that owns llama.cpp's C handles: model, context, batch.

Token ids in, logits and sampled token ids out. Several sequences share one context and
one `llama_decode` call; each sequence is a `seq_id` in llama.cpp's KV cache. Every C handle
is registered on an ExitStack the moment it exists, so `close()` frees exactly what was
created, in reverse order, even after a failure half-way through `__init__`.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import llama_cpp.llama_cpp as C
import numpy as np

from jisu.config import MAX_CTX_SIZE, EngineConfig
from jisu.engine.protocol import BatchSlice, EngineError, StepInterrupted
from jisu.engine.sampling import Sampler, grammar_sampler
from jisu.engine.tokenizer import Tokenizer
from jisu.types import ModelError
from jisu.types import SamplingParams

KV_CACHE_TYPES = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0}
MADV_DONTNEED = 4
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_ALLOCATION_BYTES = 512 << 10  # below a kept logits row (151,936 floats: 0.6 MB)


_backend_lock = threading.Lock()
_backend_ready = False
_log_callback = None  # kept alive: llama.cpp holds the pointer for the life of the process


def init_backend() -> None:
    global _backend_ready, _log_callback
    with _backend_lock:
        if _backend_ready:
            return
        if not os.environ.get("JISU_LLAMA_LOG"):
            # llama.cpp logs every tensor at load; users need none of it on their terminal.
            _log_callback = C.llama_log_callback(lambda level, text, data: None)
            C.llama_log_set(_log_callback, ctypes.c_void_p(0))
        C.llama_backend_init()
        _map_large_allocations()
        _backend_ready = True


def _map_large_allocations() -> None:
    """Give every allocation of 512 KiB or more its own mapping, returned to the OS when freed.

    A saved conversation (save_sequence) is megabytes of bytes, made and freed all day long
    in varying sizes. glibc raises its mmap threshold after each such free, so later ones
    come from the heap and fragment it: in a 30-minute soak RSS crept up by ~8% where it
    should be flat (bench_soak.py; flat within 1% with this). A prompt's kept logits (0.6 MB,
    see PromptEnd) are one such size too. No-op outside glibc."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)
    except (AttributeError, OSError):
        pass


def _flag_reader() -> C.ggml_abort_callback:
    """libc's strlen, as llama.cpp's abort callback: see LlamaEngine.interrupt."""
    libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
    return ctypes.cast(libc.strlen, C.ggml_abort_callback)


def release_model_pages(path: Path) -> None:
    """Unmap the model file's pages from this process after loading.

    llama.cpp maps the whole file and reads all of it at load, then copies most weights into
    repacked (faster) buffers and never reads those file pages again. They would still count
    in the process's memory; dropping them lets the kernel fault back in only what is really
    used (~100 MB less resident for an iq4_nl file). Linux only; harmless elsewhere.
    """
    if sys.platform != "linux":
        return
    target = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            regions = [line.split() for line in maps]
    except OSError:
        return
    for fields in regions:
        if len(fields) >= 6 and fields[5] == target:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            libc.madvise(start, end - start, MADV_DONTNEED)


class LlamaEngine:
    """The Engine protocol (jisu.engine.protocol) over libllama."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._stack = ExitStack()
        try:
            self._load(config)
        except BaseException:
            self._stack.close()
            raise

    def _load(self, config: EngineConfig) -> None:
        init_backend()
        path = Path(config.model_path)
        model_params = C.llama_model_default_params()
        model_params.use_mmap = True
        model = C.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise ModelError(f"{path}: llama.cpp could not load this GGUF (damaged or unsupported)")
        self._stack.callback(C.llama_model_free, model)
        self.model = model
        self.tokenizer = Tokenizer(C.llama_model_get_vocab(model))

        self.n_ctx_train = C.llama_model_n_ctx_train(model)
        if not 1 <= config.ctx_size <= min(self.n_ctx_train, MAX_CTX_SIZE):
            raise ModelError(
                f"context size {config.ctx_size} is out of range: this model supports 1.."
                f"{min(self.n_ctx_train, MAX_CTX_SIZE)} tokens"
            )
        self.ctx_size = config.ctx_size
        self.n_sequences = config.parallel
        self.threads = config.resolved_threads()

        params = C.llama_context_default_params()
        # One KV stream of ctx_size cells per sequence (llama.cpp rounds streams up to 256).
        # Separate streams keep attention to a sequence's own cells: with one shared
        # (unified) stream every sequence attends over everyone's cells, masked, and decoding
        # several long conversations is several times slower.
        per_sequence = -(-config.ctx_size // 256) * 256
        params.n_ctx = per_sequence * config.parallel
        params.n_batch = config.batch_size
        params.n_ubatch = config.micro_batch()
        params.n_seq_max = config.parallel
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = False
        if config.kv_cache_type != "f16" and not config.uses_flash_attention():
            raise ModelError(f"a {config.kv_cache_type} KV cache needs flash attention (drop --flash-attn off)")
        params.flash_attn_type = (C.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.uses_flash_attention()
                                  else C.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.type_k = params.type_v = KV_CACHE_TYPES[config.kv_cache_type]
        params.no_perf = True
        ctx = C.llama_init_from_model(model, params)
        if not ctx:
            raise ModelError(f"{path}: llama.cpp could not create a context of {params.n_ctx} tokens")
        self._stack.callback(C.llama_free, ctx)
        self.ctx = ctx
        self.memory = C.llama_get_memory(ctx)
        self.batch_capacity = config.batch_size
        batch = C.llama_batch_init(self.batch_capacity, 0, 1)
        self._stack.callback(C.llama_batch_free, batch)
        self._batch = batch
        self._install_interrupt()
        release_model_pages(path)

    def warm_up(self) -> None:
        """One throwaway step, as llama-server does: otherwise the first request pays for
        faulting the weights back in (see release_model_pages) and for the first run of every
        kernel, ~0.2 s more to its first token.

        Only ever on the thread that runs decode(): llama.cpp's OpenMP gives each thread that
        computes a team of workers of its own, and a second team (here: a warm-up on the
        loading thread) halved the decode rate of the first on two cores (40 vs 75 tok/s,
        one stream), its workers competing for the cores.

        It also finds the end-of-turn tokens (a pass over the vocabulary, ~0.1 s) that
        ignore_eos bans, so the first such request does not wait for it either."""
        self.decode([BatchSlice(0, self.tokenizer.tokenize("warm up"), 0, True)])
        self.forget(0)
        self.tokenizer.end_of_generation_tokens  # noqa: B018 (computed once, then cached)

    def _install_interrupt(self) -> None:
        # llama.cpp asks abort_callback(data) after every node of the compute graph, from
        # its compute thread. A Python callback would take the GIL hundreds of times a
        # step, and wait for it whenever the HTTP thread holds it. strlen over a 2-byte
        # buffer answers the same question in C: 0 (run on) until interrupt() writes a
        # nonzero first byte, then 1 (stop), read as the bool the callback returns.
        self._interrupt_flag = ctypes.create_string_buffer(2)
        self._flag_reader = _flag_reader()  # referenced here so it outlives the context
        C.llama_set_abort_callback(self.ctx, self._flag_reader,
                                   ctypes.cast(self._interrupt_flag, ctypes.c_void_p))

    # ---- facts about the model -------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(512)
        length = C.llama_model_meta_val_str(self.model, key.encode(), buffer, 512)
        if length < 0:
            return None
        if length >= 512:
            buffer = ctypes.create_string_buffer(length + 1)
            C.llama_model_meta_val_str(self.model, key.encode(), buffer, length + 1)
        return buffer.value.decode("utf-8", errors="replace")

    def description(self) -> str:
        """llama.cpp's one-line summary, e.g. 'qwen2 1B Q4_K - Medium'."""
        buffer = ctypes.create_string_buffer(256)
        C.llama_model_desc(self.model, buffer, 256)
        return buffer.value.decode("utf-8", errors="replace")

    # ---- running the model -----------------------------------------------------------

    def decode(self, slices: Sequence[BatchSlice]) -> list[int | None]:
        """Run one forward pass over all slices. Returns, per slice, the logits row (its
        last token's index in the batch) a sampler reads, or None when it asked for none.

        The batch is laid out in sequence-id order, whatever order the slices come in: with
        a KV stream per sequence llama.cpp computes a batch whose sequences are out of order
        in several passes, each reading all the weights again (8 answers in the order
        1..7, 0 decoded at 86 ms a step instead of 50)."""
        batch = self._batch
        n = 0
        logit_rows: list[int | None] = [None] * len(slices)
        for index in sorted(range(len(slices)), key=lambda i: slices[i].seq_id):
            piece = slices[index]
            if n + len(piece.tokens) > self.batch_capacity:
                raise EngineError(f"batch of more than {self.batch_capacity} tokens")
            for offset, token in enumerate(piece.tokens):
                batch.token[n] = token
                batch.pos[n] = piece.start_pos + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = piece.seq_id
                batch.logits[n] = 0
                n += 1
            if piece.want_logits and piece.tokens:
                batch.logits[n - 1] = 1
                logit_rows[index] = n - 1
        batch.n_tokens = n
        status = C.llama_decode(self.ctx, batch)
        if status == 2:
            # llama.cpp drops the micro-batch it was computing; earlier micro-batches of a
            # long batch stay, so forget them too: the sequences end where they began.
            for piece in slices:
                self.forget(piece.seq_id, piece.start_pos)
            raise StepInterrupted()
        if status == 1:
            raise EngineError("the KV cache is full: no free cells for this batch")
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")
        return logit_rows

    def copy_logits(self, logits_row: int) -> np.ndarray:
        """A copy of the logits at `logits_row` (before any sampler edits them), to sample
        from later: decode() overwrites the buffer at the next step."""
        return np.ctypeslib.as_array(C.llama_get_logits_ith(self.ctx, logits_row),
                                     shape=(self.tokenizer.n_vocab,)).copy()

    def interrupt(self) -> None:
        """Make the running decode() (or the next one, if none runs) stop early with
        StepInterrupted. Any thread may call it; clear_interrupt() re-arms."""
        self._interrupt_flag[0] = b"x"

    def clear_interrupt(self) -> None:
        self._interrupt_flag[0] = b"\0"

    def new_sampler(self, params: SamplingParams, prompt_tokens: Sequence[int]) -> Sampler:
        """A sampler for one sequence; the caller closes it when the sequence ends."""
        return Sampler(params, self.tokenizer, self.ctx, prompt_tokens)

    def check_grammar(self, grammar: str, trigger: str | None = None) -> None:
        """Raise InvalidRequest unless llama.cpp accepts the grammar (any thread may call)."""
        C.llama_sampler_free(grammar_sampler(self.tokenizer.vocab, grammar, trigger))

    # ---- KV cache per sequence -------------------------------------------------------

    def forget(self, seq_id: int, start: int = 0) -> None:
        """Drop a sequence's KV from position `start` on (all of it by default)."""
        C.llama_memory_seq_rm(self.memory, seq_id, start, -1)

    def save_sequence(self, seq_id: int) -> bytearray:
        """A copy of one sequence's KV in host memory (see restore_sequence). llama.cpp
        writes it straight into the bytearray: one copy, ~8 ms per 1,000 tokens."""
        size = C.llama_state_seq_get_size(self.ctx, seq_id)
        state = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(state)
        written = C.llama_state_seq_get_data(self.ctx, view, size, seq_id)
        del view  # a bytearray with a live view cannot be resized
        del state[written:]
        return state

    def restore_sequence(self, seq_id: int, state: bytes | bytearray) -> None:
        """Replace a sequence's KV with a copy saved by save_sequence."""
        C.llama_memory_seq_rm(self.memory, seq_id, 0, -1)
        if isinstance(state, bytearray):  # read in place, without another copy
            buffer = (ctypes.c_uint8 * len(state)).from_buffer(state)
        else:
            buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if C.llama_state_seq_set_data(self.ctx, buffer, len(state), seq_id) == 0:
            C.llama_memory_seq_rm(self.memory, seq_id, 0, -1)
            raise EngineError(f"could not restore the saved KV of sequence {seq_id}")

    def close(self) -> None:
        self._stack.close()
        self.model = self.ctx = None

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
