// The bucket list: name, versioning, objects and bytes (GET /v1/buckets/{b} each), create
// (optionally versioned), delete when empty. And one bucket's settings page: versioning
// (enabled / suspended) and permissions (read / write / owner per access key).

import { bucketPath, callJson, describe, session } from "./api.js";
import { formatBytes, formatTime, h, labelled, messageSlot, replace } from "./dom.js";

const NAME = "^[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]$";

function settingsHash(bucket) {
  return `#/bucket/${encodeURIComponent(bucket)}`;
}

export function renderBuckets(container) {
  let alive = true;
  const tbody = h("tbody");
  const table = h("table.list#bucket-table", {},
    h("caption.visually-hidden", {}, "Buckets"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Versioning"),
      h("th.num", { scope: "col" }, "Objects"), h("th.num", { scope: "col" }, "Size"),
      h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))),
    tbody);
  const name = h("input#bucket-name", { name: "name", required: true, pattern: NAME, autocomplete: "off", spellcheck: "false", "aria-describedby": "bucket-name-hint" });
  const versioned = h("input#bucket-versioning", { type: "checkbox", name: "versioning" });
  const createError = messageSlot("bucket-create-error");
  const form = h("form.inline#bucket-create", { "aria-label": "Create a bucket" },
    labelled("New bucket name", name, { class: "grow" }),
    h("label.check", { for: "bucket-versioning" }, versioned, " versioning"),
    h("button#bucket-create-submit", { type: "submit" }, "Create bucket"));
  const hint = h("p.muted.hint#bucket-name-hint", {}, "3–63 characters: a-z 0-9 . -");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bucket = name.value.trim();
    createError.set("");
    try {
      await callJson("PUT", bucketPath(bucket),
        { json: versioned.checked ? { versioning: "enabled" } : {} });
      createError.set(`Bucket ${bucket} created.`, "info");
      name.value = "";
      versioned.checked = false;
      load();
    } catch (exc) {
      createError.set(`Could not create ${bucket}: ${describe(exc)}`);
    }
  });
  const status = h("p.muted#bucket-status", { role: "status" }, "Loading…");
  replace(container, h("div.head", {}, h("h1", {}, "Buckets")),
    h("section.card", { "aria-label": "Create a bucket" }, form, hint, createError), status, table);

  async function remove(bucket, note) {
    if (!confirm(`Delete the empty bucket ${bucket}?`)) return;
    try {
      await callJson("DELETE", bucketPath(bucket));
      status.textContent = `Bucket ${bucket} deleted.`;
      load();
    } catch (exc) {
      note.set(`Could not delete ${bucket}: ${describe(exc)}`);
    }
  }

  async function toggleVersioning(bucket, current, note) {
    const next = current === "enabled" ? "suspended" : "enabled";
    try {
      await callJson("PUT", `${bucketPath(bucket)}/versioning`, { json: { status: next } });
      load();
    } catch (exc) {
      note.set(`Could not change versioning: ${describe(exc)}`);
    }
  }

  function row(bucket) {
    const objects = h("td.num", {}, "…");
    const size = h("td.num", {}, "…");
    const note = messageSlot();
    const del = h("button.danger.small", { type: "button", disabled: true, onclick: () => remove(bucket.name, note), dataset: { bucket: bucket.name }, "aria-label": `Delete bucket ${bucket.name}` }, "Delete");
    const versioning = bucket.versioning || "off";
    const toggle = h("button.secondary.small.versioning-toggle", {
      type: "button", onclick: () => toggleVersioning(bucket.name, versioning, note),
      "aria-label": `${versioning === "enabled" ? "Suspend" : "Enable"} versioning of ${bucket.name}`,
    }, versioning === "enabled" ? "Suspend" : "Enable");
    const tr = h("tr", { dataset: { bucket: bucket.name } },
      h("th", { scope: "row" }, h("a.bucket-link", { href: `#/objects/${encodeURIComponent(bucket.name)}/` }, bucket.name)),
      h("td", {}, h("span.versioning", {}, versioning), " ", toggle), objects, size, h("td", {}, formatTime(bucket.created)),
      h("td.actions", {},
        h("a.button.secondary.small", { href: settingsHash(bucket.name), "aria-label": `Settings of ${bucket.name}` }, "Settings"),
        " ", del, note));
    callJson("GET", bucketPath(bucket.name)).then((doc) => {
      objects.textContent = String(doc.objects);
      size.textContent = formatBytes(doc.bytes);
      size.title = `${doc.bytes} bytes`;
      del.disabled = doc.objects !== 0;
      del.title = doc.objects ? "only an empty bucket can be deleted" : "";
    }).catch((exc) => {
      objects.textContent = "?";
      size.textContent = "?";
      note.set(describe(exc));
    });
    return tr;
  }

  async function load() {
    try {
      const doc = await callJson("GET", "/v1/buckets");
      if (!alive) return;
      replace(tbody, doc.buckets.map(row));
      status.textContent = doc.buckets.length ? `${doc.buckets.length} bucket(s)` : "No buckets yet: create one.";
    } catch (exc) {
      status.textContent = `Could not list buckets: ${describe(exc)}`;
      status.className = "error";
    }
  }

  load();
  return () => { alive = false; };
}

const FLAGS = ["read", "write", "owner"];

export function renderBucketSettings(container, { bucket }) {
  let alive = true;
  const versioningState = h("strong#settings-versioning", {}, "…");
  const versioningNote = messageSlot("versioning-message");
  const enable = h("button.secondary#versioning-enable", { type: "button" }, "Enable versioning");
  const suspend = h("button.secondary#versioning-suspend", { type: "button" }, "Suspend versioning");
  const grants = h("tbody");
  const grantsNote = messageSlot("grants-message");
  const owner = h("p.muted#bucket-owner", {}, "");
  const keyInput = h("input#grant-key", { name: "key", required: true, pattern: "DK[0-9a-f]{24}", list: "grant-key-list", autocomplete: "off", spellcheck: "false" });
  const keyList = h("datalist#grant-key-list");
  const boxes = Object.fromEntries(FLAGS.map((f) => [f, h(`input#grant-${f}`, { type: "checkbox", name: f, checked: f === "read" })]));
  const form = h("form.inline#grant-form", { "aria-label": "Grant access to a key" },
    labelled("Access key id", keyInput, { class: "grow" }), keyList,
    FLAGS.map((f) => h("label.check", { for: `grant-${f}` }, boxes[f], ` ${f}`)),
    h("button#grant-submit", { type: "submit" }, "Grant"));

  async function setVersioning(status) {
    versioningNote.set("");
    try {
      const doc = await callJson("PUT", `${bucketPath(bucket)}/versioning`, { json: { status } });
      showVersioning(doc.versioning || status);
      versioningNote.set(`Versioning is now ${doc.versioning || status}.`, "info");
    } catch (exc) {
      versioningNote.set(`Could not change versioning: ${describe(exc)}`);
    }
  }
  function showVersioning(value) {
    versioningState.textContent = value;
    enable.disabled = value === "enabled";
    suspend.disabled = value !== "enabled";
  }
  enable.addEventListener("click", () => setVersioning("enabled"));
  suspend.addEventListener("click", () => setVersioning("suspended"));

  async function grant(key, flags) {
    grantsNote.set("");
    try {
      const doc = await callJson("PUT", `${bucketPath(bucket)}/permissions`, { json: { key, ...flags } });
      showGrants(doc);
      grantsNote.set(`Permissions of ${key} saved.`, "info");
    } catch (exc) {
      grantsNote.set(`Could not change the permissions of ${key}: ${describe(exc)}`);
    }
  }

  function showGrants(doc) {
    owner.textContent = doc.owner ? `Owner: key ${doc.owner} (created the bucket).` : "Owner: the admin (no key owns it).";
    const rows = Object.entries(doc.permissions).map(([key, flags]) => h("tr", { dataset: { grant: key } },
      h("th", { scope: "row" }, h("code", {}, key)),
      FLAGS.map((f) => h("td", {}, h("input", {
        type: "checkbox", checked: flags[f], "aria-label": `${f} for ${key}`,
        onchange: (e) => grant(key, { [f]: e.target.checked }),
      }))),
      h("td.actions", {}, h("button.small.danger", {
        type: "button", "aria-label": `Revoke every permission of ${key}`,
        onclick: () => grant(key, { read: false, write: false, owner: false }),
      }, "Revoke"))));
    replace(grants, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No key has been granted access.")));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const flags = Object.fromEntries(FLAGS.map((f) => [f, boxes[f].checked]));
    grant(keyInput.value.trim(), flags);
  });

  replace(container,
    h("div.head", {}, h("h1", {}, `Bucket ${bucket}`),
      h("nav.crumbs", { "aria-label": "Breadcrumbs" }, h("a", { href: "#/buckets" }, "Buckets"), " / ",
        h("a", { href: `#/objects/${encodeURIComponent(bucket)}/` }, bucket), " / settings")),
    h("section.card", { "aria-labelledby": "versioning-title" }, h("h2#versioning-title", {}, "Versioning"),
      h("p", {}, "Versioning is ", versioningState, ". With it enabled, overwriting or deleting an object keeps its older versions."),
      h("div.buttons", {}, enable, suspend), versioningNote),
    h("section.card", { "aria-labelledby": "grants-title" }, h("h2#grants-title", {}, "Permissions"), owner,
      h("table.list#grant-table", {}, h("caption.visually-hidden", {}, "Permissions per access key"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), FLAGS.map((f) => h("th", { scope: "col" }, f)),
          h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))), grants),
      h("h3", {}, "Grant access"), form, grantsNote));

  callJson("GET", bucketPath(bucket)).then((doc) => {
    if (alive) showVersioning(doc.versioning || "off");
  }).catch((exc) => versioningNote.set(`Could not read the bucket: ${describe(exc)}`));
  callJson("GET", `${bucketPath(bucket)}/permissions`).then((doc) => { if (alive) showGrants(doc); })
    .catch((exc) => grantsNote.set(`Could not read the permissions: ${describe(exc)}`));
  if (session.admin && !session.open) {
    callJson("GET", "/v1/keys").then((doc) => {
      replace(keyList, doc.keys.map((k) => h("option", { value: k.id }, k.name)));
    }).catch(() => {});
  }
  return () => { alive = false; };
}
