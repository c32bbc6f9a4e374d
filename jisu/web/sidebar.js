// The sidebar: past conversations (from the history: the server's, or this browser's in
// browser mode; history.js) with new / open / rename / delete / search. A search asks the
// history for every word in titles and messages, every branch included, and shows where each
// conversation matched; opening one goes to that message. On a wide screen the toggle
// collapses the sidebar; on a phone it is a drawer over the chat.

import { history } from "./history.js";
import { t } from "./i18n.js";
import { iconButton } from "./icons.js";

const byId = (id) => document.getElementById(id);
const narrow = matchMedia("(max-width: 800px)");
const SEARCH_DEBOUNCE_MS = 250; // a search is a request to the server: not one per key

let ctx; // { currentId(), onOpen(summary), onNew(), onDeleted(id), onRenamed({id, title}) }
let items = []; // summaries on show: {id, title, updatedAt, match}
let hasMore = false; // the history holds more than is listed ("show more")
let query = ""; // what the list on show was searched for
let failure = null; // why the history could not be read
let latest = 0; // the newest read: an older one that answers later is dropped
let newest = Promise.resolve(null); // what the newest read resolves to, once it has drawn
let searchTimer = 0;

export function initSidebar(context) {
  ctx = context;
  byId("new-chat").addEventListener("click", () => {
    ctx.onNew();
    if (narrow.matches) setDrawer(false);
  });
  byId("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(refreshSidebar, SEARCH_DEBOUNCE_MS);
  });
  byId("conversation-more").addEventListener("click", () => load(items.length));
  byId("sidebar-toggle").addEventListener("click", toggle);
  byId("sidebar-close").addEventListener("click", () => setDrawer(false));
  byId("scrim").addEventListener("click", () => setDrawer(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) setDrawer(false);
  });
  narrow.addEventListener("change", syncToggle);
  syncToggle();
}

/** Read the list again (searched, when the search box says so). Never rejects: resolves, once
 * the list on show is the newest read's, to why the history could not be read, or null. */
export function refreshSidebar() {
  return load(0);
}

/** The list on show, once the newest read has drawn it: resolves to why the history could not
 * be read, or null. */
export function lastRead() {
  return newest;
}

function load(offset) {
  newest = read(++latest, offset);
  return newest;
}

async function read(run, offset) {
  const searched = byId("search").value.trim();
  let page;
  try {
    page = await history().list(searched, offset);
  } catch (error) {
    if (run !== latest) return newest;
    [items, hasMore, failure] = [[], false, error];
    draw();
    return error;
  }
  // A newer read is under way (the socket opened mid-boot, a key was typed): it draws, and
  // this one resolves with it, so that nobody waiting on this one sees a list not drawn yet.
  if (run !== latest) return newest;
  items = offset ? [...items, ...page.items] : page.items;
  [hasMore, query, failure] = [page.hasMore, searched, null];
  draw();
  return null;
}

function toggle() {
  if (narrow.matches) setDrawer(!document.body.classList.contains("drawer-open"));
  else {
    document.body.classList.toggle("sidebar-collapsed");
    syncToggle();
  }
}

function setDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  byId("scrim").hidden = !open;
  syncToggle();
  if (open) byId("search").focus();
}

function syncToggle() {
  const open = narrow.matches
    ? document.body.classList.contains("drawer-open")
    : !document.body.classList.contains("sidebar-collapsed");
  byId("sidebar-toggle").setAttribute("aria-expanded", String(open));
  byId("sidebar").toggleAttribute("inert", !open); // a hidden sidebar is out of the tab order
  if (!narrow.matches) byId("scrim").hidden = true;
}

export function draw() {
  const list = byId("conversation-list");
  list.replaceChildren(...items.map(itemEl));
  const empty = byId("conversation-empty");
  empty.hidden = items.length > 0;
  empty.textContent = failure ? t("historyUnavailable", { message: failure.message })
    : query ? t("noMatches") : t("noConversations");
  byId("conversation-more").hidden = !hasMore;
}

function itemEl(conversation) {
  const li = document.createElement("li");
  li.className = "conv-item";
  li.dataset.testid = "conversation-item";
  li.dataset.id = conversation.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "conv-open";
  open.dataset.testid = "conversation-open";
  const title = document.createElement("span");
  title.className = "conv-title";
  title.textContent = conversation.title || t("untitled");
  open.title = title.textContent;
  open.append(title);
  // Where a search found it: the text around the words (a title match shows as the title).
  if (query && conversation.match?.messageId) {
    const snippet = document.createElement("span");
    snippet.className = "conv-snippet";
    snippet.dataset.testid = "conversation-snippet";
    snippet.textContent = conversation.match.snippet;
    open.append(snippet);
  }
  if (conversation.id === ctx.currentId()) {
    li.classList.add("active");
    open.setAttribute("aria-current", "page");
  }
  open.addEventListener("click", () => {
    ctx.onOpen(conversation);
    if (narrow.matches) setDrawer(false);
  });
  const rename = iconButton("edit", t("rename"), "rename-conversation", () => startRename(li, conversation));
  const remove = iconButton("trash", t("delete"), "delete-conversation", () => confirmDelete(conversation));
  li.append(open, rename, remove);
  return li;
}

function startRename(li, conversation) {
  const input = document.createElement("input");
  input.className = "rename-input";
  input.dataset.testid = "rename-input";
  input.setAttribute("aria-label", t("renameLabel"));
  input.value = conversation.title || "";
  let done = false;
  const finish = async (keep) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (keep && title && title !== conversation.title) {
      conversation.title = title;
      await ctx.onRenamed(conversation).catch(() => {}); // the list read again shows what was kept
    }
    await refreshSidebar();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  li.replaceChildren(input);
  input.focus();
  input.select();
}

function confirmDelete(conversation) {
  const dialog = byId("confirm-dialog");
  byId("confirm-title").textContent = t("deleteTitle");
  byId("confirm-text").textContent = t("deleteBody", { title: conversation.title || t("untitled") });
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await history().remove(conversation.id);
      ctx.onDeleted(conversation.id);
    } catch {
      // not deleted (the server is gone, or it was deleted elsewhere): the list read again says which
    }
    await refreshSidebar();
  }, { once: true });
  dialog.showModal();
}
