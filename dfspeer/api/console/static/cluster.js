// Members with their state, the ring digest and this peer's status, refreshed every 5 s.

import { callJson } from "./api.js";
import { formatBytes, h, replace } from "./dom.js";

const REFRESH_MS = 5000;

export function renderCluster(container) {
  const summary = h("dl.summary#cluster-status");
  const tbody = h("tbody");
  const updated = h("span.muted#cluster-updated", {}, "");
  replace(container,
    h("div.head", {}, h("h1", {}, "Cluster"), updated),
    h("section.card", {}, h("h2", {}, "This peer"), summary),
    h("section", {}, h("h2", {}, "Members"),
      h("table.list#member-table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, "State"), h("th", {}, "API"),
          h("th", {}, "Gossip"), h("th.num", {}, "Incarnation"), h("th", {}, "Zone"),
          h("th.num", {}, "Weight"), h("th", {}, "Version"))),
        tbody)));

  async function refresh() {
    try {
      const [members, status] = await Promise.all([
        callJson("GET", "/v1/cluster/members"), callJson("GET", "/v1/cluster/status"),
      ]);
      const states = Object.entries(status.members || {}).map(([s, n]) => `${n} ${s}`).join(", ");
      const item = (label, value, id) => [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
      replace(summary,
        item("Id", h("code", {}, status.id)),
        item("Ready", status.ready ? "yes" : "no"),
        item("Version", status.version),
        item("Ring digest", h("code", {}, status.ring_digest), "ring-digest"),
        item("Members", states),
        item("Partitions held", status.partitions_held),
        item("Blocks", `${status.blocks} (${formatBytes(status.block_bytes)})`),
        item("Map used", `${formatBytes(status.map_used_bytes)} of ${formatBytes(status.map_size_bytes)}`));
      replace(tbody, members.members.map((m) => h("tr", { dataset: { member: m.id } },
        h("td", {}, h("code", {}, m.id), m.id === members.self ? h("span.badge", {}, "this peer") : null),
        h("td", {}, h(`span.state.state-${m.state}`, {}, m.state)),
        h("td", {}, m.address || "–"), h("td", {}, m.gossip_address),
        h("td.num", {}, m.incarnation), h("td", {}, m.zone || "–"),
        h("td.num", {}, m.weight), h("td", {}, m.version || "–"))));
      updated.textContent = `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    } catch (exc) {
      updated.textContent = `refresh failed: ${exc.message}`;
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
