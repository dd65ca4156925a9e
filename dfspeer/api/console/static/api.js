// The native /v1 API from the browser. The credential (an access key "ID.SECRET" or the
// admin token) lives in sessionStorage only: it is sent as `Authorization: Bearer ...` on
// every call and forgotten on logout or when the tab closes. There is no server session.

const CREDENTIAL = "dfspeer.credential";

export function credential() {
  return sessionStorage.getItem(CREDENTIAL) || "";
}

export function setCredential(value) {
  sessionStorage.setItem(CREDENTIAL, value);
}

export function clearCredential() {
  sessionStorage.removeItem(CREDENTIAL);
}

/** The headers that authenticate a request (none on an open cluster). */
export function authHeaders(extra = {}) {
  const value = credential();
  return value ? { ...extra, Authorization: `Bearer ${value}` } : { ...extra };
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

/** Listeners called with the ApiError of every 401 (the credential is no longer good). */
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
export async function call(method, path, { json, body, headers = {}, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) for (const listener of unauthenticated) listener(error);
    throw error;
  }
  return response;
}

/** call() and parse the JSON answer (null for 204). */
export async function callJson(method, path, options) {
  const response = await call(method, path, options);
  return response.status === 204 ? null : response.json();
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
    for (const [name, value] of Object.entries(authHeaders(headers))) {
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
