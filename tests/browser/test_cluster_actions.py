"""The cluster page's operator actions in a real browser against three agents of their own
(a drain makes an agent leave and exit, so these tests do not share the other modules'
cluster): an access key sees no actions and cannot use their routes; the admin recounts a
member's block references, and drains a member after confirming in a dialog (cancelling
first changes nothing), and sees it drain, then leave.

The tests of this module share one browser and one cluster and run in order.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.keys import Keys

from dfspeer.localcluster import LocalCluster
from tests.browser.conftest import (
    By,
    WebDriver,
    api,
    api_json,
    check_accessibility,
    log_in,
    log_in_with_key,
    log_out,
    screenshot,
    three_agents,
    wait,
)

HOST_BASE = 140  # 127.0.0.141..143: not the shared cluster's addresses
ACTIONS = "button.member-drain, button.member-recount, button.member-remove, td.actions"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from three_agents(tmp_path_factory.mktemp("console-actions-cluster"), HOST_BASE)


def row_selector(member: str) -> str:
    return f"#member-table tr[data-member='{member}']"


def open_cluster_page(driver: WebDriver, base: str) -> None:
    driver.get(base + "/ui/#/cluster")
    wait(driver, lambda d: d.find_element(By.ID, "ring-digest").text)
    wait(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#member-table tr[data-state=alive]")) == 3,
    )


def browser_post(driver: WebDriver, path: str) -> Any:
    """POST ``path`` from the page with its session's CSRF token: [status, JSON answer]."""
    return driver.execute_async_script(
        """
        const [path, done] = [arguments[0], arguments[arguments.length - 1]];
        fetch("/ui/api/session").then((r) => r.json())
          .then((s) => fetch(path, {method: "POST", headers: {"X-CSRF-Token": s.csrf}}))
          .then((r) => r.json().then((doc) => done([r.status, doc])))
          .catch((e) => done(["failed", String(e)]));
        """,
        path,
    )


def test_cluster_actions_are_absent_for_an_access_key(
    agents: LocalCluster, driver: WebDriver
) -> None:
    base = agents.peer(1).url
    key = api_json(agents, "POST", "/v1/keys", body=json.dumps({"name": "viewer"}).encode())
    log_in_with_key(driver, base, key["id"], key["secret"])
    open_cluster_page(driver, base)
    assert not driver.find_elements(By.CSS_SELECTOR, ACTIONS)
    headers = [
        th.get_attribute("textContent")
        for th in driver.find_elements(By.CSS_SELECTOR, "#member-table thead th")
    ]
    assert "Actions" not in headers and "Id" in headers
    # and the routes refuse the key even with its session's CSRF token
    target = agents.peer(2).peer_id
    for action in ("drain", "repair/block-refs"):
        status, doc = browser_post(driver, f"/ui/api/members/{target}/{action}")
        assert status == 403 and doc["error"]["code"] == "access_denied", doc
    assert api_json(agents, "GET", "/v1/cluster/drain", index=2)["state"] == "idle"
    log_out(driver)


def test_cluster_actions_recount_and_drain_a_member_as_admin(
    agents: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    base = agents.peer(1).url
    # a few blocks on every member (N=3 copies) for the recount to count and the drain to move
    api_json(agents, "PUT", "/v1/buckets/drained", body=b"{}")
    for i in range(3):
        status, _ = api(agents, "PUT", f"/v1/objects/drained/blob-{i}", os.urandom(256 * 1024))
        assert status == 201
    log_in(driver, base, str(agents.admin_token))
    open_cluster_page(driver, base)
    first, victim = agents.peer(1).peer_id, agents.peer(3).peer_id
    headers = [
        th.get_attribute("textContent")
        for th in driver.find_elements(By.CSS_SELECTOR, "#member-table thead th")
    ]
    assert headers[-1] == "Actions"
    for member in (first, victim):  # live members: drain and recount, nothing to remove
        row = driver.find_element(By.CSS_SELECTOR, row_selector(member))
        assert row.find_element(By.CSS_SELECTOR, "button.member-drain").is_displayed()
        assert row.find_element(By.CSS_SELECTOR, "button.member-recount").is_displayed()
        assert not row.find_element(By.CSS_SELECTOR, "button.member-remove").is_displayed()

    # recount the block references of this peer: the result in words next to it
    driver.find_element(By.CSS_SELECTOR, f"{row_selector(first)} button.member-recount").click()
    dialog = wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog"))
    assert first in dialog.find_element(By.ID, "confirm-title").text
    driver.find_element(By.ID, "confirm-yes").click()
    note = wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, f"{row_selector(first)} .member-note"),
    )
    wait(driver, lambda d: note.text.startswith("Recounted:"))
    again = api_json(agents, "POST", "/v1/cluster/repair/block-refs", index=1)
    assert again["references"] >= 1 and again["changed"] == 0  # the page's recount fixed all
    said = re.fullmatch(
        r"Recounted: (\d+) reference\(s\) to (\d+) block\(s\); \d+ count\(s\) corrected\.",
        note.text,
    )
    assert said, note.text
    assert (int(said[1]), int(said[2])) == (again["references"], again["blocks"])

    # drain: the dialog names the member and the consequence; Escape cancels, nothing starts
    drain_button = driver.find_element(
        By.CSS_SELECTOR, f"{row_selector(victim)} button.member-drain"
    )
    drain_button.click()
    dialog = wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog"))
    assert dialog.find_element(By.ID, "confirm-title").text == f"Drain member {victim}?"
    assert "leaves the cluster" in dialog.find_element(By.ID, "confirm-text").text
    assert driver.switch_to.active_element.get_attribute("id") == "confirm-no"
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not d.find_elements(By.ID, "confirm-dialog"))
    assert driver.switch_to.active_element == drain_button  # the focus went back
    assert api_json(agents, "GET", "/v1/cluster/drain", index=3)["state"] == "idle"

    # confirmed, with the keyboard: the drain starts and the page follows it until it left
    drain_button.send_keys(Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog"))
    check_accessibility(driver, "cluster drain dialog")
    screenshot(driver, console_shots, "cluster-drain-dialog")
    driver.find_element(By.ID, "confirm-yes").click()
    wait(driver, lambda d: not d.find_elements(By.ID, "confirm-dialog"))
    victim_note = f"{row_selector(victim)} .member-note"
    wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, victim_note).text.startswith(
            ("Draining:", "Drained:")
        ),
    )
    wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{row_selector(victim)}[data-state=left]"),
        timeout_s=120,
    )
    wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, victim_note).text
            == "Drained: the member has left the cluster."
        ),
    )
    row = driver.find_element(By.CSS_SELECTOR, row_selector(victim))
    assert "left" in row.find_element(By.CSS_SELECTOR, "span.state").text
    assert not row.find_elements(By.CSS_SELECTOR, "button:not([hidden])")  # nothing to do
    members = api_json(agents, "GET", "/v1/cluster/members")["members"]
    assert {m["id"]: m["state"] for m in members}[victim] == "left"
    check_accessibility(driver, "cluster after a drain")
    screenshot(driver, console_shots, "cluster-drained")
    log_out(driver)


def test_cluster_actions_remove_a_dead_member_and_show_a_refusal_in_words(
    agents: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    base = agents.peer(1).url
    log_in(driver, base, str(agents.admin_token))
    driver.get(base + "/ui/#/cluster")
    first, dead = agents.peer(1).peer_id, agents.peer(2).peer_id
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row_selector(dead)}[data-state]"))
    agents.kill(2)
    row = wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, f"{row_selector(dead)}[data-state=dead]"),
        timeout_s=60,
    )
    remove = row.find_element(By.CSS_SELECTOR, "button.member-remove")
    assert remove.is_displayed()
    assert not row.find_element(By.CSS_SELECTOR, "button.member-drain").is_displayed()
    remove.click()
    dialog = wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog"))
    assert dialog.find_element(By.ID, "confirm-title").text == f"Remove dead member {dead}?"
    driver.find_element(By.ID, "confirm-yes").click()
    wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f"{row_selector(dead)} .member-note").text
            == "Removed: the member is now left; repair re-replicates its partitions."
        ),
    )
    wait(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row_selector(dead)}[data-state=left]")
    )
    members = api_json(agents, "GET", "/v1/cluster/members")["members"]
    assert {m["id"]: m["state"] for m in members}[dead] == "left"

    # this peer is the last one: its drain is refused, and the page says why in words
    driver.find_element(By.CSS_SELECTOR, f"{row_selector(first)} button.member-drain").click()
    wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog"))
    driver.find_element(By.ID, "confirm-yes").click()
    note = f"{row_selector(first)} .member-note"
    said = wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, note).text
            if d.find_element(By.CSS_SELECTOR, note).text.startswith("Could not")
            else ""
        ),
    )
    assert said.startswith("Could not start the drain: The member could not start draining.")
    assert "no other peer" in said and "{" not in said and "drain_failed" not in said
    assert driver.find_element(By.CSS_SELECTOR, note).get_attribute("role") == "alert"
    assert api_json(agents, "GET", "/v1/cluster/drain", index=1)["state"] == "failed"
    assert agents.peer(1).running
    check_accessibility(driver, "cluster after a refused drain")
    log_out(driver)
