// Export and import, in the settings dialog: every chat as one JSON file, the chat on screen
// as JSON (every branch) or Markdown (the branch on show, to read), and importing a jisu export
// or ChatGPT's conversations.json. The files are jisu's own format (jisu/history/formats.py),
// written by whichever history the page uses (history.js); importing needs the server, which
// reads the file, all or nothing, says in one line what is wrong with a bad one, and skips
// chats it already has.

import { history } from "./history.js";
import { t } from "./i18n.js";

const byId = (id) => document.getElementById(id);

let page; // { currentConversation(), onImported() }

export function initHistoryFiles(context) {
  page = context;
  byId("export-all").addEventListener("click", () => download(() => history().exportAll()));
  byId("export-json").addEventListener("click", () => download(() => history().exportOne(page.currentConversation().id, "json")));
  byId("export-md").addEventListener("click", () => download(() => history().exportOne(page.currentConversation().id, "md")));
  byId("import-button").addEventListener("click", () => byId("import-input").click());
  byId("import-input").addEventListener("change", importPicked);
}

/** Draw what the history allows (when the settings open, and after a language switch). */
export function drawHistoryFiles() {
  byId("history-where").textContent = t(history().kind === "server" ? "historyOnServer" : "historyInBrowser");
  byId("import-row").hidden = !history().canImport;
  const stored = Boolean(page.currentConversation()?.stored); // a new chat is not kept until its first message
  byId("export-json").disabled = byId("export-md").disabled = !stored;
}

async function download(make) {
  let file;
  try {
    file = await make();
  } catch (error) {
    say(t("exportFailed", { message: error.message }), "error");
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(file.blob);
  link.download = file.filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000); // the download has its own copy by then
}

async function importPicked() {
  const picker = byId("import-input");
  const [file] = picker.files;
  picker.value = ""; // the same file may be picked again
  if (!file) return;
  say(t("importing", { name: file.name }), "busy");
  try {
    const { imported, skipped } = await history().importFile(file);
    say(t("imported", { imported, skipped }), "ok");
    page.onImported();
  } catch (error) {
    say(t("importFailed", { name: file.name, message: error.message }), "error");
  }
}

function say(text, kind) {
  const status = byId("history-status");
  status.hidden = false;
  status.dataset.kind = kind;
  status.textContent = text;
}
