"""The web console in a real browser against three real agents: log in (a wrong credential
first), create a bucket, upload a 40 MiB file and a folder of small files through the file
inputs with the progress rising to 100 %, see them listed, download the large one through
a plain link and compare its SHA-256, reload mid-upload and resume (the chunks the server
already had are not sent again), delete, and the cluster page (3 alive, then one dead after
a SIGKILL). axe-core runs on every page; each page is screenshotted.

The tests of this module share one browser and one cluster and run in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from dfspeer.localcluster import LocalCluster
from dfspeer.peer import Peer
from tests.browser.conftest import (
    By,
    WebDriver,
    api,
    api_json,
    check_accessibility,
    log_in,
    log_out,
    screenshot,
    wait,
)
from tests.unit.test_peer_single import config_for

MiB = 1024 * 1024
BIG_BYTES = 40 * MiB + 12_345  # 11 chunks of 4 MiB: a resumable session
BUCKET = "console-test"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("console-files")
    big = root / "big.bin"
    big.write_bytes(os.urandom(BIG_BYTES))
    folder = root / "album"
    (folder / "2026").mkdir(parents=True)
    for i in range(3):
        (folder / f"note-{i}.txt").write_bytes(f"note {i}\n".encode() * (100 + i))
    (folder / "2026" / "deep.txt").write_bytes(b"deep in the folder\n")
    resume = root / "resume.bin"
    resume.write_bytes(os.urandom(BIG_BYTES))
    return {"big": big, "folder": folder, "resume": resume}


def throttle_uploads(driver: WebDriver, bytes_per_s: int | None) -> None:
    """Chromium's network emulation: uploads at ``bytes_per_s`` (None: no limit)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_s if bytes_per_s else -1,
        },
    )


def test_wrong_credentials_then_log_in(
    cluster: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    base = cluster.peer(1).url
    driver.get(base + "/ui/")
    driver.delete_all_cookies()  # a fresh browser session
    driver.refresh()
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    check_accessibility(driver, "login")
    screenshot(driver, console_shots, "login")
    # a wrong key, then a wrong token: a clear message, no session
    driver.find_element(By.ID, "login-key-id").send_keys("DK000000000000000000000000")
    driver.find_element(By.ID, "login-secret").send_keys("not-the-secret-at-all")
    driver.find_element(By.ID, "login-submit").click()
    error = wait(driver, lambda d: d.find_element(By.ID, "login-error"))
    wait(driver, lambda d: error.is_displayed())
    assert "Wrong credentials" in error.text
    driver.find_element(By.CSS_SELECTOR, "#login-kind option[value=admin]").click()
    driver.find_element(By.ID, "login-token").send_keys("0" * 64)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: "Wrong credentials" in d.find_element(By.ID, "login-error").text)
    assert not driver.get_cookies()
    field = driver.find_element(By.ID, "login-token")
    field.clear()
    field.send_keys(str(cluster.admin_token) + "\n")  # the keyboard alone submits
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))
    assert driver.find_element(By.ID, "who").text == "admin"
    # the session is an HttpOnly, SameSite=Strict cookie the page cannot read
    (cookie,) = driver.get_cookies()
    assert cookie["name"] == "dfspeer_session"
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert "expiry" in cookie
    assert driver.execute_script("return document.cookie") == ""
    assert str(cluster.admin_token) not in cookie["value"]
    # a reload keeps the session
    driver.refresh()
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))


def test_create_a_bucket_and_upload_a_big_file_and_a_folder(
    cluster: LocalCluster, driver: WebDriver, files: dict[str, Path], console_shots: Path
) -> None:
    base = cluster.peer(1).url
    driver.get(base + "/ui/#/buckets")
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))
    driver.find_element(By.ID, "bucket-name").send_keys(BUCKET)
    driver.find_element(By.ID, "bucket-versioning").click()
    driver.find_element(By.ID, "bucket-create-submit").click()
    row = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-bucket={BUCKET}]"))
    assert "enabled" in row.text
    wait(driver, lambda d: "0" in row.find_elements(By.CSS_SELECTOR, "td.num")[0].text)
    check_accessibility(driver, "buckets")
    screenshot(driver, console_shots, "buckets")
    row.find_element(By.CSS_SELECTOR, "a.bucket-link").click()
    wait(driver, lambda d: d.find_element(By.ID, "file-input"))
    check_accessibility(driver, "empty folder")

    # the big file (a resumable session) at 25 MB/s, so the progress can be watched rising
    throttle_uploads(driver, 25_000_000)
    driver.find_element(By.ID, "file-input").send_keys(str(files["big"]))
    seen: list[float] = []

    def progress_done(d: WebDriver) -> bool:
        value = d.execute_script("return document.getElementById('upload-overall').value")
        if not seen or value != seen[-1]:
            seen.append(value)
        return bool(d.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=done]"))

    wait(driver, progress_done, timeout_s=120)
    throttle_uploads(driver, None)
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # it rose, step by step
    overall = driver.find_element(By.ID, "upload-overall")
    assert overall.get_attribute("value") == overall.get_attribute("max") == str(BIG_BYTES)
    speed = driver.find_element(By.ID, "upload-speed").text
    assert "100 %" in speed and "MB/s" in speed, speed
    stats = driver.execute_script("return window.dfspeerUploadStats")
    assert stats["chunksSent"] == 11  # 40 MiB + in chunks of 4 MiB
    assert stats["peakChunksInFlight"] == 4  # several chunks in flight at once

    # a folder through the folder input: relative paths are kept
    driver.find_element(By.ID, "folder-input").send_keys(str(files["folder"]))
    wait(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=done]")) == 5,
        timeout_s=60,
    )
    assert not driver.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=failed]")
    listing = api_json(cluster, "GET", f"/v1/objects/{BUCKET}", index=2)
    keys = sorted(o["key"] for o in listing["objects"])
    assert keys == [
        "album/2026/deep.txt",
        "album/note-0.txt",
        "album/note-1.txt",
        "album/note-2.txt",
        "big.bin",
    ]
    # listed: the big file and the folder
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.folder[data-prefix='album/']"))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.object[data-key='big.bin']"))
    check_accessibility(driver, "folder with uploads")
    screenshot(driver, console_shots, "objects-upload")

    # details: size, SHA-256, content type; axe on the details panel
    big_sha = hashlib.sha256(files["big"].read_bytes()).hexdigest()
    driver.find_element(By.CSS_SELECTOR, "tr[data-key='big.bin'] a.object-link").click()
    sha = wait(driver, lambda d: d.find_element(By.ID, "detail-sha256"))
    assert sha.text == big_sha
    assert str(BIG_BYTES) in driver.find_element(By.ID, "detail-size").text
    check_accessibility(driver, "object details")
    screenshot(driver, console_shots, "object-details")


def test_download_the_big_file_through_a_plain_link(
    cluster: LocalCluster, driver: WebDriver, files: dict[str, Path], downloads: Path
) -> None:
    link = wait(driver, lambda d: d.find_element(By.ID, "detail-download"))
    href = link.get_attribute("href")
    assert href.endswith(f"/v1/objects/{BUCKET}/big.bin")  # a plain link: no signature
    link.click()
    target = downloads / "big.bin"
    wait(driver, lambda d: target.is_file() and target.stat().st_size == BIG_BYTES, 90)
    want = hashlib.sha256(files["big"].read_bytes()).hexdigest()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == want
    # ranges work on the same link (with the session cookie, as the browser sends it)
    got = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {headers: {Range: "bytes=10-19"}})
          .then(async (r) => done([r.status, Array.from(new Uint8Array(await r.arrayBuffer()))]));
        """,
        href,
    )
    assert got[0] == 206 and bytes(got[1]) == files["big"].read_bytes()[10:20]


def _session_bytes(cluster: LocalCluster, bucket: str, key: str) -> int:
    """Bytes the server holds for the open upload sessions of ``key`` (the session list
    leaves the chunks out: each session is read whole)."""
    uploads = api_json(cluster, "GET", f"/v1/uploads?bucket={bucket}")["uploads"]
    ids = [u["upload_id"] for u in uploads if u["key"] == key]
    return sum(api_json(cluster, "GET", f"/v1/uploads/{i}")["bytes_received"] for i in ids)


def test_a_reload_mid_upload_resumes_the_session(
    cluster: LocalCluster, driver: WebDriver, files: dict[str, Path]
) -> None:
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{BUCKET}/")
    driver.refresh()  # a fresh page: the upload counters start at 0
    wait(driver, lambda d: d.find_element(By.ID, "file-input"))
    throttle_uploads(driver, 8_000_000)
    driver.find_element(By.ID, "file-input").send_keys(str(files["resume"]))
    # wait until the server has stored at least two chunks, then reload mid-upload
    wait(driver, lambda d: _session_bytes(cluster, BUCKET, "resume.bin") >= 8 * MiB, 120)
    driver.refresh()
    throttle_uploads(driver, None)
    before = _session_bytes(cluster, BUCKET, "resume.bin")
    assert 8 * MiB <= before < BIG_BYTES
    pending = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#upload-pending li"))
    assert "resume.bin" in pending.text and "pick the same file again" in pending.text
    check_accessibility(driver, "unfinished uploads")
    driver.find_element(By.ID, "file-input").send_keys(str(files["resume"]))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=done]"), 120)
    stats = driver.execute_script("return window.dfspeerUploadStats")
    assert stats["sessionsResumed"] == 1
    assert stats["chunksSent"] > 0
    assert stats["chunksResumed"] >= 2
    # only what the server did not have was sent again (a chunk cut off by the reload
    # counts as missing): chunks sent + chunks kept = all of them
    assert stats["chunksResumed"] * 4 * MiB <= before + 4 * MiB
    assert stats["chunksSent"] + stats["chunksResumed"] == 11
    status, body = api(cluster, "GET", f"/v1/objects/{BUCKET}/resume.bin", index=3)
    assert status == 200
    assert (
        hashlib.sha256(body).hexdigest() == hashlib.sha256(files["resume"].read_bytes()).hexdigest()
    )
    assert _session_bytes(cluster, BUCKET, "resume.bin") == 0  # no open session left
    assert driver.execute_script("return localStorage.length") == 0


def test_cancel_aborts_the_session(
    cluster: LocalCluster, driver: WebDriver, files: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "cancel.bin"
    other.write_bytes(files["resume"].read_bytes()[: 20 * MiB])
    throttle_uploads(driver, 4_000_000)
    driver.find_element(By.ID, "file-input").send_keys(str(other))
    wait(driver, lambda d: _session_bytes(cluster, BUCKET, "cancel.bin") >= 4 * MiB, 120)
    row = driver.find_element(By.CSS_SELECTOR, ".upload-row[data-key='cancel.bin']")
    row.find_element(By.CSS_SELECTOR, "button.upload-pause").click()
    wait(driver, lambda d: row.get_attribute("data-state") == "paused")
    row.find_element(By.CSS_SELECTOR, "button.upload-pause").click()  # resume
    wait(driver, lambda d: row.get_attribute("data-state") == "uploading")
    row.find_element(By.CSS_SELECTOR, "button.upload-cancel").click()
    wait(driver, lambda d: row.get_attribute("data-state") == "cancelled")
    throttle_uploads(driver, None)
    uploads = api_json(cluster, "GET", f"/v1/uploads?bucket={BUCKET}")["uploads"]
    assert not [u for u in uploads if u["key"] == "cancel.bin"]  # aborted on the server
    assert api(cluster, "GET", f"/v1/objects/{BUCKET}/cancel.bin")[0] == 404


# In the page: the PUTs of chunk 1 fail three times before they reach the server (a dropped
# connection, a 500, a dropped connection), then go through; when each attempt started.
FLAKY_CHUNK = """
window.chunkOneAttempts = [];
const open = XMLHttpRequest.prototype.open;
const send = XMLHttpRequest.prototype.send;
const failures = ["network", 500, "network"];
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
  this.chunkOne = method === "PUT" && /\\/chunks\\/1$/.test(url);
  return open.call(this, method, url, ...rest);
};
XMLHttpRequest.prototype.send = function (body) {
  if (!this.chunkOne) return send.call(this, body);
  window.chunkOneAttempts.push(performance.now());
  const failure = failures.shift();
  if (failure === undefined) return send.call(this, body);
  setTimeout(() => {
    if (failure === "network") {
      this.onerror(new ProgressEvent("error"));
      return;
    }
    const text = JSON.stringify({error: {code: "internal", message: "refused by the test"}});
    Object.defineProperty(this, "status", {value: failure});
    Object.defineProperty(this, "responseText", {value: text});
    this.onload(new ProgressEvent("load"));
  }, 0);
};
"""


def _set_upload_options(driver: WebDriver, content_type: str, pairs: list[tuple[str, str]]) -> None:
    options = driver.find_element(By.ID, "upload-options")
    if not options.get_attribute("open"):
        driver.find_element(By.ID, "upload-options-summary").click()
    field = driver.find_element(By.ID, "upload-content-type")
    field.clear()
    field.send_keys(content_type)
    for button in driver.find_elements(By.CSS_SELECTOR, "#meta-pairs button.meta-remove"):
        button.click()
    for name, value in pairs:
        driver.find_element(By.ID, "meta-add").click()
        row = driver.find_elements(By.CSS_SELECTOR, "#meta-pairs li.meta-pair")[-1]
        row.find_element(By.CSS_SELECTOR, "input.meta-name").send_keys(name)
        row.find_element(By.CSS_SELECTOR, "input.meta-value").send_keys(value)


def _head(cluster: LocalCluster, key: str) -> dict[str, str]:
    request = urllib.request.Request(
        cluster.peer(2).url + f"/v1/objects/{BUCKET}/{key}", method="HEAD", headers=cluster.headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return {k.lower(): v for k, v in response.headers.items()}


def test_upload_with_content_type_and_metadata(
    cluster: LocalCluster, driver: WebDriver, tmp_path: Path, console_shots: Path
) -> None:
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{BUCKET}/")
    driver.refresh()
    wait(driver, lambda d: d.find_element(By.ID, "file-input"))
    small = tmp_path / "meta.txt"
    small.write_bytes(b"with metadata\n")
    # a name the server would refuse: said in words, nothing is sent
    _set_upload_options(driver, "text/x-console-test", [("project", "apollo"), ("bad name", "x")])
    driver.find_element(By.ID, "file-input").send_keys(str(small))
    message = wait(driver, lambda d: d.find_element(By.ID, "upload-options-message"))
    wait(driver, lambda d: message.is_displayed())
    assert "Nothing was uploaded" in message.text and "“bad name” is not valid" in message.text
    assert message.get_attribute("role") == "alert"
    assert driver.switch_to.active_element.get_attribute("value") == "bad name"  # focus on it
    assert not driver.find_elements(By.CSS_SELECTOR, ".upload-row[data-key='meta.txt']")
    assert api(cluster, "HEAD", f"/v1/objects/{BUCKET}/meta.txt")[0] == 404
    check_accessibility(driver, "upload options with an error")
    # a repeated name and a value that is not ASCII are refused too
    _set_upload_options(driver, "", [("a", "1"), ("A", "2")])
    driver.find_element(By.ID, "file-input").send_keys(str(small))
    wait(driver, lambda d: "given twice" in message.text)
    _set_upload_options(driver, "", [("city", "Zürich")])
    driver.find_element(By.ID, "file-input").send_keys(str(small))
    wait(driver, lambda d: "printable ASCII" in message.text)

    # valid: one PUT with Content-Type and X-Meta-* headers (names lower-cased, values trimmed)
    _set_upload_options(
        driver, "text/x-console-test", [("Project", "  apollo  "), ("x-meta-Owner", "ops team")]
    )
    summary = driver.find_element(By.ID, "upload-options-summary").text
    assert "text/x-console-test" in summary and "2 metadata entries" in summary
    driver.find_element(By.ID, "file-input").send_keys(str(small))
    wait(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".upload-row[data-key='meta.txt'][data-state=done]"
        ),
    )
    assert not message.is_displayed()
    head = _head(cluster, "meta.txt")
    assert head["content-type"] == "text/x-console-test"
    assert head["x-meta-project"] == "apollo" and head["x-meta-owner"] == "ops team"
    # the details panel shows them
    row = wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='meta.txt'] a.object-link")
    )
    row.click()
    wait(
        driver, lambda d: d.find_element(By.ID, "detail-content-type").text == "text/x-console-test"
    )
    metadata = driver.find_element(By.ID, "detail-metadata").text
    assert "project: apollo" in metadata and "owner: ops team" in metadata
    check_accessibility(driver, "upload options")
    driver.execute_script("window.scrollTo(0, 0)")
    screenshot(driver, console_shots, "upload-options")


def test_a_session_upload_retries_with_backoff_and_shows_time_left(
    cluster: LocalCluster, driver: WebDriver, files: dict[str, Path], tmp_path: Path
) -> None:
    """Chunk 1 fails three times in the page (a dropped connection, a 500, a dropped
    connection): it is sent again after growing waits (400 ms x 2^n, jitter 0.5..1.5), the
    upload completes whole, and the time left is shown while it runs. The content type and
    metadata go through the session (POST /v1/uploads) to the object."""
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{BUCKET}/")
    driver.refresh()  # fresh counters
    wait(driver, lambda d: d.find_element(By.ID, "file-input"))
    target = tmp_path / "retry.bin"
    target.write_bytes(files["big"].read_bytes())
    _set_upload_options(driver, "application/x-retry-test", [("Origin", "console")])
    driver.execute_script(FLAKY_CHUNK)
    throttle_uploads(driver, 10_000_000)
    driver.find_element(By.ID, "file-input").send_keys(str(target))
    speeds: list[str] = []

    def done(d: WebDriver) -> bool:
        speeds.append(d.find_element(By.ID, "upload-speed").text)
        return bool(
            d.find_elements(By.CSS_SELECTOR, ".upload-row[data-key='retry.bin'][data-state=done]")
        )

    wait(driver, done, timeout_s=120)
    throttle_uploads(driver, None)
    # the time left while it ran: "N s left" or "N min N s left"
    assert any(re.search(r"\d+ (s|min \d+ s) left", text) for text in speeds), speeds
    assert "done" in speeds[-1] or "done" in driver.find_element(By.ID, "upload-speed").text
    stats = driver.execute_script("return window.dfspeerUploadStats")
    retries = [(r["index"], r["attempt"], r["status"]) for r in stats["retries"]]
    assert retries == [(1, 1, 0), (1, 2, 500), (1, 3, 0)]
    waits = [r["waitMs"] for r in stats["retries"]]
    for n, ms in enumerate(waits):  # 400 ms x 2^n with jitter 0.5 .. 1.5
        assert 400 * 2**n * 0.5 <= ms < 400 * 2**n * 1.5, waits
    attempts = driver.execute_script("return window.chunkOneAttempts")
    assert len(attempts) == 4  # three refused, the fourth stored
    for n, ms in enumerate(waits):  # each retry waited (at least) its backoff
        assert attempts[n + 1] - attempts[n] >= ms - 5, (attempts, waits)
    assert stats["chunksSent"] == 11
    status, body = api(cluster, "GET", f"/v1/objects/{BUCKET}/retry.bin", index=3)
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(target.read_bytes()).hexdigest()
    head = _head(cluster, "retry.bin")
    assert head["content-type"] == "application/x-retry-test"
    assert head["x-meta-origin"] == "console"


def test_delete_with_confirmation(cluster: LocalCluster, driver: WebDriver) -> None:
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{BUCKET}/album/")
    row = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='album/note-0.txt']"))
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    wait(driver, lambda d: d.switch_to.alert).dismiss()  # "no": nothing happens
    assert api(cluster, "HEAD", f"/v1/objects/{BUCKET}/album/note-0.txt")[0] == 200
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-key='album/note-0.txt']"))
    assert api(cluster, "HEAD", f"/v1/objects/{BUCKET}/album/note-0.txt", index=2)[0] == 404


def test_the_cluster_page_shows_a_killed_agent_dead(
    cluster: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    base = cluster.peer(1).url
    driver.get(base + "/ui/")
    driver.delete_all_cookies()  # a session of its own: the test also runs alone (-k cluster)
    log_in(driver, base, str(cluster.admin_token))
    # stored bytes on every peer (N=3 copies), whether or not the upload tests ran first
    api_json(cluster, "PUT", "/v1/buckets/cluster-figures", body=b"{}")
    assert api(cluster, "PUT", "/v1/objects/cluster-figures/blob", os.urandom(MiB))[0] == 201
    driver.get(base + "/ui/#/cluster")
    wait(driver, lambda d: d.find_element(By.ID, "ring-digest").text)
    wait(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#member-table tr[data-state=alive]")) == 3,
    )
    # partitions and stored bytes of every peer
    wait(
        driver,
        lambda d: all(
            c.text not in ("", "\N{EN DASH}", "0 B")
            for c in d.find_elements(By.CSS_SELECTOR, "#member-table td.stored")
        ),
    )
    parts = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#member-table td.partitions")]
    assert len(parts) == 3 and all(int(p) > 0 for p in parts)
    assert driver.find_element(By.ID, "repair-eta").text
    # this peer's upkeep, as its status says: hints pending, scrub, what GC reclaimed
    wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "hints-pending").get_attribute("data-value")
            == str(
                api_json(cluster, "GET", "/v1/cluster/status", index=1)["repair"]["hints_pending"]
            )
        ),
    )
    scrub = driver.find_element(By.ID, "scrub-progress").text
    assert re.fullmatch(r"\d+\.\d % of this pass \(.+\)|idle; \d+ pass\(es\) done, .+", scrub), (
        scrub
    )
    shown = int(driver.find_element(By.ID, "gc-reclaimed").get_attribute("data-value"))
    after = api_json(cluster, "GET", "/v1/cluster/status", index=1)["gc"]["bytes_reclaimed"]
    assert 0 <= shown <= after  # a counter: never more than the peer says a moment later
    assert "deletable now" in driver.find_element(By.ID, "gc-waiting").text
    check_accessibility(driver, "cluster")
    screenshot(driver, console_shots, "cluster")
    victim = cluster.peer(3).peer_id
    cluster.kill(3)
    wait(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f"#member-table tr[data-member='{victim}'][data-state=dead]"
        ),
        timeout_s=60,
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, "#member-table tr[data-state=alive]")) == 2
    screenshot(driver, console_shots, "cluster-one-dead")
    log_out(driver)
    assert not driver.get_cookies()


class PeerThread:
    """An in-process Peer served by an event loop of its own thread (Selenium blocks)."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peer = Peer(config_for(data_dir, **config))
        self.run(self._start())

    async def _start(self) -> None:
        await self.peer.start()
        await self.peer.wait_ready(20)

    def run(self, coro: Any, timeout_s: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def close(self) -> None:
        try:
            self.run(self.peer.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def open_peer(tmp_path: Path) -> Iterator[PeerThread]:
    peer = PeerThread(tmp_path / "open")  # insecure=True
    try:
        yield peer
    finally:
        peer.close()


def test_an_open_cluster_needs_no_login(open_peer: PeerThread, driver: WebDriver) -> None:
    driver.get(open_peer.peer.api_url + "/ui/#/buckets")
    wait(driver, lambda d: d.find_element(By.ID, "bucket-create"))
    assert "--insecure" in driver.find_element(By.ID, "who").text
    assert not driver.find_element(By.ID, "logout").is_displayed()
    doc = json.loads(
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/ui/api/session').then((r) => r.text()).then(done)"
        )
    )
    assert doc["open"] is True


def test_log_in_again_after_the_kill(cluster: LocalCluster, driver: WebDriver) -> None:
    """The two agents left still serve the console."""
    log_in(driver, cluster.peer(1).url, str(cluster.admin_token))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-bucket={BUCKET}]"))
