// Entry point: wires the header (model, role, language, theme), the settings dialog, the
// connection banner, the sidebar and the chat view together. Settings that outlive a page
// load are in store.js, the chats in the history the mode chooses (history.js); everything
// here is glue.

import { apiKey, authHeaders, setApiKey, takeKeyFromUrl } from "./access.js";
import { draw as drawAttachments } from "./attachments.js";
import { backend, initBackend, mode, redrawBackend, startDevice, startBackend } from "./backend.js";
import * as chat from "./chat.js";
import { draw as drawGauge, refreshGauge } from "./context-gauge.js";
import { initFallbackNote, showFallbackNote } from "./fallback-note.js";
import { applyI18n, getLang, setLang, t } from "./i18n.js";
import { chooseHistory, history } from "./history.js";
import { drawHistoryFiles, initHistoryFiles } from "./history-files.js";
import { fillIcons, icon } from "./icons.js";
import { showError } from "./messages.js";
import { drawMigration, initMigration, offerMigration } from "./migrate.js";
import { PRESET_KEYS, preset, presetOf, systemFor } from "./presets.js";
import { draw as drawSidebar, initSidebar, lastRead, refreshSidebar } from "./sidebar.js";
import { ChatSocket } from "./socket.js";
import { loadSettings, saveSettings } from "./store.js";

const byId = (id) => document.getElementById(id);
const systemDark = matchMedia("(prefers-color-scheme: dark)");
const settings = loadSettings();
takeKeyFromUrl(); // before anything talks to the server
const socket = new ChatSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`,
  onConnection, apiKey);
let model = null; // the entry of /v1/models, once fetched
let deviceModel = null; // in device mode: the model this page runs ({name, quantization, ...})
let modelTried = false; // before the first answer the header says "connecting"
let connection = { state: "connecting" };
let everFailed = false; // no banner while the very first connection is being made
let serverHistoryOff = false; // the server answers, but could not open its history file

boot();

async function boot() {
  fillIcons();
  applyI18n(document);
  applyTheme();
  buildRoleSelect();
  chat.initChat({ backend, settings, onSaved: () => refreshSidebar(), onNewChat: newChat });
  initMigration({ onMoved: () => refreshSidebar() });
  initHistoryFiles({ currentConversation: chat.currentConversation, onImported: () => refreshSidebar() });
  const config = await webConfig();
  initBackend({
    settings, saveSettings, socket, hasServer: config.server !== false, browserMode: config.browser_mode !== false,
    onChange: onBackendChange,
    onUnauthorized: askForKey,
    onDeviceReady: (info) => {
      deviceModel = { name: info.name, quantization: info.quant, onDevice: true, context_size: info.contextSize };
      showModel();
      backend.prime(chat.currentConversation()?.system);
    },
  });
  chooseHistory(historyKind());
  initSidebar({
    currentId: () => chat.currentConversation()?.id,
    onOpen: openSaved,
    onNew: () => newChat(),
    onDeleted,
    onRenamed,
  });
  initHeader();
  initFallbackNote();
  initSettings();
  initKeyDialog();
  newChat();
  startBackend();
  if (mode() === "server") loadModel();
  else showModel();
  await readHistory();
  document.body.dataset.ready = "true"; // tests wait for this
}

/** The server's history in server mode; this browser's in browser mode, and when the server
 * has its history turned off. */
function historyKind() {
  return mode() === "server" && !serverHistoryOff ? "server" : "local";
}

/** List the chats; with the server's history read, offer (once) to move this browser's
 * earlier chats there. */
async function readHistory() {
  const failure = await refreshSidebar();
  if (history().kind !== "server") return;
  if (!failure) {
    await offerMigration();
  } else if (failure.code === "history_unavailable") {
    // The server still answers, without keeping chats (it says why in its log): this browser
    // keeps them meanwhile, as before there was server history, and offers to move them later.
    serverHistoryOff = true;
    chooseHistory(historyKind());
    newChat();
    await refreshSidebar();
  }
}

/** Open a conversation from the sidebar; a search hit on another branch shows that branch. */
async function openSaved(summary) {
  const hit = summary.match?.messageId || null;
  let conversation;
  try {
    conversation = await history().open(summary.id);
    if (hit && !conversation.messages.some((message) => message.id === hit)) {
      await history().switchBranch(conversation, hit);
    }
  } catch (error) {
    showError({ text: t("errHistory", { message: error.message }) });
    return;
  }
  chat.openConversation(conversation, { hit });
  syncRole();
  drawSidebar();
}

function newChat(prefill = "") {
  chat.openConversation(chat.blankConversation(settings));
  syncRole();
  drawSidebar();
  if (prefill) {
    const input = byId("chat-input");
    input.value = prefill;
    input.dispatchEvent(new Event("input"));
  }
}

function onDeleted(id) {
  chat.forgetConversation(id);
  if (chat.currentConversation()?.id === id) newChat();
}

async function onRenamed(renamed) {
  await history().rename(renamed.id, renamed.title);
  const current = chat.currentConversation();
  if (current?.id === renamed.id) current.title = renamed.title; // its next save keeps the new title
}

// ---- header: model, role, language, theme ----------------------------------------------

function initHeader() {
  byId("lang-toggle").addEventListener("click", () => switchLang(getLang() === "zh" ? "en" : "zh"));
  byId("theme-toggle").addEventListener("click", () => {
    // The toggle flips what is on screen; "follow the system" is in Settings.
    settings.theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    saveSettings(settings);
    applyTheme();
  });
  byId("role-select").addEventListener("change", (event) => setRole(event.target.value));
  byId("conn-retry").addEventListener("click", () => socket.connect());
  systemDark.addEventListener("change", applyTheme);
}

/** {server, browser_mode}: a page exported by `jisu export-web` has no server, and a server
 * installed without npm has no browser mode; web-config.json says which. */
async function webConfig() {
  try {
    const response = await fetch("web-config.json", { cache: "no-store" });
    return response.ok ? await response.json() : {};
  } catch {
    return {};
  }
}

function onBackendChange() {
  const kept = history();
  if (chooseHistory(historyKind()) !== kept) {
    // Server and browser mode keep their chats apart (history.js): the list and the chat on
    // screen are the other side's now.
    newChat();
    readHistory();
  }
  if (mode() === "server") {
    deviceModel = null;
    if (!model) loadModel();
  } else {
    byId("conn-banner").hidden = true; // the server's connection no longer matters
    document.body.dataset.connected = "false";
  }
  showModel();
  chat.setConnected();
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models", { cache: "no-store", headers: authHeaders() });
    if (response.status === 401) askForKey();
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    model = (await response.json()).data[0];
  } catch {
    model = null; // retried when the socket (re)connects
  }
  modelTried = true;
  showModel();
}

function showModel() {
  const shown = mode() === "device" ? deviceModel : model;
  const name = byId("model-name");
  name.removeAttribute("data-i18n"); // from now on the text is the model's, not a UI string
  const waiting = mode() === "device" ? t("modelLoading") : t("modelUnknown");
  name.textContent = shown ? shown.name : waiting;
  name.title = name.textContent; // in full, where a phone has to clip it
  const quant = byId("model-quant");
  quant.hidden = !shown?.quantization;
  quant.textContent = shown?.quantization || "";
  byId("model-place").hidden = !shown?.onDevice;
  byId("model-info").title = shown?.onDevice ? t("modelOnDevice")
    : shown ? `${shown.id} · ${t("contextSize", { n: shown.context_size })}` : "";
  showFallbackNote(shown);
  chat.setContextSize(shown?.context_size); // the gauge and the file checks measure against it
  document.title = shown ? `${shown.name} · ${t("appTitle")}` : t("appTitle");
}

function buildRoleSelect() {
  const select = byId("role-select");
  const options = PRESET_KEYS.map((key) => new Option(preset(key).label, key));
  options.push(new Option(t("roleCustom"), "custom"));
  select.replaceChildren(...options);
  syncRole();
}

function syncRole() {
  const conversation = chat.currentConversation();
  if (conversation) byId("role-select").value = conversation.role;
}

function setRole(role) {
  settings.role = role;
  saveSettings(settings);
  const conversation = chat.currentConversation();
  conversation.role = role;
  conversation.system = systemFor(role, settings);
  chat.saveConversation(conversation);
  refreshGauge(0);
  if (role === "custom" && !settings.customPrompt) openSettings(byId("setting-system"));
}

function switchLang(lang) {
  setLang(lang);
  const conversation = chat.currentConversation();
  // A chat not started yet takes the preset prompt in the new language.
  if (conversation && conversation.messages.length === 0 && conversation.role !== "custom") {
    conversation.system = preset(conversation.role).prompt;
  }
  buildRoleSelect();
  if (modelTried || mode() === "device") showModel();
  applyTheme();
  onConnection(connection);
  redrawBackend();
  chat.renderAll();
  drawAttachments();
  drawGauge();
  drawSidebar();
  drawMigration();
  drawHistoryFiles();
  byId("setting-lang").value = lang;
}

function applyTheme() {
  const dark = settings.theme === "dark" || (settings.theme === "system" && systemDark.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  byId("hljs-light").disabled = dark;
  byId("hljs-dark").disabled = !dark;
  const themeName = t(settings.theme === "system" ? "themeSystem" : dark ? "themeDark" : "themeLight");
  const toggle = byId("theme-toggle");
  toggle.replaceChildren(icon(dark ? "moon" : "sun"));
  toggle.setAttribute("aria-label", t("themeToggle", { mode: themeName }));
  toggle.title = toggle.getAttribute("aria-label");
}

// ---- connection banner -------------------------------------------------------------------

function onConnection(status) {
  connection = status;
  if (mode() === "device") return; // answers come from this page: the server's state does not matter
  const banner = byId("conn-banner");
  document.body.dataset.connected = String(status.state === "open");
  if (status.state === "open") {
    banner.hidden = true;
    if (!model) loadModel();
    // The list is read again if it could not be read (the server was out of reach, or wanted a
    // key); not when it was, or is being, read: the boot's read is under way as the socket opens.
    lastRead().then((failure) => failure && readHistory());
  } else if (status.state === "unauthorized") {
    banner.hidden = false;
    byId("conn-text").textContent = t("keyNeeded");
    askForKey();
  } else if (status.state === "closed") {
    everFailed = true;
    banner.hidden = false;
    byId("conn-text").textContent = t("connLost", { s: status.retryIn });
  } else if (everFailed) {
    banner.hidden = false;
    byId("conn-text").textContent = t("connConnecting");
  }
  chat.setConnected();
}

// ---- settings dialog ---------------------------------------------------------------------

function initSettings() {
  const dialog = byId("settings-dialog");
  for (const id of ["settings-open", "settings-open-side"]) byId(id).addEventListener("click", () => openSettings());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // click on the backdrop
  });
  byId("setting-theme").addEventListener("change", (event) => {
    settings.theme = event.target.value;
    saveSettings(settings);
    applyTheme();
  });
  byId("setting-lang").addEventListener("change", (event) => switchLang(event.target.value));
  byId("setting-temperature").addEventListener("input", (event) => {
    settings.temperature = Number(event.target.value);
    byId("temperature-value").textContent = settings.temperature.toFixed(2);
    saveSettings(settings);
  });
  byId("setting-max-tokens").addEventListener("input", (event) => {
    const value = Math.round(Number(event.target.value));
    if (Number.isFinite(value) && value >= 1) {
      settings.maxTokens = value;
      saveSettings(settings);
      refreshGauge(); // the room kept for the answer changed
    }
  });
  let saveTimer = 0;
  byId("setting-system").addEventListener("input", (event) => {
    const text = event.target.value;
    const conversation = chat.currentConversation();
    conversation.system = text;
    conversation.role = presetOf(text) || "custom";
    if (conversation.role === "custom") settings.customPrompt = text;
    settings.role = conversation.role;
    saveSettings(settings);
    syncRole();
    refreshGauge(); // a new chat's count is its system prompt
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => chat.saveConversation(conversation), 400);
  });
}

function openSettings(focus) {
  byId("setting-theme").value = settings.theme;
  byId("setting-lang").value = getLang();
  byId("setting-temperature").value = settings.temperature;
  byId("temperature-value").textContent = Number(settings.temperature).toFixed(2);
  byId("setting-max-tokens").value = settings.maxTokens;
  byId("setting-system").value = chat.currentConversation()?.system || "";
  drawHistoryFiles();
  byId("settings-dialog").showModal();
  if (focus) focus.focus();
}

// ---- access key (servers shared on a LAN) --------------------------------------------

function initKeyDialog() {
  byId("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = byId("key-input").value.trim();
    if (!key) return;
    const response = await fetch("/v1/models", { cache: "no-store", headers: { Authorization: `Bearer ${key}` } })
      .catch(() => null);
    if (response?.status === 401) {
      byId("key-error").hidden = false; // stays open: the key was wrong
      byId("key-input").select();
      return;
    }
    setApiKey(key);
    byId("key-dialog").close();
    if (mode() === "device") {
      startDevice();
    } else {
      socket.reconnect();
      loadModel();
    }
  });
}

/** Ask for the key; say so when the one we have was refused. */
function askForKey() {
  const dialog = byId("key-dialog");
  if (dialog.open) return;
  byId("key-error").hidden = !apiKey();
  byId("key-input").value = "";
  dialog.showModal();
  byId("key-input").focus();
}
