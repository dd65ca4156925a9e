// One "folder" of a bucket: a delimiter=/ listing under a prefix, with breadcrumbs, a
// prefix search, sorting, paging (next_start_after; pages of up to 1000 entries, so 10,000+
// keys are browsed page by page; sorting by size or modified, or by name backwards, loads
// the whole folder, up to SORT_CAP entries, and sorts and pages it here), "new folder", deleted keys (their delete markers), details
// (HEAD + ?versions: size, SHA-256, content type, metadata, every version with download,
// restore and delete), plain download links (the session cookie authenticates them; ranges
// work), share links for owners and admins, and the upload panel.

import { ApiError, call, callJson, describe, objectPath, query, session } from "./api.js";
import { copyText, formatBytes, formatTime, h, labelled, messageSlot, replace } from "./dom.js";
import { createUploader } from "./upload.js";

/** Most entries of one folder loaded to sort it as a whole (pages of 1000). */
export const SORT_CAP = 10000;
const SORT_WORDS = {
  name: ["by name, A to Z", "by name, Z to A"],
  size: ["by size, smallest first", "by size, largest first"],
  modified: ["by modified, oldest first", "by modified, newest first"],
};
const SHARE_CHOICES = [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"]];

function folderHash(bucket, prefix) {
  return `#/objects/${encodeURIComponent(bucket)}/${encodeURIComponent(prefix)}`;
}

/** A plain link that downloads the object (version) with the session cookie. */
export function downloadLink(bucket, key, version, label = "Download", attrs = {}) {
  const href = objectPath(bucket, key) + query({ version });
  const { class: extra = "button small secondary", ...rest } = attrs;
  return h("a", { href, download: key.split("/").pop() || "download", class: extra, ...rest }, label);
}

const COMPARE = {
  name: (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
  size: (a, b) => a.size - b.size,
  modified: (a, b) => a.modified - b.modified,
};

export function renderObjects(container, { bucket, prefix }) {
  let alive = true;
  let pages = [""]; // start_after of each page seen so far
  let page = 0;
  let entries = { folders: [], objects: [] };
  let whole = null; // the whole folder while sorted other than by name A to Z: {folders, objects, capped}
  let loads = 0; // the latest load() wins
  const sort = { by: "name", dir: 1 };
  let canShare = session.admin;

  const crumbs = h("nav.crumbs#crumbs", { "aria-label": "Breadcrumbs" }, h("a", { href: "#/buckets" }, "Buckets"), " / ",
    h("a", { href: folderHash(bucket, "") }, bucket));
  let walked = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    walked += `${part}/`;
    crumbs.append(" / ", h("a", { href: folderHash(bucket, walked) }, part));
  }
  if (prefix) crumbs.lastChild.setAttribute("aria-current", "page");

  const search = h("input#object-search", { type: "search", name: "search", autocomplete: "off", spellcheck: "false" });
  const pageSize = h("select#page-size", { name: "page_size" },
    ["100", "500", "1000"].map((n) => h("option", { value: n }, n)));
  const showDeleted = h("input#show-deleted", { type: "checkbox", name: "show_deleted" });
  const folderName = h("input#folder-name", { name: "folder", autocomplete: "off", required: true, pattern: "[^\\/]+" });
  const folderNote = messageSlot("folder-message");
  const folderForm = h("form.inline#folder-form", { "aria-label": "New folder" },
    labelled("New folder", folderName), h("button.secondary#folder-create", { type: "submit" }, "Create folder"));
  const sortButtons = {};
  const header = (label, by, cls = "") => {
    sortButtons[by] = h("button.sort", { type: "button", onclick: () => setSort(by) }, label);
    return h(`th${cls}`, { scope: "col", dataset: { sort: by } }, sortButtons[by]);
  };
  const tbody = h("tbody");
  const table = h("table.list#object-table", {},
    h("caption.visually-hidden", {}, `Objects of ${bucket}/${prefix}`),
    h("thead", {}, h("tr", {}, header("Name", "name"), header("Size", "size", ".num"),
      header("Modified", "modified"), h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))), tbody);
  const status = h("p.muted#object-status", { role: "status" }, "Loading…");
  const listNote = messageSlot("object-error");
  const prev = h("button.secondary#page-prev", { type: "button", disabled: true }, "← Previous page");
  const next = h("button.secondary#page-next", { type: "button", disabled: true }, "Next page →");
  const pageLabel = h("span.muted#page-label", {}, "");
  const sortNote = h("p.muted#sort-note", { role: "status", hidden: true });
  const details = h("aside.card.details#object-details", { hidden: true, "aria-label": "Object details", tabindex: "-1" });
  const wholeMode = () => sort.by !== "name" || sort.dir < 0;
  const turn = (step) => {
    page += step;
    if (whole && wholeMode()) showWhole();
    else load();
  };
  prev.addEventListener("click", () => { if (page > 0) turn(-1); });
  next.addEventListener("click", () => turn(1));

  const restart = () => { pages = [""]; page = 0; whole = null; load(); };
  let searchTimer = 0;
  search.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(restart, 250); });
  pageSize.addEventListener("change", restart);
  showDeleted.addEventListener("change", restart);
  folderForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = folderName.value.trim().replace(/\/+$/, "");
    if (!name || name.includes("/")) {
      folderNote.set("A folder name is one path segment, without “/”.");
      return;
    }
    try { // a zero-byte "name/" object keeps the folder until files land in it
      await call("PUT", objectPath(bucket, `${prefix}${name}/`), { body: new Blob([]) });
      folderName.value = "";
      location.hash = folderHash(bucket, `${prefix}${name}/`);
    } catch (exc) {
      folderNote.set(`Could not create the folder: ${describe(exc)}`);
    }
  });

  const uploader = createUploader({ bucket, prefix, onFileDone: () => load() });
  replace(container,
    h("div.head", {}, h("h1", {}, bucket), crumbs,
      h("a.button.secondary.small", { href: `#/bucket/${encodeURIComponent(bucket)}` }, "Bucket settings")),
    uploader.element,
    h("div.toolbar", { role: "group", "aria-label": "Listing options" },
      labelled(`Search names in ${prefix || "/"}`, search, { class: "grow" }),
      labelled("Per page", pageSize),
      h("label.check", { for: "show-deleted" }, showDeleted, " show deleted"),
      folderForm),
    folderNote,
    h("div.split", {},
      h("section.listing", { "aria-label": "Listing" }, status, sortNote, listNote, table,
        h("div.pager", {}, pageLabel, prev, next)),
      details));

  function setSort(by) {
    sort.dir = sort.by === by ? -sort.dir : 1;
    sort.by = by;
    page = 0;
    if (!wholeMode()) { // back to the server's order, page by page
      whole = null;
      pages = [""];
      load();
    } else if (whole) {
      showWhole();
    } else {
      load();
    }
  }

  async function remove(key, version) {
    const what = version ? `version ${version} of ${key} for good` : key;
    if (!confirm(`Delete ${what}?`)) return false;
    try {
      await call("DELETE", objectPath(bucket, key) + query({ version }));
      status.textContent = `${version ? "Version deleted" : `${key} deleted`}.`;
      if (!version) details.hidden = true;
      load();
      return true;
    } catch (exc) {
      listNote.set(`Could not delete ${key}: ${describe(exc)}`);
      return false;
    }
  }

  function sharePanel(key, version) {
    const expiry = h("select#share-expiry", { name: "expires_in" }, SHARE_CHOICES.map(([v, t]) => h("option", { value: v }, t)));
    const url = h("input#share-url", { readonly: true, "aria-label": "Share link", hidden: true });
    const copy = h("button.secondary#share-copy", { type: "button", hidden: true }, "Copy");
    const note = messageSlot("share-message");
    const make = h("button#share-create", { type: "button" }, "Create link");
    make.addEventListener("click", async () => {
      note.set("");
      try {
        const doc = await callJson("GET", `/ui/api/share-link${query({ bucket, key, version, expires_in: expiry.value })}`);
        url.value = doc.url;
        url.hidden = false;
        copy.hidden = false;
        note.set(`Anyone with this link can download this version until ${formatTime(doc.expires)}.`, "info");
        url.focus();
        url.select();
      } catch (exc) {
        note.set(`Could not make a share link: ${describe(exc)}`);
      }
    });
    copy.addEventListener("click", async () => {
      note.set(await copyText(url.value, url) ? "Link copied." : "Select the link and copy it.", "info");
    });
    return h("section.share#share-panel", { "aria-labelledby": "share-title" },
      h("h3#share-title", {}, "Share link"), h("div.inline", {}, labelled("Valid for", expiry), make), url, copy, note);
  }

  async function restore(key, version, note) {
    try {
      await callJson("POST", `/ui/api/restore${query({ bucket, key, version })}`);
      status.textContent = `Version restored: it is the current version of ${key} now.`;
      load();
      showDetails(key);
    } catch (exc) {
      note.set(`Could not restore: ${describe(exc)}`);
    }
  }

  function versionRow(key, v, note) {
    return h("tr.version", { dataset: { version: v.version, marker: v.delete_marker ? "1" : "" } },
      h("td", {}, h("code", { title: v.version }, v.version.slice(-12)),
        v.is_latest ? h("span.badge", {}, "current") : null,
        v.delete_marker ? h("span.badge.marker", {}, "delete marker") : null),
      h("td", {}, v.delete_marker ? "–" : formatBytes(v.size)),
      h("td", {}, formatTime(v.modified)),
      h("td.actions", {},
        v.delete_marker ? null : downloadLink(bucket, key, v.version, "Download", { "aria-label": `Download version ${v.version}` }),
        v.delete_marker || v.is_latest ? null : h("button.small.secondary.version-restore", {
          type: "button", "aria-label": `Restore version ${v.version}`, onclick: () => restore(key, v.version, note),
        }, "Restore"),
        h("button.small.danger.version-delete", {
          type: "button", "aria-label": `Delete version ${v.version}`,
          onclick: async () => { if (await remove(key, v.version)) showDetails(key); },
        }, "Delete")));
  }

  async function showDetails(key) {
    details.hidden = false;
    replace(details, h("p.muted", {}, `Loading ${key}…`));
    try {
      let head = null;
      try {
        head = await call("HEAD", objectPath(bucket, key));
      } catch (exc) {
        if (!(exc instanceof ApiError) || exc.status !== 404) throw exc;
      }
      const versions = (await callJson("GET", `${objectPath(bucket, key)}?versions`)).versions;
      const meta = [];
      if (head) {
        head.headers.forEach((value, name) => {
          if (name.toLowerCase().startsWith("x-meta-")) meta.push([name.slice(7), value]);
        });
      }
      const note = messageSlot("detail-message");
      const field = (label, value, id) => [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
      const size = head ? head.headers.get("content-length") : null;
      replace(details,
        h("h2#detail-title", {}, key.split("/").pop() || key),
        head ? h("dl", {},
          field("Key", key),
          field("Size", `${formatBytes(Number(size))} (${size} bytes)`, "detail-size"),
          field("SHA-256", h("code", {}, (head.headers.get("etag") || "").replaceAll('"', "")), "detail-sha256"),
          field("Content type", head.headers.get("content-type") || "–", "detail-content-type"),
          field("Modified", head.headers.get("last-modified") || "–"),
          field("Version", h("code", {}, head.headers.get("x-object-version") || "–")),
          field("Metadata", meta.length
            ? h("ul.meta", {}, meta.map(([n, v]) => h("li", {}, h("code", {}, n), ": ", v)))
            : "none", "detail-metadata"))
          : h("p#detail-deleted", {}, "This key is deleted: its current version is a delete marker. Restore an older version below."),
        head ? h("div.buttons", {},
          downloadLink(bucket, key, undefined, "Download", { id: "detail-download", class: "button" }),
          h("button.danger#detail-delete", { type: "button", onclick: () => remove(key) }, "Delete")) : null,
        head && canShare ? sharePanel(key) : null,
        note,
        h("h3", {}, `Versions (${versions.length})`),
        h("table.list.versions#version-table", {}, h("caption.visually-hidden", {}, `Versions of ${key}`),
          h("thead", {}, h("tr", {}, ["Version", "Size", "Modified"].map((t) => h("th", { scope: "col" }, t)),
            h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))),
          h("tbody", {}, versions.map((v) => versionRow(key, v, note)))));
      details.focus({ preventScroll: true });
    } catch (exc) {
      replace(details, h("p.error", { role: "alert" }, `Could not read ${key}: ${describe(exc)}`));
    }
  }

  function objectRow(obj) {
    const name = obj.key.slice(prefix.length);
    const open = (e) => { e.preventDefault(); showDetails(obj.key); };
    return h(`tr.object${obj.deleted ? ".deleted" : ""}`, { dataset: { key: obj.key } },
      h("th", { scope: "row" }, h("a.object-link", { href: "#", onclick: open, "aria-controls": "object-details" }, name),
        obj.deleted ? h("span.badge.marker", {}, "deleted") : null),
      h("td.num", { title: obj.deleted ? "" : `${obj.size} bytes` }, obj.deleted ? "–" : formatBytes(obj.size)),
      h("td", {}, formatTime(obj.modified)),
      h("td.actions", {}, obj.deleted ? h("button.small.secondary", { type: "button", onclick: open }, "Versions") : [
        downloadLink(bucket, obj.key, undefined, "Download", { class: "button small secondary download", "aria-label": `Download ${name}` }),
        h("button.small.danger.delete", { type: "button", "aria-label": `Delete ${name}`, onclick: () => remove(obj.key) }, "Delete")]));
  }

  function folderRow(sub) {
    return h("tr.folder", { dataset: { prefix: sub } },
      h("th", { scope: "row", colspan: 4 }, h("a.folder-link", { href: folderHash(bucket, sub) },
        h("span.folder-icon", { "aria-hidden": "true" }), sub.slice(prefix.length), h("span.visually-hidden", {}, " (folder)"))));
  }

  function sortedRows(list) {
    const objects = [...list.objects].sort((a, b) => sort.dir * COMPARE[sort.by](a, b));
    const folders = [...list.folders].sort((a, b) => (sort.by === "name" ? sort.dir : 1) * (a < b ? -1 : a > b ? 1 : 0));
    return { folders, objects };
  }

  function show() {
    for (const [by, button] of Object.entries(sortButtons)) {
      const th = button.parentElement;
      if (by === sort.by) th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      button.textContent = `${button.textContent.replace(/ [▲▼]$/, "")}${by === sort.by ? (sort.dir > 0 ? " ▲" : " ▼") : ""}`;
    }
    const { folders, objects } = sortedRows(entries);
    replace(tbody, folders.map(folderRow), objects.map(objectRow));
  }

  /** One page of the whole folder, sorted here. */
  function showWhole() {
    const { folders, objects } = sortedRows(whole);
    const all = [...folders.map((f) => ({ folder: f })), ...objects];
    const per = Number(pageSize.value);
    const count = Math.max(Math.ceil(all.length / per), 1);
    page = Math.min(Math.max(page, 0), count - 1);
    const shown = all.slice(page * per, (page + 1) * per);
    entries = { folders: shown.filter((e) => e.folder).map((e) => e.folder), objects: shown.filter((e) => !e.folder) };
    show();
    prev.disabled = page === 0;
    next.disabled = page >= count - 1;
    pageLabel.textContent = `Page ${page + 1} of ${count}`;
    const words = SORT_WORDS[sort.by][sort.dir > 0 ? 0 : 1];
    const from = all.length ? page * per + 1 : 0;
    const range = `${from.toLocaleString("en")}–${(page * per + shown.length).toLocaleString("en")}`;
    status.textContent = all.length
      ? `Entries ${range} of ${all.length.toLocaleString("en")}${search.value ? ` starting with “${search.value}”` : ""}: ` +
        `${entries.folders.length} folder(s), ${entries.objects.length} object(s)`
      : (search.value ? `Nothing here starts with “${search.value}”.` : "Empty: drop files below or pick some to upload.");
    sortNote.hidden = false;
    sortNote.className = whole.capped ? "message info" : "muted";
    sortNote.textContent = whole.capped
      ? `Sorted ${words}, over the first ${SORT_CAP.toLocaleString("en")} entries only: this folder has more. ` +
        "Narrow it with the search box, or sort by name to page through all of it."
      : `Sorted ${words}, over the whole folder (${all.length.toLocaleString("en")} entries).`;
  }

  /** Every entry of the folder (up to SORT_CAP), page after page of 1000. */
  async function loadWhole(where, ticket) {
    const found = { folders: [], objects: [], capped: false };
    let after = "";
    for (;;) {
      const doc = await callJson("GET", `/v1/objects/${encodeURIComponent(bucket)}${query({
        prefix: where, delimiter: "/", limit: 1000, start_after: after,
      })}`);
      if (ticket !== loads) return null;
      found.folders.push(...doc.common_prefixes);
      found.objects.push(...doc.objects.filter((o) => o.key !== prefix));
      const total = found.folders.length + found.objects.length;
      if (!doc.is_truncated || !doc.next_start_after) break;
      if (total >= SORT_CAP) {
        found.capped = true;
        break;
      }
      after = doc.next_start_after;
      status.textContent = `Loading the whole folder to sort it: ${total.toLocaleString("en")} entries so far…`;
    }
    const extra = found.folders.length + found.objects.length - SORT_CAP;
    if (extra > 0) { // keep the first SORT_CAP in key order
      found.capped = true;
      found.objects.splice(found.objects.length - Math.min(extra, found.objects.length));
    }
    if (showDeleted.checked) found.objects.push(...await deletedKeys(where));
    return found;
  }

  async function deletedKeys(where) {
    const params = new URLSearchParams({ prefix: where, limit: "1000" });
    const doc = await callJson("GET", `/v1/objects/${encodeURIComponent(bucket)}?versions&${params}`);
    return doc.versions.filter((v) => v.is_latest && v.delete_marker && !v.key.slice(prefix.length).includes("/"))
      .map((v) => ({ key: v.key, size: 0, modified: v.modified, deleted: true }));
  }

  async function load() {
    status.textContent = "Loading…";
    listNote.set("");
    loads += 1;
    const ticket = loads;
    const where = prefix + search.value;
    try {
      if (wholeMode()) {
        const found = await loadWhole(where, ticket);
        if (!alive || !found || ticket !== loads) return;
        whole = found;
        showWhole();
        return;
      }
      sortNote.hidden = true;
      const doc = await callJson("GET", `/v1/objects/${encodeURIComponent(bucket)}${query({
        prefix: where, delimiter: "/", limit: pageSize.value, start_after: pages[page],
      })}`);
      if (!alive || ticket !== loads) return;
      const deleted = showDeleted.checked && page === 0 ? await deletedKeys(where) : [];
      entries = {
        folders: doc.common_prefixes,
        objects: [...doc.objects.filter((o) => o.key !== prefix), ...deleted],
      };
      show();
      if (doc.is_truncated && doc.next_start_after) pages[page + 1] = doc.next_start_after;
      prev.disabled = page === 0;
      next.disabled = !doc.is_truncated;
      pageLabel.textContent = `Page ${page + 1}`;
      const count = entries.objects.length + entries.folders.length;
      status.textContent = count
        ? `Page ${page + 1}: ${entries.folders.length} folder(s), ${entries.objects.length} object(s)${search.value ? ` starting with “${search.value}”` : ""}`
        : (search.value ? `Nothing here starts with “${search.value}”.`
          : page === 0 ? "Empty: drop files below or pick some to upload." : "No more entries.");
    } catch (exc) {
      status.textContent = "";
      listNote.set(`Could not list ${bucket}: ${describe(exc)}`);
    }
  }

  if (!session.admin) {
    call("GET", `/v1/buckets/${encodeURIComponent(bucket)}/permissions`, { quiet: true })
      .then(() => { canShare = true; }).catch(() => { canShare = false; });
  }
  load();
  return () => { alive = false; uploader.detach(); };
}
