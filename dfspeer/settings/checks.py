"""The rule book of :class:`~dfspeer.config.PeerConfig`: every setting's range and how
settings must agree, checked by :func:`check_settings` in field-group order (the first field
found wrong is the one :class:`ConfigError` names)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dfspeer.gossip.config import SwimConfig
from dfspeer.settings.addresses import parse_host_port
from dfspeer.settings.errors import ConfigError, MiB
from dfspeer.settings.security import check_jwt, check_tls_audit

if TYPE_CHECKING:
    from dfspeer.config import PeerConfig

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")  # s3_root_domain


def check_settings(config: PeerConfig) -> None:
    """Check every setting of ``config``. Raises :class:`ConfigError` naming the field."""
    _check_placement(config)
    _check_chunking(config)
    _check_repair_and_limits(config)
    _check_storage_and_upkeep(config)
    _check_s3(config)
    _check_gossip_and_logging(config)
    check_jwt(config)
    check_tls_audit(config)
    _check_identity(config)


def _requirement(config: PeerConfig) -> Callable[[bool, str, str], None]:
    """``need(cond, name, what)``: raise :class:`ConfigError` naming the field ``name``, what
    it must be and its value in ``config``, unless ``cond`` holds."""

    def need(cond: bool, name: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{name}: {what} (got {getattr(config, name)!r})")

    return need


def _check_placement(config: PeerConfig) -> None:
    """Ports, weight, partitions, replication factor and quorums."""
    need = _requirement(config)
    for name in ("port", "gossip_port"):
        need(0 <= getattr(config, name) <= 65535, name, "must be a port number 0..65535")
    need(config.weight > 0, "weight", "must be > 0")
    need(4 <= config.partition_bits <= 16, "partition_bits", "must be in 4..16")
    need(1 <= config.replication_factor <= 16, "replication_factor", "must be in 1..16")
    need(
        1 <= config.write_quorum <= config.replication_factor,
        "write_quorum",
        "must be in 1..replication_factor",
    )
    need(
        1 <= config.read_quorum <= config.replication_factor,
        "read_quorum",
        "must be in 1..replication_factor",
    )


def _check_chunking(config: PeerConfig) -> None:
    """Chunk sizes (fixed and content-defined), inlining, the upload pipeline."""
    need = _requirement(config)
    need(
        64 * 1024 <= config.chunk_size_bytes <= 64 * MiB,
        "chunk_size_bytes",
        "must be in 64 KiB..64 MiB",
    )
    need(
        0 <= config.inline_threshold_bytes <= 64 * 1024,
        "inline_threshold_bytes",
        "must be in 0..64 KiB",
    )
    need(config.default_chunking in ("cdc", "fixed"), "default_chunking", "must be cdc or fixed")
    need(
        max(64 * 1024, config.inline_threshold_bytes + 1) <= config.cdc_min_chunk_bytes <= MiB,
        "cdc_min_chunk_bytes",
        "must be in 64 KiB..1 MiB and above inline_threshold_bytes",
    )
    need(
        config.cdc_min_chunk_bytes <= config.cdc_avg_chunk_bytes <= 4 * MiB
        and config.cdc_avg_chunk_bytes & (config.cdc_avg_chunk_bytes - 1) == 0,
        "cdc_avg_chunk_bytes",
        "must be a power of two in cdc_min_chunk_bytes..4 MiB",
    )
    need(
        config.cdc_avg_chunk_bytes <= config.cdc_max_chunk_bytes <= 16 * MiB,
        "cdc_max_chunk_bytes",
        "must be in cdc_avg_chunk_bytes..16 MiB",
    )
    need(1 <= config.upload_pipeline_depth <= 64, "upload_pipeline_depth", "must be in 1..64")


def _check_repair_and_limits(config: PeerConfig) -> None:
    """Anti-entropy and repair, rate limits and backpressure, download prefetch."""
    need = _requirement(config)
    need(config.anti_entropy_interval_s > 0, "anti_entropy_interval_s", "must be > 0")
    need(config.dead_member_evict_s >= 0, "dead_member_evict_s", "must be >= 0")
    need(1 <= config.repair_concurrency <= 64, "repair_concurrency", "must be in 1..64")
    need(
        config.repair_bandwidth_bytes_per_s >= 0,
        "repair_bandwidth_bytes_per_s",
        "must be >= 0 (0 = unlimited)",
    )
    for name in (
        "rate_limit_requests_per_s",
        "rate_limit_bytes_per_s",
        "max_inflight_requests",
        "max_upload_memory_bytes",
    ):
        need(getattr(config, name) >= 0, name, "must be >= 0 (0 = off)")
    need(
        0 <= config.download_prefetch_chunks <= 64,
        "download_prefetch_chunks",
        "must be in 0..64",
    )


def _check_storage_and_upkeep(config: PeerConfig) -> None:
    """Object and store sizes, commit linger, read speculation, hints, scrub, timers
    of the background work, garbage collection, resumable upload sessions."""
    need = _requirement(config)
    need(config.max_object_size_bytes > 0, "max_object_size_bytes", "must be > 0")
    need(config.map_size_bytes >= 16 * MiB, "map_size_bytes", "must be >= 16 MiB")
    need(0 <= config.commit_linger_ms <= 1000, "commit_linger_ms", "must be in 0..1000 (0: off)")
    need(config.recent_writes_cache_bytes >= 0, "recent_writes_cache_bytes", "must be >= 0")
    need(
        0 <= config.read_speculation_ms <= 60_000,
        "read_speculation_ms",
        "must be in 0..60000 (0: ask every replica at once)",
    )
    need(0 <= config.max_hints <= 10**9, "max_hints", "must be in 0..1e9")
    need(config.scrub_rate_bytes_per_s >= 0, "scrub_rate_bytes_per_s", "must be >= 0 (0: off)")
    need(config.scrub_interval_s >= 0, "scrub_interval_s", "must be >= 0")
    for name in (
        "request_timeout_s",
        "join_timeout_s",
        "hint_delivery_interval_s",
        "tombstone_grace_s",
        "tombstone_purge_interval_s",
        "block_gc_interval_s",
        "upload_expiry_s",
    ):
        need(getattr(config, name) > 0, name, "must be > 0")
    need(config.block_gc_grace_s >= 0, "block_gc_grace_s", "must be >= 0")
    need(1 <= config.upload_max_chunks <= 1_000_000, "upload_max_chunks", "must be in 1..1e6")
    need(
        64 * 1024 <= config.upload_min_chunk_bytes <= config.upload_max_chunk_bytes <= 64 * MiB,
        "upload_min_chunk_bytes",
        "must be in 64 KiB..upload_max_chunk_bytes, and that at most 64 MiB",
    )
    need(config.max_open_uploads >= 1, "max_open_uploads", "must be >= 1")


def _check_s3(config: PeerConfig) -> None:
    """The S3 API: its port, root domain and region."""
    need = _requirement(config)
    need(0 <= config.s3_port <= 65535, "s3_port", "must be a port number 0..65535 (0: off)")
    need(
        config.s3_port == 0 or config.s3_port != config.port or config.port == 0,
        "s3_port",
        "must differ from port",
    )
    need(
        not config.s3_root_domain or _DNS_NAME.fullmatch(config.s3_root_domain) is not None,
        "s3_root_domain",
        "must be a DNS name such as s3.example.com",
    )
    need(
        0 < len(config.s3_region) <= 64 and config.s3_region.replace("-", "").isalnum(),
        "s3_region",
        "must be a region name such as us-east-1",
    )


def _check_gossip_and_logging(config: PeerConfig) -> None:
    """The gossip settings (by SwimConfig) and logging."""
    need = _requirement(config)
    # The gossip settings have one rule book: SwimConfig's own checks.
    try:
        SwimConfig.from_settings(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).removeprefix("SwimConfig.")) from exc
    need(
        config.log_level in ("debug", "info", "warning", "error"),
        "log_level",
        "must be one of debug, info, warning, error",
    )
    need(config.log_format in ("text", "json"), "log_format", "must be text or json")
    need(
        config.event_loop in ("auto", "uvloop", "asyncio"),
        "event_loop",
        "must be auto, uvloop or asyncio",
    )


def _check_identity(config: PeerConfig) -> None:
    """The ``join`` addresses and ``peer_id``."""
    need = _requirement(config)
    for addr in config.join:
        parse_host_port(addr, what="join")
    if config.peer_id is not None:
        need(
            0 < len(config.peer_id) <= 128 and config.peer_id.isprintable(),
            "peer_id",
            "must be 1..128 printable characters",
        )
