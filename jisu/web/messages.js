// The message view: the conversation on screen as a list (user bubbles, rendered answers with
// their stats line, trim notices), "‹ 2/3 ›" on a message with other versions (branches),
// editing a sent message, the error and overflow cards, and the composer's send/stop state.
// It keeps no conversation state of its own: chat.js and answer.js say what to show, and the
// user's actions go back through initMessages' handlers.

import { attachmentChip } from "./attachments.js";
import { t } from "./i18n.js";
import { icon, iconButton } from "./icons.js";
import { copyText, renderMarkdown } from "./render.js";

const byId = (id) => document.getElementById(id);

let actions; // { regenerate(), retry(), resend(index, text), switchBranch(message, step), rerender() }
// How an answer that did not end by itself ended: it is marked as cut short.
const CUT_SHORT = new Set(["cancelled", "interrupted", "shutdown", "cut_short"]);

export function initMessages(handlers) {
  actions = handlers;
}

/**
 * Show `conversation`. `answer` is the one being generated, if any (it may belong to another
 * conversation): while it runs nothing can be edited, regenerated or switched. `hitId` is a
 * message a search found: it is marked and scrolled to, instead of the end.
 */
export function renderMessages(conversation, answer, connected, hitId = null) {
  const list = byId("messages");
  list.replaceChildren();
  const { messages } = conversation;
  if (conversation.trimmed) list.append(noticeElement(conversation.trimmed)); // what this branch left out
  const lastAssistant = messages.findLastIndex((message) => message.role === "assistant");
  messages.forEach((message, index) => {
    const isLastAnswer = index === lastAssistant && index === messages.length - 1;
    const element = messageElement(message, index, isLastAnswer, Boolean(answer));
    if (hitId && message.id === hitId) element.dataset.hit = "true";
    list.append(element);
  });
  if (answer && answer.conversation === conversation) list.append(answer.element);
  else if (messages.at(-1)?.role === "user") showError({ text: t("unanswered"), retry: true, testid: "unanswered" });
  byId("empty-state").hidden = messages.length > 0 || Boolean(answer);
  updateComposer(answer, connected);
  const found = list.querySelector("[data-hit]");
  if (found) found.scrollIntoView({ block: "center" });
  else scrollToBottom(true);
}

/** The assistant message an answer streams into, appended to the list; its status says "thinking". */
export function appendPendingAnswer() {
  const element = messageShell("assistant");
  element.classList.add("pending");
  element.setAttribute("aria-busy", "true");
  const body = element.querySelector(".answer-body");
  const status = document.createElement("div");
  status.className = "answer-status";
  status.dataset.testid = "answer-status";
  status.setAttribute("role", "status");
  status.innerHTML = '<span class="dots"><i></i><i></i><i></i></span>';
  status.append(document.createTextNode(t("thinking")));
  body.after(status);
  byId("messages").append(element);
  byId("empty-state").hidden = true;
  scrollToBottom(true);
  return { element, body, status };
}

/** The line above a pending answer: its place in the queue, or how much of the prompt is read. */
export function showAnswerStatus(status, text, fraction) {
  status.replaceChildren(document.createTextNode(text));
  if (fraction !== undefined) {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = fraction;
    bar.dataset.testid = "prompt-progress";
    bar.setAttribute("aria-label", text);
    status.append(bar);
  }
}

/** Re-render a streaming answer; the view follows it down only if the reader was at the bottom. */
export function paintStreaming(body, text) {
  const stick = nearBottom();
  renderMarkdown(body, text, { final: false });
  if (stick) scrollToBottom();
}

function messageShell(role) {
  const item = document.createElement("li");
  item.className = `msg ${role}`;
  item.dataset.testid = `message-${role}`;
  if (role === "assistant") {
    const body = document.createElement("div");
    body.className = "answer-body markdown";
    body.dataset.testid = "answer-body";
    item.append(body);
  }
  return item;
}

function messageElement(message, index, isLastAnswer, generating) {
  if (message.role === "notice") return noticeElement(message);
  // A system or tool message (in a ChatGPT import) reads like an answer.
  const item = messageShell(message.role === "user" ? "user" : "assistant");
  item.dataset.index = index;
  const buttons = document.createElement("div");
  buttons.className = "msg-actions";
  if (message.siblings?.count > 1) buttons.append(branchSwitcher(message, generating));
  if (message.role === "user") {
    // Its files as chips, not their text: the model reads them, the reader sees what they were.
    if (message.attachments?.length) item.append(filesElement(message.attachments));
    if (message.content) {
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.dataset.testid = "user-text";
      bubble.textContent = message.content; // user text is shown as typed, never parsed as HTML
      item.append(bubble);
    }
    const edit = iconButton("edit", t("edit"), "edit-message", () => startEdit(item, index, message));
    edit.disabled = generating;
    buttons.append(edit);
    item.append(buttons);
    return item;
  }
  const body = item.querySelector(".answer-body");
  if (CUT_SHORT.has(message.finish)) item.dataset.cutShort = "true";
  if (message.content) renderMarkdown(body, message.content);
  else body.textContent = message.finish === "cancelled" ? t("emptyCancelled") : "";
  item.append(statsElement(message));
  const copy = iconButton("copy", t("copy"), "copy-answer", () => copyText(message.content, null).then(() => flash(copy)));
  buttons.append(copy);
  if (isLastAnswer) {
    const again = iconButton("regenerate", t("regenerate"), "regenerate", () => actions.regenerate());
    again.disabled = generating;
    buttons.append(again);
  }
  item.append(buttons);
  return item;
}

/** "‹ 2/3 ›": the message is the 2nd of 3 versions (an edit, an answer given again); the
 * arrows show the others, each with the turns that followed it. */
function branchSwitcher(message, generating) {
  const { index, count } = message.siblings;
  const arrow = (glyph, label, testid, step, edge) => {
    const arrowButton = button(glyph, testid, () => actions.switchBranch(message, step), "branch-btn");
    arrowButton.setAttribute("aria-label", label);
    arrowButton.title = label;
    arrowButton.dataset.edge = String(edge); // stays disabled when an answer ends (updateComposer)
    arrowButton.disabled = generating || edge;
    return arrowButton;
  };
  const switcher = document.createElement("span");
  switcher.className = "branches";
  switcher.dataset.testid = "branch-switcher";
  const position = document.createElement("span");
  position.dataset.testid = "branch-position";
  position.textContent = `${index + 1}/${count}`;
  position.setAttribute("aria-label", t("branchPosition", { n: index + 1, count }));
  switcher.append(arrow("‹", t("branchPrev"), "branch-prev", -1, index === 0), position,
    arrow("›", t("branchNext"), "branch-next", 1, index === count - 1));
  return switcher;
}

/** "first token 0.31 s · 34.2 tokens/s · 57 tokens", from the server's done event or, for an
 * answer read back, the stats the server stored with it. */
function statsElement(message) {
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.dataset.testid = "answer-stats";
  const parts = [];
  const timings = message.timings || {};
  if (timings.time_to_first_token_ms != null) parts.push(t("statsTtft", { s: (timings.time_to_first_token_ms / 1000).toFixed(2) }));
  if (timings.tokens_per_second) parts.push(t("statsSpeed", { n: timings.tokens_per_second.toFixed(1) }));
  const count = message.usage?.completion_tokens ?? timings.completion_tokens;
  if (count != null) parts.push(t("statsTokens", { n: count }));
  const notes = { length: t("finishLength"), cancelled: t("finishCancelled"), interrupted: t("finishInterrupted"),
    shutdown: t("finishShutdown"), cut_short: t("finishCutShort"), streaming: t("finishStreaming") };
  if (notes[message.finish]) {
    const note = document.createElement("span");
    note.className = `finish finish-${message.finish}`;
    note.dataset.testid = `finish-${message.finish}`;
    note.textContent = notes[message.finish];
    stats.append(note);
  }
  if (parts.length) stats.prepend(document.createTextNode(parts.join(" · ") + (notes[message.finish] ? " · " : "")));
  return stats;
}

/** What trimming dropped from the conversation, listed where it used to be. */
function noticeElement(notice) {
  const item = document.createElement("li");
  item.className = "msg notice";
  item.dataset.testid = "trim-notice";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const turns = notice.dropped.filter((dropped) => dropped.role === "user").length;
  summary.textContent = t("trimmedNotice", { n: turns });
  const list = document.createElement("ol");
  list.className = "dropped";
  for (const dropped of notice.dropped) {
    const entry = document.createElement("li");
    entry.dataset.testid = "dropped-message";
    const who = document.createElement("b");
    who.textContent = `${dropped.role === "user" ? t("trimmedUser") : t("trimmedAssistant")}: `;
    const text = document.createElement("span");
    text.textContent = dropped.content.length > 200 ? `${dropped.content.slice(0, 200)}…` : dropped.content;
    entry.append(who, text);
    list.append(entry);
  }
  details.open = true;
  details.append(summary, list);
  item.append(details);
  return item;
}

function filesElement(attachments) {
  const files = document.createElement("div");
  files.className = "msg-files";
  files.append(...attachments.map((file) => attachmentChip(file)));
  return files;
}

/** Replace a user message by an editor; saving resends from there (with the message's files),
 * later turns are dropped. */
function startEdit(item, index, message) {
  const area = document.createElement("textarea");
  area.className = "edit-area";
  area.dataset.testid = "edit-input";
  area.setAttribute("aria-label", t("editLabel"));
  area.value = message.content;
  const row = document.createElement("div");
  row.className = "card-actions";
  row.append(
    button(t("cancel"), "edit-cancel", () => actions.rerender()),
    button(t("saveAndSend"), "edit-save", () => actions.resend(index, area.value), "btn-primary"),
  );
  item.replaceChildren(area, row);
  if (message.attachments?.length) item.prepend(filesElement(message.attachments));
  item.classList.add("editing");
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") actions.rerender();
    if (isSendKey(event)) {
      event.preventDefault();
      actions.resend(index, area.value);
    }
  });
  area.focus();
  autoGrow(area);
}

/** Enter without Shift sends; Enter that confirms a Chinese IME candidate (isComposing) must not. */
export function isSendKey(event) {
  return event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229;
}

// ---- error and overflow cards ------------------------------------------------------------

function errorCard(testid) {
  const item = document.createElement("li");
  item.className = "msg error-card";
  item.dataset.testid = testid;
  item.setAttribute("role", "alert");
  return item;
}

/** An error at the end of the list (replacing any earlier one), with a retry button if asked. */
export function showError({ text, retry = false, testid = "chat-error" }) {
  clearErrors();
  const card = errorCard(testid);
  const paragraph = document.createElement("p");
  paragraph.textContent = text;
  card.append(paragraph);
  if (retry) {
    const row = document.createElement("div");
    row.className = "card-actions";
    row.append(button(t("retry"), "retry", () => actions.retry(), "btn-primary"));
    card.append(row);
  }
  byId("messages").append(card);
  scrollToBottom(true);
}

export function clearErrors() {
  for (const card of document.querySelectorAll("#messages > .error-card")) card.remove();
}

/**
 * The conversation outgrew the model's context (`error` is the server's
 * context_length_exceeded): offer a new chat, and trimming the oldest turns unless `tooLong`.
 */
export function showOverflow(error, { maxTokens, tooLong, onNewChat, onTrim }) {
  clearErrors();
  const card = errorCard("overflow-card");
  card.classList.add("overflow");
  const title = document.createElement("strong");
  title.textContent = t("overflowTitle");
  const text = document.createElement("p");
  text.dataset.testid = "overflow-text";
  text.textContent = t("overflowText", {
    ctx: error.context_size ?? "?", prompt: error.prompt_tokens ?? "?", max: error.max_tokens ?? maxTokens,
  });
  card.append(title, text);
  if (tooLong) {
    const note = document.createElement("p");
    note.dataset.testid = "overflow-too-long";
    note.textContent = t("overflowTooLong");
    card.append(note);
  }
  const row = document.createElement("div");
  row.className = "card-actions";
  row.append(button(t("overflowNewChat"), "overflow-new-chat", onNewChat));
  if (!tooLong) row.append(button(t("overflowTrim"), "overflow-trim", onTrim, "btn-primary"));
  card.append(row);
  byId("messages").append(card);
  scrollToBottom(true);
}

function button(label, testid, onClick, extra = "") {
  const element = document.createElement("button");
  element.type = "button";
  element.className = `btn ${extra}`.trim();
  element.dataset.testid = testid;
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

// ---- composer and scrolling ----------------------------------------------------------------

/** Send or stop (disabled once stopping); nothing can be edited or regenerated while generating. */
export function updateComposer(answer, connected) {
  const generating = Boolean(answer);
  byId("send-button").hidden = generating;
  byId("send-button").disabled = !connected;
  const stopButton = byId("stop-button");
  stopButton.hidden = !generating;
  stopButton.disabled = Boolean(answer?.stopping);
  stopButton.setAttribute("aria-label", answer?.stopping ? t("stopping") : t("stop"));
  stopButton.title = stopButton.getAttribute("aria-label");
  for (const locked of document.querySelectorAll('#messages [data-testid="edit-message"], #messages [data-testid="regenerate"]')) {
    locked.disabled = generating;
  }
  for (const arrow of document.querySelectorAll("#messages .branch-btn")) {
    arrow.disabled = generating || arrow.dataset.edge === "true";
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

export function autoGrow(area) {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight, 240)}px`;
}

function nearBottom() {
  const chat = byId("chat");
  return chat.scrollHeight - chat.scrollTop - chat.clientHeight < 80;
}

function scrollToBottom(force = false) {
  const chat = byId("chat");
  if (force || nearBottom()) chat.scrollTop = chat.scrollHeight;
}
