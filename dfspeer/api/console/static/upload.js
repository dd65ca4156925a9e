// Uploads: file and folder pickers and drag-and-drop (folders keep their relative paths),
// several files at once, a progress bar per file and for the batch with MB/s and time left,
// cancel (aborts the session on the server) and pause / resume per file. An options panel
// sets the content type (empty: each file's own File.type, else application/octet-stream)
// and user metadata pairs, checked here with the server's rules before anything is sent:
// one-shot PUTs carry them as Content-Type and X-Meta-<name> headers, sessions as the
// "content_type" and "metadata" fields of POST /v1/uploads.
//
// A file up to 8 MiB is one PUT /v1/objects; a larger one goes through an upload session
// (POST /v1/uploads, PUT 4 MiB chunks with 4 in flight, each retried with exponential
// backoff, then complete). The session id is kept in localStorage under the target and the
// file's name, size and lastModified, so picking the same file again after a reload (or a
// failure) asks GET /v1/uploads/{id}/missing-chunks and sends only the chunks not yet
// stored. The bucket's open sessions (GET /v1/uploads?bucket=) are listed with an abort
// button each.

import { ApiError, callJson, describe, objectPath, sendWithProgress } from "./api.js";
import { formatBytes, formatDuration, formatTime, h, labelled, messageSlot, replace } from "./dom.js";

export const SESSION_THRESHOLD = 8 * 1024 * 1024;
const CHUNK_SIZE = 4 * 1024 * 1024;
const CHUNKS_IN_FLIGHT = 4;
const FILES_IN_FLIGHT = 2;
const CHUNK_TRIES = 6;
const BACKOFF_MS = 400;
const RESUME_PREFIX = "dfspeer.upload:";
const DEFAULT_TYPE = "application/octet-stream";
// the server's rules (dfspeer.api.public.user_meta and the Content-Type check of PUT)
const META_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
export const MAX_META_BYTES = 2048;
export const MAX_CONTENT_TYPE_CHARS = 256;

/**
 * Check the upload options as the server would: {contentType, meta} or {error, field}
 * (`field`: the index of the metadata pair at fault, or "type"). Names are lower-cased
 * (the server stores them so); values are trimmed.
 */
export function checkOptions(contentType, pairs) {
  const type = contentType.trim();
  if (type && (type.length > MAX_CONTENT_TYPE_CHARS || !PRINTABLE_ASCII.test(type))) {
    return { error: `The content type must be 1 to ${MAX_CONTENT_TYPE_CHARS} printable ASCII characters.`, field: "type" };
  }
  const meta = {};
  let bytes = 0;
  for (const [i, [rawName, rawValue]] of pairs.entries()) {
    const name = rawName.trim().toLowerCase().replace(/^x-meta-/, "");
    const value = rawValue.trim();
    if (!name && !value) continue; // an empty row is ignored
    if (!META_NAME.test(name)) {
      return {
        error: `Metadata name “${rawName.trim()}” is not valid: use letters, digits and ! # $ % & ' * + - . ^ _ \` | ~ (no spaces, no colon).`,
        field: i,
      };
    }
    if (Object.hasOwn(meta, name)) return { error: `Metadata name “${name}” is given twice.`, field: i };
    if (!PRINTABLE_ASCII.test(value)) {
      return { error: `The value of “${name}” must be printable ASCII (no accents, no line breaks).`, field: i };
    }
    meta[name] = value;
    bytes += new TextEncoder().encode(name + value).length;
  }
  if (bytes > MAX_META_BYTES) {
    return { error: `The metadata is ${bytes} bytes: at most ${MAX_META_BYTES} bytes of names and values are allowed.`, field: pairs.length - 1 };
  }
  return { contentType: type, meta };
}

function resumeKey(bucket, key, file) {
  return RESUME_PREFIX + JSON.stringify([bucket, key, file.name, file.size, file.lastModified]);
}

/** The interrupted uploads of `bucket` this browser remembers: [{key, name, size, id}]. */
export function pendingUploads(bucket) {
  const found = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const name = localStorage.key(i);
    if (!name || !name.startsWith(RESUME_PREFIX)) continue;
    try {
      const [b, key, fileName, size] = JSON.parse(name.slice(RESUME_PREFIX.length));
      if (b === bucket) found.push({ key, name: fileName, size, id: localStorage.getItem(name), storageKey: name });
    } catch {
      localStorage.removeItem(name);
    }
  }
  return found;
}

function forgetSession(id) {
  for (let i = localStorage.length - 1; i >= 0; i -= 1) {
    const name = localStorage.key(i);
    if (name && name.startsWith(RESUME_PREFIX) && localStorage.getItem(name) === id) localStorage.removeItem(name);
  }
}

/** Counters for tests and the curious: chunks sent, chunks skipped on resume. */
// `retries`: one {index, attempt, waitMs, status} per chunk retry, in order.
export const stats = { chunksSent: 0, chunksResumed: 0, sessionsResumed: 0, peakChunksInFlight: 0, retries: [] };
window.dfspeerUploadStats = stats;

class Stopped extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason; // "paused" | "cancelled"
  }
}

/** Every file under a dropped directory entry, with its path relative to the drop. */
async function filesOf(entry, path = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, relative: path + file.name }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((c) => filesOf(c, `${path}${entry.name}/`)));
  return nested.flat();
}

/** The options of the next uploads: content type and user metadata pairs. */
function optionsPanel() {
  const type = h("input#upload-content-type", {
    name: "content_type", autocomplete: "off", spellcheck: "false", maxlength: String(MAX_CONTENT_TYPE_CHARS),
    placeholder: "each file's own type", "aria-describedby": "upload-type-hint",
  });
  const list = h("ul.meta-pairs#meta-pairs", { "aria-label": "User metadata" });
  const note = messageSlot("upload-options-message");
  const summary = h("summary#upload-options-summary", {}, "");
  let serial = 0;
  const pairs = () => [...list.children].map((li) => [li.nameInput.value, li.valueInput.value]);
  function describeChoice() {
    const n = pairs().filter(([a, b]) => a.trim() || b.trim()).length;
    summary.textContent = `Content type and metadata: ${type.value.trim() || "each file's own type"}, ` +
      `${n ? `${n} metadata entr${n === 1 ? "y" : "ies"}` : "no metadata"}`;
  }
  function addPair(name = "", value = "") {
    serial += 1;
    const nameInput = h(`input.meta-name#meta-name-${serial}`, { autocomplete: "off", spellcheck: "false", value: name });
    const valueInput = h(`input.meta-value#meta-value-${serial}`, { autocomplete: "off", value });
    const li = h("li.meta-pair", {}, labelled("Name", nameInput), labelled("Value", valueInput),
      h("button.small.secondary.meta-remove", { type: "button", "aria-label": `Remove metadata entry ${serial}`, onclick: () => {
        li.remove();
        describeChoice();
        add.focus();
      } }, "Remove"));
    li.nameInput = nameInput;
    li.valueInput = valueInput;
    list.append(li);
    describeChoice();
    return nameInput;
  }
  const add = h("button.small.secondary#meta-add", { type: "button", onclick: () => addPair().focus() }, "Add metadata");
  const element = h("details.upload-options#upload-options", {}, summary,
    h("div.options-body", {},
      labelled("Content type", type),
      h("p.muted.hint#upload-type-hint", {}, `Empty: each file's type as the browser knows it, else ${DEFAULT_TYPE}.`),
      h("fieldset", {}, h("legend", {}, "User metadata (stored as X-Meta-<name>; names are lower-cased)"), list, add),
      note));
  element.addEventListener("input", () => { describeChoice(); note.set(""); });
  describeChoice();
  return {
    element,
    addPair,
    /** {contentType, meta}, or null after saying what is wrong (and focusing it). */
    read() {
      const checked = checkOptions(type.value, pairs());
      if (!checked.error) return checked;
      element.open = true;
      note.set(`Nothing was uploaded: ${checked.error}`);
      const target = checked.field === "type" ? type : list.children[checked.field] && list.children[checked.field].nameInput;
      if (target) target.focus();
      return null;
    },
  };
}

export function createUploader({ bucket, prefix, onFileDone }) {
  const input = h("input#file-input.picker", { type: "file", multiple: true });
  const folderInput = h("input#folder-input.picker", { type: "file", multiple: true, webkitdirectory: true });
  const overall = h("progress#upload-overall", { max: 1, value: 0, "aria-label": "All uploads" });
  const speed = h("span#upload-speed", { role: "status" }, "");
  const rows = h("ul.uploads#upload-list", { "aria-label": "Uploads" });
  const pending = h("div#upload-pending", { hidden: true });
  const zone = h("div.dropzone#dropzone", {},
    h("strong", {}, "Drop files or folders here"), " or ",
    h("label.button", { for: "file-input" }, "choose files", input), " ",
    h("label.button.secondary", { for: "folder-input" }, "choose a folder", folderInput),
    h("span.muted", {}, ` → ${bucket}/${prefix}`));
  const options = optionsPanel();
  const element = h("section.card.upload", { "aria-label": "Upload" }, zone, options.element, pending,
    h("div.upload-head", { hidden: true }, overall, speed), rows);
  const queue = [];
  let running = 0;
  let batch = null; // {started, sent, total, stored, files, done}

  async function showPending() {
    const local = pendingUploads(bucket);
    let open = [];
    try {
      open = (await callJson("GET", `/v1/uploads?bucket=${encodeURIComponent(bucket)}`, { quiet: true })).uploads;
    } catch {
      open = []; // a reader without write rights sees no sessions
    }
    const known = new Set(local.map((p) => p.id));
    const active = new Set(queue.concat([...rows.children].map((r) => r.job)).filter(Boolean).map((j) => j.sessionId));
    const rowsOf = open.filter((u) => !active.has(u.upload_id)).map((u) => {
      const note = messageSlot();
      return h("li", { dataset: { upload: u.upload_id } },
        h("code", {}, u.key), ` · ${u.size === null || u.size === undefined ? "size unknown" : formatBytes(u.size)} · started ${formatTime(u.created)}`,
        known.has(u.upload_id) ? " · resumes when you pick the same file again" : "", " ",
        h("button.small.danger.session-abort", { type: "button", "aria-label": `Abort the upload of ${u.key}`, onclick: async () => {
          try {
            await callJson("DELETE", `/v1/uploads/${encodeURIComponent(u.upload_id)}`);
          } catch (exc) {
            if (!(exc instanceof ApiError) || exc.code !== "upload_not_open") {
              note.set(`Could not abort: ${describe(exc)}`);
              return;
            }
          }
          forgetSession(u.upload_id);
          showPending();
        } }, "Abort"), note);
    });
    pending.hidden = rowsOf.length === 0;
    replace(pending, rowsOf.length ? [h("h2", {}, "Unfinished uploads"), h("ul.sessions", {}, rowsOf)] : []);
  }

  function updateSpeed() {
    if (!batch) return;
    const seconds = Math.max((performance.now() - batch.started) / 1000, 0.001);
    const rate = batch.sent / seconds;
    const stored = [...rows.children].reduce((sum, r) => sum + (r.job && r.job.batch === batch ? r.job.bar.value : 0), 0);
    overall.max = Math.max(batch.total, 1);
    overall.value = Math.min(stored, batch.total);
    const left = rate > 0 ? (batch.total - stored) / rate : NaN;
    const pct = batch.total ? Math.floor((100 * stored) / batch.total) : 100;
    speed.textContent = `${batch.done}/${batch.files} file(s) · ${pct} % · ${formatBytes(stored)} of ${formatBytes(batch.total)} · ` +
      `${(rate / 1e6).toFixed(1)} MB/s · ${batch.done === batch.files ? "done" : `${formatDuration(left)} left`}`;
  }

  function add(items) {
    if (!items.length) return;
    const chosen = options.read();
    if (!chosen) return;
    if (!batch || batch.done === batch.files) {
      batch = { started: performance.now(), sent: 0, total: 0, files: 0, done: 0 };
    }
    element.querySelector(".upload-head").hidden = false;
    for (const { file, relative } of items) {
      const key = prefix + (relative || file.name);
      const bar = h("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${key}` });
      const note = h("span.note", {}, "waiting");
      const pause = h("button.small.secondary.upload-pause", { type: "button", hidden: true, "aria-label": `Pause ${key}` }, "Pause");
      const cancel = h("button.small.danger.upload-cancel", { type: "button", "aria-label": `Cancel ${key}` }, "Cancel");
      const row = h("li.upload-row", { dataset: { key, state: "waiting" } },
        h("span.name", { title: key }, key), h("span.size", {}, formatBytes(file.size)), bar, note,
        h("span.row-actions", {}, pause, cancel));
      const job = {
        file, key, bar, note, row, pause, cancel, xhrs: new Set(), stop: null, sessionId: "", batch,
        contentType: chosen.contentType || file.type || DEFAULT_TYPE, meta: chosen.meta,
      };
      row.job = job;
      pause.addEventListener("click", () => (job.stop === "paused" ? resume(job) : halt(job, "paused")));
      cancel.addEventListener("click", () => halt(job, "cancelled"));
      rows.prepend(row);
      batch.files += 1;
      batch.total += file.size;
      queue.push(job);
    }
    updateSpeed();
    pump();
  }

  function halt(job, reason) {
    const waiting = queue.indexOf(job);
    job.stop = reason;
    for (const xhr of job.xhrs) xhr.abort();
    if (waiting >= 0) {
      queue.splice(waiting, 1);
      finish(job, reason);
      if (reason === "cancelled") job.batch.done += 1;
    }
  }

  function resume(job) {
    job.stop = null;
    job.pause.textContent = "Pause";
    job.pause.setAttribute("aria-label", `Pause ${job.key}`);
    job.row.dataset.state = "waiting";
    job.note.textContent = "waiting";
    queue.push(job);
    pump();
  }

  function pump() {
    while (running < FILES_IN_FLIGHT && queue.length) {
      const job = queue.shift();
      running += 1;
      run(job).then((final) => {
        running -= 1;
        if (final) job.batch.done += 1;
        updateSpeed();
        pump();
      });
    }
  }

  async function abortSession(job) {
    if (!job.sessionId) return;
    try {
      await callJson("DELETE", `/v1/uploads/${encodeURIComponent(job.sessionId)}`);
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.code !== "upload_not_open") throw exc;
    }
    forgetSession(job.sessionId);
  }

  function finish(job, state, text) {
    job.row.dataset.state = state;
    job.note.classList.toggle("error", state === "failed");
    job.note.textContent = text || state;
    job.pause.hidden = state !== "paused";
    if (state === "paused") {
      job.pause.textContent = "Resume";
      job.pause.setAttribute("aria-label", `Resume ${job.key}`);
    }
    job.cancel.hidden = state === "done" || state === "cancelled" || state === "failed";
  }

  /** One file; resolves true when it is over for good (done, failed or cancelled). */
  async function run(job) {
    const { file, key, bar, note, row } = job;
    row.dataset.state = "uploading";
    note.textContent = "uploading";
    job.pause.hidden = file.size <= SESSION_THRESHOLD;
    let last = 0;
    const progress = (stored, sentNow) => {
      bar.value = stored;
      if (sentNow > 0) job.batch.sent += sentNow;
      updateSpeed();
    };
    try {
      let result;
      if (file.size <= SESSION_THRESHOLD) {
        result = await sendWithProgress("PUT", objectPath(bucket, key), file, {
          headers: {
            "Content-Type": job.contentType,
            ...Object.fromEntries(Object.entries(job.meta).map(([n, v]) => [`X-Meta-${n}`, v])),
          },
          xhrs: job.xhrs,
          onProgress: (loaded) => { progress(loaded, loaded - last); last = loaded; },
        });
      } else {
        result = await sessionUpload(job, progress);
      }
      bar.value = bar.max;
      finish(job, "done", `done · sha256 ${result.sha256.slice(0, 12)}…`);
      note.title = result.sha256;
      if (onFileDone) onFileDone(result);
      return true;
    } catch (exc) {
      if (job.stop === "paused") {
        finish(job, "paused", `paused at ${formatBytes(bar.value)}`);
        return false;
      }
      if (job.stop === "cancelled") {
        try {
          await abortSession(job);
          finish(job, "cancelled", job.sessionId ? "cancelled: the session was aborted" : "cancelled");
        } catch (abortError) {
          finish(job, "failed", `cancelled, but the session could not be aborted: ${describe(abortError)}`);
        }
        return true;
      }
      finish(job, "failed", `failed: ${describe(exc)}`);
      return true;
    } finally {
      showPending();
    }
  }

  async function openSession(job) {
    const { file, key } = job;
    const remembered = localStorage.getItem(resumeKey(bucket, key, file));
    if (remembered) {
      try {
        const session = await callJson("GET", `/v1/uploads/${encodeURIComponent(remembered)}`);
        const { missing } = await callJson("GET", `/v1/uploads/${encodeURIComponent(remembered)}/missing-chunks`);
        const same = session.content_type === job.contentType &&
          JSON.stringify(Object.entries(session.metadata || {}).sort()) === JSON.stringify(Object.entries(job.meta).sort());
        if (same && (session.state === "initiated" || session.state === "in_progress")) {
          stats.sessionsResumed += 1;
          return { session, missing, resumed: true };
        }
      } catch (exc) {
        if (!(exc instanceof ApiError) || exc.status === 401) throw exc;
      }
      localStorage.removeItem(resumeKey(bucket, key, file));
    }
    // another content type or other metadata than the remembered session's: a new session
    // (the old one stays listed under "Unfinished uploads")
    const init = { bucket, key, size: file.size, content_type: job.contentType, metadata: job.meta };
    let session;
    try {
      session = await callJson("POST", "/v1/uploads", { json: { ...init, chunk_size: CHUNK_SIZE } });
    } catch (exc) {
      if (exc.code !== "invalid_chunk_size" && exc.code !== "invalid_argument") throw exc;
      session = await callJson("POST", "/v1/uploads", { json: init }); // the peer's default
    }
    localStorage.setItem(resumeKey(bucket, key, file), session.upload_id);
    const missing = Array.from({ length: session.total_chunks }, (_, i) => i);
    return { session, missing, resumed: false };
  }

  async function sessionUpload(job, progress) {
    const { file, note } = job;
    const { session, missing, resumed } = await openSession(job);
    job.sessionId = session.upload_id;
    if (job.stop) throw new Stopped(job.stop);
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
        if (job.stop) throw new Stopped(job.stop);
        inFlight.set(index, 0);
        stats.peakChunksInFlight = Math.max(stats.peakChunksInFlight, inFlight.size);
        try {
          await sendWithProgress("PUT", `/v1/uploads/${id}/chunks/${index}`, body, {
            xhrs: job.xhrs,
            onProgress: (loaded) => {
              progress(stored, loaded - (inFlight.get(index) || 0));
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
          if (!retriable || attempt >= CHUNK_TRIES || exc.code === "aborted" || job.stop) throw exc;
          // exponential backoff with jitter, or the peer's Retry-After
          const wait = exc.retryAfter ? exc.retryAfter * 1000 : BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
          stats.retries.push({ index, attempt, waitMs: wait, status: exc.status });
          note.textContent = `chunk ${index}: ${describe(exc)} · retry ${attempt} in ${formatDuration(wait / 1000)}`;
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    }

    async function worker() {
      while (todo.length) await sendChunk(todo.shift());
    }
    await Promise.all(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, todo.length) }, worker));
    if (job.stop) throw new Stopped(job.stop);
    note.textContent = "completing";
    const result = await callJson("POST", `/v1/uploads/${id}/complete`, { json: {} });
    localStorage.removeItem(resumeKey(bucket, job.key, file));
    return result;
  }

  const picked = (files) => [...files].map((file) => ({ file, relative: file.webkitRelativePath || file.name }));
  input.addEventListener("change", () => {
    add(picked(input.files));
    input.value = "";
  });
  folderInput.addEventListener("change", () => {
    add(picked(folderInput.files));
    folderInput.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const items = event.dataTransfer ? [...event.dataTransfer.items] : [];
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    if (entries.length && entries.every(Boolean)) {
      const found = await Promise.all(entries.map((e) => filesOf(e)));
      add(found.flat());
    } else {
      const files = [...(event.dataTransfer ? event.dataTransfer.files : [])];
      if (files.length) add(files.map((file) => ({ file, relative: file.name })));
    }
  });
  showPending();

  return {
    element,
    /** Leaving the page: stop every request in flight (sessions stay resumable). */
    detach() {
      queue.length = 0;
      for (const row of rows.children) {
        if (row.job) {
          row.job.stop = row.job.stop || "paused";
          for (const xhr of row.job.xhrs) xhr.abort();
        }
      }
    },
  };
}
