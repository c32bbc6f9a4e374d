// Persistence in the browser. Conversations can grow large, so they live in IndexedDB (one
// record per conversation); settings are a few small values needed synchronously at start-up,
// so they live in localStorage. IndexedDB keeps the chats of browser mode (history-local.js);
// a page talking to a server keeps them there instead (history-server.js), and only reads
// these records once, to offer moving them to the server (migrate.js).
//
// Conversation record:
//   { id, title, createdAt, updatedAt, role: preset key | "custom", system: string,
//     activeLeafId, messages: [every message of every branch, in the order written:
//       {id, parentId, role: "user", content, attachments?: [{name, size, lang, text, tokens, estimated?}]}
//     | {id, parentId, role: "assistant", content, finish, usage, timings}
//     | {id, parentId, role: "notice", kind: "trimmed", dropped: [{role, content}]} ] }
// Records written before branches have no ids: one branch, in order (branches.js reads them).
// Notices are shown in the chat but never sent to the model. A user message's `content` is what
// was typed; its attachments (text files) are sent with it on every turn (attachments.js).

const DB_NAME = "jisu";
const DB_VERSION = 1;
const STORE = "conversations";
let dbPromise = null;

function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const store = request.result.createObjectStore(STORE, { keyPath: "id" });
        store.createIndex("updatedAt", "updatedAt");
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return dbPromise;
}

async function run(mode, work) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const tx = database.transaction(STORE, mode);
    const result = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** All conversations, most recently updated first. */
export async function listConversations() {
  const all = await run("readonly", (store) => store.getAll());
  return (all || []).sort((a, b) => b.updatedAt - a.updatedAt);
}

export function getConversation(id) {
  return run("readonly", (store) => store.get(id));
}

export function putConversation(conversation) {
  // structuredClone drops nothing we need and keeps IndexedDB from seeing live objects mid-edit.
  return run("readwrite", (store) => store.put(structuredClone(conversation)));
}

export function deleteConversation(id) {
  return run("readwrite", (store) => store.delete(id));
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// ---- settings ----------------------------------------------------------------------------

const SETTINGS_KEY = "jisu.settings";
export const DEFAULT_SETTINGS = {
  theme: "system", // "system" | "light" | "dark"
  temperature: 0.7,
  maxTokens: 512,
  role: "general", // role for new chats: a preset key or "custom"
  customPrompt: "",
  mode: "server", // where answers come from: "server" or "device" (browser mode)
};

export function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}");
    return { ...DEFAULT_SETTINGS, ...saved };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}
