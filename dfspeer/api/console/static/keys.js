// Access keys (admin only): list, create (the secret is shown once), disable, delete.

import { callJson, describe } from "./api.js";
import { copyText, formatTime, h, labelled, messageSlot, replace } from "./dom.js";

export function renderKeys(container) {
  let alive = true;
  const tbody = h("tbody");
  const status = h("p.muted#key-status", { role: "status" }, "Loading…");
  const name = h("input#key-name", { name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const mayCreate = h("input#key-create-buckets", { type: "checkbox", name: "allow_create_bucket" });
  const note = messageSlot("key-create-error");
  const secretBox = h("div.card.secret#key-secret", { hidden: true, role: "region", "aria-labelledby": "key-secret-title" });
  const form = h("form.inline#key-create", { "aria-label": "Create an access key" },
    labelled("Name of the new key", name, { class: "grow" }),
    h("label.check", { for: "key-create-buckets" }, mayCreate, " may create buckets"),
    h("button#key-create-submit", { type: "submit" }, "Create key"));

  function showSecret(doc) {
    const credential = `${doc.id}.${doc.secret}`;
    const field = h("input#key-secret-value", { readonly: true, value: credential, "aria-label": "The new key's credential (id.secret)", size: 60 });
    const copied = messageSlot();
    replace(secretBox,
      h("h2#key-secret-title", {}, `Key ${doc.name} created`),
      h("p", {}, h("strong", {}, "Copy the secret now: it is shown only once. "),
        "Log in with the id and the secret, or send ", h("code", {}, "Authorization: Bearer id.secret"), "."),
      h("dl.summary", {}, h("dt", {}, "Key id"), h("dd", {}, h("code#key-new-id", {}, doc.id)),
        h("dt", {}, "Secret"), h("dd", {}, h("code#key-new-secret", {}, doc.secret))),
      h("div.buttons", {}, field,
        h("button#key-secret-copy", { type: "button", onclick: async () => {
          copied.set(await copyText(credential, field) ? "Copied." : "Select the text and copy it.", "info");
        } }, "Copy"),
        h("button.secondary", { type: "button", onclick: () => { secretBox.hidden = true; replace(secretBox); } }, "Done")),
      copied);
    secretBox.hidden = false;
    field.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    note.set("");
    try {
      const doc = await callJson("POST", "/v1/keys", { json: { name: name.value.trim(), allow_create_bucket: mayCreate.checked } });
      name.value = "";
      mayCreate.checked = false;
      showSecret(doc);
      load();
    } catch (exc) {
      note.set(`Could not create the key: ${describe(exc)}`);
    }
  });

  async function act(key, what, rowNote) {
    if (what === "delete" && !confirm(`Delete the access key ${key.name} (${key.id})? Whoever uses it is refused from then on.`)) return;
    try {
      if (what === "delete") await callJson("DELETE", `/v1/keys/${encodeURIComponent(key.id)}`);
      else await callJson("POST", `/v1/keys/${encodeURIComponent(key.id)}/disable`);
      status.textContent = `Key ${key.name} ${what === "delete" ? "deleted" : "disabled"}.`;
      load();
    } catch (exc) {
      rowNote.set(`Could not ${what} the key: ${describe(exc)}`);
    }
  }

  function row(key) {
    const rowNote = messageSlot();
    return h("tr", { dataset: { key: key.id } },
      h("th", { scope: "row" }, h("code", {}, key.id)),
      h("td", {}, key.name), h("td", {}, formatTime(key.created)),
      h("td", {}, key.allow_create_bucket ? "yes" : "no"),
      h("td", {}, key.disabled ? h("span.state.state-dead", {}, "disabled") : h("span.state.state-alive", {}, "active")),
      h("td.actions", {},
        h("button.small.secondary.key-disable", { type: "button", disabled: key.disabled, "aria-label": `Disable key ${key.name}`, onclick: () => act(key, "disable", rowNote) }, "Disable"),
        h("button.small.danger.key-delete", { type: "button", "aria-label": `Delete key ${key.name}`, onclick: () => act(key, "delete", rowNote) }, "Delete"),
        rowNote));
  }

  async function load() {
    try {
      const doc = await callJson("GET", "/v1/keys");
      if (!alive) return;
      replace(tbody, doc.keys.map(row));
      status.textContent = doc.keys.length ? `${doc.keys.length} key(s)` : "No access keys yet.";
    } catch (exc) {
      status.textContent = `Could not list the keys: ${describe(exc)}`;
    }
  }

  replace(container,
    h("div.head", {}, h("h1", {}, "Access keys")),
    h("section.card", { "aria-label": "Create an access key" }, form, note),
    secretBox, status,
    h("table.list#key-table", {}, h("caption.visually-hidden", {}, "Access keys"),
      h("thead", {}, h("tr", {}, ["Id", "Name", "Created", "May create buckets", "State"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))), tbody));
  load();
  return () => { alive = false; };
}
