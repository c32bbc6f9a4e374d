// The banner shown when the server's stand-in model answers because the default could not be
// fetched: one sentence on one line (clipped on a phone, whole in its tooltip), "why?" to read
// the server's details, and a dismiss button remembered for this tab's session.

import { t } from "./i18n.js";

const DISMISSED_KEY = "jisu.fallbackDismissed"; // holds the note dismissed: a new one shows again
const byId = (id) => document.getElementById(id);

export function initFallbackNote() {
  byId("fallback-why").addEventListener("click", () => setOpen(byId("fallback-detail").hidden));
  byId("fallback-dismiss").addEventListener("click", () => {
    sessionStorage.setItem(DISMISSED_KEY, byId("fallback-note").dataset.note);
    byId("fallback-note").hidden = true;
  });
}

/** Show the banner for `model` (the /v1/models entry that answers), or hide it when the model
 * is no stand-in, is unknown yet, or runs in the browser (null). */
export function showFallbackNote(model) {
  const banner = byId("fallback-note");
  const note = model?.fallback_note || "";
  banner.dataset.note = note;
  banner.hidden = !note || sessionStorage.getItem(DISMISSED_KEY) === note;
  const text = byId("fallback-text");
  text.textContent = note ? t("fallbackNote", { name: model.name }) : "";
  text.title = text.textContent;
  const detail = model?.fallback_detail || "";
  byId("fallback-why").hidden = !detail;
  setOpen(Boolean(detail) && !byId("fallback-detail").hidden); // stays open across a language switch
  byId("fallback-detail").textContent = detail;
}

function setOpen(open) {
  const why = byId("fallback-why");
  byId("fallback-detail").hidden = !open;
  byId("fallback-note").classList.toggle("open", open); // open, the sentence may wrap
  why.setAttribute("aria-expanded", String(open));
  why.textContent = t(open ? "fallbackHide" : "fallbackWhy");
}
