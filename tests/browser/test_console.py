"""The web console in a real browser: Debian's chromium (headless) driven through
chromedriver by Selenium, against a real in-process Peer with an admin token.

Log in with the admin token, create a bucket, upload a small file and a file over 8 MiB
(a resumable session) through the file input, see both listed, download one through a
signed link (the file lands in the browser's download folder and is compared with what the
API serves), delete one, and check the cluster page. The module is skipped only when
chromium or chromedriver is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dfspeer.access.credentials import new_admin_token, write_secret_file
from dfspeer.gossip.keyring import generate_key
from dfspeer.peer import Peer
from tests.unit.test_peer_single import config_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "the browser tests need Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOT = Path("/tmp/dfspeer-console-objects.png")
BIG_BYTES = 9 * 1024 * 1024 + 12_345  # over the console's 8 MiB session threshold
T = TypeVar("T")


class PeerThread:
    """A Peer served by an event loop of its own thread (Selenium's calls block)."""

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


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("console-files")
    small, big = root / "notes.txt", root / "big.bin"
    small.write_bytes(b"hello from the dfspeer console\n" * 100)
    big.write_bytes(os.urandom(BIG_BYTES))
    return {"small": small, "big": big}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PeerThread, str]]:
    root = tmp_path_factory.mktemp("console-peer")
    token = new_admin_token()
    write_secret_file(root / "admin.token", token)
    write_secret_file(root / "cluster.key", generate_key() + "\n")
    peer = PeerThread(
        root / "p1",
        insecure=False,
        admin_token_file=root / "admin.token",
        cluster_key_file=root / "cluster.key",
    )
    try:
        yield peer, token
    finally:
        peer.close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--disable-gpu",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
    )
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait(driver: WebDriver, what: Callable[[WebDriver], T], timeout_s: float = 30) -> T:
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(what)
    except TimeoutException:
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        raise AssertionError(f"timed out; browser log: {logs}") from None


def api(base: str, path: str, token: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
        return body


def test_log_in_create_upload_list_download_delete(
    secured: tuple[PeerThread, str], driver: WebDriver, files: dict[str, Path], downloads: Path
) -> None:
    peer, token = secured
    base = peer.peer.api_url
    driver.get(base + "/ui/")
    # a secured peer shows the login form; a wrong token is refused
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    driver.find_element(By.CSS_SELECTOR, "#login-kind option[value=admin]").click()
    driver.find_element(By.ID, "login-token").send_keys("0" * 64)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "login-error").is_displayed())
    field = driver.find_element(By.ID, "login-token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "bucket-create"))
    assert driver.find_element(By.ID, "who").text == "admin"

    # create a versioned bucket
    driver.find_element(By.ID, "bucket-name").send_keys("console-test")
    driver.find_element(By.ID, "bucket-versioning").click()
    driver.find_element(By.ID, "bucket-create-submit").click()
    row = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-bucket=console-test]"))
    assert "enabled" in row.text
    row.find_element(By.CSS_SELECTOR, "a.bucket-link").click()

    # upload both files through the file input: the big one goes through a session
    wait(driver, lambda d: d.find_element(By.ID, "file-input"))
    driver.find_element(By.ID, "file-input").send_keys(f"{files['small']}\n{files['big']}")
    wait(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=done]")) == 2,
        timeout_s=90,
    )
    assert not driver.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=failed]")
    stats = driver.execute_script("return window.dfspeerUploadStats")
    assert stats["chunksSent"] == 3  # 9 MiB + in chunks of 4 MiB
    assert "MB/s" in driver.find_element(By.ID, "upload-speed").text
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.object")) == 2)
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "tr.object a.object-link")]
    assert names == ["big.bin", "notes.txt"]

    # the API has them, with their SHA-256
    big_sha = hashlib.sha256(files["big"].read_bytes()).hexdigest()
    assert hashlib.sha256(api(base, "/v1/objects/console-test/big.bin", token)).hexdigest() == (
        big_sha
    )

    # details: size, SHA-256, versions
    driver.find_element(By.CSS_SELECTOR, "tr[data-key='big.bin'] a.object-link").click()
    sha = wait(driver, lambda d: d.find_element(By.ID, "detail-sha256"))
    assert sha.text == big_sha
    assert str(BIG_BYTES) in driver.find_element(By.ID, "detail-size").text
    driver.save_screenshot(str(SCREENSHOT))

    # download the big file through its signed link
    driver.find_element(By.ID, "detail-download").click()
    target = downloads / "big.bin"
    wait(driver, lambda d: target.is_file() and target.stat().st_size == BIG_BYTES, 60)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == big_sha

    # delete the small one (confirm dialog)
    driver.find_element(By.CSS_SELECTOR, "tr[data-key='notes.txt'] button.delete").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.object")) == 1)
    listing = api(base, "/v1/objects/console-test", token)
    assert b"notes.txt" not in listing and b"big.bin" in listing

    # the cluster page shows this peer and the ring digest
    driver.get(base + "/ui/#/cluster")
    digest = wait(driver, lambda d: d.find_element(By.ID, "ring-digest"))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#member-table tr[data-member]"))
    assert digest.text
    assert "alive" in driver.find_element(By.ID, "member-table").text

    # logout forgets the credential
    driver.find_element(By.ID, "logout").click()
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    assert driver.execute_script("return sessionStorage.length") == 0


def log_in(driver: WebDriver, base: str, token: str) -> None:
    driver.get(base + "/ui/")
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    driver.find_element(By.CSS_SELECTOR, "#login-kind option[value=admin]").click()
    driver.find_element(By.ID, "login-token").send_keys(token)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "bucket-create"))


def test_a_big_upload_resumes_from_the_chunks_already_stored(
    secured: tuple[PeerThread, str], driver: WebDriver, tmp_path: Path
) -> None:
    """What a reload mid-upload leaves: a session with chunk 0 stored and its id in
    localStorage; picking the same file again sends only the missing chunks."""
    peer, token = secured
    base = peer.peer.api_url
    data = os.urandom(BIG_BYTES)
    path = tmp_path / "resume.bin"
    path.write_bytes(data)
    chunk = 4 * 1024 * 1024
    uploads = peer.peer.uploads
    peer.run(peer.peer.create_bucket("resumed"))
    session, _ = peer.run(uploads.init("resumed", "resume.bin", size=len(data), chunk_size=chunk))
    peer.run(uploads.put_chunk(session.id, 0, data[:chunk]))
    log_in(driver, base, token)
    fingerprint = [
        "resumed",
        "resume.bin",
        "resume.bin",
        len(data),
        path.stat().st_mtime_ns // 10**6,
    ]
    driver.execute_script(
        "localStorage.setItem('dfspeer.upload:' + JSON.stringify(arguments[0]), arguments[1])",
        fingerprint,
        session.id,
    )
    driver.get(base + "/ui/#/objects/resumed/")
    driver.refresh()  # a fresh page: the upload counters start at 0
    pending = wait(driver, lambda d: d.find_element(By.ID, "upload-pending"))
    assert "resume.bin" in pending.text
    driver.find_element(By.ID, "file-input").send_keys(str(path))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".upload-row[data-state=done]"), 90)
    stats = driver.execute_script("return window.dfspeerUploadStats")
    assert stats == {"chunksSent": 2, "chunksResumed": 1, "sessionsResumed": 1}
    got = api(base, "/v1/objects/resumed/resume.bin", token)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert driver.execute_script("return localStorage.length") == 0


def test_an_open_cluster_needs_no_login(tmp_path: Path, driver: WebDriver) -> None:
    peer = PeerThread(tmp_path / "open")  # insecure=True
    try:
        driver.get(peer.peer.api_url + "/ui/#/buckets")
        wait(driver, lambda d: d.find_element(By.ID, "bucket-create"))
        assert "--insecure" in driver.find_element(By.ID, "who").text
        assert not driver.find_element(By.ID, "logout").is_displayed()
    finally:
        peer.close()
