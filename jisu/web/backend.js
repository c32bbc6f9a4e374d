// Where answers come from: the server (its WebSocket) or this device (browser mode, device.js).
// The chat talks to `backend`, which forwards to the one chosen; the choice is a setting, so
// it is remembered. A page exported by `jisu export-web` has no server: it is always in device
// mode and shows no switch. This module also draws the device bar under the header: the
// model's download and load progress, and every reason device mode cannot run or runs slower.

import { t } from "./i18n.js";

const byId = (id) => document.getElementById(id);
const MB = 1024 * 1024;
// Until device mode is first used, its engine (and wllama's 0.3 MB of script) is not loaded.
const NO_DEVICE = { connected: false, ask: () => false, cancel() {}, prime() {}, start() {}, unload: async () => {} };

let page; // { settings, saveSettings, socket, hasServer, browserMode, onChange(), onDeviceReady(info), onUnauthorized() }
let device = NO_DEVICE;
let deviceStatus = { state: "idle" };

/** What the chat uses: the chosen side's connection. */
export const backend = {
  get connected() {
    return current().connected;
  },
  ask(payload, handler) {
    return current().ask(payload, handler);
  },
  cancel() {
    current().cancel();
  },
  /** A chat with this system prompt is on screen: the device may read it ahead. */
  prime(system) {
    if (mode() === "device") device.prime(system);
  },
  /** What to tell a user whose message could not be sent. */
  get notReadyText() {
    return t(mode() === "device" ? "errDeviceNotReady" : "errNotConnected");
  },
};

function current() {
  return mode() === "device" ? device : page.socket;
}

export function mode() {
  if (!page.hasServer) return "device";
  return page.browserMode ? page.settings.mode || "server" : "server";
}

/** Load the model into the page, or try again (after a failure, or with a new access key). */
export async function startDevice() {
  if (device === NO_DEVICE) {
    const { DeviceEngine } = await import("./device.js");
    if (device === NO_DEVICE) device = new DeviceEngine(onDeviceStatus);
  }
  device.start();
}

export function initBackend(context) {
  page = context;
  const toggle = byId("mode-toggle");
  toggle.hidden = !page.hasServer || !page.browserMode;
  toggle.addEventListener("click", () => setMode(mode() === "device" ? "server" : "device"));
  byId("device-retry").addEventListener("click", startDevice);
  drawToggle();
}

/** Connect the chosen side: the socket, or the model in this page. */
export function startBackend() {
  if (mode() === "device") startDevice();
  else page.socket.connect();
}

/** Switch sides; an answer still running on the old side is stopped first. */
export async function setMode(next) {
  if (next === mode()) return;
  current().cancel();
  page.settings.mode = next;
  page.saveSettings(page.settings);
  if (next === "device") {
    page.socket.close();
  } else {
    await device.unload();
    deviceStatus = { state: "idle" };
  }
  drawToggle();
  drawDeviceBar();
  startBackend();
  page.onChange();
}

function onDeviceStatus(status) {
  deviceStatus = status;
  drawDeviceBar();
  if (status.state === "ready") page.onDeviceReady(status);
  if (status.state === "failed" && status.code === "unauthorized") page.onUnauthorized();
  page.onChange();
}

function drawToggle() {
  const toggle = byId("mode-toggle");
  const onDevice = mode() === "device";
  toggle.textContent = t(onDevice ? "modeDeviceShort" : "modeServerShort");
  toggle.dataset.mode = mode();
  toggle.setAttribute("aria-label", t(onDevice ? "modeToServer" : "modeToDevice"));
  toggle.title = toggle.getAttribute("aria-label");
  document.body.dataset.mode = mode();
}

/** Redraw what depends on the language (called by the page after a language switch). */
export function redrawBackend() {
  drawToggle();
  drawDeviceBar();
}

function drawDeviceBar() {
  const bar = byId("device-bar");
  const status = deviceStatus;
  document.body.dataset.device = status.state; // tests wait for "ready"
  if (status.state === "ready") document.body.dataset.deviceBackend = `${status.backend}/${status.threads}`;
  if (mode() !== "device" || status.state === "idle") {
    bar.hidden = true;
    return;
  }
  const text = byId("device-text");
  const progress = byId("device-progress");
  const retry = byId("device-retry");
  bar.hidden = false;
  bar.dataset.state = status.state;
  progress.hidden = !(status.state === "downloading" || status.state === "preparing");
  retry.hidden = status.state !== "failed";
  if (status.state === "downloading" || status.state === "preparing") {
    const fraction = status.total ? status.done / status.total : 0;
    progress.value = fraction;
    text.textContent = t(status.state === "downloading" ? "deviceDownloading" : "devicePreparing", {
      done: (status.done / MB).toFixed(0), total: (status.total / MB).toFixed(0), pct: Math.floor(fraction * 100),
    });
  } else if (status.state === "checking" || status.state === "loading") {
    text.textContent = t(status.state === "checking" ? "deviceChecking" : "deviceLoading");
  } else if (status.state === "ready") {
    const notes = status.notices.map((notice) => t(`deviceNotice_${notice}`));
    text.textContent = [t("deviceReady", { threads: status.threads, backend: status.backend.toUpperCase() }), ...notes].join(" ");
    bar.hidden = notes.length === 0; // nothing to say when all is well: the header shows the model
  } else if (status.state === "failed") {
    text.textContent = failureText(status);
  }
}

function failureText(status) {
  const detail = status.detail || {};
  switch (status.code) {
    case "memory": return t("deviceFailMemory", { need: detail.needGb ?? "?", have: detail.haveGb ?? "?" });
    case "quota": return t("deviceFailQuota", { need: ((detail.needed || 0) / MB).toFixed(0), free: ((detail.free || 0) / MB).toFixed(0) });
    case "download": return t("deviceFailDownload", { message: status.message });
    case "corrupt": return t("deviceFailCorrupt");
    case "offline": return t("deviceFailOffline");
    case "unauthorized": return t("keyNeeded");
    case "server": return t("deviceFailServer", { message: status.message });
    default: return t("deviceFailLoad", { message: status.message });
  }
}
