// The context gauge under the composer: how much of the model's context the next request
// would take (the conversation, the draft and its files), out of the context size, with the
// part max_tokens keeps for the answer marked at its end. The server refuses a prompt that
// leaves less than max_tokens, so the gauge turns amber as that point nears and red past it.
//
// After an answer the count is the server's own: the answer's usage (prompt + completion
// tokens) is exactly what the model has read and written so far. Only what came after it
// (the draft, new files, a message not answered yet) is counted with /tokenize, and the draft
// only once typing pauses (DEBOUNCE_MS), so typing does not send a request per keystroke.
// Without any usage (a new chat, a conversation from before), every message is counted.

import { attachmentTokens, contentForModel } from "./attachments.js";
import { t } from "./i18n.js";
import { countTokens } from "./token-count.js";

const byId = (id) => document.getElementById(id);

const DEBOUNCE_MS = 500;
const TEMPLATE_TOKENS = 5; // <|im_start|>role\n … <|im_end|>\n around each message
const ANSWER_PREFIX_TOKENS = 3; // <|im_start|>assistant\n, where the answer starts
const ANSWER_END_TOKENS = 2; // <|im_end|>\n after an answer counted by its usage
const DEFAULT_SYSTEM_TOKENS = 20; // Qwen's template adds its own system prompt when none is sent
const WARN_AT = 0.8; // of the room the prompt may take

let source; // { conversation(), draft(), pendingFiles() -> {tokens, estimated}, maxTokens() }
let contextSize = 0; // of the model that answers; 0 until known
let timer = 0;
let latest = 0; // the newest measurement: an older one that finishes later is dropped
let shown = null; // { used, estimated }: redrawn as is after a language switch

export function initGauge(context) {
  source = context;
}

/** The model that answers changed (server or device): its context size, 0 when unknown. */
export function setContextSize(size) {
  contextSize = size || 0;
  refreshGauge(0);
}

/** Measure again after `delay` ms; calls in the meantime push it back (debounce). */
export function refreshGauge(delay = DEBOUNCE_MS) {
  clearTimeout(timer);
  timer = setTimeout(measure, delay);
}

async function measure() {
  const run = ++latest;
  if (!source || !contextSize) return draw();
  const { used, estimated } = await tokensToSend();
  if (run !== latest) return;
  shown = { used, estimated };
  draw();
}

/** The tokens the next request would have: {used, estimated}. */
async function tokensToSend() {
  const conversation = source.conversation();
  const messages = conversation?.messages || [];
  const history = []; // texts since the last answer's usage, counted by the tokenizer as one
  let used = ANSWER_PREFIX_TOKENS;
  let estimated = false;
  const add = (count) => {
    used += count.tokens;
    estimated ||= count.estimated;
  };

  const answered = messages.findLastIndex((message) => message.role === "assistant" && message.usage?.prompt_tokens);
  if (answered >= 0) {
    const { prompt_tokens: prompt, completion_tokens: completion = 0 } = messages[answered].usage;
    used += prompt + completion + ANSWER_END_TOKENS - ANSWER_PREFIX_TOKENS; // its prompt ended with the prefix
  } else if (conversation?.system?.trim()) {
    history.push(conversation.system);
    used += TEMPLATE_TOKENS;
  } else {
    used += DEFAULT_SYSTEM_TOKENS;
  }
  for (const message of messages.slice(answered + 1)) {
    if (message.role !== "user" && message.role !== "assistant") continue; // notices are not sent
    if (!message.content && !message.attachments?.length) continue;
    // Files read back from the server have no count of their own: their text is counted here.
    const counted = (message.attachments || []).every((file) => file.tokens != null);
    history.push(counted ? message.content || "" : contentForModel(message));
    if (counted) add(attachmentTokens(message));
    used += TEMPLATE_TOKENS;
  }
  const draft = source.draft().trim();
  const files = source.pendingFiles();
  if (draft || files.tokens) {
    add(files);
    used += TEMPLATE_TOKENS;
  }
  // Two requests at most (none when both are known): a conversation opened without usage is
  // counted in one piece, not a request per message, and the draft apart, as it changes alone.
  for (const count of await Promise.all([countTokens(history.join("\n")), countTokens(draft)])) add(count);
  return { used, estimated };
}

/** Draw the last measurement (also after a language switch); hidden until there is one. */
export function draw() {
  const gauge = byId("context-gauge");
  if (!contextSize || !shown) {
    gauge.hidden = true;
    return;
  }
  const { used, estimated } = shown;
  const reserve = Math.min(source.maxTokens(), contextSize);
  const room = contextSize - reserve;
  const level = used > room ? "full" : used > room * WARN_AT ? "warn" : "ok";
  gauge.hidden = false;
  gauge.dataset.level = level;
  gauge.dataset.used = used;
  gauge.dataset.size = contextSize;
  gauge.dataset.estimated = String(estimated);
  byId("gauge-fill").style.width = `${Math.min(100, (used / contextSize) * 100)}%`;
  byId("gauge-reserve").style.width = `${(reserve / contextSize) * 100}%`;
  const numbers = `${estimated ? "≈" : ""}${used.toLocaleString("en-US")} / ${contextSize.toLocaleString("en-US")}`;
  byId("gauge-text").textContent = numbers;
  gauge.setAttribute("aria-valuenow", String(Math.min(used, contextSize)));
  gauge.setAttribute("aria-valuemax", String(contextSize));
  const detail = t(level === "full" ? "gaugeFull" : "gaugeDetail", { used: numbers, reserve });
  gauge.setAttribute("aria-valuetext", detail);
  gauge.title = `${t("gaugeLabel")}: ${detail}${estimated ? ` ${t("gaugeEstimated")}` : ""}`;
}
