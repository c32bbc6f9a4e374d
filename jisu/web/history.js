// Where chats are kept: the seam between the page and its history. A page talking to a jisu
// server keeps them on the server (history-server.js: one history for every browser, device
// and the CLI of that user); browser mode, where the model runs in the page and nothing may
// leave it, keeps them in this browser's IndexedDB (history-local.js), as does a page whose
// server has its history turned off. The page chooses (chooseHistory, app.js); everything
// else goes through history() and never asks which one it has.
//
// Both backends offer the same calls and shapes:
//   kind                                "server" | "local"
//   list(query, offset)                 -> {items: [summary], hasMore}, the most recently updated first;
//                                          a query keeps those holding every word (title or any branch)
//   open(id)                            -> the conversation, its active branch on show
//   create(conversation)                keep the conversation on screen from now on (server: it gets its id)
//   update(conversation)                keep its system prompt and role (and title)
//   rename(id, title), remove(id)
//   switchBranch(conversation, id)      show the branch through message `id`, where it was left
//   beginTurn(conversation, turn)       -> the chat request's history fields for a turn
//                                          {parentId: the message it follows (null: a first message,
//                                          undefined: the end of the branch), user: the new message,
//                                          or null to answer parentId again}
//   endTurn(conversation, turn, answer) the turn ended: `answer` is the message shown, or null
//                                          when nothing was said; the conversation shows what was kept
//   addBranch(conversation, messages)   -> the id of the last of `messages`, copied as a new branch
//                                          from the start (what trimming sends on)
//   exportAll(), exportOne(id, format)  -> {filename, blob} (format "json" | "md")
//   canImport, importFile(file)         -> {imported, skipped}
//
// summary:      {id, title, updatedAt, match: {messageId, snippet} | null}
// conversation: {id, title, createdAt, updatedAt, role, system, stored, messages: [message]}
// message:      {id, parentId, role, content, attachments?, siblings: {ids, index, count},
//                state?: "streaming" | "complete" | "cut_short", finish?, usage?, timings?}
// Backends change the conversation objects they are given in place: the answer being
// generated holds on to its conversation, whichever is on screen by the time it ends.

import { localHistory } from "./history-local.js";
import { serverHistory } from "./history-server.js";

let active = localHistory;

/** "server" or "local": which history the page uses from now on. */
export function chooseHistory(kind) {
  active = kind === "server" ? serverHistory : localHistory;
  return active;
}

export function history() {
  return active;
}
