// Uploads: file picker and drag-and-drop, several files, a progress bar per file and the
// batch's MB/s. A file up to 8 MiB is one PUT /v1/objects; a larger one goes through an
// upload session (POST /v1/uploads, PUT chunks with 4 in flight, complete). The session id
// is kept in localStorage under the target and the file's name, size and lastModified, so
// picking the same file again after a reload (or a failure) asks
// GET /v1/uploads/{id}/missing-chunks and sends only the chunks not yet stored.

import { ApiError, callJson, objectPath, sendWithProgress } from "./api.js";
import { formatBytes, h } from "./dom.js";

export const SESSION_THRESHOLD = 8 * 1024 * 1024;
const CHUNK_SIZE = 4 * 1024 * 1024;
const CHUNKS_IN_FLIGHT = 4;
const FILES_IN_FLIGHT = 2;
const CHUNK_TRIES = 3;
const RESUME_PREFIX = "dfspeer.upload:";

function resumeKey(bucket, key, file) {
  return RESUME_PREFIX + JSON.stringify([bucket, key, file.name, file.size, file.lastModified]);
}

/** The interrupted uploads of `bucket` this browser remembers: [{key, name, size}]. */
export function pendingUploads(bucket) {
  const found = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const name = localStorage.key(i);
    if (!name || !name.startsWith(RESUME_PREFIX)) continue;
    try {
      const [b, key, fileName, size] = JSON.parse(name.slice(RESUME_PREFIX.length));
      if (b === bucket) found.push({ key, name: fileName, size });
    } catch {
      localStorage.removeItem(name);
    }
  }
  return found;
}

/** Counters for tests and the curious: chunks sent, chunks skipped on resume. */
export const stats = { chunksSent: 0, chunksResumed: 0, sessionsResumed: 0 };
window.dfspeerUploadStats = stats;

export function createUploader({ bucket, prefix, onFileDone }) {
  const input = h("input#file-input", { type: "file", multiple: true });
  const speed = h("span.muted#upload-speed", {}, "");
  const rows = h("ul.uploads#upload-list");
  const pending = h("p.muted#upload-pending", { hidden: true });
  const zone = h("div.dropzone#dropzone", {},
    h("strong", {}, "Drop files here"), " or ", h("label.button", {}, "choose files", input),
    h("span.muted", {}, ` → ${bucket}/${prefix}`));
  const element = h("section.card.upload", {}, zone, pending, h("div.upload-head", {}, speed), rows);
  const xhrs = new Set();
  const queue = [];
  let running = 0;
  let batch = null; // {started, sent, total, done}

  function showPending() {
    const list = pendingUploads(bucket);
    pending.hidden = list.length === 0;
    pending.textContent = list.length
      ? `Interrupted upload(s) that resume when you pick the same file again: ${list.map((p) => `${p.key} (${formatBytes(p.size)})`).join(", ")}`
      : "";
  }

  function updateSpeed() {
    if (!batch) return;
    const seconds = Math.max((performance.now() - batch.started) / 1000, 0.001);
    const rate = batch.sent / seconds / 1e6;
    speed.textContent = `${batch.done}/${batch.files} file(s) · ${formatBytes(batch.sent)} sent · ${rate.toFixed(1)} MB/s`;
  }

  function add(files) {
    if (!batch || batch.done === batch.files) {
      batch = { started: performance.now(), sent: 0, files: 0, done: 0 };
    }
    for (const file of files) {
      const key = prefix + file.name;
      const bar = h("progress", { max: file.size || 1, value: 0 });
      const note = h("span.note", {}, "waiting");
      const row = h("li.upload-row", { dataset: { key, state: "waiting" } },
        h("span.name", {}, key), h("span.size", {}, formatBytes(file.size)), bar, note);
      rows.prepend(row);
      batch.files += 1;
      queue.push({ file, key, bar, note, row });
    }
    updateSpeed();
    pump();
  }

  function pump() {
    while (running < FILES_IN_FLIGHT && queue.length) {
      const job = queue.shift();
      running += 1;
      run(job).finally(() => {
        running -= 1;
        batch.done += 1;
        updateSpeed();
        pump();
      });
    }
  }

  async function run(job) {
    const { file, key, bar, note, row } = job;
    row.dataset.state = "uploading";
    note.textContent = "uploading";
    let last = 0;
    const progress = (stored, sentNow) => {
      bar.value = stored;
      if (sentNow) batch.sent += sentNow;
      updateSpeed();
    };
    try {
      let result;
      if (file.size <= SESSION_THRESHOLD) {
        result = await sendWithProgress("PUT", objectPath(bucket, key), file, {
          headers: { "Content-Type": file.type || "application/octet-stream" },
          xhrs,
          onProgress: (loaded) => { progress(loaded, loaded - last); last = loaded; },
        });
      } else {
        result = await sessionUpload(file, key, note, progress);
      }
      bar.value = bar.max;
      row.dataset.state = "done";
      note.textContent = `done · sha256 ${result.sha256.slice(0, 12)}…`;
      note.title = result.sha256;
      if (onFileDone) onFileDone(result);
    } catch (exc) {
      row.dataset.state = "failed";
      note.textContent = `failed: ${exc.message}`;
      note.classList.add("error");
    }
    showPending();
  }

  async function openSession(file, key) {
    const remembered = localStorage.getItem(resumeKey(bucket, key, file));
    if (remembered) {
      try {
        const session = await callJson("GET", `/v1/uploads/${encodeURIComponent(remembered)}`);
        const { missing } = await callJson("GET", `/v1/uploads/${encodeURIComponent(remembered)}/missing-chunks`);
        if (session.state === "initiated" || session.state === "in_progress") {
          stats.sessionsResumed += 1;
          return { session, missing, resumed: true };
        }
      } catch (exc) {
        if (!(exc instanceof ApiError) || exc.status === 401) throw exc;
      }
      localStorage.removeItem(resumeKey(bucket, key, file));
    }
    const init = { bucket, key, size: file.size, content_type: file.type || "application/octet-stream" };
    let session;
    try {
      session = await callJson("POST", "/v1/uploads", { json: { ...init, chunk_size: CHUNK_SIZE } });
    } catch (exc) {
      if (exc.code !== "invalid_chunk_size" && exc.code !== "invalid_argument") throw exc;
      session = await callJson("POST", "/v1/uploads", { json: init }); // the peer's default
    }
    localStorage.setItem(resumeKey(bucket, key, file), session.upload_id);
    showPending();
    const missing = Array.from({ length: session.total_chunks }, (_, i) => i);
    return { session, missing, resumed: false };
  }

  async function sessionUpload(file, key, note, progress) {
    const { session, missing, resumed } = await openSession(file, key);
    const id = encodeURIComponent(session.upload_id);
    const size = session.chunk_size;
    const chunkBytes = (i) => Math.min(size, file.size - i * size);
    let stored = file.size - missing.reduce((sum, i) => sum + chunkBytes(i), 0);
    stats.chunksResumed += session.total_chunks - missing.length;
    note.textContent = resumed
      ? `resuming: ${session.total_chunks - missing.length} of ${session.total_chunks} chunks already stored`
      : `${session.total_chunks} chunks of ${formatBytes(size)}`;
    progress(stored, 0);
    const inFlight = new Map(); // index -> bytes sent so far
    const show = () => progress(stored + [...inFlight.values()].reduce((a, b) => a + b, 0), 0);
    const todo = [...missing];

    async function sendChunk(index) {
      const body = file.slice(index * size, index * size + chunkBytes(index));
      for (let attempt = 1; ; attempt += 1) {
        inFlight.set(index, 0);
        try {
          await sendWithProgress("PUT", `/v1/uploads/${id}/chunks/${index}`, body, {
            xhrs,
            onProgress: (loaded) => {
              progress(stored, loaded - inFlight.get(index));
              inFlight.set(index, loaded);
              show();
            },
          });
          inFlight.delete(index);
          stored += body.size;
          stats.chunksSent += 1;
          show();
          return;
        } catch (exc) {
          inFlight.delete(index);
          const retriable = exc.status === 0 || exc.status >= 500 || exc.status === 429;
          if (!retriable || attempt >= CHUNK_TRIES || exc.code === "aborted") throw exc;
          await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
        }
      }
    }

    async function worker() {
      while (todo.length) await sendChunk(todo.shift());
    }
    await Promise.all(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, todo.length) }, worker));
    note.textContent = "completing";
    const result = await callJson("POST", `/v1/uploads/${id}/complete`, { json: {} });
    localStorage.removeItem(resumeKey(bucket, key, file));
    return result;
  }

  input.addEventListener("change", () => {
    add([...input.files]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...(event.dataTransfer ? event.dataTransfer.files : [])];
    if (files.length) add(files);
  });
  showPending();

  return {
    element,
    /** Leaving the page: stop every request in flight (sessions stay resumable). */
    detach() {
      queue.length = 0;
      for (const xhr of xhrs) xhr.abort();
    },
  };
}
