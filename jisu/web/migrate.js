// Moving the chats this browser kept before it talked to a server (IndexedDB, as browser mode
// still does) to the server, so they join the one history every browser and the CLI see.
// Offered once, in a banner; the answer is remembered in this browser, yes or no.
//
// The chats go as jisu's own JSON export (history-local.js writes it), each with a source key
// made from its id in this browser: the server skips a source key it already has, so a move
// that is repeated, or broken off and started again, never makes a chat twice. Only once every
// chat is on the server are the browser's copies removed.

import { localConversations, localHistory } from "./history-local.js";
import { serverHistory } from "./history-server.js";
import { t } from "./i18n.js";
import { listConversations } from "./store.js";

const byId = (id) => document.getElementById(id);
const DECISION_KEY = "jisu.migration"; // "done" | "declined": asked once
// Chats per import request are capped by size: a long history goes in several requests, each
// well under the server's import limit (32 MB by default), and each one all or nothing.
const BATCH_CHARS = 4 * 1024 * 1024;

let page; // { onMoved() -> Promise: the list read again }
let state = { phase: "hidden" }; // offer {count} | moving {count} | failed {count, message} | done {count}

export function initMigration(context) {
  page = context;
  byId("migrate-accept").addEventListener("click", move);
  byId("migrate-decline").addEventListener("click", () => {
    localStorage.setItem(DECISION_KEY, "declined");
    show({ phase: "hidden" });
  });
  byId("migrate-close").addEventListener("click", () => show({ phase: "hidden" }));
}

/** The server's history is in use: offer to move the browser's chats there, unless asked before
 * or there are none (chats made later in browser mode are offered then). */
export async function offerMigration() {
  if (localStorage.getItem(DECISION_KEY) || state.phase !== "hidden") return;
  let count;
  try {
    count = (await listConversations()).length;
  } catch {
    return; // no IndexedDB here (a private window may refuse it): nothing kept, nothing to move
  }
  if (count && state.phase === "hidden") show({ phase: "offer", count });
}

async function move() {
  show({ phase: "moving", count: state.count });
  let outcome;
  try {
    const conversations = await localConversations();
    for (const batch of batches(conversations)) {
      const document = { format: "jisu.conversations", version: 1, exported_at: Date.now() / 1000, conversations: batch };
      await serverHistory.importFile(new Blob([JSON.stringify(document)], { type: "application/json" }));
    }
    localStorage.setItem(DECISION_KEY, "done");
    for (const conversation of conversations) await localHistory.remove(conversation.id);
    outcome = { phase: "done", count: conversations.length };
  } catch (error) {
    outcome = { phase: "failed", count: state.count, message: error.message };
  }
  await page.onMoved(); // the banner says what was moved once the list shows it
  show(outcome);
}

function batches(conversations) {
  const groups = [[]];
  let size = 0;
  for (const conversation of conversations) {
    const chars = JSON.stringify(conversation).length;
    if (size + chars > BATCH_CHARS && groups.at(-1).length) {
      groups.push([]);
      size = 0;
    }
    groups.at(-1).push(conversation);
    size += chars;
  }
  return groups;
}

function show(next) {
  state = next;
  drawMigration();
}

/** Draw the banner as the move stands (also after a language switch). */
export function drawMigration() {
  const banner = byId("migrate-banner");
  banner.hidden = state.phase === "hidden";
  banner.dataset.phase = state.phase;
  const texts = { offer: "migrateOffer", moving: "migrateMoving", failed: "migrateFailed", done: "migrateDone" };
  if (texts[state.phase]) byId("migrate-text").textContent = t(texts[state.phase], { n: state.count, message: state.message });
  const asking = state.phase === "offer" || state.phase === "failed";
  byId("migrate-accept").hidden = byId("migrate-decline").hidden = !asking && state.phase !== "moving";
  byId("migrate-accept").disabled = byId("migrate-decline").disabled = state.phase === "moving";
  byId("migrate-close").hidden = state.phase !== "done";
}
