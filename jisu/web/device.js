// Browser mode: the model runs in this page, on this device (wllama: llama.cpp compiled to
// WebAssembly, vendored). It answers through the same interface as the server's socket
// (connected, ask, cancel, and the same token/done/error events), so the chat view, history,
// stop and the stats under each answer work unchanged.
//
// start() finds the model (the server's manifest, or the last one when the server is gone),
// takes it from the browser's cache or downloads it there, and loads it. The chat template and
// stop tokens come from the GGUF itself (wllama renders its Jinja template, as llama-server
// does), so the same question gets the same greedy answer here and on a server running the
// same file.

import { authHeaders } from "./access.js";
import { CacheError, cachedParts, download, lastManifest, rememberManifest, storageAvailable } from "./model-cache.js";
import { Wllama } from "./vendor/wllama/index.js";

const asset = (path) => new URL(path, import.meta.url).href;
const WASM_PATHS = { default: asset("./vendor/wllama/wllama.wasm") };
// For browsers without JSPI or Memory64 (Safari, older ones): served by us, never a CDN.
const COMPAT = { wasm: asset("./vendor/wllama/compat/wllama.wasm"), worker: asset("./vendor/wllama/compat/wllama.js") };
const MANIFEST_URL = "web-model/manifest.json"; // relative: the page may live under a sub-path
const CONTEXT_TOKENS = 4096; // an f16 KV cache of 48 MB for the 0.5B model
const PREPARE_POLL_MS = 1000;
const WEBGPU_FAILED = "jisu.webgpuFailed"; // this browser's WebGPU aborted once: CPU from then on
// "webgpu" tries WebGPU even on a software adapter, "cpu" never tries it; unset: decide here.
const BACKEND_CHOICE = "jisu.deviceBackend";
const BYTES_PER_GB = 1024 ** 3;

export class DeviceEngine {
  /** onStatus({state, ...}) keeps the page informed: checking, preparing {done, total},
   * downloading {done, total}, loading, ready {threads, backend, notices}, failed {code, message}. */
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.state = "idle";
    this.wllama = null;
    this.current = null; // the answer being generated: { controller }
    this.priming = null; // the system prompt being read ahead (prime)
    this.starting = null;
    this.loading = null; // aborts the download and load under way (switching back to the server)
  }

  get connected() {
    return this.state === "ready";
  }

  /** Get the model ready; safe to call again (it retries after a failure). */
  start() {
    if (this.state === "ready") return Promise.resolve();
    if (!this.starting) {
      const loading = new AbortController();
      const started = this.load(loading.signal).finally(() => {
        if (this.starting === started) this.starting = null;
      });
      this.loading = loading;
      this.starting = started;
    }
    return this.starting;
  }

  async load(signal) {
    try {
      const manifest = await this.findManifest(signal);
      const files = await this.modelFiles(manifest, signal);
      signal.throwIfAborted();
      this.report("loading", { name: manifest.name }, signal);
      await this.loadModel(files, manifest, signal);
    } catch (error) {
      if (!signal.aborted) this.fail(error); // aborted: the user went back to the server, nothing to say
    }
  }

  /** Tell the page; a load that was abandoned (signal aborted) has nothing more to say, even
   * if a write it started finishes afterwards. */
  report(state, detail = {}, signal = null) {
    if (signal?.aborted) return;
    this.state = state;
    this.onStatus({ state, ...detail });
  }

  fail(error) {
    const code = error.code || (String(error.message).match(/memory|allocate|OOM/i) ? "memory" : "load");
    this.report("failed", { code, message: error.message || String(error), detail: error.detail || {} });
  }

  /** The manifest from the server (waiting while it prepares the parts), or, with no server
   * to ask, the one this page loaded last. */
  async findManifest(signal) {
    this.report("checking", {}, signal);
    for (;;) {
      signal.throwIfAborted();
      let response;
      try {
        response = await fetch(MANIFEST_URL, { cache: "no-store", headers: authHeaders(), signal });
      } catch {
        signal.throwIfAborted();
        const remembered = lastManifest();
        if (remembered) return remembered;
        throw new CacheError("offline", "the server cannot be reached and no model is stored here yet");
      }
      if (response.status === 202) {
        const progress = await response.json();
        this.report("preparing", { done: progress.done, total: progress.total, stage: progress.stage }, signal);
        await new Promise((resolve) => setTimeout(resolve, PREPARE_POLL_MS));
        continue;
      }
      if (response.status === 401) throw new CacheError("unauthorized", "an access key is needed");
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new CacheError("server", body.error?.message || `HTTP ${response.status}`);
      rememberManifest(body);
      return body;
    }
  }

  async modelFiles(manifest, signal) {
    const memoryGb = navigator.deviceMemory; // Chromium only, rounded, at most 8
    if (memoryGb && memoryGb * BYTES_PER_GB < manifest.size * 1.5) {
      throw new CacheError("memory", "not enough memory", { needGb: (manifest.size * 1.5 / BYTES_PER_GB).toFixed(1), haveGb: memoryGb });
    }
    const cached = await cachedParts(manifest).catch(() => null);
    if (cached) return cached;
    this.report("downloading", { done: 0, total: manifest.size, name: manifest.name }, signal);
    return download(manifest, `web-model/${encodeURIComponent(manifest.id)}/`, {
      headers: authHeaders(),
      signal,
      onProgress: ({ done, total }) => this.report("downloading", { done, total, name: manifest.name }, signal),
    });
  }

  async loadModel(files, manifest, signal) {
    const notices = [];
    if (!crossOriginIsolated) notices.push(window.isSecureContext ? "not_isolated" : "insecure");
    if (!storageAvailable()) notices.push("no_cache");
    const threads = crossOriginIsolated ? Math.max(1, navigator.hardwareConcurrency || 1) : 1;
    let backend = await usableGpu() ? "webgpu" : "cpu";
    let wllama;
    try {
      wllama = await startWllama(files, threads, backend);
    } catch (error) {
      if (backend !== "webgpu") throw error;
      // wllama's WebGPU path aborts on some Chromium builds: CPU it is, here and next time.
      localStorage.setItem(WEBGPU_FAILED, navigator.userAgent);
      notices.push("webgpu_failed");
      backend = "cpu";
      wllama = await startWllama(files, threads, backend);
    }
    if (signal.aborted) { // switched back to the server while loading: free it at once
      await wllama.exit().catch(() => {});
      signal.throwIfAborted();
    }
    this.wllama = wllama;
    this.report("ready", { threads, backend, notices, name: manifest.name, quant: manifest.quant, contextSize: CONTEXT_TOKENS }, signal);
  }

  /** Free the model (switching back to the server): the page then holds no ~0.7 GB for it. */
  async unload() {
    this.loading?.abort();
    this.starting = null;
    this.cancel();
    const wllama = this.wllama;
    this.wllama = null;
    this.state = "idle";
    await wllama?.exit().catch(() => {});
  }

  /** Answer `payload` ({messages, temperature, max_tokens}); events go to `handler`. */
  ask(payload, handler) {
    if (!this.connected || this.current) return false;
    const controller = new AbortController();
    this.current = { controller };
    this.generate(payload, controller.signal, handler).finally(() => { this.current = null; });
    return true;
  }

  cancel() {
    this.current?.controller.abort();
  }

  /** Read the conversation's system prompt ahead, while the user types: llama.cpp keeps the
   * common prefix, so the first question then reads only its own tokens (in WebAssembly a
   * prompt reads at a few dozen tokens a second). */
  prime(system) {
    if (!this.connected || this.current || this.priming || !system) return;
    this.priming = this.wllama.createChatCompletion({
      messages: [{ role: "system", content: system }, { role: "user", content: "" }], max_tokens: 1, temperature: 0,
    }).catch(() => {}).finally(() => { this.priming = null; });
  }

  async generate(payload, signal, handler) {
    const startedAt = performance.now();
    let firstAt = 0;
    let finishReason = "stop";
    let last = null;
    const stats = () => statsOf(last, startedAt, firstAt);
    try {
      await this.priming; // one request at a time in the page's llama.cpp
      signal.throwIfAborted();
      const chunks = await this.wllama.createChatCompletion({
        messages: payload.messages,
        temperature: payload.temperature,
        max_tokens: payload.max_tokens,
        stream: true,
        abortSignal: signal,
      });
      for await (const chunk of chunks) {
        last = chunk;
        const choice = chunk.choices?.[0];
        if (choice?.delta?.content) {
          firstAt ||= performance.now();
          handler({ type: "token", text: choice.delta.content });
        }
        if (choice?.finish_reason) finishReason = choice.finish_reason;
      }
      handler({ type: "done", finish_reason: finishReason, ...stats() });
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") {
        handler({ type: "done", finish_reason: "cancelled", ...stats() });
      } else if (/kv_cache_full|context|exceed/i.test(`${error.type} ${error.message}`)) {
        handler({ type: "error", error: { code: "device_context_full", message: error.message } });
      } else {
        handler({ type: "error", error: { code: "device_error", message: error.message || String(error) } });
      }
    }
  }
}

/** The stats the server reports under an answer, from llama.cpp's own timings in wllama. */
function statsOf(lastChunk, startedAt, firstAt) {
  const timings = lastChunk?.timings || {};
  const completion = lastChunk?.usage?.completion_tokens ?? timings.predicted_n ?? 0;
  const prompt = lastChunk?.usage?.prompt_tokens ?? timings.prompt_n ?? 0;
  return {
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    timings: {
      time_to_first_token_ms: firstAt ? Math.round(firstAt - startedAt) : null,
      prefill_ms: timings.prompt_ms ?? null,
      decode_ms: timings.predicted_ms ?? null,
      completion_tokens: completion,
      tokens_per_second: timings.predicted_per_second ?? 0,
    },
  };
}

async function startWllama(files, threads, backend) {
  const wllama = new Wllama(WASM_PATHS, { suppressNativeLog: true, logger: QUIET_LOGGER });
  wllama.setCompat(COMPAT);
  try {
    await wllama.loadModel(files, {
      n_ctx: CONTEXT_TOKENS,
      n_threads: threads,
      n_gpu_layers: backend === "webgpu" ? 999 : 0,
      n_parallel: 1, // one conversation at a time in a page: its whole context for it
      jinja: true, // the GGUF's own chat template, as on the server
      warmup: false, // a warm-up pass costs a second and buys nothing in WebAssembly
    });
  } catch (error) {
    await wllama.exit().catch(() => {});
    throw error;
  }
  return wllama;
}

/** A real GPU through WebGPU, or null: software adapters (SwiftShader) are slower than the
 * CPU path, and a browser whose WebGPU aborted before is not asked again (unless the user
 * chose WebGPU in localStorage jisu.deviceBackend). */
async function usableGpu() {
  const choice = localStorage.getItem(BACKEND_CHOICE);
  if (!navigator.gpu || choice === "cpu") return null;
  if (choice !== "webgpu" && localStorage.getItem(WEBGPU_FAILED) === navigator.userAgent) return null;
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return null;
    const software = adapter.info?.isFallbackAdapter || adapter.isFallbackAdapter;
    return software && choice !== "webgpu" ? null : adapter;
  } catch {
    return null;
  }
}

const QUIET_LOGGER = { debug() {}, log() {}, warn: console.warn.bind(console), error: console.error.bind(console) };
