"""PeerConfig: the one source of truth for every setting of a peer.

Every field has a default that runs a local cluster, a unit in its name, and a check in
:meth:`PeerConfig.validate`. Values come from, highest precedence first: command-line
flags, ``DFSPEER_*`` environment variables, a TOML file, the defaults below.

The dataclass lives here; its rules, type coercion and the reading of the TOML file and
environment live in :mod:`dfspeer.settings`. Import ``PeerConfig``, ``ConfigError``,
``MiB`` / ``GiB``, ``ENV_PREFIX`` and ``parse_host_port`` from this module.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfspeer.settings.addresses import parse_host_port
from dfspeer.settings.checks import check_settings
from dfspeer.settings.errors import ConfigError, GiB, MiB
from dfspeer.settings.fieldtypes import check_type, coerce
from dfspeer.settings.sources import ENV_PREFIX, env_settings, read_toml_settings

__all__ = ["ENV_PREFIX", "ConfigError", "GiB", "MiB", "PeerConfig", "parse_host_port"]


@dataclass(frozen=True)
class PeerConfig:
    """Settings of one peer. Sizes are bytes, durations seconds, rates per second."""

    # identity and addresses
    data_dir: Path = Path("./dfspeer-data")
    host: str = "127.0.0.1"
    port: int = 7070
    gossip_port: int = 7946
    advertise_host: str | None = None
    peer_id: str | None = None
    join: tuple[str, ...] = ()
    zone: str = ""
    weight: float = 1.0
    # security
    cluster_key_file: Path | None = None
    insecure: bool = False  # also turns client authentication off (dfspeer.access)
    admin_token_file: Path | None = None  # the bearer token that may do everything
    metrics_public: bool = True  # False: GET /metrics needs the admin token
    # JWT bearer tokens acting as access keys (dfspeer.access.jwt_auth): one key source
    jwt_public_key_file: Path | None = None  # a PEM public key (EC P-256: ES256, RSA: RS256)
    jwt_jwks_file: Path | None = None  # a local JWKS file of ES256 / RS256 public keys
    jwt_jwks_url: str = ""  # an identity provider's JWKS (https; http to loopback only)
    jwt_issuer: str = ""  # the iss a JWT must carry ("" = not checked)
    jwt_audience: str = ""  # an aud a JWT must name ("" = a JWT must carry no aud)
    # TLS (dfspeer.tls): HTTPS on the API and S3 ports; peer RPC over https
    tls_cert_file: Path | None = None  # PEM certificate (chain); with tls_key_file or neither
    tls_key_file: Path | None = None  # PEM private key, unencrypted
    tls_ca_file: Path | None = None  # CA bundle peers' certificates chain to (internal_tls)
    internal_tls: bool = False  # peer RPC verifies peers' certificates (needs tls_cert_file)
    # audit log (dfspeer.access.audit): one JSON line a mutating or refused request
    audit_log_file: Path | None = None  # None: no audit log
    audit_log_max_bytes: int = 64 * MiB  # rotated at this size
    audit_log_backups: int = 5  # rotated files kept (FILE.1 .. FILE.5)
    # auth cache (dfspeer.access.cache): access control reuses its key and bucket reads this
    # long, 0..60 s (0: off). The TTL used is min(this, anti_entropy_interval_s / 2), see
    # effective_auth_cache_ttl_s. A key disabled or a grant revoked is refused at once on the
    # peer the change went through, within that TTL on the others.
    auth_cache_ttl_s: float = 1.0
    # placement and quorum
    partition_bits: int = 10
    replication_factor: int = 3
    write_quorum: int = 2
    read_quorum: int = 2
    # a quorum read asks R replicas (this peer first, then ALIVE ones, rotated) and the
    # others only when one of those fails or has not answered within this many ms
    # (Cassandra's speculative retry); 0: every replica at once (more read repair, N
    # replicas' work per read)
    read_speculation_ms: float = 20.0
    # record reads and writes between peers go as signed messages on one WebSocket per pair
    # of peers (dfspeer/cluster/channel.py); false: one signed HTTP request per call
    peer_channel: bool = True
    # data path
    chunk_size_bytes: int = 2 * MiB  # benchmarks/throughput.py sweep: 2 MiB best of 1/2/4/8
    inline_threshold_bytes: int = 4096
    upload_pipeline_depth: int = 4
    download_prefetch_chunks: int = 2
    max_object_size_bytes: int = 1024 * GiB  # keeps a manifest's chunk list under ~25 MiB
    # content-defined chunking (dfspeer.objects.cdc; FastCDC, Xia et al. 2016/2020)
    default_chunking: str = "cdc"  # a new bucket's chunking: "cdc" or "fixed"
    cdc_min_chunk_bytes: int = 512 * 1024  # borg's shape: min / average / max = 1/4, 1, 4
    cdc_avg_chunk_bytes: int = 2 * MiB  # a power of two
    cdc_max_chunk_bytes: int = 8 * MiB
    request_timeout_s: float = 30.0
    # block store
    map_size_bytes: int = 64 * GiB
    durable: bool = True
    # an upload's blocks wait up to this long for the next ones to share one commit (flush)
    commit_linger_ms: float = 10.0
    # written blocks leave the OS page cache: replicas' copies at once, this peer's own
    # uploads once this many bytes of newer ones follow (dfspeer/blockstore/page_cache.py)
    drop_written_blocks: bool = True
    recent_writes_cache_bytes: int = 1 * GiB
    # repair (see dfspeer/cluster/handoff.py, scrub.py, tombstones.py)
    hinted_handoff: bool = True
    hint_delivery_interval_s: float = 10.0
    max_hints: int = 100_000
    scrub_rate_bytes_per_s: int = 32 * MiB  # 0 disables scrub
    scrub_interval_s: float = 7 * 86400.0  # pause between two full scrub passes
    tombstone_grace_s: float = 10 * 86400.0  # > the longest outage a peer may come back from
    tombstone_purge_interval_s: float = 3600.0
    # object lifecycle and garbage collection (dfspeer.cluster.blockmanager, dfspeer.model)
    block_gc_grace_s: float = 600.0  # an unreferenced block lives this long (Garage's delay)
    block_gc_interval_s: float = 10.0  # pause between two garbage-collection passes
    upload_expiry_s: float = 86400.0  # an upload left `uploading` (or a session idle) this long
    # resumable upload sessions (dfspeer.objects.sessions)
    upload_max_chunks: int = 10_000  # chunks per session
    upload_min_chunk_bytes: int = 1 * MiB
    upload_max_chunk_bytes: int = 64 * MiB
    max_open_uploads: int = 1000  # open sessions per bucket
    # S3 API (dfspeer.api.s3): its own port; 0 turns it off
    s3_port: int = 7080
    s3_root_domain: str = ""  # virtual-host style: <bucket>.<s3_root_domain>; "" = path only
    s3_region: str = "us-east-1"  # the region SigV4 signatures must name
    s3_credentials_file: Path | None = None  # lines ACCESS_KEY_ID:SECRET (see dfspeer.api.s3)
    # gossip (SWIM + Lifeguard; defaults follow memberlist's LAN profile)
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.5
    indirect_checks: int = 3
    gossip_interval_s: float = 0.2
    gossip_fanout: int = 3
    retransmit_mult: int = 4
    alive_retransmit_mult: int = 8  # ALIVE news (updates, refutations) goes out this x log(N) times
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    awareness_max_multiplier: int = 8
    push_pull_interval_s: float = 30.0
    join_timeout_s: float = 30.0
    dead_member_reap_s: float = 3600.0
    reconnect_interval_s: float = 30.0  # retry one DEAD member (Serf reconnect), see SwimConfig
    reconnect_timeout_s: float = 86400.0  # ... until this long after its death (0: never)
    # anti-entropy repair and ring changes (dfspeer.cluster.antientropy / .rebalance)
    anti_entropy_interval_s: float = 60.0
    dead_member_evict_s: float = 600.0  # a DEAD member keeps its partitions this long
    repair_concurrency: int = 4  # block/record transfers in flight per repair
    repair_bandwidth_bytes_per_s: int = 0  # cap on repair traffic; 0 = unlimited
    # rate limits and backpressure of the native API (dfspeer.access.limits); 0 = off
    rate_limit_requests_per_s: float = 0.0  # per principal (access key, admin, open)
    rate_limit_bytes_per_s: int = 0  # per principal, upload bodies by Content-Length
    max_inflight_requests: int = 0  # requests being handled at once, all principals
    max_upload_memory_bytes: int = GiB  # what the uploads being handled may hold (0: no cap)
    # operations
    log_level: str = "info"
    log_format: str = "text"  # "text" for a terminal, "json": one JSON object per line
    event_loop: str = "auto"  # the agent's loop: "auto" (uvloop if installed), "uvloop", "asyncio"
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        """Coerce, then check every field, so no invalid PeerConfig ever exists.

        Path fields (``data_dir``, ``cluster_key_file``, ``admin_token_file``) take a ``str``
        or any path-like and hold a :class:`Path` (as given: ``~`` is expanded only for text
        read by :meth:`from_sources`); ``join`` takes a list or a tuple and holds a tuple.
        Then every field's type is checked (an int is fine where a float is expected; a bool
        is not a number) and :meth:`validate` runs. Raises :class:`ConfigError` naming the field.
        """
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike) and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if isinstance(self.join, list):
            object.__setattr__(self, "join", tuple(self.join))
        for f in dataclasses.fields(self):
            check_type(f.name, getattr(self, f.name), _field_hints()[f.name])
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def advertised_host(self) -> str:
        """The host other peers and clients use to reach this one."""
        if self.advertise_host:
            return self.advertise_host
        return self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"

    @property
    def accepts_jwt(self) -> bool:
        """True when a JWT key source is set (``jwt_public_key_file``, ``jwt_jwks_file`` or
        ``jwt_jwks_url``); without one, bearer JWTs are refused and PyJWT is never loaded."""
        return bool(self.jwt_public_key_file or self.jwt_jwks_file or self.jwt_jwks_url)

    @property
    def largest_chunk_bytes(self) -> int:
        """Largest chunk a one-shot upload cuts, bytes (fixed or content-defined)."""
        return max(self.chunk_size_bytes, self.cdc_max_chunk_bytes)

    @property
    def max_block_bytes(self) -> int:
        """Largest block any write path stores, bytes: a one-shot upload's chunk or a
        resumable upload's part; peer RPC block and hint PUTs accept up to this."""
        return max(self.largest_chunk_bytes, self.upload_max_chunk_bytes)

    @property
    def effective_auth_cache_ttl_s(self) -> float:
        """The auth cache's TTL, seconds (0: off): ``auth_cache_ttl_s`` bounded to half of
        ``anti_entropy_interval_s``, so a revocation reaches every peer's access checks
        well within one anti-entropy round (:mod:`dfspeer.access.cache`)."""
        return min(self.auth_cache_ttl_s, self.anti_entropy_interval_s / 2)

    @property
    def api_address(self) -> str:
        """``host:port`` of this peer's HTTP API, as other peers see it."""
        return f"{self.advertised_host}:{self.port}"

    # ------------------------------------------------------------------ checks
    def validate(self) -> PeerConfig:
        """Check every setting; return self. Raises :class:`ConfigError` naming the field."""
        check_settings(self)
        return self

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_sources(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        toml_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PeerConfig:
        """Build a validated config: ``overrides`` > ``DFSPEER_*`` env > TOML > defaults.

        ``overrides`` maps field names to values (``None`` means "not given").
        Raises :class:`ConfigError` on an unknown field, a bad value or an unreadable file.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if toml_path is None and env.get(ENV_PREFIX + "CONFIG"):
            toml_path = Path(env[ENV_PREFIX + "CONFIG"])
        if toml_path is not None:
            section = read_toml_settings(toml_path)
            for key, raw in section.items():
                values[_field_name(key, f"config file {toml_path}")] = raw
        values.update(env_settings(env, {f.name for f in dataclasses.fields(cls)}))
        for key, raw in (overrides or {}).items():
            if raw is not None:
                values[_field_name(key, "argument")] = raw
        coerced = {name: coerce(name, raw, _field_hints()[name]) for name, raw in values.items()}
        try:
            config = cls(**coerced)
        except TypeError as exc:  # pragma: no cover - guarded by _field_name
            raise ConfigError(str(exc)) from exc
        return config.validate()

    def replace(self, **changes: Any) -> PeerConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes).validate()


_HINTS: dict[str, Any] = {}
_PATH_FIELDS = (
    "data_dir",
    "cluster_key_file",
    "admin_token_file",
    "s3_credentials_file",
    "jwt_public_key_file",
    "jwt_jwks_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "audit_log_file",
)


def _field_hints() -> dict[str, Any]:
    """Field name -> resolved type hint of :class:`PeerConfig` (computed once)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(PeerConfig))
    return _HINTS


def _field_name(key: str, where: str) -> str:
    name = key.replace("-", "_").lower()
    if name not in {f.name for f in dataclasses.fields(PeerConfig)}:
        raise ConfigError(f"{where}: unknown setting {key!r}")
    return name
