// The server's access key, when it has one. `jisu serve` on a LAN address prints a link that
// carries the key in the URL's fragment (#key=...), which browsers never send to a server; the
// page moves it into localStorage and out of the address bar (so it is not bookmarked or shared
// by accident). Every API call sends it as `Authorization: Bearer`, and the WebSocket sends it
// as its first message (browsers cannot set headers on a WebSocket).

const STORAGE_KEY = "jisu.apiKey";

export function takeKeyFromUrl() {
  const match = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (!match) return;
  setApiKey(decodeURIComponent(match[1]));
  const rest = location.hash.replace(/(?:^#|&)key=[^&]+/, "").replace(/^&/, "");
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
}

export function apiKey() {
  return localStorage.getItem(STORAGE_KEY) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(STORAGE_KEY, key);
  else localStorage.removeItem(STORAGE_KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}
