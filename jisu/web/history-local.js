// The chats browser mode keeps: in this browser's IndexedDB (store.js), each one a tree of
// messages (branches.js). The model in the page knows nothing of earlier turns, so a turn
// sends the whole branch; the question is kept before it is answered, the answer after.
// history.js describes the calls; this module also writes a record in jisu's own JSON format,
// for an export and for moving the chats to a server (migrate.js).

import { contentForModel, forModel } from "./attachments.js";
import { branchTo, latestLeafUnder, siblingsOf, treeOf } from "./branches.js";
import { deleteConversation, getConversation, listConversations, newId, putConversation } from "./store.js";

// Where a chat kept by this browser came from, in jisu's format: the same key however often
// it is sent, so the server skips a chat it already has and a repeated or interrupted move to
// the server never duplicates one.
const SOURCE_PREFIX = "jisu-web:";
const CUT_SHORT = ["cancelled", "interrupted", "shutdown"]; // how the page marks an answer that did not end by itself
const SNIPPET_LEAD = 40; // characters before the first match, as the server's snippets
const SNIPPET_LENGTH = 160;

const trees = new WeakMap(); // conversation -> {nodes, activeLeafId}: every branch, beside the one on show

export const localHistory = {
  kind: "local",
  canImport: false, // reading ChatGPT's files is the server's (jisu/history/chatgpt.py)

  async list(query = "") {
    const words = wordsOf(query);
    const items = [];
    for (const record of await listConversations()) {
      const match = words.length ? matchIn(record, words) : null;
      if (match || !words.length) items.push({ id: record.id, title: record.title, updatedAt: record.updatedAt, match });
    }
    return { items, hasMore: false };
  },

  async open(id) {
    const record = await getConversation(id);
    if (!record) throw new Error(`no conversation ${id}`);
    return conversationOf(record);
  },

  async create(conversation) {
    trees.set(conversation, { nodes: [], activeLeafId: null });
    conversation.stored = true; // written with its first message (beginTurn)
  },

  async update(conversation) {
    if (conversation.stored) await save(conversation);
  },

  async rename(id, title) {
    const record = await getConversation(id);
    if (!record) return;
    record.title = title;
    record.updatedAt = Date.now();
    await putConversation(record);
  },

  remove: (id) => deleteConversation(id),

  async switchBranch(conversation, id) {
    const tree = trees.get(conversation);
    tree.activeLeafId = latestLeafUnder(tree.nodes, id);
    show(conversation);
    await save(conversation);
  },

  async beginTurn(conversation, { parentId, user }) {
    const tree = trees.get(conversation);
    let upTo = parentId;
    if (user) {
      const node = nodeOf(user, parentId === undefined ? tree.activeLeafId : parentId);
      tree.nodes.push(node);
      tree.activeLeafId = upTo = user.id = node.id;
      show(conversation); // an edit shows at once as the newest of its siblings
    }
    await save(conversation);
    return { messages: requestMessages(conversation, branchTo(tree.nodes, upTo)) };
  },

  async endTurn(conversation, turn, answer) {
    const tree = trees.get(conversation);
    if (!answer || !tree || conversation.deleted) return; // nothing said: the question stays unanswered
    const node = nodeOf(answer, turn.user ? turn.user.id : turn.parentId);
    tree.nodes.push(node);
    tree.activeLeafId = node.id;
    show(conversation);
    await save(conversation);
  },

  async addBranch(conversation, messages) {
    const tree = trees.get(conversation);
    let parentId = null;
    for (const message of messages) {
      const node = nodeOf(message, parentId);
      tree.nodes.push(node);
      parentId = node.id;
    }
    if (parentId) tree.activeLeafId = parentId;
    conversation.messages = [];
    if (parentId) show(conversation);
    await save(conversation);
    return parentId;
  },

  async exportAll() {
    const records = await listConversations();
    const document = { format: "jisu.conversations", version: 1, exported_at: Date.now() / 1000,
      conversations: records.map(jisuConversation) };
    return { filename: "jisu-conversations.json", blob: jsonBlob(document) };
  },

  async exportOne(id, format) {
    const record = await getConversation(id);
    if (format === "md") return { filename: `${id}.md`, blob: new Blob([markdownOf(record)], { type: "text/markdown" }) };
    return { filename: `${id}.json`, blob: jsonBlob(jisuConversation(record)) };
  },
};

/** Every chat this browser keeps, in jisu's JSON format: what the server imports. */
export async function localConversations() {
  return (await listConversations()).map(jisuConversation);
}

function conversationOf(record) {
  const conversation = {
    id: record.id, title: record.title || "", createdAt: record.createdAt, updatedAt: record.updatedAt,
    role: record.role || "custom", system: record.system || "", stored: true, messages: [],
  };
  trees.set(conversation, treeOf(record));
  show(conversation);
  return conversation;
}

/** The active branch on show, each message with its siblings. */
function show(conversation) {
  const { nodes, activeLeafId } = trees.get(conversation);
  conversation.messages = branchTo(nodes, activeLeafId).map((node) => ({ ...node, siblings: siblingsOf(nodes, node) }));
}

async function save(conversation) {
  const { nodes, activeLeafId } = trees.get(conversation);
  conversation.updatedAt = Date.now();
  const { id, title, createdAt, updatedAt, role, system } = conversation;
  await putConversation({ id, title, createdAt, updatedAt, role, system, activeLeafId, messages: nodes });
}

/** What is kept of a message shown (not where it shows: siblings, state). */
function nodeOf(message, parentId) {
  const node = { id: newId(), parentId, role: message.role, content: message.content || "" };
  for (const name of ["attachments", "finish", "usage", "timings"]) {
    if (message[name] !== undefined) node[name] = message[name];
  }
  return node;
}

/** The request's messages: the system prompt and the branch's turns with text, files joined in. */
function requestMessages(conversation, branch) {
  const messages = [];
  if (conversation.system?.trim()) messages.push({ role: "system", content: conversation.system });
  for (const message of forModel(branch)) {
    if ((message.role === "user" || message.role === "assistant") && message.content) {
      messages.push({ role: message.role, content: message.content });
    }
  }
  return messages;
}

// ---- search ------------------------------------------------------------------------------

function wordsOf(query) {
  return [...new Set(query.toLowerCase().split(/\s+/).filter(Boolean))];
}

function textOf(node) {
  return node.role === "user" ? contentForModel(node) : node.content || "";
}

const holdsAll = (text, words) => words.every((word) => text.toLowerCase().includes(word));

/** Where a record holds every word, as the server says it: the latest message that does (on
 * any branch), else the title. */
function matchIn(record, words) {
  const hit = treeOf(record).nodes.findLast((node) => holdsAll(textOf(node), words));
  if (hit) return { messageId: hit.id, snippet: snippet(textOf(hit), words) };
  return holdsAll(record.title || "", words) ? { messageId: null, snippet: record.title } : null;
}

function snippet(text, words) {
  const lower = text.toLowerCase();
  const first = Math.min(...words.map((word) => lower.indexOf(word)).filter((at) => at >= 0));
  const start = Math.max(0, first - SNIPPET_LEAD);
  const end = start + SNIPPET_LENGTH;
  const piece = text.slice(start, end).replace(/\s+/g, " ").trim();
  return (start > 0 ? "…" : "") + piece + (end < text.length ? "…" : "");
}

// ---- jisu's JSON format (jisu/history/formats.py) --------------------------------------------

function jsonBlob(document) {
  return new Blob([JSON.stringify(document, null, 1)], { type: "application/json" });
}

/** One record as {"format": "jisu.conversation", ...}: every branch, files joined into their
 * messages as the model read them. Trim notices are the page's own and are left out (their
 * children hang from the notice's parent). */
function jisuConversation(record) {
  const { nodes, activeLeafId } = treeOf(record);
  const time = (record.createdAt ?? Date.now()) / 1000;
  const skipped = new Map(); // a notice's id -> the parent its children get
  const messages = [];
  for (const node of nodes) {
    const parentId = skipped.has(node.parentId) ? skipped.get(node.parentId) : node.parentId;
    if (node.role !== "user" && node.role !== "assistant") {
      skipped.set(node.id, parentId);
      continue;
    }
    const usage = node.usage || {};
    const timings = node.timings || {};
    messages.push({
      id: node.id, parent_id: parentId, role: node.role, content: textOf(node), created_at: time,
      state: CUT_SHORT.includes(node.finish) ? "cut_short" : "complete", finish_reason: node.finish ?? null,
      prompt_tokens: usage.prompt_tokens ?? null, completion_tokens: usage.completion_tokens ?? timings.completion_tokens ?? null,
      time_to_first_token_s: timings.time_to_first_token_ms != null ? timings.time_to_first_token_ms / 1000 : null,
      tokens_per_s: timings.tokens_per_second || null,
    });
  }
  return {
    format: "jisu.conversation", version: 1, id: record.id, source_key: SOURCE_PREFIX + record.id,
    title: record.title || "", system: record.system?.trim() ? record.system : null, created_at: time,
    updated_at: (record.updatedAt ?? Date.now()) / 1000,
    active_leaf_id: skipped.has(activeLeafId) ? skipped.get(activeLeafId) : activeLeafId, messages,
  };
}

/** The active branch to read, as the server writes it. */
function markdownOf(record) {
  const { nodes, activeLeafId } = treeOf(record);
  const lines = [`# ${record.title || "Untitled conversation"}`, ""];
  if (record.system?.trim()) lines.push("## System", "", record.system, "");
  for (const node of branchTo(nodes, activeLeafId)) {
    if (node.role !== "user" && node.role !== "assistant") continue;
    lines.push(`## ${node.role === "user" ? "User" : "Assistant"}`, "", textOf(node), "");
    if (CUT_SHORT.includes(node.finish)) lines.push("*(cut short)*", "");
  }
  return lines.join("\n");
}
