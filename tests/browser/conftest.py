"""Fixtures of the browser tests: three real ``dfspeer agent`` processes with an admin token,
Debian's chromium (headless) driven through chromedriver by Selenium, axe-core (the copy
``axe-selenium-python`` ships) and screenshots.

The modules are skipped only when chromium or chromedriver is missing (``.ci/run`` installs
both). Screenshots go to the session's output directory (``console_shots``); with
``DFSPEER_CONSOLE_SCREENSHOTS=DIR`` they are also written to DIR (how
``docs/screenshots/`` is refreshed).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dfspeer.access.credentials import new_admin_token, write_secret_file
from dfspeer.localcluster import LocalCluster, LocalClusterError, host_bindable

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "the browser tests need Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

T = TypeVar("T")
HOST_BASE = 130  # 127.0.0.131..133; ports are chosen free
SETTINGS: dict[str, object] = {
    "map_size_bytes": 512 * 1024 * 1024,
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "suspicion_max_timeout_mult": 2,
    "request_timeout_s": 10.0,
    "log_level": "info",
}


def three_agents(base: Path, host_base: int) -> Iterator[LocalCluster]:
    """Three agents (N=3) on 127.0.0.``host_base``+1..3 with an admin token and fast
    failure detection, stopped when the generator closes."""
    hosts = [f"127.0.0.{host_base + i}" for i in (1, 2, 3)]
    if not all(host_bindable(h) for h in hosts):
        pytest.skip(f"cannot bind loopback addresses {hosts}")
    write_secret_file(base / "admin.token", new_admin_token())
    agents = LocalCluster(
        base,
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=0,
        host_base=host_base,
        settings=SETTINGS,
        admin_token_file=base / "admin.token",
    )
    try:
        agents.start()
        agents.wait_ready(60)
        agents.wait_view([1, 2, 3], timeout_s=60)
    except LocalClusterError:
        agents.stop(timeout_s=5.0)
        raise
    try:
        yield agents
    finally:
        agents.stop(timeout_s=5.0)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three agents (N=3) with an admin token and fast failure detection."""
    yield from three_agents(tmp_path_factory.mktemp("console-cluster"), HOST_BASE)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-downloads")


@pytest.fixture(scope="session")
def console_shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of every page go (the test run's output directory)."""
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture(scope="session")
def driver(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-gpu",
        "--force-prefers-reduced-motion",
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
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def wait(driver: WebDriver, what: Callable[[WebDriver], T], timeout_s: float = 30) -> T:
    """Poll ``what`` until it is truthy (an element not there yet, or replaced while read,
    counts as not yet); on a timeout fail with the browser's log."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(
            driver, timeout_s, poll_frequency=0.1, ignored_exceptions=ignored
        ).until(what)
    except TimeoutException:
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        raise AssertionError(f"timed out; browser log: {logs}") from None


def api(
    cluster: LocalCluster,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    index: int = 1,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> tuple[int, bytes]:
    """One request to agent ``index`` as the admin (unless ``auth`` is False)."""
    url = path if path.startswith("http") else cluster.peer(index).url + path
    all_headers = {**(cluster.headers if auth else {}), **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def api_json(cluster: LocalCluster, method: str, path: str, **kwargs: Any) -> Any:
    status, body = api(cluster, method, path, **kwargs)
    assert 200 <= status < 300, (status, body[:500])
    return json.loads(body) if body else None


def log_in(driver: WebDriver, base: str, token: str) -> None:
    """Open the console and log in with the admin token (any earlier session, of any
    peer, is dropped first, so a test that failed while logged in leaves nothing behind)."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(base + "/ui/")
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    driver.find_element(By.CSS_SELECTOR, "#login-kind option[value=admin]").click()
    driver.find_element(By.ID, "login-token").send_keys(token)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))


def log_in_with_key(driver: WebDriver, base: str, key_id: str, secret: str) -> None:
    """Open the console and log in with an access key (earlier sessions dropped first)."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(base + "/ui/")
    wait(driver, lambda d: d.find_element(By.ID, "login-form"))
    driver.find_element(By.ID, "login-key-id").send_keys(key_id)
    driver.find_element(By.ID, "login-secret").send_keys(secret)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))


def log_out(driver: WebDriver) -> None:
    driver.find_element(By.ID, "logout").click()
    wait(driver, lambda d: d.find_elements(By.ID, "login-form"))


AXE_ENV = "DFSPEER_AXE_JS"
_AXE: tuple[str, list[str]] | None = None


def axe_source() -> tuple[str, list[str]]:
    """axe.min.js and the rule tags to run: ``$DFSPEER_AXE_JS`` (axe-core 4 from the npm
    registry, which ``.ci/run`` installs), else the older copy ``axe-selenium-python``
    ships (the test extras), which knows the WCAG 2.0 A / AA tags only."""
    global _AXE
    if _AXE is None:
        tags = ["wcag2a", "wcag2aa", "best-practice"]
        configured = os.environ.get(AXE_ENV)
        if configured and Path(configured).is_file():
            _AXE = (Path(configured).read_text(encoding="utf-8"), [*tags, "wcag21a", "wcag21aa"])
        else:
            import axe_selenium_python  # the test extras install it

            found = sorted(Path(axe_selenium_python.__file__).parent.rglob("axe.min.js"))
            assert found, "axe-selenium-python ships no axe.min.js: set $DFSPEER_AXE_JS"
            _AXE = (found[0].read_text(encoding="utf-8"), tags)
    return _AXE


def check_accessibility(driver: WebDriver, page: str) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.0 / 2.1 A and AA rules and best practices) on the page as it is
    now; fail on any serious or critical violation. Returns every violation."""
    source, tags = axe_source()
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(source)
    violations: list[dict[str, Any]] = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: "tag", values: arguments[0]},
                           resultTypes: ["violations"]})
          .then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact,
            help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}))))
          .catch((e) => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));
        """,
        tags,
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core on the {page} page: {json.dumps(bad, indent=1)}"
    return violations


def screenshot(driver: WebDriver, shots: Path, name: str) -> Path:
    """Save the page as ``name``.png in the output directory (and in
    ``$DFSPEER_CONSOLE_SCREENSHOTS`` when set)."""
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("DFSPEER_CONSOLE_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path
