"""The demo's corpus builder and report (the demo itself runs in CI as `dfspeer demo`)."""

from __future__ import annotations

import random
from pathlib import Path

from dfspeer.demo import _pick_ranges, _slice
from dfspeer.demo_corpus import build_big_file, small_files
from dfspeer.demo_report import DemoReport, Phase


def test_big_file_is_built_from_real_files(tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    sources = build_big_file(dest, 3 * 1024 * 1024 + 7)
    assert dest.stat().st_size == 3 * 1024 * 1024 + 7
    assert sources and all(p.is_file() for p in sources)
    first = sources[0].read_bytes()[:4096]
    assert dest.read_bytes()[: len(first)] == first


def test_small_files_are_keyed_by_package() -> None:
    files = small_files("stdlib/")
    keys = [k for k, _ in files]
    assert "stdlib/json/__init__.py" in keys and "stdlib/email/__init__.py" in keys
    assert all("__pycache__" not in k for k in keys) and len(set(keys)) == len(keys)


def test_ranges_cover_edges_and_stay_in_bounds() -> None:
    size = 9 * 1024 * 1024 + 5
    picks = _pick_ranges(random.Random(1), size, 50)
    assert len(picks) == 50 and (0, 1) in picks and (size - 1, None) in picks
    data = bytes(range(256)) * (size // 256 + 1)
    for start, end in picks:
        if start >= 0:
            assert end is None or start < end <= size
        assert _slice(data[:size], (start, end))


def test_report_verdict() -> None:
    report = DemoReport(title="t", corpus="c")
    phase = report.add(Phase("upload", peers=3, direction="up", seconds=2.0))
    phase.record(1, 4_000_000, True, "")
    assert report.ok and "PASS" in report.render() and "2.0" in report.render()
    phase.record_range(10, False, "range (0, 10) differs")
    text = report.render()
    assert not report.ok and "FAIL: 1 check(s) failed" in text
    assert "FAILED: range (0, 10) differs" in text
