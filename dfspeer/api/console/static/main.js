// Entry point: login, the hash router and the top bar.
//   #/buckets                     bucket list (default)
//   #/objects/<bucket>/<prefix>   one "folder" of a bucket (both parts percent-encoded)
//   #/cluster                     members and status, refreshed every 5 s

import {
  ApiError, call, clearCredential, credential, setCredential, unauthenticated,
} from "./api.js";
import { renderBuckets } from "./buckets.js";
import { renderCluster } from "./cluster.js";
import { clearFlash, flash, h, replace } from "./dom.js";
import { renderObjects } from "./objects.js";

const view = document.getElementById("view");
const state = { open: false, cleanup: null };

/** Does `value` (or no credential at all, when empty) get through to the API? */
async function probe(value) {
  const headers = value ? { Authorization: `Bearer ${value}` } : {};
  const response = await fetch("/v1/buckets", { headers, cache: "no-store" });
  if (response.ok) return true;
  if (response.status === 401) return false;
  throw new ApiError(response.status, "probe_failed", `the peer answered ${response.status}`);
}

function showChrome(loggedIn) {
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn || state.open;
  const who = document.getElementById("who");
  if (!loggedIn) who.textContent = "";
  else if (state.open) who.textContent = "open cluster (--insecure): no login";
  else {
    const value = credential();
    const dot = value.indexOf(".");
    who.textContent = dot > 0 ? `key ${value.slice(0, dot)}` : "admin";
  }
}

function stopPage() {
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
}

function renderLogin(message = "") {
  stopPage();
  showChrome(false);
  const kind = h("select#login-kind", { name: "kind" },
    h("option", { value: "key" }, "Access key"),
    h("option", { value: "admin" }, "Admin token"));
  const keyId = h("input#login-key-id", { name: "key_id", autocomplete: "username", placeholder: "key id" });
  const secret = h("input#login-secret", { name: "secret", type: "password", autocomplete: "current-password", placeholder: "secret" });
  const token = h("input#login-token", { name: "token", type: "password", autocomplete: "current-password", placeholder: "64 hex digits" });
  const keyFields = h("div.fields", {}, h("label", {}, "Key id", keyId), h("label", {}, "Secret", secret));
  const tokenFields = h("div.fields", { hidden: true }, h("label", {}, "Admin token", token));
  const error = h("p.error#login-error", { hidden: !message }, message);
  kind.addEventListener("change", () => {
    keyFields.hidden = kind.value !== "key";
    tokenFields.hidden = kind.value !== "admin";
  });
  const form = h("form.card.login#login-form", {},
    h("h1", {}, "Log in"),
    h("p.muted", {}, "Use an access key (id and secret) or the cluster's admin token. ",
      "It is kept in this tab only and sent with each API call."),
    h("label", {}, "With", kind), keyFields, tokenFields, error,
    h("button#login-submit", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = kind.value === "key"
      ? `${keyId.value.trim()}.${secret.value.trim()}` : token.value.trim();
    if (value === "." || !value) {
      error.textContent = "Fill in the credential.";
      error.hidden = false;
      return;
    }
    try {
      if (!(await probe(value))) {
        error.textContent = "The peer did not accept this credential.";
        error.hidden = false;
        return;
      }
    } catch (exc) {
      error.textContent = `Cannot reach the peer: ${exc.message}`;
      error.hidden = false;
      return;
    }
    setCredential(value);
    clearFlash();
    route();
  });
  replace(view, form);
  (kind.value === "key" ? keyId : token).focus();
}

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  if (page === "objects" && rest.length >= 1 && rest[0]) {
    return {
      page,
      bucket: decodeURIComponent(rest[0]),
      prefix: decodeURIComponent(rest.slice(1).join("/")),
    };
  }
  if (page === "cluster") return { page };
  return { page: "buckets" };
}

function route() {
  if (!state.open && !credential()) {
    renderLogin();
    return;
  }
  stopPage();
  showChrome(true);
  const where = parseHash();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === where.page ||
      (where.page === "objects" && link.dataset.page === "buckets"));
  }
  const container = h("div.page");
  replace(view, container);
  if (where.page === "objects") state.cleanup = renderObjects(container, where);
  else if (where.page === "cluster") state.cleanup = renderCluster(container);
  else state.cleanup = renderBuckets(container);
}

function logout() {
  clearCredential();
  location.hash = "#/buckets";
  renderLogin();
}

unauthenticated.add(() => {
  if (state.open) return;
  clearCredential();
  renderLogin("Your credential is no longer accepted: log in again.");
});

document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);

async function start() {
  try {
    state.open = await probe("");
  } catch (exc) {
    flash(`Cannot reach the peer: ${exc.message}`);
  }
  if (state.open) clearCredential();
  else if (credential() && !(await probe(credential()).catch(() => false))) clearCredential();
  route();
}

// Used by tests and the upload module: a cheap way to see the console is up.
window.dfspeerConsole = { ready: start(), call };
