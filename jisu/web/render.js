// Markdown rendering of model output. The model's text is untrusted: it may contain HTML that
// someone asked it to repeat. Two layers keep it from running script:
//   1. marked's `html` renderer is replaced, so raw HTML in the answer is shown as text;
//   2. the HTML marked produces is sanitized with DOMPurify before it touches the DOM.
// (index.html also sets a Content-Security-Policy without 'unsafe-inline' scripts.)
// marked, DOMPurify and hljs are the vendored globals loaded by index.html.

import { t } from "./i18n.js";

const { marked, DOMPurify, hljs } = window;

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

marked.use({
  gfm: true,
  breaks: true, // chat models put single newlines where they mean line breaks
  renderer: {
    html(token) {
      const text = escapeHtml(token.text ?? token.raw ?? "");
      return token.block ? `<p>${text.trimEnd().replace(/\n/g, "<br>")}</p>\n` : text;
    },
  },
});

const PURIFY_CONFIG = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
};

// Links from the model open in a new tab and pass no referrer or window handle.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** Sanitized HTML for a Markdown string. */
export function markdownToHtml(text) {
  return DOMPurify.sanitize(marked.parse(text || ""), PURIFY_CONFIG);
}

/**
 * Render `text` into `container`. While streaming (`final` false), unlabelled code blocks are
 * not auto-detected: guessing the language on every token is the slow part of highlight.js.
 */
export function renderMarkdown(container, text, { final = true } = {}) {
  container.innerHTML = markdownToHtml(text);
  for (const code of container.querySelectorAll("pre > code")) decorateCode(code, final);
}

function decorateCode(code, final) {
  const language = [...code.classList].find((name) => name.startsWith("language-"))?.slice(9) || "";
  const known = language && hljs.getLanguage(language);
  if (known || final) {
    // highlightElement reads textContent and writes escaped spans, so it cannot add markup.
    hljs.highlightElement(code);
  }
  const pre = code.parentElement;
  const bar = document.createElement("div");
  bar.className = "code-bar";
  const label = document.createElement("span");
  label.className = "code-lang";
  label.textContent = language || code.result?.language || "";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "code-copy";
  copy.setAttribute("data-testid", "copy-code");
  copy.textContent = t("copyCode");
  copy.setAttribute("aria-label", t("copyCode"));
  copy.addEventListener("click", () => copyText(code.textContent, copy, t("copyCode")));
  bar.append(label, copy);
  pre.before(bar);
  const wrap = document.createElement("div");
  wrap.className = "code-block";
  bar.before(wrap);
  wrap.append(bar, pre);
}

/** Copy to the clipboard and say so on the button for a moment. */
export async function copyText(text, button, label) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context (http://LAN-IP is not one): fall back to execCommand.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (button) {
    button.textContent = t("copied");
    setTimeout(() => (button.textContent = label), 1500);
  }
}
