"""Local state of resumable uploads (:meth:`dfspeer.Client.upload_file`) between runs.

One small JSON file per upload under ``$XDG_CACHE_HOME/dfspeer/uploads/`` (else
``~/.cache/dfspeer/uploads/``), named after the upload's *identity*: the file's absolute
path, size (bytes) and modification time (ns) plus the target ``bucket/key``. The peer is
not part of the identity, so a rerun through another peer finds the same file and resumes
the same session (any peer serves any step of a session). The file holds::

    {"format": 1, "upload_id": str, "peer": str (the URL that started it, informative),
     "chunk_size": int (bytes), "idempotency_key": str, "path": str, "size": int (bytes),
     "mtime_ns": int, "bucket": str, "key": str, "created": float (unix s)}

Writes go to a temporary file renamed into place, so a killed client leaves the old state
or the new one, never half of one. A file that cannot be read or parsed counts as absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT = 1


@dataclass(frozen=True)
class FileIdentity:
    """What makes two runs "the same upload": the local file as it is on disk (absolute
    ``path``, ``size`` in bytes, ``mtime_ns``) and the target ``bucket``/``key``."""

    path: str
    size: int
    mtime_ns: int
    bucket: str
    key: str

    @classmethod
    def of(cls, path: Path | str, bucket: str, key: str) -> FileIdentity:
        """The identity of ``path`` now (``stat`` follows symlinks). Raises OSError."""
        absolute = os.path.abspath(path)
        st = os.stat(absolute)
        return cls(absolute, st.st_size, st.st_mtime_ns, bucket, key)

    def digest(self) -> str:
        """Hex SHA-256 of the identity; names the state file and is the Idempotency-Key."""
        raw = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ResumeState:
    """A started session of one :class:`FileIdentity` (module docstring)."""

    upload_id: str
    peer: str
    chunk_size: int
    idempotency_key: str
    identity: FileIdentity
    created: float

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "upload_id": self.upload_id,
            "peer": self.peer,
            "chunk_size": self.chunk_size,
            "idempotency_key": self.idempotency_key,
            **asdict(self.identity),
            "created": self.created,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ResumeState:
        """Parse :meth:`to_json`'s output. Raises ValueError."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a resumable upload state of format 1")
        try:
            identity = FileIdentity(
                str(doc["path"]),
                int(doc["size"]),
                int(doc["mtime_ns"]),
                str(doc["bucket"]),
                str(doc["key"]),
            )
            state = cls(
                upload_id=str(doc["upload_id"]),
                peer=str(doc.get("peer", "")),
                chunk_size=int(doc["chunk_size"]),
                idempotency_key=str(doc.get("idempotency_key", "")),
                identity=identity,
                created=float(doc.get("created", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed resumable upload state: {exc}") from exc
        if not state.upload_id or state.chunk_size <= 0:
            raise ValueError("malformed resumable upload state")
        return state


def state_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/dfspeer/uploads`` when set (and absolute), else
    ``~/.cache/dfspeer/uploads``."""
    env = os.environ if environ is None else environ
    cache = env.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "dfspeer" / "uploads"


class ResumeStore:
    """The state files in ``directory`` (default :func:`state_dir`)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else state_dir()

    def path_of(self, identity: FileIdentity) -> Path:
        return self.directory / f"{identity.digest()[:32]}.json"

    def load(self, identity: FileIdentity) -> ResumeState | None:
        """The saved state of ``identity``; None when there is none, it is unreadable, or
        it belongs to another identity."""
        try:
            doc = json.loads(self.path_of(identity).read_text())
            state = ResumeState.from_json(doc)
        except (OSError, ValueError):
            return None
        return state if state.identity == identity else None

    def save(self, state: ResumeState) -> Path:
        """Write ``state`` atomically (temporary file, then rename); returns its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_of(state.identity)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state.to_json(), sort_keys=True))
        os.replace(tmp, path)
        return path

    def remove(self, identity: FileIdentity) -> None:
        """Forget ``identity``'s state (no error when there is none)."""
        with contextlib.suppress(FileNotFoundError):
            self.path_of(identity).unlink()


def new_state(
    upload_id: str, peer: str, chunk_size: int, idempotency_key: str, identity: FileIdentity
) -> ResumeState:
    """A state created now."""
    return ResumeState(upload_id, peer, chunk_size, idempotency_key, identity, time.time())
