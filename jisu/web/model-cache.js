// The browser's own copy of the model, for browser mode: the parts a manifest lists
// (web-model/manifest.json, written by jisu), fetched once into the Origin Private File System
// and kept across visits.
//
// Layout: jisu-models/<id>/<part file>, and jisu-models/<id>/complete.json written last. The id
// comes from the model file's content, never from the server's address, so the same model
// served from another address (or the static export) is found in the cache. A model counts as
// cached only when complete.json is there and every part has its size: a download cut halfway
// never passes for a model. A part cut halfway resumes where it stopped (HTTP Range); every part
// is checked against its sha256 before it counts.

const ROOT = "jisu-models";
const COMPLETE = "complete.json";
const LAST_MANIFEST = "jisu.deviceModel"; // what the page loaded last: for visits without a server

export class CacheError extends Error {
  constructor(code, message, detail = {}) {
    super(message);
    this.code = code; // "no_storage" | "quota" | "download" | "corrupt"
    this.detail = detail;
  }
}

export function storageAvailable() {
  return Boolean(navigator.storage?.getDirectory);
}

export function rememberManifest(manifest) {
  try {
    localStorage.setItem(LAST_MANIFEST, JSON.stringify(manifest));
  } catch { /* private mode: the next visit asks the server again */ }
}

export function lastManifest() {
  try {
    return JSON.parse(localStorage.getItem(LAST_MANIFEST) || "null");
  } catch {
    return null;
  }
}

async function modelDir(id, create) {
  const root = await navigator.storage.getDirectory();
  const models = await root.getDirectoryHandle(ROOT, { create: true });
  return models.getDirectoryHandle(id, { create });
}

async function fileIfExists(dir, name) {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch {
    return null;
  }
}

/** The model's parts as Files when the whole model is cached, else null. */
export async function cachedParts(manifest) {
  if (!storageAvailable()) return null;
  let dir;
  try {
    dir = await modelDir(manifest.id, false);
  } catch {
    return null;
  }
  if (!(await fileIfExists(dir, COMPLETE))) return null;
  const files = [];
  for (const part of manifest.parts) {
    const file = await fileIfExists(dir, part.file);
    if (!file || file.size !== part.size) return null;
    files.push(file);
  }
  return files;
}

/** Fetch what is missing, then return the parts as Files. onProgress({done, total}) in bytes;
 * `baseUrl` is where the parts are (web-model/<id>/), `headers` what the server wants (a key). */
export async function download(manifest, baseUrl, { onProgress, signal, headers = {} } = {}) {
  if (!storageAvailable()) return downloadToMemory(manifest, baseUrl, { onProgress, signal, headers });
  const dir = await modelDir(manifest.id, true);
  await checkQuota(manifest, dir);
  navigator.storage.persist?.().catch(() => {}); // ask the browser not to evict it under pressure
  const sizes = [];
  for (const part of manifest.parts) sizes.push((await fileIfExists(dir, part.file))?.size ?? 0);
  const report = () => onProgress?.({ done: sizes.reduce((a, b) => a + b, 0), total: manifest.size });
  report();
  for (const [index, part] of manifest.parts.entries()) {
    if (sizes[index] !== part.size) {
      await fetchPart(dir, part, sizes[index], `${baseUrl}${part.file}`, { signal, headers },
        (have) => { sizes[index] = have; report(); });
    }
    if (!(await partIsIntact(dir, part))) {
      await dir.removeEntry(part.file);
      throw new CacheError("corrupt", `${part.file} does not match its checksum`);
    }
  }
  const complete = await (await dir.getFileHandle(COMPLETE, { create: true })).createWritable();
  await complete.write(JSON.stringify(manifest));
  await complete.close();
  await removeOtherModels(manifest.id);
  return cachedParts(manifest);
}

async function checkQuota(manifest, dir) {
  const estimate = await navigator.storage.estimate?.();
  if (!estimate?.quota) return;
  let have = 0;
  for (const part of manifest.parts) have += (await fileIfExists(dir, part.file))?.size ?? 0;
  const free = estimate.quota - (estimate.usage ?? 0);
  if (free < manifest.size - have) {
    throw new CacheError("quota", "not enough storage", { needed: manifest.size - have, free });
  }
}

/** GET one part; a network failure or an HTTP error is a CacheError("download"). */
async function requestPart(url, part, { signal, headers }) {
  let response;
  try {
    // no-store: the part goes to OPFS (or memory); the HTTP cache would keep a second copy.
    response = await fetch(url, { headers, cache: "no-store", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new CacheError("download", `network error (${error.message})`);
  }
  if (!response.ok) throw new CacheError("download", `HTTP ${response.status} for ${part.file}`);
  return response;
}

/** Hand each chunk of the body to `take` as it arrives; a broken body is a CacheError. */
async function readBody(response, take) {
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      await take(value);
    }
  } catch (error) {
    if (error.name === "AbortError" || error instanceof CacheError) throw error;
    throw new CacheError("download", `the download broke off (${error.message})`);
  }
}

function checkArrived(part, have) {
  if (have !== part.size) throw new CacheError("download", `${part.file}: ${have} of ${part.size} bytes arrived`);
}

/** Append the rest of one part to what is stored, resuming at `have` bytes when the server
 * honours Range (a server that sends the whole part again gets it written from the start). */
async function fetchPart(dir, part, have, url, { signal, headers }, onBytes) {
  const ranged = have > 0 && have < part.size ? { ...headers, Range: `bytes=${have}-` } : headers;
  const response = await requestPart(url, part, { signal, headers: ranged });
  const resumed = response.status === 206;
  if (!resumed) have = 0;
  const handle = await dir.getFileHandle(part.file, { create: true });
  const writable = await handle.createWritable({ keepExistingData: resumed });
  try {
    if (resumed) await writable.seek(have);
    else await writable.truncate(0);
    await readBody(response, async (chunk) => {
      await writable.write(chunk);
      have += chunk.byteLength;
      onBytes(have);
    });
  } finally {
    await writable.close(); // what arrived stays, so the next attempt resumes after it
  }
  checkArrived(part, have);
}

/** Without OPFS (a page that is not a secure context, e.g. plain http from another machine)
 * nothing can be kept: the parts are fetched into memory for this visit only. */
async function downloadToMemory(manifest, baseUrl, { onProgress, signal, headers }) {
  const files = [];
  let done = 0;
  for (const part of manifest.parts) {
    const response = await requestPart(`${baseUrl}${part.file}`, part, { signal, headers });
    const chunks = [];
    await readBody(response, (chunk) => {
      chunks.push(chunk);
      done += chunk.byteLength;
      onProgress?.({ done, total: manifest.size });
    });
    const file = new File(chunks, part.file);
    checkArrived(part, file.size);
    if (!(await matchesChecksum(file, part))) throw new CacheError("corrupt", `${part.file} does not match its checksum`);
    files.push(file);
  }
  return files;
}

async function partIsIntact(dir, part) {
  const file = await fileIfExists(dir, part.file);
  if (!file || file.size !== part.size) return false;
  return matchesChecksum(file, part);
}

async function matchesChecksum(blob, part) {
  if (!crypto.subtle) return true; // only in secure contexts; the size was checked
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  const hex = Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return hex === part.sha256;
}

/** One model at a time: a new one replaces the old (a phone has little room). */
async function removeOtherModels(keepId) {
  const root = await navigator.storage.getDirectory();
  const models = await root.getDirectoryHandle(ROOT, { create: true });
  const others = [];
  for await (const name of models.keys()) if (name !== keepId) others.push(name);
  for (const name of others) await models.removeEntry(name, { recursive: true }).catch(() => {});
}
