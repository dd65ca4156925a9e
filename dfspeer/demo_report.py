"""The report table of ``dfspeer demo``."""

from __future__ import annotations

from dataclasses import dataclass, field

from dfspeer.commands.common import format_table, human_bytes

MAX_LISTED_FAILURES = 10


@dataclass
class Phase:
    """Counters of one demo phase; ``direction`` is "up", "down" or "" (no throughput)."""

    name: str
    peers: int
    direction: str
    files: int = 0
    bytes: int = 0
    ranges: int = 0
    failures: int = 0
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    def record(self, files: int, nbytes: int, ok: bool, failure: str) -> None:
        """Count ``files`` objects of ``nbytes``; keep ``failure`` when not ``ok``."""
        self.files += files
        self.bytes += nbytes
        if not ok:
            self.failures += 1
            self.messages.append(failure)

    def record_range(self, nbytes: int, ok: bool, failure: str) -> None:
        """Count one checked range of ``nbytes``."""
        self.ranges += 1
        self.bytes += nbytes
        if not ok:
            self.failures += 1
            self.messages.append(failure)

    @property
    def mb_per_s(self) -> str:
        """Throughput in MB/s (10^6 bytes), '-' when not meaningful."""
        if not self.direction or self.seconds <= 0 or not self.bytes:
            return "-"
        return f"{self.bytes / self.seconds / 1e6:.1f}"


@dataclass
class DemoReport:
    """Every phase, rendered as one table plus a verdict."""

    title: str
    corpus: str
    phases: list[Phase] = field(default_factory=list)

    def add(self, phase: Phase) -> Phase:
        """Append and return ``phase``."""
        self.phases.append(phase)
        return phase

    @property
    def failures(self) -> int:
        """Total failed checks."""
        return sum(p.failures for p in self.phases)

    @property
    def ok(self) -> bool:
        """True if there were phases and no check failed."""
        return bool(self.phases) and self.failures == 0

    def render(self) -> str:
        """The report as text."""
        rows: list[tuple[object, ...]] = [
            (
                p.name,
                p.peers,
                p.files or "-",
                human_bytes(p.bytes),
                p.mb_per_s if p.direction == "up" else "-",
                p.mb_per_s if p.direction == "down" else "-",
                p.ranges or "-",
                p.failures,
            )
            for p in self.phases
        ]
        rows.append(
            (
                "total",
                "",
                sum(p.files for p in self.phases),
                human_bytes(sum(p.bytes for p in self.phases)),
                "",
                "",
                sum(p.ranges for p in self.phases),
                self.failures,
            )
        )
        headers = ("phase", "peers", "files", "bytes", "up MB/s", "down MB/s", "ranges", "failures")
        lines = [self.title, f"corpus: {self.corpus}", "", format_table(headers, rows), ""]
        messages = [m for p in self.phases for m in p.messages]
        for m in messages[:MAX_LISTED_FAILURES]:
            lines.append(f"  FAILED: {m}")
        if len(messages) > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {len(messages) - MAX_LISTED_FAILURES} more")
        verdict = (
            "PASS: every byte and every SHA-256 matched"
            if self.ok
            else (f"FAIL: {self.failures} check(s) failed")
        )
        lines.append(verdict)
        return "\n".join(lines)
