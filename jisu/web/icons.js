// A dozen line icons as SVG built in code: no icon font or sprite file to vendor, and they
// take the text colour (stroke="currentColor"). Buttons carry their own aria-label; the
// icons are aria-hidden.

const SHAPES = {
  menu: [["path", { d: "M4 6h16M4 12h16M4 18h16" }]],
  plus: [["path", { d: "M12 5v14M5 12h14" }]],
  send: [["path", { d: "M12 19V5M5 12l7-7 7 7" }]],
  stop: [["rect", { x: 7, y: 7, width: 10, height: 10, rx: 1.5, fill: "currentColor" }]],
  settings: [
    ["path", { d: "M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1" }],
    ["circle", { cx: 15, cy: 6, r: 2 }],
    ["circle", { cx: 9, cy: 12, r: 2 }],
    ["circle", { cx: 17, cy: 18, r: 2 }],
  ],
  sun: [
    ["circle", { cx: 12, cy: 12, r: 4 }],
    ["path", { d: "M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4" }],
  ],
  moon: [["path", { d: "M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z" }]],
  system: [["path", { d: "M3 4h18v12H3zM8 20h8M12 16v4" }]],
  copy: [
    ["rect", { x: 9, y: 9, width: 12, height: 12, rx: 2 }],
    ["path", { d: "M5 15V5a2 2 0 0 1 2-2h10" }],
  ],
  edit: [["path", { d: "M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z" }]],
  regenerate: [["path", { d: "M21 12a9 9 0 1 1-3-6.7L21 8M21 3v5h-5" }]],
  trash: [["path", { d: "M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6M10 11v6M14 11v6" }]],
  close: [["path", { d: "M6 6l12 12M18 6L6 18" }]],
  search: [["circle", { cx: 11, cy: 11, r: 7 }], ["path", { d: "M20 20l-3.5-3.5" }]],
  paperclip: [["path", { d: "M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9" }]],
  file: [["path", { d: "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5" }]],
};

const NS = "http://www.w3.org/2000/svg";

export function icon(name) {
  const svg = document.createElementNS(NS, "svg");
  for (const [key, value] of Object.entries({
    viewBox: "0 0 24 24", width: 18, height: 18, fill: "none", stroke: "currentColor",
    "stroke-width": 2, "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true",
  })) svg.setAttribute(key, value);
  svg.classList.add("icon");
  for (const [tag, attrs] of SHAPES[name] || []) {
    const shape = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs)) shape.setAttribute(key, value);
    svg.append(shape);
  }
  return svg;
}

/** Fill every <span data-icon="name"> placeholder in the static page. */
export function fillIcons(root = document) {
  for (const slot of root.querySelectorAll("[data-icon]")) slot.replaceChildren(icon(slot.dataset.icon));
}

/** A small icon button with an accessible name. */
export function iconButton(name, label, testid, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "icon-btn";
  button.setAttribute("aria-label", label);
  button.title = label;
  if (testid) button.dataset.testid = testid;
  button.append(icon(name));
  if (onClick) button.addEventListener("click", onClick);
  return button;
}
