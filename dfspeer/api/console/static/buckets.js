// The bucket list: name, versioning, objects and bytes (GET /v1/buckets/{b} each), create
// (optionally versioned), delete when empty.

import { bucketPath, callJson } from "./api.js";
import { flash, formatBytes, formatTime, h, replace } from "./dom.js";

const NAME = "^[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]$";

export function renderBuckets(container) {
  let alive = true;
  const tbody = h("tbody");
  const table = h("table.list#bucket-table", {},
    h("thead", {}, h("tr", {},
      h("th", {}, "Name"), h("th", {}, "Versioning"), h("th.num", {}, "Objects"),
      h("th.num", {}, "Size"), h("th", {}, "Created"), h("th", {}, ""))),
    tbody);
  const name = h("input#bucket-name", { name: "name", required: true, pattern: NAME, placeholder: "new-bucket-name", title: "3–63 characters: a-z 0-9 . -" });
  const versioned = h("input#bucket-versioning", { type: "checkbox", name: "versioning" });
  const form = h("form.inline#bucket-create", {},
    name, h("label.check", {}, versioned, " versioning"),
    h("button#bucket-create-submit", { type: "submit" }, "Create bucket"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bucket = name.value.trim();
    try {
      await callJson("PUT", bucketPath(bucket),
        { json: versioned.checked ? { versioning: "enabled" } : {} });
      flash(`Bucket ${bucket} created.`, "info");
      name.value = "";
      versioned.checked = false;
      load();
    } catch (exc) {
      flash(`Could not create ${bucket}: ${exc.message}`);
    }
  });
  const status = h("p.muted", {}, "Loading…");
  replace(container, h("div.head", {}, h("h1", {}, "Buckets"), form), status, table);

  async function remove(bucket) {
    if (!confirm(`Delete the empty bucket ${bucket}?`)) return;
    try {
      await callJson("DELETE", bucketPath(bucket));
      flash(`Bucket ${bucket} deleted.`, "info");
      load();
    } catch (exc) {
      flash(exc.code === "bucket_not_empty"
        ? `${bucket} is not empty (old versions or delete markers count too).`
        : `Could not delete ${bucket}: ${exc.message}`);
    }
  }

  function row(bucket) {
    const objects = h("td.num", {}, "…");
    const size = h("td.num", {}, "…");
    const del = h("button.danger.small", { type: "button", disabled: true, onclick: () => remove(bucket.name), dataset: { bucket: bucket.name } }, "Delete");
    const tr = h("tr", { dataset: { bucket: bucket.name } },
      h("td", {}, h("a.bucket-link", { href: `#/objects/${encodeURIComponent(bucket.name)}/` }, bucket.name)),
      h("td", {}, bucket.versioning), objects, size, h("td", {}, formatTime(bucket.created)),
      h("td.actions", {}, del));
    callJson("GET", bucketPath(bucket.name)).then((doc) => {
      objects.textContent = String(doc.objects);
      size.textContent = formatBytes(doc.bytes);
      size.title = `${doc.bytes} bytes`;
      del.disabled = doc.objects !== 0;
      del.title = doc.objects ? "only an empty bucket can be deleted" : "";
    }).catch((exc) => {
      objects.textContent = "?";
      size.textContent = "?";
      objects.title = exc.message;
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
      status.textContent = `Could not list buckets: ${exc.message}`;
    }
  }

  load();
  return () => { alive = false; };
}
