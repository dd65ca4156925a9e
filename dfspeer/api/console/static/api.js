// The native /v1 API from the browser. Logging in (POST /ui/api/session) leaves the
// credential in a sealed HttpOnly SameSite=Strict cookie the page never sees; every call
// carries that cookie, and a call that changes something also sends the session's CSRF
// token (X-CSRF-Token), which the page reads from GET /ui/api/session.

/** The session: {open, principal, admin, csrf, expires} once known. */
export const session = { open: false, principal: "", admin: false, csrf: "", expires: 0 };

const SAFE = new Set(["GET", "HEAD"]);

/** The headers of a request: the CSRF token on anything that changes something. */
export function authHeaders(method = "GET", extra = {}) {
  const headers = { ...extra };
  if (!SAFE.has(method) && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  return headers;
}

/** A failed API call: HTTP status plus the {"error": {code, message, request_id}} body. */
export class ApiError extends Error {
  constructor(status, code, message, requestId, details = {}) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || "http_error";
    this.requestId = requestId || "";
    this.details = details;
  }
}

const WORDS = {
  unauthenticated: "You are not logged in, or your session has ended.",
  access_denied: "You are not allowed to do this.",
  no_such_bucket: "This bucket does not exist (any more).",
  no_such_key: "This object does not exist (any more).",
  no_such_version: "This version does not exist (any more).",
  no_such_access_key: "This access key does not exist (any more).",
  bucket_not_empty: "The bucket is not empty: delete its objects, old versions and delete markers first.",
  invalid_bucket_name: "Bucket names are 3 to 63 characters: lower-case letters, digits, dots and hyphens.",
  invalid_key: "This object name is not valid (1 to 1024 bytes of text).",
  insufficient_replicas: "Not enough peers answered to keep the data safe: try again shortly.",
  data_unavailable: "The data could not be read from any peer right now.",
  not_ready: "The peer is starting or stopping: try again shortly.",
  overloaded: "The peer is busy: try again shortly.",
  slow_down: "Too many requests: wait a moment.",
  insufficient_storage: "The peers are out of disk space.",
  entity_too_large: "The file is larger than this cluster accepts.",
  upload_not_open: "This upload is finished, cancelled or expired.",
  too_many_uploads: "This bucket has too many open uploads: finish or cancel some.",
  invalid_argument: "The peer refused a value of this request.",
  invalid_chunk_size: "A chunk had the wrong size for this upload.",
  bad_digest: "The data arrived damaged (its SHA-256 does not match): try again.",
  incomplete_body: "The upload was cut off before its end: try again.",
  incomplete_upload: "Some chunks of this upload are still missing.",
  no_such_upload: "This upload session does not exist (any more).",
  idempotency_conflict: "This upload was started before with other settings.",
  no_such_member: "This peer does not know that member (any more).",
  member_alive: "Only a dead member can be removed: this one is alive or suspect.",
  member_not_alive: "This member is dead or has left: it cannot do this.",
  drain_failed: "The member could not start draining.",
  peer_unreachable: "The member did not answer.",
  peer_error: "The member refused the request or gave an answer this peer could not read.",
  not_supported: "This peer cannot do this.",
  network_error: "The connection to the peer failed.",
  aborted: "Cancelled.",
};

/** An error in words for people: never raw JSON. */
export function describe(exc) {
  if (!(exc instanceof ApiError)) return exc && exc.message ? exc.message : String(exc);
  const words = WORDS[exc.code];
  const detail = exc.message && exc.message !== `HTTP ${exc.status}` ? exc.message : "";
  if (words && detail && !words.includes(detail)) return `${words} (${detail})`;
  if (words) return words;
  if (detail) return detail.charAt(0).toUpperCase() + detail.slice(1);
  return `The peer answered with status ${exc.status}.`;
}

/** Listeners called with the ApiError of every 401 (the session is no longer good). */
export const unauthenticated = new Set();

export async function errorOf(response) {
  let doc = {};
  try {
    doc = (await response.json()).error || {};
  } catch {
    // not JSON: keep the status alone
  }
  return new ApiError(response.status, doc.code, doc.message, doc.request_id, doc);
}

/**
 * fetch() against the API: `json` is sent as a JSON body; a non-2xx answer throws ApiError
 * (and a 401 also tells the `unauthenticated` listeners). Returns the Response.
 */
export async function call(method, path, { json, body, headers = {}, signal, quiet } = {}) {
  const init = {
    method, headers: authHeaders(method, headers), signal, cache: "no-store", credentials: "same-origin",
  };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw new ApiError(0, "aborted", "cancelled");
    throw new ApiError(0, "network_error", "the connection failed");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !quiet) for (const listener of unauthenticated) listener(error);
    throw error;
  }
  return response;
}

/** call() and parse the JSON answer (null for 204). */
export async function callJson(method, path, options) {
  const response = await call(method, path, options);
  return response.status === 204 ? null : response.json();
}

/** Read the session (null when there is none). */
export async function loadSession() {
  try {
    const doc = await callJson("GET", "/ui/api/session", { quiet: true });
    Object.assign(session, doc);
    return doc;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return null;
    throw exc;
  }
}

/** Log in with "ID.SECRET" or the admin token: throws ApiError (401 for a wrong one). */
export async function logIn(credential) {
  const doc = await callJson("POST", "/ui/api/session", { json: { credential }, quiet: true });
  Object.assign(session, doc);
  return doc;
}

export async function logOut() {
  try {
    await call("DELETE", "/ui/api/session", { quiet: true });
  } finally {
    Object.assign(session, { principal: "", admin: false, csrf: "", expires: 0 });
  }
}

/** "/v1/objects/b/dir/a%20b.txt": every key segment percent-encoded, slashes kept. */
export function objectPath(bucket, key) {
  return `/v1/objects/${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export function bucketPath(bucket) {
  return `/v1/buckets/${encodeURIComponent(bucket)}`;
}

/** Query string from an object, leaving out undefined / null / "" values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * One XMLHttpRequest upload (fetch cannot report upload progress): resolves with the parsed
 * JSON answer, rejects with ApiError; `onProgress(loadedBytes)` as the body is sent.
 */
export function sendWithProgress(method, path, body, { headers = {}, onProgress, xhrs } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    for (const [name, value] of Object.entries(authHeaders(method, headers))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onProgress && onProgress(event.loaded);
    xhr.onload = () => {
      if (xhrs) xhrs.delete(xhr);
      let doc = null;
      try {
        doc = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        doc = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(doc);
        return;
      }
      const err = (doc && doc.error) || {};
      const error = new ApiError(xhr.status, err.code, err.message, err.request_id, err);
      error.retryAfter = Number(xhr.getResponseHeader("Retry-After")) || 0;
      if (xhr.status === 401) for (const listener of unauthenticated) listener(error);
      reject(error);
    };
    xhr.onerror = () => {
      if (xhrs) xhrs.delete(xhr);
      reject(new ApiError(0, "network_error", "the connection failed"));
    };
    xhr.onabort = () => {
      if (xhrs) xhrs.delete(xhr);
      reject(new ApiError(0, "aborted", "cancelled"));
    };
    if (xhrs) xhrs.add(xhr);
    xhr.send(body);
  });
}
