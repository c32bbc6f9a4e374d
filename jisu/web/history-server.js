// The chats a jisu server keeps for the page's user (/v1/conversations; its shapes are in
// jisu/server/conversation_protocol.py). The server is the one place they are written: a turn
// is a chat on the socket with `conversation_id` (and `parent_message_id` to branch), the
// server puts the stored history in front of the new message, keeps the question and records
// the answer as it streams, so an answer the page never saw end (a reload, a closed tab) is
// still there, cut short. The page reads the conversation again after each turn it saw stored
// and shows that. history.js describes the calls.

import { authHeaders } from "./access.js";
import { contentForModel, splitAttachments } from "./attachments.js";
import { presetOf } from "./presets.js";

const BASE = "/v1/conversations";
const PAGE = 100; // conversations per request: the most the server gives at once

export const serverHistory = {
  kind: "server",
  canImport: true,

  async list(query = "", offset = 0) {
    const params = new URLSearchParams({ limit: PAGE, offset });
    if (query.trim()) params.set("q", query.trim());
    const page = await call(`?${params}`);
    const items = page.data.map((item) => ({
      id: item.id, title: item.title, updatedAt: item.updated_at * 1000,
      match: item.match && { messageId: item.match.message_id, snippet: item.match.snippet },
    }));
    return { items, hasMore: page.has_more };
  },

  async open(id) {
    return conversationOf(await call(path(id)));
  },

  async create(conversation) {
    const created = await call("", { method: "POST", json: { title: conversation.title, system: systemOf(conversation) } });
    Object.assign(conversation, { id: created.id, createdAt: created.created_at * 1000, stored: true });
  },

  async update(conversation) {
    if (!conversation.stored) return; // kept with its first message (create)
    await call(path(conversation.id), { method: "PATCH", json: { title: conversation.title, system: systemOf(conversation) } });
  },

  async rename(id, title) {
    await call(path(id), { method: "PATCH", json: { title } });
  },

  async remove(id) {
    await call(path(id), { method: "DELETE" });
  },

  async switchBranch(conversation, id) {
    show(conversation, await call(`${path(conversation.id)}/switch`, { method: "POST", json: { message_id: id } }));
  },

  async beginTurn(conversation, { parentId, user }) {
    // The server keeps what the model reads: a message's files go in its text, and come back
    // out as chips when it is read again (splitAttachments).
    const request = { conversation_id: conversation.id, messages: user ? [{ role: "user", content: contentForModel(user) }] : [] };
    if (parentId !== undefined) request.parent_message_id = parentId; // left out: the end of the active branch
    return request;
  },

  async endTurn(conversation, turn) {
    if (!turn.stored || conversation.deleted) return; // refused before it was stored: nothing changed there
    try {
      show(conversation, await call(path(conversation.id)));
    } catch {
      // The server went away with the answer: what the page saw stays on show.
    }
  },

  async addBranch(conversation, messages) {
    let parentId = null; // the first copy starts a branch of its own
    for (const message of messages) {
      const content = message.role === "user" ? contentForModel(message) : message.content;
      parentId = (await call(`${path(conversation.id)}/messages`, {
        method: "POST", json: { role: message.role, content, parent_id: parentId },
      })).id;
    }
    conversation.messages = [];
    if (parentId) show(conversation, await call(path(conversation.id)));
    return parentId;
  },

  async exportAll() {
    return { filename: "jisu-conversations.json", blob: await call("/export", { as: "blob" }) };
  },

  async exportOne(id, format) {
    return { filename: `${id}.${format}`, blob: await call(`${path(id)}/export?format=${format}`, { as: "blob" }) };
  },

  /** A jisu export or ChatGPT's conversations.json, sent as it is: the server reads it, all or
   * nothing, and skips conversations it already has. */
  async importFile(file) {
    const result = await call("/import", { method: "POST", body: file });
    return { imported: result.imported.length, skipped: result.skipped };
  },
};

const path = (id) => `/${encodeURIComponent(id)}`;

/** The server's answer as JSON (or a Blob); an error carries the server's one-line message. */
async function call(where, { method = "GET", json, body, as = "json" } = {}) {
  const init = { method, cache: "no-store", headers: authHeaders() };
  if (json !== undefined || body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = body ?? JSON.stringify(json);
  }
  const response = await fetch(BASE + where, init);
  if (!response.ok) {
    const failed = await response.json().catch(() => ({}));
    const error = new Error(failed.error?.message || `HTTP ${response.status}`);
    error.code = failed.error?.code;
    throw error;
  }
  return as === "blob" ? response.blob() : response.json();
}

/** An empty prompt is the model's own default: the server's null, not an empty system message. */
function systemOf(conversation) {
  return conversation.system?.trim() ? conversation.system : null;
}

function show(conversation, data) {
  Object.assign(conversation, conversationOf(data));
}

function conversationOf(data) {
  const system = data.system ?? "";
  return {
    id: data.id, title: data.title, createdAt: data.created_at * 1000, updatedAt: data.updated_at * 1000,
    system, role: presetOf(system) || "custom", stored: true, messages: data.messages.map(messageOf),
  };
}

/** A stored message as the page shows one: a question's files as chips, an answer's stats as
 * the socket's "done" gives them for a live answer. */
function messageOf(stored) {
  const message = {
    id: stored.id, parentId: stored.parent_id, role: stored.role, content: stored.content, state: stored.state,
    siblings: stored.siblings,
  };
  if (stored.role === "user") return Object.assign(message, splitAttachments(stored.content));
  if (stored.role !== "assistant") return message;
  message.finish = finishOf(stored);
  if (stored.prompt_tokens != null) {
    message.usage = { prompt_tokens: stored.prompt_tokens, completion_tokens: stored.completion_tokens ?? 0 };
  }
  message.timings = {
    time_to_first_token_ms: stored.time_to_first_token_s != null ? stored.time_to_first_token_s * 1000 : null,
    tokens_per_second: stored.tokens_per_s, completion_tokens: stored.completion_tokens,
  };
  return message;
}

/** How an answer ended, in the words of the page's notes (messages.js): one still being
 * written says so, one cut short says why when the server knows ("cancelled": the stop button
 * or a page that left; "shutdown"), else just that it was. */
function finishOf(stored) {
  if (stored.state === "streaming") return "streaming";
  if (stored.state === "cut_short") {
    return ["cancelled", "shutdown"].includes(stored.finish_reason) ? stored.finish_reason : "cut_short";
  }
  return stored.finish_reason || "stop";
}
