// One "folder" of a bucket: a delimiter=/ listing under a prefix, with breadcrumbs, paging
// (next_start_after), details (HEAD + ?versions), download (a signed 60 s link from
// /ui/api/download-link), delete with confirmation, and the upload panel.

import { call, callJson, objectPath, query } from "./api.js";
import { flash, formatBytes, formatTime, h, replace } from "./dom.js";
import { createUploader } from "./upload.js";

const PAGE_SIZE = 100;

function folderHash(bucket, prefix) {
  return `#/objects/${encodeURIComponent(bucket)}/${encodeURIComponent(prefix)}`;
}

/** Ask for a signed link and let the browser download it (no credential in the URL). */
export async function download(bucket, key, version) {
  try {
    const doc = await callJson("GET", `/ui/api/download-link${query({ bucket, key, version })}`);
    const link = h("a", { href: doc.url, download: key.split("/").pop() || "download" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (exc) {
    flash(`Could not download ${key}: ${exc.message}`);
  }
}

export function renderObjects(container, { bucket, prefix }) {
  let alive = true;
  const pages = [""]; // start_after of each page seen so far
  let page = 0;

  const crumbs = h("nav.crumbs#crumbs", {}, h("a", { href: "#/buckets" }, "Buckets"), " / ",
    h("a", { href: folderHash(bucket, "") }, bucket));
  let walked = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    walked += `${part}/`;
    crumbs.append(" / ", h("a", { href: folderHash(bucket, walked) }, part));
  }
  const tbody = h("tbody");
  const table = h("table.list#object-table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th.num", {}, "Size"),
      h("th", {}, "Modified"), h("th", {}, ""))), tbody);
  const status = h("p.muted#object-status", {}, "Loading…");
  const prev = h("button.secondary#page-prev", { type: "button", disabled: true }, "← Previous");
  const next = h("button.secondary#page-next", { type: "button", disabled: true }, "Next →");
  const details = h("aside.card.details#object-details", { hidden: true });
  prev.addEventListener("click", () => { if (page > 0) { page -= 1; load(); } });
  next.addEventListener("click", () => { page += 1; load(); });

  const uploader = createUploader({ bucket, prefix, onFileDone: () => load() });
  replace(container,
    h("div.head", {}, h("h1", {}, bucket), crumbs),
    uploader.element,
    h("div.split", {},
      h("section.listing", {}, status, table, h("div.pager", {}, prev, next)),
      details));

  async function remove(key) {
    if (!confirm(`Delete ${key}?`)) return;
    try {
      await call("DELETE", objectPath(bucket, key));
      flash(`${key} deleted.`, "info");
      details.hidden = true;
      load();
    } catch (exc) {
      flash(`Could not delete ${key}: ${exc.message}`);
    }
  }

  async function showDetails(key) {
    details.hidden = false;
    replace(details, h("p.muted", {}, `Loading ${key}…`));
    try {
      const head = await call("HEAD", objectPath(bucket, key));
      const meta = [];
      head.headers.forEach((value, name) => {
        if (name.toLowerCase().startsWith("x-meta-")) meta.push([name.slice(7), value]);
      });
      const versions = (await callJson("GET", objectPath(bucket, key) + "?versions")).versions;
      const field = (label, value, id) => [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
      replace(details,
        h("h2", {}, key.split("/").pop()),
        h("dl", {},
          field("Key", key),
          field("Size", `${formatBytes(Number(head.headers.get("content-length")))} (${head.headers.get("content-length")} bytes)`, "detail-size"),
          field("SHA-256", h("code", {}, (head.headers.get("etag") || "").replaceAll('"', "")), "detail-sha256"),
          field("Content type", head.headers.get("content-type") || "–"),
          field("Modified", head.headers.get("last-modified") || "–"),
          field("Version", h("code", {}, head.headers.get("x-object-version") || "–")),
          field("Metadata", meta.length
            ? h("ul.meta", {}, meta.map(([n, v]) => h("li", {}, h("code", {}, n), ": ", v)))
            : "none")),
        h("div.buttons", {},
          h("button#detail-download", { type: "button", onclick: () => download(bucket, key) }, "Download"),
          h("button.danger#detail-delete", { type: "button", onclick: () => remove(key) }, "Delete")),
        h("h3", {}, `Versions (${versions.length})`),
        h("table.list.versions", {}, h("tbody", {}, versions.map((v) => h("tr", {},
          h("td", {}, h("code", { title: v.version }, v.version.slice(-12)),
            v.is_latest ? h("span.badge", {}, "latest") : null),
          h("td", {}, v.delete_marker ? "delete marker" : formatBytes(v.size)),
          h("td", {}, formatTime(v.modified)),
          h("td", {}, v.delete_marker ? "" : h("button.small.secondary", { type: "button", onclick: () => download(bucket, key, v.version) }, "Get")))))));
    } catch (exc) {
      replace(details, h("p.error", {}, `Could not read ${key}: ${exc.message}`));
    }
  }

  function objectRow(obj) {
    const name = obj.key.slice(prefix.length);
    return h("tr.object", { dataset: { key: obj.key } },
      h("td", {}, h("a.object-link", { href: "#", onclick: (e) => { e.preventDefault(); showDetails(obj.key); } }, name)),
      h("td.num", { title: `${obj.size} bytes` }, formatBytes(obj.size)),
      h("td", {}, formatTime(obj.modified)),
      h("td.actions", {},
        h("button.small.secondary.download", { type: "button", onclick: () => download(bucket, obj.key) }, "Download"),
        h("button.small.danger.delete", { type: "button", onclick: () => remove(obj.key) }, "Delete")));
  }

  function folderRow(sub) {
    return h("tr.folder", { dataset: { prefix: sub } },
      h("td", { colspan: 4 }, h("a.folder-link", { href: folderHash(bucket, sub) }, "📁 ", sub.slice(prefix.length))));
  }

  async function load() {
    status.textContent = "Loading…";
    try {
      const doc = await callJson("GET", `/v1/objects/${encodeURIComponent(bucket)}${query({
        prefix, delimiter: "/", limit: PAGE_SIZE, start_after: pages[page],
      })}`);
      if (!alive) return;
      replace(tbody, doc.common_prefixes.map(folderRow), doc.objects.map(objectRow));
      if (doc.is_truncated && doc.next_start_after) pages[page + 1] = doc.next_start_after;
      prev.disabled = page === 0;
      next.disabled = !doc.is_truncated;
      const count = doc.objects.length + doc.common_prefixes.length;
      status.textContent = count
        ? `Page ${page + 1}: ${doc.common_prefixes.length} folder(s), ${doc.objects.length} object(s)`
        : (page === 0 ? "Empty: drop files below or pick some to upload." : "No more entries.");
    } catch (exc) {
      status.textContent = `Could not list ${bucket}: ${exc.message}`;
    }
  }

  load();
  return () => { alive = false; uploader.detach(); };
}
