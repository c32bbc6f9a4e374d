// One answer's life cycle: the request goes to the backend (the server's socket, or the model
// in this page), the events come back (stored, queued, progress, token, done, error, or the
// socket's own "disconnected"), and the answer ends in one of three ways: finished (a message
// with its stats is added to the conversation, partial text included), dropped (nothing was
// said: the pending message goes), or failed (an error card, after keeping any text as an
// interrupted answer). Either way its turn's end goes to the history (hooks.ended) before
// anything else is said, so an error card is never drawn over by what it keeps.
//
// At most one answer runs at a time. It is bound to the conversation it answers, so switching
// chats mid-answer stops it and its text still lands in the right conversation. A stopped
// answer ends like any other: the server confirms the cancel with "done" (finish_reason
// "cancelled"), or the connection drops.

import { t } from "./i18n.js";
import { appendPendingAnswer, clearErrors, paintStreaming, showAnswerStatus, showError, updateComposer } from "./messages.js";

// { backend, isOnScreen(conversation), render(), stored(turn, ids), ended(conversation, turn, message | null),
//   onOverflow(error) }
let hooks;
let current = null; // { conversation, turn, element, body, status, text, stopping, paintFrame }

export function initAnswers(context) {
  hooks = context;
}

export function currentAnswer() {
  return current;
}

/** Start answering `conversation` with `request` (the chat message's fields); `turn` is what
 * the history needs to keep it (chat.js). */
export function startAnswer(conversation, request, turn) {
  clearErrors();
  const answer = { conversation, turn, ...appendPendingAnswer(), text: "", stopping: false, paintFrame: 0 };
  current = answer;
  refreshComposer();
  const sent = hooks.backend.ask(request, (event) => onEvent(answer, event));
  if (!sent) {
    current = null;
    answer.element.remove();
    refreshComposer();
    showError({ text: hooks.backend.notReadyText, retry: true });
  }
}

/** Ask the server to stop the answer; it ends when the server's "done" says so. */
export function stopAnswer() {
  const answer = current;
  if (!answer || answer.stopping) return;
  answer.stopping = true;
  hooks.backend.cancel();
  refreshComposer();
}

/** Send or stop, for the answer now running (if any) and the connection. */
export function refreshComposer() {
  updateComposer(current, hooks.backend.connected);
}

function onEvent(answer, event) {
  switch (event.type) {
    case "stored": // where the server keeps the turn, before anything else
      hooks.stored(answer.turn, event);
      break;
    case "queued":
      showAnswerStatus(answer.status, t("queued", { n: event.position }));
      break;
    case "progress":
      showAnswerStatus(answer.status, t("reading", { processed: event.processed, total: event.total }),
        event.processed / event.total);
      break;
    case "token":
      answer.text += event.text;
      if (answer.status.isConnected) answer.status.remove();
      if (!answer.paintFrame) answer.paintFrame = requestAnimationFrame(() => paint(answer)); // one render per frame
      break;
    case "done":
      finish(answer, { finish: event.finish_reason, usage: event.usage, timings: event.timings });
      break;
    case "error":
      fail(answer, event.error || {});
      break;
    case "disconnected":
      cutOff(answer).then(() => showError({ text: t("errDisconnected"), retry: true }));
      break;
  }
}

function paint(answer) {
  answer.paintFrame = 0;
  if (current === answer) paintStreaming(answer.body, answer.text);
}

/** The answer becomes a message of its conversation, stored with the server's stats. */
async function finish(answer, meta) {
  if (current === answer) current = null;
  cancelAnimationFrame(answer.paintFrame);
  const message = { role: "assistant", content: answer.text, finish: meta.finish };
  if (meta.usage) message.usage = meta.usage;
  if (meta.timings) message.timings = meta.timings;
  answer.conversation.messages.push(message);
  hooks.render(); // the chat on screen, whichever it is: its composer and welcome were waiting for this
  await hooks.ended(answer.conversation, answer.turn, message);
}

/** Nothing was said: the pending message goes and the conversation is as before. */
async function drop(answer) {
  if (current === answer) current = null;
  cancelAnimationFrame(answer.paintFrame);
  answer.element.remove();
  refreshComposer();
  await hooks.ended(answer.conversation, answer.turn, null);
}

/** The answer ended before its time: any text already shown is kept as an interrupted answer. */
function cutOff(answer) {
  return answer.text ? finish(answer, { finish: "interrupted" }) : drop(answer);
}

async function fail(answer, error) {
  await cutOff(answer);
  if (!hooks.isOnScreen(answer.conversation)) return;
  if (error.code === "context_length_exceeded") hooks.onOverflow(error);
  else if (error.code === "server_busy") showError({ text: t("errBusy"), retry: true, testid: "busy-error" });
  else showError({ text: t("errGeneric", { message: error.message || error.code || "?" }), retry: true });
}
