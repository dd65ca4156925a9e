// The cluster: members (state, zone, weight, address, incarnation) with the partitions
// (GET /v1/cluster/ring) and stored bytes (GET /ui/api/peers) of each, this peer's status,
// repair progress with a rate and an ETA measured between refreshes (every 3 s), and this
// peer's upkeep: hints pending, scrub progress and what garbage collection reclaimed.
//
// The admin also gets actions on each member, each asked for in a dialog first: drain a
// live member (POST /ui/api/members/{id}/drain, handed on to that member's own
// /v1/cluster/drain; its progress is read again on every refresh), recount a live member's
// block references (POST /ui/api/members/{id}/repair/block-refs) and remove a dead member
// (POST /v1/cluster/members/{id}/remove). What happened is said in words next to the member.

import { callJson, describe, session } from "./api.js";
import { confirmDialog, formatBytes, formatDuration, formatTime, h, messageSlot, replace } from "./dom.js";

const REFRESH_MS = 3000;

const memberPath = (id, action) => `/ui/api/members/${encodeURIComponent(id)}/${action}`;

/** A drain progress document in words. */
export function drainWords(doc) {
  if (!doc) return "";
  if (doc.state === "draining") {
    return `Draining: ${doc.partitions_remaining ?? "?"} partition(s), ~${formatBytes(doc.bytes_remaining || 0)} ` +
      `still to move, ${doc.rounds || 0} round(s) so far.`;
  }
  if (doc.state === "done") return "Drained: the member has left the cluster.";
  if (doc.state === "failed") return `The drain failed: ${doc.error || "no reason given"}.`;
  return "";
}

export function renderCluster(container) {
  const summary = h("dl.summary#cluster-status");
  const repairBox = h("dl.summary#repair-status");
  const repairBar = h("progress#repair-progress", { max: 1, value: 0, "aria-label": "Repair progress" });
  const upkeepBox = h("dl.summary#upkeep-status");
  const tbody = h("tbody");
  const admin = Boolean(session.admin);
  const rows = new Map(); // member id -> {tr, cells, buttons, note, shown}
  const notes = new Map(); // member id -> {text, kind}: what the last action said
  const drains = new Map(); // member id -> its last drain progress document
  const busy = new Set(); // member ids with an action under way
  let alive = true;
  const updated = h("span.muted#cluster-updated", { role: "status" }, "");
  let previous = null; // {at, repaired, toMove}
  let startToMove = 0;
  replace(container,
    h("div.head", {}, h("h1", {}, "Cluster"), updated),
    h("section", { "aria-labelledby": "members-title" }, h("h2#members-title", {}, "Members"),
      h("table.list#member-table", {}, h("caption.visually-hidden", {}, "Members of the cluster"),
        h("thead", {}, h("tr", {}, ["Id", "State", "Address", "Zone", "Weight", "Incarnation", "Partitions", "Stored", "Version"]
          .map((t) => h(`th${["Weight", "Incarnation", "Partitions", "Stored"].includes(t) ? ".num" : ""}`, { scope: "col" }, t)),
          admin ? h("th", { scope: "col" }, "Actions") : null)),
        tbody)),
    h("div.columns", {},
      h("section.card", { "aria-labelledby": "repair-title" }, h("h2#repair-title", {}, "Repair"), repairBar, repairBox),
      h("section.card", { "aria-labelledby": "self-title" }, h("h2#self-title", {}, "This peer"), summary)),
    h("section.card", { "aria-labelledby": "upkeep-title" },
      h("h2#upkeep-title", {}, "Hints, scrub and garbage collection (this peer)"), upkeepBox));

  // one <dt>/<dd> pair; `value` (a number) goes to data-value for tests and scripts
  const item = (label, text, id, value) =>
    [h("dt", {}, label), h("dd", { ...(id ? { id } : {}), ...(value !== undefined ? { dataset: { value: String(value) } } : {}) }, text)];

  function showUpkeep(status) {
    const repair = status.repair || {};
    const gc = status.gc || {};
    const scrub = repair.scrub;
    let scrubText = "not reported by this peer";
    let scrubDone = "";
    if (scrub) {
      const held = status.block_bytes || 0;
      const share = held > 0 ? Math.min(1, (scrub.pass_bytes || 0) / held) : 1;
      scrubDone = scrub.running ? (share * 100).toFixed(1) : "";
      scrubText = scrub.running
        ? `${scrubDone} % of this pass (${formatBytes(scrub.pass_bytes)} of ${formatBytes(held)})`
        : `idle; ${scrub.passes || 0} pass(es) done, last ended ${formatTime(scrub.last_pass_end)}`;
    }
    replace(upkeepBox,
      item("Hints pending", `${repair.hints_pending ?? "–"} (${repair.hints_delivered ?? 0} delivered)`, "hints-pending", repair.hints_pending ?? ""),
      item("Scrub", scrubText, "scrub-progress", scrubDone),
      item("Corrupt blocks", scrub ? `${scrub.corrupt_found || 0} found, ${scrub.repaired || 0} repaired` : "–"),
      item("GC reclaimed", `${formatBytes(gc.bytes_reclaimed || 0)} in ${gc.blocks_deleted || 0} block(s)`, "gc-reclaimed", gc.bytes_reclaimed ?? ""),
      item("GC waiting", `${gc.blocks_unreferenced ?? 0} unreferenced block(s), ${formatBytes(gc.bytes_deletable || 0)} deletable now, ${gc.releases_pending ?? 0} release(s) queued`, "gc-waiting"));
  }

  function showRepair(repair) {
    if (!repair) {
      replace(repairBox, item("Repair", "not reported by this peer"));
      return;
    }
    const now = performance.now();
    const toMove = repair.bytes_to_move || 0;
    const repaired = repair.bytes_repaired || 0;
    let rate = NaN;
    if (previous && now > previous.at) rate = ((repaired - previous.repaired) * 1000) / (now - previous.at);
    previous = { at: now, repaired, toMove };
    if (toMove > startToMove || toMove === 0) startToMove = toMove;
    const behind = (repair.partitions_behind || 0) + (repair.partitions_to_move || 0);
    const total = behind + (repair.partitions_in_sync || 0);
    repairBar.max = Math.max(total, 1);
    repairBar.value = repair.partitions_in_sync || 0;
    const eta = !behind && !toMove ? "in sync" : rate > 0 && toMove ? formatDuration(toMove / rate) : "measuring…";
    replace(repairBox,
      item("Partitions in sync", `${repair.partitions_in_sync ?? "–"} of ${total}`, "repair-in-sync"),
      item("Behind / to move", `${repair.partitions_behind ?? 0} / ${repair.partitions_to_move ?? 0}`),
      item("Bytes to move", formatBytes(toMove)),
      item("Repaired so far", formatBytes(repaired)),
      item("Rate", Number.isFinite(rate) ? `${(Math.max(rate, 0) / 1e6).toFixed(2)} MB/s` : "–"),
      item("Time left", eta, "repair-eta"),
      item("Rounds", `${repair.rounds ?? 0}${repair.round_running ? " (one running)" : ""}`));
  }

  function rowFor(m) {
    let entry = rows.get(m.id);
    if (entry) return entry;
    const cells = {
      id: h("th", { scope: "row" }), state: h("td"), address: h("td"), zone: h("td"),
      weight: h("td.num"), incarnation: h("td.num"), partitions: h("td.num.partitions"),
      stored: h("td.num.stored"), version: h("td"),
    };
    entry = { tr: h("tr", { dataset: { member: m.id } }, Object.values(cells)), cells, shown: "" };
    if (admin) {
      const button = (cls, text, label, onclick) =>
        h(`button.small.${cls}`, { type: "button", "aria-label": `${label} ${m.id}`, hidden: true, onclick }, text);
      entry.buttons = {
        drain: button("danger.member-drain", "Drain…", "Drain member", () => drain(m.id)),
        recount: button("secondary.member-recount", "Recount block refs…", "Recount block refs of member", () => recount(m.id)),
        remove: button("danger.member-remove", "Remove…", "Remove dead member", () => remove(m.id)),
      };
      entry.note = messageSlot();
      entry.note.classList.add("member-note");
      entry.note.setAttribute("tabindex", "-1");
      entry.tr.append(h("td.actions", {}, h("div.buttons", {}, Object.values(entry.buttons)), entry.note));
    }
    entry.member = m;
    rows.set(m.id, entry);
    return entry;
  }

  function showMember(entry, m, self, fig, parts) {
    const { tr, cells } = entry;
    entry.member = m;
    const live = m.state === "alive" || m.state === "suspect";
    const drainState = (drains.get(m.id) || {}).state || "";
    const draining = live && drainState === "draining";
    tr.dataset.state = m.state;
    tr.dataset.drain = drainState;
    replace(cells.id, h("code", {}, m.id), m.id === self ? h("span.badge", {}, "this peer") : null);
    replace(cells.state, h(`span.state.state-${m.state}`, {}, m.state), draining ? h("span.badge.draining", {}, "draining") : null);
    cells.address.textContent = m.address || "–";
    cells.zone.textContent = m.zone || "–";
    cells.weight.textContent = m.weight;
    cells.incarnation.textContent = m.incarnation;
    cells.partitions.textContent = parts;
    replace(cells.stored, !fig ? "–" : fig.error ? h("span.muted", { title: fig.error }, "no answer") : formatBytes(fig.block_bytes));
    cells.stored.title = fig && !fig.error ? `${fig.block_bytes} bytes in ${fig.blocks} blocks` : "";
    cells.version.textContent = m.version || "–";
    if (admin) showActions(entry);
  }

  /** The action buttons a member's state allows, and what its last action said. */
  function showActions(entry) {
    const m = entry.member;
    const live = m.state === "alive" || m.state === "suspect";
    const drainState = (drains.get(m.id) || {}).state || "";
    const { drain: drainButton, recount: recountButton, remove: removeButton } = entry.buttons;
    drainButton.hidden = !live || ["draining", "done"].includes(drainState);
    recountButton.hidden = !live;
    removeButton.hidden = m.state !== "dead";
    for (const button of Object.values(entry.buttons)) button.setAttribute("aria-disabled", String(busy.has(m.id)));
    if (m.state === "left" && drains.has(m.id) && !busy.has(m.id)) {
      notes.set(m.id, { text: "Drained: the member has left the cluster.", kind: "info" });
    }
    const note = notes.get(m.id) || { text: "", kind: "info" };
    const shown = `${note.kind}:${note.text}`;
    if (shown !== entry.shown) { // set only what changed: a live region repeats what is set
      entry.note.set(note.text, note.kind);
      entry.note.classList.add("member-note"); // set() puts the class list back to its own
      entry.shown = shown;
    }
  }

  /** Read the drain progress of every live member being drained (weight 0, or drained from here). */
  async function readDrains(list) {
    const wanted = list.filter((m) => (m.state === "alive" || m.state === "suspect") &&
      (m.weight === 0 || (drains.get(m.id) || {}).state === "draining"));
    await Promise.all(wanted.map(async (m) => {
      try {
        const doc = await callJson("GET", memberPath(m.id, "drain"));
        if (doc.state === "idle") return; // weight 0 by configuration, not by a drain
        drains.set(m.id, doc);
        if (!busy.has(m.id)) notes.set(m.id, { text: drainWords(doc), kind: doc.state === "failed" ? "error" : "info" });
      } catch {
        // the member may be leaving right now: keep what was said last
      }
    }));
  }

  /** Ask, then run `act` for member `id`, saying what happens next to it. */
  async function act(id, question, doing, run, failed) {
    const entry = rows.get(id);
    if (!entry || busy.has(id)) return;
    if (!(await confirmDialog(question))) return;
    busy.add(id);
    notes.set(id, { text: doing, kind: "info" });
    showActions(entry);
    let said;
    try {
      said = { text: await run(), kind: "info" };
    } catch (exc) {
      said = { text: `${failed}: ${describe(exc)}`, kind: "error" };
    }
    busy.delete(id);
    notes.set(id, said);
    await refresh();
    // a button that went away (or the dialog) took the focus: put it on what was said
    if (!entry.tr.contains(document.activeElement) || document.activeElement.hidden) entry.note.focus();
  }

  function drain(id) {
    const m = rows.get(id).member;
    return act(id, {
      title: `Drain member ${id}?`,
      body: [`${id}${m.address ? ` (${m.address})` : ""} stops taking new writes and hands each of its partitions ` +
        "to the other members; once they all hold them, it leaves the cluster and its agent exits.",
      "A drain cannot be cancelled once it has started."],
      confirm: `Drain ${id}`,
    }, "Starting the drain…", async () => {
      const doc = await callJson("POST", memberPath(id, "drain"));
      drains.set(id, doc);
      return drainWords(doc) || "The drain has started.";
    }, "Could not start the drain");
  }

  function recount(id) {
    return act(id, {
      title: `Recount the block references of ${id}?`,
      body: [`${id} rebuilds the reference count of each of its blocks from its block reference table, ` +
        "so garbage collection works from the right counts.",
      "It reads the whole table: on a large store this takes a while."],
      confirm: `Recount on ${id}`,
    }, "Recounting block references…", async () => {
      const doc = await callJson("POST", memberPath(id, "repair/block-refs"));
      return `Recounted: ${doc.references} reference(s) to ${doc.blocks} block(s); ${doc.changed} count(s) corrected.`;
    }, "Could not recount");
  }

  function remove(id) {
    return act(id, {
      title: `Remove dead member ${id}?`,
      body: [`Every peer forgets ${id} for good: it leaves the ring now, and repair copies its partitions ` +
        "to the remaining members at once instead of after the dead member timeout.",
      "Do this only for a member that will not come back with its data."],
      confirm: `Remove ${id}`,
    }, "Removing…", async () => {
      const doc = await callJson("POST", `/v1/cluster/members/${encodeURIComponent(id)}/remove`);
      return `Removed: the member is now ${doc.state || "left"}; repair re-replicates its partitions.`;
    }, "Could not remove the member");
  }

  async function refresh() {
    if (!alive) return;
    try {
      const [members, status, ring] = await Promise.all([
        callJson("GET", "/v1/cluster/members"), callJson("GET", "/v1/cluster/status"),
        callJson("GET", "/v1/cluster/ring"),
      ]);
      let figures = {};
      try {
        figures = (await callJson("GET", "/ui/api/peers")).peers;
      } catch {
        figures = {};
      }
      const states = Object.entries(status.members || {}).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ");
      replace(summary,
        item("Id", h("code", {}, status.id)),
        item("Ready", status.ready ? "yes" : "no"),
        item("Version", status.version),
        item("Ring digest", h("code", {}, status.ring_digest), "ring-digest"),
        item("Members", states, "member-counts"),
        item("Replication factor", ring.replication_factor),
        item("Partitions held", `${status.partitions_held} of ${ring.partitions}`),
        item("Blocks", `${status.blocks} (${formatBytes(status.block_bytes)})`),
        item("Map used", `${formatBytes(status.map_used_bytes)} of ${formatBytes(status.map_size_bytes)}`));
      showRepair(status.repair);
      showUpkeep(status);
      if (admin) await readDrains(members.members);
      const order = members.members.map((m) => {
        const entry = rowFor(m);
        showMember(entry, m, members.self, figures[m.id], ring.peers[m.id] ? ring.peers[m.id].partitions : 0);
        return entry.tr;
      });
      for (const [id, entry] of rows) {
        if (!members.members.some((m) => m.id === id)) {
          entry.tr.remove();
          rows.delete(id);
        }
      }
      // move rows only when the order changed: a row taken out loses the keyboard focus
      if (order.some((tr, i) => tbody.children[i] !== tr)) tbody.replaceChildren(...order);
      updated.textContent = `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    } catch (exc) {
      updated.textContent = `Refresh failed: ${describe(exc)}`;
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
