// The sidebar: past conversations (from IndexedDB) with new / open / rename / delete / search.
// On a wide screen the toggle collapses it; on a phone it is a drawer over the chat.

import { t } from "./i18n.js";
import { iconButton } from "./icons.js";
import { deleteConversation, listConversations } from "./store.js";

const byId = (id) => document.getElementById(id);
const narrow = matchMedia("(max-width: 800px)");

let ctx; // { currentId(), onOpen(conversation), onNew(), onDeleted(id), onRenamed(conversation) }
let conversations = [];

export function initSidebar(context) {
  ctx = context;
  byId("new-chat").addEventListener("click", () => {
    ctx.onNew();
    if (narrow.matches) setDrawer(false);
  });
  byId("search").addEventListener("input", draw);
  byId("sidebar-toggle").addEventListener("click", toggle);
  byId("sidebar-close").addEventListener("click", () => setDrawer(false));
  byId("scrim").addEventListener("click", () => setDrawer(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) setDrawer(false);
  });
  narrow.addEventListener("change", syncToggle);
  syncToggle();
}

export async function refreshSidebar() {
  conversations = await listConversations();
  draw();
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

/** Matches in the title or in any message, ignoring case. */
function matches(conversation, query) {
  if (!query) return true;
  const needle = query.toLowerCase();
  if ((conversation.title || "").toLowerCase().includes(needle)) return true;
  return conversation.messages.some((message) => (message.content || "").toLowerCase().includes(needle));
}

export function draw() {
  const query = byId("search").value.trim();
  const shown = conversations.filter((conversation) => matches(conversation, query));
  const list = byId("conversation-list");
  list.replaceChildren(...shown.map(itemEl));
  const empty = byId("conversation-empty");
  empty.hidden = shown.length > 0;
  empty.textContent = conversations.length ? t("noMatches") : t("noConversations");
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
  open.textContent = conversation.title || t("untitled");
  open.title = open.textContent;
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
      await ctx.onRenamed(conversation);
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
    await deleteConversation(conversation.id);
    ctx.onDeleted(conversation.id);
    await refreshSidebar();
  }, { once: true });
  dialog.showModal();
}
