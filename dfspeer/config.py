"""PeerConfig: the one source of truth for every setting of a peer.

Every field has a default that runs a local cluster, a unit in its name, and a check in
:meth:`PeerConfig.validate`. Values come from, highest precedence first: command-line
flags, ``DFSPEER_*`` environment variables, a TOML file, the defaults below.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dfspeer.gossip.config import SwimConfig

MiB = 1024 * 1024
GiB = 1024 * MiB

ENV_PREFIX = "DFSPEER_"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""


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
            _check_type(f.name, getattr(self, f.name))
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def advertised_host(self) -> str:
        """The host other peers and clients use to reach this one."""
        if self.advertise_host:
            return self.advertise_host
        return self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"

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

        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"{name}: {what} (got {getattr(self, name)!r})")

        for name in ("port", "gossip_port"):
            need(0 <= getattr(self, name) <= 65535, name, "must be a port number 0..65535")
        need(self.weight > 0, "weight", "must be > 0")
        need(4 <= self.partition_bits <= 16, "partition_bits", "must be in 4..16")
        need(1 <= self.replication_factor <= 16, "replication_factor", "must be in 1..16")
        need(
            1 <= self.write_quorum <= self.replication_factor,
            "write_quorum",
            "must be in 1..replication_factor",
        )
        need(
            1 <= self.read_quorum <= self.replication_factor,
            "read_quorum",
            "must be in 1..replication_factor",
        )
        need(
            64 * 1024 <= self.chunk_size_bytes <= 64 * MiB,
            "chunk_size_bytes",
            "must be in 64 KiB..64 MiB",
        )
        need(
            0 <= self.inline_threshold_bytes <= 64 * 1024,
            "inline_threshold_bytes",
            "must be in 0..64 KiB",
        )
        need(self.default_chunking in ("cdc", "fixed"), "default_chunking", "must be cdc or fixed")
        need(
            max(64 * 1024, self.inline_threshold_bytes + 1) <= self.cdc_min_chunk_bytes <= MiB,
            "cdc_min_chunk_bytes",
            "must be in 64 KiB..1 MiB and above inline_threshold_bytes",
        )
        need(
            self.cdc_min_chunk_bytes <= self.cdc_avg_chunk_bytes <= 4 * MiB
            and self.cdc_avg_chunk_bytes & (self.cdc_avg_chunk_bytes - 1) == 0,
            "cdc_avg_chunk_bytes",
            "must be a power of two in cdc_min_chunk_bytes..4 MiB",
        )
        need(
            self.cdc_avg_chunk_bytes <= self.cdc_max_chunk_bytes <= 16 * MiB,
            "cdc_max_chunk_bytes",
            "must be in cdc_avg_chunk_bytes..16 MiB",
        )
        need(1 <= self.upload_pipeline_depth <= 64, "upload_pipeline_depth", "must be in 1..64")
        need(self.anti_entropy_interval_s > 0, "anti_entropy_interval_s", "must be > 0")
        need(self.dead_member_evict_s >= 0, "dead_member_evict_s", "must be >= 0")
        need(1 <= self.repair_concurrency <= 64, "repair_concurrency", "must be in 1..64")
        need(
            self.repair_bandwidth_bytes_per_s >= 0,
            "repair_bandwidth_bytes_per_s",
            "must be >= 0 (0 = unlimited)",
        )
        for name in (
            "rate_limit_requests_per_s",
            "rate_limit_bytes_per_s",
            "max_inflight_requests",
            "max_upload_memory_bytes",
        ):
            need(getattr(self, name) >= 0, name, "must be >= 0 (0 = off)")
        need(
            0 <= self.download_prefetch_chunks <= 64,
            "download_prefetch_chunks",
            "must be in 0..64",
        )
        need(self.max_object_size_bytes > 0, "max_object_size_bytes", "must be > 0")
        need(self.map_size_bytes >= 16 * MiB, "map_size_bytes", "must be >= 16 MiB")
        need(0 <= self.commit_linger_ms <= 1000, "commit_linger_ms", "must be in 0..1000 (0: off)")
        need(
            0 <= self.read_speculation_ms <= 60_000,
            "read_speculation_ms",
            "must be in 0..60000 (0: ask every replica at once)",
        )
        need(0 <= self.max_hints <= 10**9, "max_hints", "must be in 0..1e9")
        need(self.scrub_rate_bytes_per_s >= 0, "scrub_rate_bytes_per_s", "must be >= 0 (0: off)")
        need(self.scrub_interval_s >= 0, "scrub_interval_s", "must be >= 0")
        for name in (
            "request_timeout_s",
            "join_timeout_s",
            "hint_delivery_interval_s",
            "tombstone_grace_s",
            "tombstone_purge_interval_s",
            "block_gc_interval_s",
            "upload_expiry_s",
        ):
            need(getattr(self, name) > 0, name, "must be > 0")
        need(self.block_gc_grace_s >= 0, "block_gc_grace_s", "must be >= 0")
        need(1 <= self.upload_max_chunks <= 1_000_000, "upload_max_chunks", "must be in 1..1e6")
        need(
            64 * 1024 <= self.upload_min_chunk_bytes <= self.upload_max_chunk_bytes <= 64 * MiB,
            "upload_min_chunk_bytes",
            "must be in 64 KiB..upload_max_chunk_bytes, and that at most 64 MiB",
        )
        need(self.max_open_uploads >= 1, "max_open_uploads", "must be >= 1")
        need(0 <= self.s3_port <= 65535, "s3_port", "must be a port number 0..65535 (0: off)")
        need(
            self.s3_port == 0 or self.s3_port != self.port or self.port == 0,
            "s3_port",
            "must differ from port",
        )
        need(
            not self.s3_root_domain or _DNS_NAME.fullmatch(self.s3_root_domain) is not None,
            "s3_root_domain",
            "must be a DNS name such as s3.example.com",
        )
        need(
            0 < len(self.s3_region) <= 64 and self.s3_region.replace("-", "").isalnum(),
            "s3_region",
            "must be a region name such as us-east-1",
        )
        # The gossip settings have one rule book: SwimConfig's own checks.
        try:
            SwimConfig.from_settings(self)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc).removeprefix("SwimConfig.")) from exc
        need(
            self.log_level in ("debug", "info", "warning", "error"),
            "log_level",
            "must be one of debug, info, warning, error",
        )
        need(self.log_format in ("text", "json"), "log_format", "must be text or json")
        self._validate_jwt()
        self._validate_tls_audit()
        for addr in self.join:
            parse_host_port(addr, what="join")
        if self.peer_id is not None:
            need(
                0 < len(self.peer_id) <= 128 and self.peer_id.isprintable(),
                "peer_id",
                "must be 1..128 printable characters",
            )
        return self

    def _validate_jwt(self) -> None:
        """The JWT settings: one key source at most, issuer and audience need one, a JWKS
        URL is https (or http to a loopback address). Key files are loaded at start."""
        if self.jwt_public_key_file is not None and self.jwt_jwks_file is not None:
            raise ConfigError(
                "jwt_jwks_file: give jwt_public_key_file or jwt_jwks_file, not both "
                f"(got {self.jwt_jwks_file!r})"
            )
        sources = "jwt_public_key_file, jwt_jwks_file or jwt_jwks_url"
        if self.jwt_jwks_url:
            if self.jwt_public_key_file is not None or self.jwt_jwks_file is not None:
                raise ConfigError(f"jwt_jwks_url: give one of {sources}, not two")
            problem = _jwks_url_problem(self.jwt_jwks_url)
            if problem:
                raise ConfigError(f"jwt_jwks_url: {problem} (got {self.jwt_jwks_url[:200]!r})")
        has_source = bool(self.jwt_jwks_url) or self.jwt_public_key_file is not None
        for name in ("jwt_issuer", "jwt_audience"):
            if getattr(self, name) and not (has_source or self.jwt_jwks_file is not None):
                raise ConfigError(f"{name}: needs {sources} (got {getattr(self, name)!r})")

    def _validate_tls_audit(self) -> None:
        """The TLS, audit log and auth cache settings (files are loaded at start)."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                "tls_cert_file, tls_key_file: give both (the certificate and its private "
                "key) or neither"
            )
        if self.internal_tls and self.tls_cert_file is None:
            raise ConfigError(
                "internal_tls: needs tls_cert_file and tls_key_file (peer RPC shares the API "
                "port, which then serves HTTPS)"
            )
        if self.tls_ca_file is not None and not self.internal_tls:
            raise ConfigError(
                "tls_ca_file: only used with internal_tls (peers verify each other's "
                "certificates against it)"
            )
        if not 1024 <= self.audit_log_max_bytes <= 1 << 40:
            raise ConfigError(
                f"audit_log_max_bytes: must be in 1 KiB..1 TiB (got {self.audit_log_max_bytes!r})"
            )
        if not 1 <= self.audit_log_backups <= 1000:
            raise ConfigError(
                f"audit_log_backups: must be in 1..1000 (got {self.audit_log_backups!r})"
            )
        if not 0 <= self.auth_cache_ttl_s <= 60:
            raise ConfigError(
                f"auth_cache_ttl_s: must be in 0..60 (0: off; got {self.auth_cache_ttl_s!r})"
            )

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
            try:
                with open(toml_path, "rb") as f:
                    doc = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"config file {toml_path}: {exc}") from exc
            section = doc.get("peer", doc)
            for key, raw in section.items():
                values[_field_name(key, f"config file {toml_path}")] = raw
        names = {f.name for f in dataclasses.fields(cls)}
        for key, raw in env.items():
            if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
                name = key[len(ENV_PREFIX) :].lower()
                if name in names:
                    values[name] = raw
        for key, raw in (overrides or {}).items():
            if raw is not None:
                values[_field_name(key, "argument")] = raw
        coerced = {name: _coerce(name, raw) for name, raw in values.items()}
        try:
            config = cls(**coerced)
        except TypeError as exc:  # pragma: no cover - guarded by _field_name
            raise ConfigError(str(exc)) from exc
        return config.validate()

    def replace(self, **changes: Any) -> PeerConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes).validate()


_HINTS: dict[str, Any] = {}
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")  # s3_root_domain
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


def _check_type(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` fits the field's type."""
    hint = _field_hints()[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None:
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        ok, what = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        what = "a number"
    elif hint is str:
        ok, what = isinstance(value, str), "a string"
    elif hint is Path:
        ok, what = isinstance(value, Path), "a path (str or Path)"
    elif typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(isinstance(x, str) for x in value)
        what = "a list of strings"
    elif typing.get_origin(hint) is Mapping:
        ok, what = isinstance(value, Mapping), "a mapping"
    else:  # pragma: no cover - every field's type is handled above
        ok, what = True, ""
    if not ok:
        raise ConfigError(f"{name}: must be {what} (got {value!r})")


def _field_name(key: str, where: str) -> str:
    name = key.replace("-", "_").lower()
    if name not in {f.name for f in dataclasses.fields(PeerConfig)}:
        raise ConfigError(f"{where}: unknown setting {key!r}")
    return name


def _coerce(name: str, raw: Any) -> Any:
    """Turn a TOML / env / CLI value into the field's type, or raise ConfigError."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(PeerConfig))
    hint = _HINTS[name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if raw is None:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is Path:
            return Path(raw).expanduser()
        if hint is str:
            return str(raw)
        if typing.get_origin(hint) is tuple:
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            return tuple(str(p) for p in raw)
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {raw!r}: {exc}") from exc


def _jwks_url_problem(url: str) -> str:
    """What is wrong with a ``jwt_jwks_url`` ("" when nothing is): it must be an
    ``https://`` URL of at most 2048 printable characters with a host, or ``http://`` to a
    loopback address (``localhost``, 127.0.0.0/8, ``::1``), with no user info or fragment."""
    if len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        return "must be a URL of at most 2048 printable characters"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if parts.username is not None or parts.fragment:
        return "must hold no user info and no #fragment"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must be https:// (http:// only to a loopback address)"
    return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` too). Raises :class:`ConfigError`."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ConfigError(f"{what}: expected host:port, got {text!r}")
    return host, int(port_text)
