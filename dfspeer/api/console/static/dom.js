// Small DOM and formatting helpers. Text always goes in through textContent: nothing a
// server or a user sent is ever parsed as HTML.

/** h("tag.class#id", {attr: value, onclick: fn}, ...children) -> Element. */
export function h(spec, attrs = {}, ...children) {
  const [, tag = "div", rest = ""] = /^([a-z0-9]+)?(.*)$/i.exec(spec);
  const node = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") node.classList.add(part.slice(1));
    else node.id = part.slice(1);
  }
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 -> "1.5 KiB". */
export function formatBytes(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** Unix seconds -> local "2026-12-07 04:38:56". */
export function formatTime(unixSeconds) {
  if (!unixSeconds) return "–";
  const d = new Date(unixSeconds * 1000);
  const pad = (v) => String(v).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

let flashTimer = 0;

/** Show a message in the banner under the top bar (kind: "error" | "info"). */
export function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  box.textContent = message;
  box.className = `flash ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 4000);
}

export function clearFlash() {
  document.getElementById("flash").hidden = true;
}

/** 95 -> "1 min 35 s", for time left. */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * A message slot next to what it is about: set(text, kind) shows it ("error" | "info"),
 * set("") hides it. Errors are announced by screen readers (role=alert).
 */
export function messageSlot(id) {
  const node = h(`p.message${id ? `#${id}` : ""}`, { hidden: true, "aria-live": "polite" });
  node.set = (text, kind = "error") => {
    node.textContent = text || "";
    node.className = `message ${kind === "error" ? "error" : "info"}`;
    node.setAttribute("role", kind === "error" ? "alert" : "status");
    node.hidden = !text;
  };
  return node;
}

/** Copy `text` to the clipboard (navigator.clipboard needs a secure context: else the
 * old selection route). Resolves true when it worked. */
export async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      // a browser may keep the promise pending while it asks for permission: wait 1 s
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 1000));
      await Promise.race([navigator.clipboard.writeText(text), timeout]);
      return true;
    }
  } catch {
    // fall through
  }
  if (input) {
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
  return false;
}

/** A labelled form control: <label for=id>text</label> + control (visible label). */
export function labelled(text, control, extra = {}) {
  return h("label", { for: control.id, ...extra }, text, control);
}

/**
 * Ask before doing something that cannot be undone: a modal <dialog> (focus stays inside,
 * Escape cancels) named by its title and described by its text. "Cancel" has the focus
 * first; the focus goes back to where it was when the dialog closes. Resolves true when
 * the user chose `confirm`.
 */
export function confirmDialog({ title, body, confirm, cancel = "Cancel" }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const yes = h("button.danger#confirm-yes", { type: "button" }, confirm);
    const no = h("button.secondary#confirm-no", { type: "button" }, cancel);
    const dialog = h("dialog.confirm#confirm-dialog", { "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      h("h2#confirm-title", {}, title),
      h("div#confirm-text", {}, [body].flat().map((text) => h("p", {}, text))),
      h("div.buttons", {}, no, yes));
    let answer = false;
    yes.addEventListener("click", () => { answer = true; dialog.close(); });
    no.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
