// The cluster: members (state, zone, weight, address, incarnation) with the partitions
// (GET /v1/cluster/ring) and stored bytes (GET /ui/api/peers) of each, this peer's status,
// repair progress with a rate and an ETA measured between refreshes (every 3 s), and this
// peer's upkeep: hints pending, scrub progress and what garbage collection reclaimed.

import { callJson, describe } from "./api.js";
import { formatBytes, formatDuration, formatTime, h, replace } from "./dom.js";

const REFRESH_MS = 3000;

export function renderCluster(container) {
  const summary = h("dl.summary#cluster-status");
  const repairBox = h("dl.summary#repair-status");
  const repairBar = h("progress#repair-progress", { max: 1, value: 0, "aria-label": "Repair progress" });
  const upkeepBox = h("dl.summary#upkeep-status");
  const tbody = h("tbody");
  const updated = h("span.muted#cluster-updated", { role: "status" }, "");
  let previous = null; // {at, repaired, toMove}
  let startToMove = 0;
  replace(container,
    h("div.head", {}, h("h1", {}, "Cluster"), updated),
    h("section", { "aria-labelledby": "members-title" }, h("h2#members-title", {}, "Members"),
      h("table.list#member-table", {}, h("caption.visually-hidden", {}, "Members of the cluster"),
        h("thead", {}, h("tr", {}, ["Id", "State", "Address", "Zone", "Weight", "Incarnation", "Partitions", "Stored", "Version"]
          .map((t) => h(`th${["Weight", "Incarnation", "Partitions", "Stored"].includes(t) ? ".num" : ""}`, { scope: "col" }, t)))),
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

  async function refresh() {
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
      replace(tbody, members.members.map((m) => {
        const fig = figures[m.id];
        const stored = !fig ? "–" : fig.error ? h("span.muted", { title: fig.error }, "no answer") : formatBytes(fig.block_bytes);
        const parts = ring.peers[m.id] ? ring.peers[m.id].partitions : 0;
        return h("tr", { dataset: { member: m.id, state: m.state } },
          h("th", { scope: "row" }, h("code", {}, m.id), m.id === members.self ? h("span.badge", {}, "this peer") : null),
          h("td", {}, h(`span.state.state-${m.state}`, {}, m.state)),
          h("td", {}, m.address || "–"), h("td", {}, m.zone || "–"),
          h("td.num", {}, m.weight), h("td.num", {}, m.incarnation),
          h("td.num.partitions", {}, parts), h("td.num.stored", { title: fig && !fig.error ? `${fig.block_bytes} bytes in ${fig.blocks} blocks` : "" }, stored),
          h("td", {}, m.version || "–"));
      }));
      updated.textContent = `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    } catch (exc) {
      updated.textContent = `Refresh failed: ${describe(exc)}`;
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
