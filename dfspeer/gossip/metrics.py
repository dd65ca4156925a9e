"""Prometheus metrics of one :class:`~dfspeer.gossip.agent.GossipAgent`, read at scrape time.

:class:`GossipMetrics` is a custom collector: nothing is counted per datagram; each scrape
reads the core's ``swim.counters``, the driver's ``agent.counters`` and ``agent.members()``.
Register it on a registry you own (never the process-global one, since several agents may
share a process)::

    registry = CollectorRegistry()
    GossipMetrics(agent).register(registry)
    text = prometheus_client.generate_latest(registry)

Exposed families (prefix ``dfspeer_gossip_``; counters carry ``_total``):

- ``probes``, ``acks``, ``indirect_probes``, ``suspicions``, ``deaths``, ``refutations``,
  ``removals`` (counters, from the core);
- ``dropped_datagrams{reason}``: every ``dropped.<reason>`` counter of the core (malformed,
  unsealed, replayed, too_large, ...) and of the driver (send_queue_full, send_error,
  unresolved);
- ``messages{direction}`` / ``bytes{direction}``: UDP datagrams and their bytes actually
  sent / received by the driver (``direction`` = ``sent`` | ``received``);
- ``push_pulls{result}``: TCP full-state exchanges (ok, served, failed, rejected, refused,
  skipped);
- ``core_events{name}``: any other core counter, so none is hidden;
- ``members{state}`` (gauge, every state present, self included), ``health_score`` (gauge,
  Lifeguard local health multiplier, 0 = healthy), ``joined`` (gauge, 0/1).

Two agents on one registry would clash on names (``DuplicateTimeseries``): give each its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from dfspeer.gossip.types import MemberState

if TYPE_CHECKING:
    from dfspeer.gossip.agent import GossipAgent

PREFIX = "dfspeer_gossip_"

# core counter name -> (metric name, help)
CORE_COUNTERS: dict[str, tuple[str, str]] = {
    "probes": ("probes", "Direct probes (pings) sent."),
    "acks": ("acks", "Acks received for our probes."),
    "indirect_probes": ("indirect_probes", "Indirect probes (ping-req) sent."),
    "suspicions": ("suspicions", "Members that became suspect in this peer's view."),
    "deaths": ("deaths", "Members that became dead in this peer's view."),
    "refutations": ("refutations", "Times this peer refuted a suspicion of itself."),
    "removals": ("removals", "Dead members an operator removed for good through this peer."),
}
# Core counters the driver's own figures replace (the driver sees the real socket).
_SHADOWED = {"msgs_sent", "bytes_sent", "msgs_received", "bytes_received"}
_DROPPED = "dropped."
_PUSH_PULL = "push_pull."
# Label values always exported (0 until they happen), so rate() works from the start.
KNOWN_DROP_REASONS = (
    "too_large", "unsealed", "malformed", "version", "unknown_type", "invalid", "stale",
    "replayed", "from_self", "send_queue_full", "send_error", "unresolved",
)  # fmt: skip
KNOWN_PUSH_PULL_RESULTS = ("ok", "served", "failed", "rejected", "refused", "skipped")


class GossipMetrics:
    """Scrape-time Prometheus collector for one gossip agent (see the module docstring)."""

    def __init__(self, agent: GossipAgent) -> None:
        self.agent = agent

    def register(self, registry: CollectorRegistry) -> GossipMetrics:
        """Add this collector to ``registry``; returns self. Raises ValueError on a clash."""
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (lets the registry check names cheaply)."""
        return list(self._families({}, {}, [], live=False))

    def collect(self) -> Iterable[Metric]:
        """Current values of every family."""
        agent = self.agent
        states = [m.state for m in agent.members()]
        core, driver = dict(agent.swim.counters), dict(agent.counters)
        return list(self._families(core, driver, states, live=True))

    def _families(
        self,
        core: Mapping[str, int],
        driver: Mapping[str, int],
        states: list[MemberState],
        *,
        live: bool,
    ) -> Iterable[Metric]:
        for key, (name, help_text) in CORE_COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, help_text)
            if live:
                family.add_metric([], core.get(key, 0))
            yield family
        yield self._dropped(core, driver, live)
        yield from self._traffic(driver, live)
        push = CounterMetricFamily(
            PREFIX + "push_pulls", "TCP full-state exchanges by result.", labels=["result"]
        )
        if live:
            results = dict.fromkeys(KNOWN_PUSH_PULL_RESULTS, 0)
            for key, value in driver.items():
                if key.startswith(_PUSH_PULL):
                    results[key[len(_PUSH_PULL) :]] = value
            for result, value in sorted(results.items()):
                push.add_metric([result], value)
        yield push
        other = CounterMetricFamily(
            PREFIX + "core_events", "Other counters of the SWIM core.", labels=["name"]
        )
        for key, value in sorted(core.items()):
            if key not in CORE_COUNTERS and key not in _SHADOWED and not key.startswith(_DROPPED):
                other.add_metric([key], value)
        yield other
        yield from self._gauges(states, live)

    @staticmethod
    def _dropped(core: Mapping[str, int], driver: Mapping[str, int], live: bool) -> Metric:
        reasons = dict.fromkeys(KNOWN_DROP_REASONS if live else (), 0)
        for counters in (core, driver):
            for key, value in counters.items():
                if key.startswith(_DROPPED):
                    reason = key[len(_DROPPED) :]
                    reasons[reason] = reasons.get(reason, 0) + value
        family = CounterMetricFamily(
            PREFIX + "dropped_datagrams", "Datagrams dropped, by reason.", labels=["reason"]
        )
        for reason, value in sorted(reasons.items()):
            family.add_metric([reason], value)
        return family

    @staticmethod
    def _traffic(driver: Mapping[str, int], live: bool) -> Iterable[Metric]:
        for unit, help_text in (("messages", "UDP datagrams"), ("bytes", "UDP payload bytes")):
            family = CounterMetricFamily(
                PREFIX + unit, f"{help_text} by direction.", labels=["direction"]
            )
            prefix = "msgs" if unit == "messages" else "bytes"
            if live:
                for direction in ("sent", "received"):
                    family.add_metric([direction], driver.get(f"{prefix}_{direction}", 0))
            yield family

    def _gauges(self, states: list[MemberState], live: bool) -> Iterable[Metric]:
        members = GaugeMetricFamily(
            PREFIX + "members", "Known members by state (self included).", labels=["state"]
        )
        health = GaugeMetricFamily(
            PREFIX + "health_score", "Lifeguard local health multiplier (0 = healthy)."
        )
        joined = GaugeMetricFamily(PREFIX + "joined", "1 once this peer has joined.")
        if live:
            for state in MemberState:
                members.add_metric([state.value], sum(1 for s in states if s is state))
            health.add_metric([], self.agent.swim.health_score)
            joined.add_metric([], 1.0 if self.agent.joined else 0.0)
        yield members
        yield health
        yield joined
