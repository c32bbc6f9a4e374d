// The conversation view: message list, composer, and one answer streaming at a time.
//
// `conv` is the conversation on screen (stored in IndexedDB once it has a first message);
// `answer` is the answer being generated, bound to the conversation it belongs to, so
// switching chats mid-answer cancels it and its partial text still lands in the right place.

import { t } from "./i18n.js";
import { icon, iconButton } from "./icons.js";
import { systemFor } from "./presets.js";
import { copyText, renderMarkdown } from "./render.js";
import { newId, putConversation } from "./store.js";
import { applyTrim, planTrim } from "./trim.js";

const $ = (id) => document.getElementById(id);
const STOP_GRACE_MS = 5000; // no "done" after a cancel within this time: finish locally

let ctx; // { socket, settings, onSaved(conv), onNewChat(prefill) }
let conv = null;
let answer = null;

export function initChat(context) {
  ctx = context;
  const input = $("chat-input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    // isComposing: Enter also confirms a Chinese IME candidate; that must not send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", () => autoGrow(input));
  $("stop-button").addEventListener("click", stop);
  for (const button of document.querySelectorAll(".suggestion")) {
    button.addEventListener("click", () => {
      input.value = button.textContent;
      submit();
    });
  }
}

export function currentConversation() {
  return conv;
}

export function blankConversation(settings) {
  const now = Date.now();
  return {
    id: newId(), title: "", createdAt: now, updatedAt: now,
    role: settings.role, system: systemFor(settings.role, settings), messages: [],
  };
}

/** Show a conversation; an answer still running elsewhere is stopped (its text is kept). */
export function openConversation(next) {
  if (answer && answer.conv !== next) stop();
  conv = next;
  renderAll();
  // On touch screens focusing would pop up the keyboard every time a chat is opened.
  if (!matchMedia("(hover: none)").matches) $("chat-input").focus({ preventScroll: true });
}

/** The conversation record changed elsewhere (rename, role): persist it if it exists yet. */
export async function saveConversation(c = conv) {
  if (c.deleted || c.messages.length === 0) return;
  c.updatedAt = Date.now();
  await putConversation(c);
  ctx.onSaved(c);
}

export function forgetConversation(id) {
  if (answer?.conv.id === id) {
    answer.conv.deleted = true;
    stop();
  }
}

export function setConnected() {
  updateComposer();
}

// ---- sending -----------------------------------------------------------------------------

async function submit() {
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || answer) return;
  if (!ctx.socket.connected) {
    showError({ text: t("errNotConnected") });
    return;
  }
  input.value = "";
  autoGrow(input);
  conv.messages.push({ role: "user", content: text });
  if (!conv.title) conv.title = text.replace(/\s+/g, " ").slice(0, 40);
  await saveConversation(conv);
  renderAll();
  generate();
}

/** What the server gets: the system prompt and every user/assistant turn with text. */
function requestFor(c) {
  const messages = [];
  if (c.system && c.system.trim()) messages.push({ role: "system", content: c.system });
  for (const m of c.messages) {
    if ((m.role === "user" || m.role === "assistant") && m.content) messages.push({ role: m.role, content: m.content });
  }
  return { messages, temperature: ctx.settings.temperature, max_tokens: ctx.settings.maxTokens };
}

function generate() {
  clearErrors();
  const el = messageShell("assistant");
  el.classList.add("pending");
  el.setAttribute("aria-busy", "true");
  const body = el.querySelector(".answer-body");
  const status = document.createElement("div");
  status.className = "answer-status";
  status.dataset.testid = "answer-status";
  status.setAttribute("role", "status");
  status.innerHTML = '<span class="dots"><i></i><i></i><i></i></span>';
  status.append(document.createTextNode(t("thinking")));
  body.after(status);
  const a = { conv, el, body, status, text: "", stopping: false, frame: 0 };
  answer = a;
  $("messages").append(el);
  $("empty-state").hidden = true;
  updateComposer();
  scrollToBottom(true);
  const sent = ctx.socket.ask(requestFor(conv), (event) => onEvent(a, event));
  if (!sent) {
    answer = null;
    el.remove();
    updateComposer();
    showError({ text: t("errNotConnected"), retry: true });
  }
}

function onEvent(a, event) {
  switch (event.type) {
    case "queued":
      setStatus(a, t("queued", { n: event.position }));
      break;
    case "progress":
      setStatus(a, t("reading", { processed: event.processed, total: event.total }), event.processed / event.total);
      break;
    case "token":
      a.text += event.text;
      if (a.status.isConnected) a.status.remove();
      if (!a.frame) a.frame = requestAnimationFrame(() => paint(a)); // at most one render per frame
      break;
    case "done":
      finish(a, { finish: event.finish_reason, usage: event.usage, timings: event.timings });
      break;
    case "error":
      fail(a, event.error || {});
      break;
    case "disconnected":
      if (a.text) finish(a, { finish: "interrupted" });
      else drop(a);
      showError({ text: t("errDisconnected"), retry: true });
      break;
  }
}

function setStatus(a, text, fraction) {
  a.status.replaceChildren(document.createTextNode(text));
  if (fraction !== undefined) {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = fraction;
    bar.dataset.testid = "prompt-progress";
    bar.setAttribute("aria-label", text);
    a.status.append(bar);
  }
}

function paint(a) {
  a.frame = 0;
  if (answer !== a) return;
  const stick = nearBottom();
  renderMarkdown(a.body, a.text, { final: false });
  if (stick) scrollToBottom();
}

async function finish(a, meta) {
  if (answer === a) answer = null;
  cancelAnimationFrame(a.frame);
  const message = { role: "assistant", content: a.text, finish: meta.finish };
  if (meta.usage) message.usage = meta.usage;
  if (meta.timings) message.timings = meta.timings;
  a.conv.messages.push(message);
  if (a.conv === conv) renderAll();
  await saveConversation(a.conv);
}

function drop(a) {
  if (answer === a) answer = null;
  cancelAnimationFrame(a.frame);
  a.el.remove();
  updateComposer();
}

function fail(a, error) {
  // An error ends the answer; any text already shown is kept as an interrupted answer.
  if (a.text) finish(a, { finish: "interrupted" });
  else drop(a);
  if (a.conv !== conv) return;
  if (error.code === "context_length_exceeded") showOverflow(error);
  else if (error.code === "server_busy") showError({ text: t("errBusy"), retry: true, testid: "busy-error" });
  else showError({ text: t("errGeneric", { message: error.message || error.code || "?" }), retry: true });
}

function stop() {
  const a = answer;
  if (!a || a.stopping) return;
  a.stopping = true;
  ctx.socket.cancel();
  updateComposer();
  setTimeout(() => {
    if (answer === a) {
      ctx.socket.forget();
      finish(a, { finish: "cancelled" });
    }
  }, STOP_GRACE_MS);
}

async function regenerate() {
  if (answer) return;
  const last = conv.messages.at(-1);
  if (last?.role === "assistant") conv.messages.pop();
  await saveConversation(conv);
  renderAll();
  generate();
}

/** Retry after an error: answer the last user message again. */
function retry() {
  if (answer || !ctx.socket.connected) {
    if (!ctx.socket.connected) showError({ text: t("errNotConnected"), retry: true });
    return;
  }
  if (conv.messages.at(-1)?.role === "assistant") regenerate();
  else generate();
}

async function resendEdited(index, text) {
  if (answer || !text.trim()) return;
  conv.messages = conv.messages.slice(0, index);
  conv.messages.push({ role: "user", content: text.trim() });
  await saveConversation(conv);
  renderAll();
  generate();
}

// ---- context overflow --------------------------------------------------------------------

function showOverflow(error) {
  clearErrors();
  const plan = planTrim(conv.messages, conv.system, error);
  const card = errorCard("overflow-card");
  card.classList.add("overflow");
  const title = document.createElement("strong");
  title.textContent = t("overflowTitle");
  const text = document.createElement("p");
  text.dataset.testid = "overflow-text";
  text.textContent = t("overflowText", {
    ctx: error.context_size ?? "?", prompt: error.prompt_tokens ?? "?", max: error.max_tokens ?? ctx.settings.maxTokens,
  });
  card.append(title, text);
  if (plan.tooLong) {
    const note = document.createElement("p");
    note.dataset.testid = "overflow-too-long";
    note.textContent = t("overflowTooLong");
    card.append(note);
  }
  const actions = document.createElement("div");
  actions.className = "card-actions";
  const lastUser = [...conv.messages].reverse().find((m) => m.role === "user");
  actions.append(button(t("overflowNewChat"), "overflow-new-chat", () => ctx.onNewChat(lastUser?.content || "")));
  if (!plan.tooLong) {
    actions.append(button(t("overflowTrim"), "overflow-trim", async () => {
      conv.messages = applyTrim(conv.messages, plan);
      await saveConversation(conv);
      renderAll();
      generate();
    }, "btn-primary"));
  }
  card.append(actions);
  $("messages").append(card);
  scrollToBottom(true);
}

// ---- rendering ---------------------------------------------------------------------------

export function renderAll() {
  const list = $("messages");
  list.replaceChildren();
  const lastAssistant = conv.messages.findLastIndex((m) => m.role === "assistant");
  conv.messages.forEach((m, i) => list.append(messageEl(m, i, i === lastAssistant && i === conv.messages.length - 1)));
  if (answer && answer.conv === conv) list.append(answer.el);
  else if (conv.messages.at(-1)?.role === "user") showError({ text: t("unanswered"), retry: true, testid: "unanswered" });
  $("empty-state").hidden = conv.messages.length > 0 || Boolean(answer);
  updateComposer();
  scrollToBottom(true);
}

function messageShell(role) {
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  li.dataset.testid = `message-${role}`;
  if (role === "assistant") {
    const body = document.createElement("div");
    body.className = "answer-body markdown";
    body.dataset.testid = "answer-body";
    li.append(body);
  }
  return li;
}

function messageEl(m, index, isLastAnswer) {
  if (m.role === "notice") return noticeEl(m);
  const li = messageShell(m.role);
  li.dataset.index = index;
  const actions = document.createElement("div");
  actions.className = "msg-actions";
  if (m.role === "user") {
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.dataset.testid = "user-text";
    bubble.textContent = m.content; // user text is shown as typed, never parsed as HTML
    const edit = iconButton("edit", t("edit"), "edit-message", () => startEdit(li, index));
    edit.disabled = Boolean(answer);
    actions.append(edit);
    li.append(bubble, actions);
    return li;
  }
  const body = li.querySelector(".answer-body");
  if (m.content) renderMarkdown(body, m.content);
  else body.textContent = m.finish === "cancelled" ? t("emptyCancelled") : "";
  li.append(statsEl(m));
  const copy = iconButton("copy", t("copy"), "copy-answer", () => copyText(m.content, null).then(() => flash(copy)));
  actions.append(copy);
  if (isLastAnswer) {
    const again = iconButton("regenerate", t("regenerate"), "regenerate", regenerate);
    again.disabled = Boolean(answer);
    actions.append(again);
  }
  li.append(actions);
  return li;
}

/** "first token 0.31 s · 34.2 tokens/s · 57 tokens", from the server's done event. */
function statsEl(m) {
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.dataset.testid = "answer-stats";
  const parts = [];
  const timings = m.timings || {};
  if (timings.time_to_first_token_ms != null) parts.push(t("statsTtft", { s: (timings.time_to_first_token_ms / 1000).toFixed(2) }));
  if (timings.tokens_per_second) parts.push(t("statsSpeed", { n: timings.tokens_per_second.toFixed(1) }));
  const count = m.usage?.completion_tokens ?? timings.completion_tokens;
  if (count != null) parts.push(t("statsTokens", { n: count }));
  const notes = { length: t("finishLength"), cancelled: t("finishCancelled"), interrupted: t("finishInterrupted"),
    shutdown: t("finishShutdown") };
  if (notes[m.finish]) {
    const note = document.createElement("span");
    note.className = `finish finish-${m.finish}`;
    note.dataset.testid = `finish-${m.finish}`;
    note.textContent = notes[m.finish];
    stats.append(note);
  }
  if (parts.length) stats.prepend(document.createTextNode(parts.join(" · ") + (notes[m.finish] ? " · " : "")));
  return stats;
}

function noticeEl(m) {
  const li = document.createElement("li");
  li.className = "msg notice";
  li.dataset.testid = "trim-notice";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const turns = m.dropped.filter((d) => d.role === "user").length;
  summary.textContent = t("trimmedNotice", { n: turns });
  const list = document.createElement("ol");
  list.className = "dropped";
  for (const d of m.dropped) {
    const item = document.createElement("li");
    item.dataset.testid = "dropped-message";
    const who = document.createElement("b");
    who.textContent = `${d.role === "user" ? t("trimmedUser") : t("trimmedAssistant")}: `;
    const text = document.createElement("span");
    text.textContent = d.content.length > 200 ? `${d.content.slice(0, 200)}…` : d.content;
    item.append(who, text);
    list.append(item);
  }
  details.open = true;
  details.append(summary, list);
  li.append(details);
  return li;
}

function startEdit(li, index) {
  if (answer) return;
  const original = conv.messages[index].content;
  const area = document.createElement("textarea");
  area.className = "edit-area";
  area.dataset.testid = "edit-input";
  area.setAttribute("aria-label", t("editLabel"));
  area.value = original;
  const row = document.createElement("div");
  row.className = "card-actions";
  row.append(
    button(t("cancel"), "edit-cancel", () => renderAll()),
    button(t("saveAndSend"), "edit-save", () => resendEdited(index, area.value), "btn-primary"),
  );
  li.replaceChildren(area, row);
  li.classList.add("editing");
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") renderAll();
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      resendEdited(index, area.value);
    }
  });
  area.focus();
  autoGrow(area);
}

// ---- errors, composer, helpers -----------------------------------------------------------

function errorCard(testid) {
  const li = document.createElement("li");
  li.className = "msg error-card";
  li.dataset.testid = testid;
  li.setAttribute("role", "alert");
  return li;
}

function showError({ text, retry: canRetry = false, testid = "chat-error" }) {
  if (!conv) return;
  clearErrors();
  const card = errorCard(testid);
  const p = document.createElement("p");
  p.textContent = text;
  card.append(p);
  if (canRetry) {
    const actions = document.createElement("div");
    actions.className = "card-actions";
    actions.append(button(t("retry"), "retry", retry, "btn-primary"));
    card.append(actions);
  }
  $("messages").append(card);
  scrollToBottom(true);
}

function clearErrors() {
  for (const card of document.querySelectorAll("#messages > .error-card")) card.remove();
}

function button(label, testid, onClick, extra = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `btn ${extra}`.trim();
  b.dataset.testid = testid;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function updateComposer() {
  const generating = Boolean(answer);
  $("send-button").hidden = generating;
  $("send-button").disabled = !ctx.socket.connected;
  const stopButton = $("stop-button");
  stopButton.hidden = !generating;
  stopButton.disabled = Boolean(answer?.stopping);
  stopButton.setAttribute("aria-label", answer?.stopping ? t("stopping") : t("stop"));
  stopButton.title = stopButton.getAttribute("aria-label");
  for (const b of document.querySelectorAll('#messages [data-testid="edit-message"], #messages [data-testid="regenerate"]')) {
    b.disabled = generating;
  }
}

function flash(target) {
  target.replaceChildren(icon("copy"));
  target.classList.add("flash");
  target.title = t("copied");
  setTimeout(() => {
    target.classList.remove("flash");
    target.title = t("copy");
  }, 1200);
}

function autoGrow(area) {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight, 240)}px`;
}

function nearBottom() {
  const chat = $("chat");
  return chat.scrollHeight - chat.scrollTop - chat.clientHeight < 80;
}

function scrollToBottom(force = false) {
  const chat = $("chat");
  if (force || nearBottom()) chat.scrollTop = chat.scrollHeight;
}
