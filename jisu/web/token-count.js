// Counting tokens for the composer's chips and the context gauge.
//
// With a server, the served model's own tokenizer counts (POST /tokenize): exact, and cheap
// for the server (it runs beside the engine thread, not on it). In browser mode the page's
// llama.cpp (wllama 3) offers no tokenizer call, and with the server gone nothing can count
// exactly, so the count is an estimate and says so ({estimated: true}); the page shows it
// with "≈". A failed /tokenize (an older server, a network error) falls back the same way.
//
// Counts are kept by text, so the gauge can ask again on every redraw without asking the
// server again; only new text (a changed draft, a new file) costs a request.

import { authHeaders } from "./access.js";
import { mode } from "./backend.js";

const CACHE_SIZE = 64; // texts: the draft's last few versions and a chat's tail messages
const cache = new Map(); // text -> {tokens, estimated}: exact counts only, estimates are free

/** How many tokens `text` is for the model: {tokens, estimated}. Never rejects. */
export async function countTokens(text) {
  if (!text) return { tokens: 0, estimated: false };
  if (mode() === "device") return { tokens: estimateTokens(text), estimated: true };
  const known = cache.get(text);
  if (known) {
    cache.delete(text); // most recently used goes last
    cache.set(text, known);
    return known;
  }
  try {
    const response = await fetch("/tokenize", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      // parse_special false: a file that happens to contain "<|im_end|>" is sent as text,
      // and the chat template on the server does the same with message content.
      body: JSON.stringify({ content: text, parse_special: false }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const counted = { tokens: (await response.json()).tokens.length, estimated: false };
    cache.set(text, counted);
    if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
    return counted;
  } catch {
    return { tokens: estimateTokens(text), estimated: true };
  }
}

/**
 * A count without the tokenizer, for Qwen2.5's vocabulary: a word of letters is about one
 * token whatever its length (so it is the runs of spaces between words that count), each digit
 * is one (Qwen splits numbers into digits), a CJK character about 0.7, a punctuation mark about
 * 0.65. The weights were fitted to /tokenize on 14 of jisu's own files (Python, JavaScript, CSS,
 * HTML, JSON, CSV, Markdown, Chinese and English text): within 14% on each of them.
 */
function estimateTokens(text) {
  if (!text) return 0;
  const count = (pattern) => text.match(pattern)?.length || 0;
  const cjk = count(/[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]/g);
  const digits = count(/[0-9]/g);
  const letters = count(/[A-Za-z]/g);
  const spaceRuns = count(/\s+/g);
  const others = text.length - cjk - digits - letters - count(/\s/g);
  return Math.ceil(cjk * 0.7 + digits * 1.1 + letters * 0.07 + spaceRuns * 0.9 + others * 0.65);
}
