"""Run ``python -m dfspeer ...`` under tracemalloc (``rss_upload.py --tracemalloc``).

Called as ``python trace_agent.py -m dfspeer agent ...``. When the agent's ``--peer-id``
equals ``$RSS_TRACE_PEER``, a thread waits for the file ``$RSS_TRACE_DIR/start`` (the
agent is up by then: tracing its imports would take minutes), starts tracemalloc
(``$RSS_TRACE_FRAMES`` frames, default 12: only allocations made from then on are seen),
then checks the traced memory every 0.5 s; whenever it is 2 MiB over the last
report, it writes ``$RSS_TRACE_DIR/<peer-id>.txt``: the traced current / peak, the
process's RssAnon at that moment (the difference is memory Python does not allocate --
C libraries -- or that malloc keeps after Python freed it), and the top allocation sites
by line and by traceback. Any other peer runs unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

MiB = 1 << 20


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def report(path: Path) -> None:
    current, peak = tracemalloc.get_traced_memory()
    anon = rss_anon()
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    lines = [
        f"at {time.strftime('%H:%M:%S')}: traced current {current / MiB:.1f} MiB, traced peak "
        f"{peak / MiB:.1f} MiB, RssAnon {anon / MiB:.1f} MiB",
        "",
        "top 15 by line:",
    ]
    lines += [
        f"  {s.size / MiB:8.2f} MiB {s.count:7d} blocks  {s.traceback[0]}"
        for s in snap.statistics("lineno")[:15]
    ]
    lines.append("\ntop 6 by traceback:")
    for s in snap.statistics("traceback")[:6]:
        lines.append(f"  {s.size / MiB:.2f} MiB in {s.count} blocks")
        lines += [f"      {frame}" for frame in s.traceback.format()[-16:]]
    path.write_text("\n".join(lines) + "\n")


def watch(path: Path, frames: int) -> None:
    while not (path.parent / "start").exists():
        time.sleep(0.2)
    tracemalloc.start(frames)
    last = 0
    while True:
        time.sleep(0.5)
        current, _ = tracemalloc.get_traced_memory()
        if current > last + 2 * MiB:
            last = current
            report(path)


def main() -> None:
    args = sys.argv[1:]
    if args[:2] != ["-m", "dfspeer"]:
        raise SystemExit("usage: trace_agent.py -m dfspeer ARGS...")
    rest = args[2:]
    peer = rest[rest.index("--peer-id") + 1] if "--peer-id" in rest else ""
    if peer and peer == os.environ.get("RSS_TRACE_PEER"):
        frames = int(os.environ.get("RSS_TRACE_FRAMES", "12"))
        out = Path(os.environ.get("RSS_TRACE_DIR", ".")) / f"{peer}.txt"
        threading.Thread(target=watch, args=(out, frames), daemon=True).start()
    sys.argv = ["dfspeer", *rest]
    runpy.run_module("dfspeer", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
