// Text files in a message: dropped on the page, pasted, or picked with the paperclip. Each one
// is read here, checked (text, not too big, not too many), counted in tokens and shown as a
// chip above the composer; when the message is sent its files go with it. A chat kept in this
// browser stores them as {name, size, lang, text, tokens, estimated}; the server stores what
// the model read (contentForModel), and splitAttachments() reads the chips back out of it.
//
// The message's `content` stays what the user typed: the transcript shows it and the chips,
// editing edits only the typed text, and contentForModel() builds what the model reads.

import { t } from "./i18n.js";
import { icon } from "./icons.js";
import { countTokens } from "./token-count.js";

const byId = (id) => document.getElementById(id);

const MAX_FILES = 5; // per message: a 0.5B model loses track of more files than this anyway
// Read no more than this, whatever the context: the largest context jisu serves (32768 tokens)
// holds about 100-130 KB of code or English and less of Chinese, so a bigger file can never
// fit, and reading, sending and tokenizing megabytes only makes the page and the server wait.
const MAX_FILE_BYTES = 512 * 1024;
const SNIFF_BYTES = 8192; // binary files show themselves in their first bytes

// File extension -> the fence's language tag: the model writes better about code it knows the
// language of, and the tag is the cheapest place to say it (a word or two).
const LANGUAGES = {
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "jsx", ts: "typescript", tsx: "tsx",
  py: "python", rb: "ruby", go: "go", rs: "rust", java: "java", kt: "kotlin", swift: "swift",
  c: "c", h: "c", cc: "cpp", cpp: "cpp", hpp: "cpp", cs: "csharp", php: "php", lua: "lua",
  sh: "bash", bash: "bash", zsh: "bash", ps1: "powershell", sql: "sql", r: "r", dart: "dart",
  html: "html", htm: "html", css: "css", scss: "scss", vue: "vue", svelte: "svelte", xml: "xml", svg: "xml",
  json: "json", jsonl: "json", yaml: "yaml", yml: "yaml", toml: "toml", ini: "ini", cfg: "ini",
  md: "markdown", markdown: "markdown", csv: "csv", tsv: "tsv", txt: "text", log: "text",
  dockerfile: "dockerfile", makefile: "makefile",
};

let composer; // { contextSize(), maxTokens(), onChange() }: what the checks and the gauge need
let pending = []; // the composer's files: {name, size, checking, attachment, done: Promise}
let refusals = []; // why the last files dropped were not taken: shown above the composer

// ---- what the model reads ------------------------------------------------------------------

/** The fence's language for a file name ("" when the extension says nothing). */
function languageOf(name) {
  const lower = name.toLowerCase();
  const base = lower.split("/").pop();
  if (LANGUAGES[base]) return LANGUAGES[base]; // Dockerfile, Makefile
  const dot = base.lastIndexOf(".");
  return dot > 0 ? LANGUAGES[base.slice(dot + 1)] || "" : "";
}

/** One file as the model reads it: its name, then its text in a fence longer than any run of
 * backticks inside (a Markdown file's own ``` blocks then cannot close it early). */
function formatAttachment({ name, lang, text }) {
  const longest = Math.max(0, ...(text.match(/`+/g) || []).map((run) => run.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `File: ${name}\n${fence}${lang}\n${text.replace(/\n$/, "")}\n${fence}`;
}

/**
 * A user message's content for the model. Files come first and the typed text last, the
 * order long-context guides recommend (documents, then the question), and what the 0.5B
 * stand-in does better with (benchmarks/bench_attachment_order.py, 8 small files and
 * questions, greedy: 4/8 right with the file first, 3/8 with the question first). The case
 * that decided it is the one the page is for: asked first to "convert this file to
 * TypeScript", the model copies the file out unchanged; asked after the file, it adds the types.
 */
export function contentForModel(message) {
  const files = (message.attachments || []).map(formatAttachment);
  return [...files, message.content || ""].filter(Boolean).join("\n\n");
}

/** The messages as the model reads them: each user message's files joined into its text. */
export function forModel(messages) {
  return messages.map((message) => (message.attachments?.length
    ? { ...message, content: contentForModel(message) }
    : message));
}

// The head of one file block as formatAttachment writes it: name, then the opening fence.
const FILE_HEAD = /^File: ([^\n]+)\n(`{3,})([^\n`]*)\n/;

/**
 * The inverse of contentForModel, for a user message read back from the server, which keeps
 * what the model read: the file blocks at its start become attachments again (shown as chips,
 * sent as they were on an edit) and the rest is the typed text. Exact, because a block's
 * fence is longer than any run of backticks in its file: the first line that starts with it
 * closes the block. Anything not in that shape stays text. Sizes are of the text as stored,
 * the token counts are not known (the chip leaves them out).
 */
export function splitAttachments(content) {
  const attachments = [];
  let rest = content;
  for (let head = FILE_HEAD.exec(rest); head; head = FILE_HEAD.exec(rest)) {
    const [opening, name, fence, lang] = head;
    const close = rest.indexOf(`\n${fence}`, opening.length);
    const after = close + 1 + fence.length;
    if (close < 0 || (after < rest.length && !rest.startsWith("\n\n", after))) break;
    const text = rest.slice(opening.length, close);
    attachments.push({ name, lang, text, size: new TextEncoder().encode(text).length });
    rest = rest.slice(after + 2);
  }
  return attachments.length ? { content: rest, attachments } : { content };
}

/** Tokens of a message's files as counted when attached (each one's formatted block). */
export function attachmentTokens(message) {
  const files = message.attachments || [];
  return {
    tokens: files.reduce((sum, file) => sum + (file.tokens || 0), 0),
    estimated: files.some((file) => file.estimated),
  };
}

// ---- reading and checking a file -----------------------------------------------------------

/** The file's text, or why it is not one: {text} | {refused: "binary"}. NUL bytes or invalid
 * UTF-8 in the first bytes say "binary" whatever the extension (an image named .txt, a
 * UTF-16 file); the rest must decode as UTF-8 too. */
function decodeText(bytes) {
  const head = bytes.subarray(0, SNIFF_BYTES);
  if (head.includes(0)) return { refused: "binary" };
  try {
    // stream: a character cut in two at the end of the head is not an error
    new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true });
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); // drops a BOM
    return { text: text.replace(/\r\n?/g, "\n") }; // CRLF costs a token a line for nothing
  } catch {
    return { refused: "binary" };
  }
}

async function check(file, entry) {
  const removed = () => !pending.includes(entry); // the user took it out while it was read
  const decoded = decodeText(new Uint8Array(await file.arrayBuffer()));
  if (removed()) return;
  if (decoded.refused) return refuse(entry, t("attachBinary", { name: file.name }));
  if (!decoded.text.trim()) return refuse(entry, t("attachEmpty", { name: file.name }));
  const attachment = { name: file.name, size: file.size, lang: languageOf(file.name), text: decoded.text };
  const counted = await countTokens(formatAttachment(attachment));
  if (removed()) return;
  attachment.tokens = counted.tokens;
  if (counted.estimated) attachment.estimated = true;
  // The server refuses a prompt that leaves less than max_tokens for the answer: a file that
  // alone takes more than that room can never be sent, so it is refused here, with numbers.
  const context = composer.contextSize();
  const room = context ? context - composer.maxTokens() : Infinity;
  if (attachment.tokens > room) {
    const numbers = { n: attachment.tokens, room: Math.max(0, room), ctx: context };
    return refuse(entry, t("attachTooBig", { name: file.name, ...numbers }));
  }
  entry.attachment = attachment;
  entry.checking = false;
  changed();
}

function refuse(entry, reason) {
  pending = pending.filter((other) => other !== entry);
  refusals.push(reason);
  changed();
}

// ---- the composer's files ------------------------------------------------------------------

export function initAttachments(context) {
  composer = context;
  const picker = byId("attach-input");
  byId("attach-button").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    addFiles([...picker.files]);
    picker.value = ""; // the same file may be picked again after removing it
  });
  byId("chat-input").addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return; // plain text is pasted as text
    event.preventDefault();
    addFiles(files);
  });
  byId("attach-notice-close").addEventListener("click", () => {
    refusals = [];
    draw();
  });
  // A file dropped anywhere on the page is attached: a browser's own drop would leave the page
  // (opening the file) and lose the chat on screen.
  const box = document.querySelector(".composer-box");
  let depth = 0; // dragenter/dragleave fire for every child crossed
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (hasFiles(event)) box.classList.toggle("dropping", ++depth > 0);
  });
  document.addEventListener("dragleave", (event) => {
    if (hasFiles(event)) box.classList.toggle("dropping", --depth > 0);
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (event) => {
    depth = 0;
    box.classList.remove("dropping");
    if (!hasFiles(event)) return;
    event.preventDefault();
    addFiles([...event.dataTransfer.files]);
  });
}

/** Take files into the composer; the ones refused are named above it, with the reason. */
function addFiles(files) {
  refusals = [];
  const checks = [];
  for (const file of files) {
    if (pending.length >= MAX_FILES) {
      refusals.push(t("attachTooMany", { name: file.name, max: MAX_FILES }));
    } else if (file.size > MAX_FILE_BYTES) {
      const sizes = { size: formatSize(file.size), max: formatSize(MAX_FILE_BYTES) };
      refusals.push(t("attachTooLarge", { name: file.name, ...sizes }));
    } else {
      const entry = { name: file.name, size: file.size, checking: true, attachment: null };
      entry.done = check(file, entry)
        .catch((error) => refuse(entry, t("attachUnreadable", { name: file.name, message: error.message })));
      pending.push(entry);
      checks.push(entry.done);
    }
  }
  changed();
  return Promise.all(checks);
}

/** Wait until every file is checked; false if one was refused meanwhile (the notice says
 * which), so a message is never sent without a file the user thought was in it. */
export async function settled() {
  const before = pending.length;
  await Promise.all(pending.map((entry) => entry.done));
  return pending.length === before;
}

export function hasAttachments() {
  return pending.length > 0;
}

/** The checked files, taken out of the composer for a message being sent. */
export function takeAttachments() {
  const taken = pending.filter((entry) => !entry.checking).map((entry) => entry.attachment);
  pending = pending.filter((entry) => entry.checking);
  refusals = [];
  changed();
  return taken;
}

/** Put a message's files back into the composer (its question, moved to a new chat). */
export function restoreAttachments(attachments = []) {
  for (const attachment of attachments.slice(0, MAX_FILES - pending.length)) {
    pending.push({ name: attachment.name, size: attachment.size, checking: false, attachment, done: Promise.resolve() });
  }
  changed();
}

/** Tokens of the composer's files, for the gauge (files still being checked count 0). */
export function pendingTokens() {
  return attachmentTokens({ attachments: pending.filter((entry) => !entry.checking).map((entry) => entry.attachment) });
}

function changed() {
  draw();
  composer?.onChange();
}

/** Redraw the chips and the notice (also after a language switch). */
export function draw() {
  const row = byId("attachments");
  row.replaceChildren(...pending.map((entry) => attachmentChip(entry.attachment || entry, {
    checking: entry.checking,
    onRemove: () => {
      pending = pending.filter((other) => other !== entry);
      changed();
      byId("chat-input").focus();
    },
  })));
  row.hidden = pending.length === 0;
  const notice = byId("attach-notice");
  const lines = refusals.map((reason) => {
    const line = document.createElement("p");
    line.dataset.testid = "attach-refusal";
    line.textContent = reason;
    return line;
  });
  byId("attach-notice-text").replaceChildren(...lines);
  notice.hidden = refusals.length === 0;
}

// ---- chips ---------------------------------------------------------------------------------

/** A file as a chip: name, size and tokens; with onRemove (the composer's) an × to remove it. */
export function attachmentChip(file, { checking = false, onRemove = null } = {}) {
  const chip = document.createElement("span");
  chip.className = "file-chip";
  chip.dataset.testid = onRemove ? "attachment-chip" : "message-attachment";
  const name = document.createElement("span");
  name.className = "file-chip-name";
  name.dataset.testid = "attachment-name";
  name.textContent = file.name;
  const meta = document.createElement("span");
  meta.className = "file-chip-meta";
  meta.dataset.testid = "attachment-meta";
  const counted = !checking && file.tokens != null; // files read back from the server have no count
  const tokens = checking ? t("attachCounting")
    : counted ? t(file.estimated ? "attachTokensEstimated" : "attachTokens", { n: file.tokens.toLocaleString("en-US") })
      : "";
  meta.textContent = [formatSize(file.size), tokens].filter(Boolean).join(" · ");
  if (counted) chip.dataset.tokens = file.tokens;
  chip.setAttribute("aria-busy", String(checking));
  chip.title = `${file.name} · ${meta.textContent}`;
  chip.append(icon("file"), name, meta);
  if (onRemove) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "file-chip-remove";
    remove.dataset.testid = "attachment-remove";
    remove.setAttribute("aria-label", t("attachRemove", { name: file.name }));
    remove.title = remove.getAttribute("aria-label");
    remove.append(icon("close"));
    remove.addEventListener("click", onRemove);
    chip.append(remove);
  }
  return chip;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
