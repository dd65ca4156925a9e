// Entry point: login, the hash router and the top bar.
//   #/buckets                     bucket list (default)
//   #/objects/<bucket>/<prefix>   one "folder" of a bucket (both parts percent-encoded)
//   #/bucket/<bucket>             a bucket's versioning and permissions
//   #/keys                        access keys (admin)
//   #/cluster                     members, per-peer figures, repair; refreshed every 3 s

import { ApiError, call, describe, loadSession, logIn, logOut, session, unauthenticated } from "./api.js";
import { renderBucketSettings, renderBuckets } from "./buckets.js";
import { renderCluster } from "./cluster.js";
import { clearFlash, flash, h, labelled, messageSlot, replace } from "./dom.js";
import { renderKeys } from "./keys.js";
import { renderObjects } from "./objects.js";

const view = document.getElementById("view");
const state = { loggedIn: false, cleanup: null };

function showChrome(loggedIn) {
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("nav-keys").hidden = !loggedIn || !session.admin || session.open;
  document.getElementById("logout").hidden = !loggedIn || session.open;
  const who = document.getElementById("who");
  if (!loggedIn) who.textContent = "";
  else if (session.open) who.textContent = "open cluster (--insecure): no login";
  else who.textContent = session.admin ? "admin" : `key ${session.principal}`;
}

function stopPage() {
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
}

function renderLogin(message = "") {
  stopPage();
  state.loggedIn = false;
  showChrome(false);
  document.title = "Log in · dfspeer console";
  const kind = h("select#login-kind", { name: "kind" },
    h("option", { value: "key" }, "Access key"),
    h("option", { value: "admin" }, "Admin token"));
  const keyId = h("input#login-key-id", { name: "key_id", autocomplete: "username", spellcheck: "false" });
  const secret = h("input#login-secret", { name: "secret", type: "password", autocomplete: "current-password" });
  const token = h("input#login-token", { name: "token", type: "password", autocomplete: "current-password" });
  const keyFields = h("div.fields", {}, labelled("Key id", keyId), labelled("Secret", secret));
  const tokenFields = h("div.fields", { hidden: true }, labelled("Admin token (64 hex digits)", token));
  const error = messageSlot("login-error");
  if (message) error.set(message);
  kind.addEventListener("change", () => {
    keyFields.hidden = kind.value !== "key";
    tokenFields.hidden = kind.value !== "admin";
  });
  const submit = h("button#login-submit", { type: "submit" }, "Log in");
  const form = h("form.card.login#login-form", { "aria-labelledby": "login-title" },
    h("h1#login-title", { tabindex: "-1" }, "Log in"),
    h("p.muted", {}, "Use an access key (id and secret) or the cluster's admin token. ",
      "The peer keeps it in a sealed cookie for this browser, for 8 hours or until you log out."),
    labelled("With", kind), keyFields, tokenFields, error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = kind.value === "key"
      ? `${keyId.value.trim()}.${secret.value.trim()}` : token.value.trim();
    if (value === "." || !value || value.startsWith(".") || value.endsWith(".")) {
      error.set(kind.value === "key" ? "Fill in the key id and its secret." : "Fill in the admin token.");
      return;
    }
    submit.disabled = true;
    try {
      await logIn(value);
    } catch (exc) {
      error.set(exc instanceof ApiError && exc.status === 401
        ? "Wrong credentials: the peer did not accept this key id and secret, or this token."
        : `Could not log in: ${describe(exc)}`);
      submit.disabled = false;
      return;
    }
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
  if (page === "bucket" && rest[0]) return { page, bucket: decodeURIComponent(rest[0]) };
  if (page === "cluster" || page === "keys") return { page };
  return { page: "buckets" };
}

const TITLES = { buckets: "Buckets", objects: "Objects", bucket: "Bucket settings", keys: "Access keys", cluster: "Cluster" };

function route() {
  if (!state.loggedIn && !session.open && !session.csrf) {
    renderLogin();
    return;
  }
  state.loggedIn = true;
  stopPage();
  showChrome(true);
  const where = parseHash();
  const section = where.page === "objects" || where.page === "bucket" ? "buckets" : where.page;
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.dataset.page === section;
    link.classList.toggle("active", here);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[where.page]}${where.bucket ? ` · ${where.bucket}` : ""} · dfspeer console`;
  const container = h("div.page");
  replace(view, container);
  if (where.page === "objects") state.cleanup = renderObjects(container, where);
  else if (where.page === "bucket") state.cleanup = renderBucketSettings(container, where);
  else if (where.page === "keys") state.cleanup = renderKeys(container);
  else if (where.page === "cluster") state.cleanup = renderCluster(container);
  else state.cleanup = renderBuckets(container);
  // move focus to the new page's heading, so keyboard and screen reader users follow along
  const heading = container.querySelector("h1");
  if (heading && document.activeElement === document.body) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

async function logout() {
  try {
    await logOut();
  } catch (exc) {
    flash(`Could not log out: ${describe(exc)}`);
  }
  location.hash = "#/buckets";
  renderLogin();
}

unauthenticated.add(() => {
  if (session.open || !state.loggedIn) return;
  Object.assign(session, { csrf: "", principal: "", admin: false });
  renderLogin("Your session has ended: log in again.");
});

document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", () => {
  if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  route();
});

async function start() {
  try {
    await loadSession();
  } catch (exc) {
    flash(`Cannot reach the peer: ${describe(exc)}`);
  }
  route();
}

// Used by tests: a cheap way to see the console is up.
window.dfspeerConsole = { ready: start(), call };
