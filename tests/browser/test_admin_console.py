"""The console's owner and admin pages in a real browser against three real agents:
versions (metadata, restore, delete a version, delete markers), share links, versioning
toggle, access keys (secret shown once, disable, delete), bucket permissions (a key with
read only sees the bucket and cannot share), and the folder view over thousands of keys
(paging, prefix search, sort, new folder). axe-core runs on every page; each page is
screenshotted.

The tests share one browser and one cluster (``conftest.py``) and run in order, before
``test_console.py`` (which kills an agent at its end).
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dfspeer.localcluster import LocalCluster
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

VERSIONED = "versions-test"
MANY = "many-keys"
MANY_KEYS = 2100  # three pages of 1000
KEY: dict[str, str] = {}


def put(cluster: LocalCluster, bucket: str, key: str, body: bytes, **headers: str) -> None:
    status, answer = api(cluster, "PUT", f"/v1/objects/{bucket}/{key}", body, headers=headers)
    assert status == 201, answer


def test_versions_metadata_restore_and_delete_markers(
    cluster: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    api_json(cluster, "PUT", f"/v1/buckets/{VERSIONED}", body=b'{"versioning": "enabled"}')
    put(
        cluster,
        VERSIONED,
        "doc.txt",
        b"one",
        **{"Content-Type": "text/plain", "X-Meta-Colour": "red"},
    )
    put(
        cluster,
        VERSIONED,
        "doc.txt",
        b"two!",
        **{"Content-Type": "text/markdown", "X-Meta-Colour": "blue"},
    )
    log_in(driver, cluster.peer(1).url, str(cluster.admin_token))
    driver.get(cluster.peer(1).url + f"/ui/#/objects/{VERSIONED}/")
    wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='doc.txt'] a.object-link")
    ).click()
    wait(driver, lambda d: d.find_element(By.ID, "detail-metadata"))
    assert driver.find_element(By.ID, "detail-content-type").text == "text/markdown"
    assert driver.find_element(By.ID, "detail-metadata").text == "colour: blue"
    rows = driver.find_elements(By.CSS_SELECTOR, "#version-table tr.version")
    assert len(rows) == 2 and "current" in rows[0].text
    check_accessibility(driver, "versions")

    # restore the old version: it becomes the current one, with its metadata
    rows[1].find_element(By.CSS_SELECTOR, "button.version-restore").click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#version-table tr.version")) == 3)
    wait(driver, lambda d: d.find_element(By.ID, "detail-metadata").text == "colour: red")
    status, body = api(cluster, "GET", f"/v1/objects/{VERSIONED}/doc.txt", index=2)
    assert (status, body) == (200, b"one")

    # delete the oldest version for good (confirmed)
    oldest = driver.find_elements(By.CSS_SELECTOR, "#version-table tr.version")[-1]
    oldest_id = oldest.get_attribute("data-version")
    oldest.find_element(By.CSS_SELECTOR, "button.version-delete").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#version-table tr.version")) == 2)
    assert api(cluster, "HEAD", f"/v1/objects/{VERSIONED}/doc.txt?version={oldest_id}")[0] == 404

    # share the current version for a day: the link works without any credential
    driver.find_element(By.CSS_SELECTOR, "#share-expiry option[value='86400']").click()
    driver.find_element(By.ID, "share-create").click()
    url = wait(driver, lambda d: d.find_element(By.ID, "share-url").get_attribute("value"))
    assert "/ui/dl?" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"one"
    driver.find_element(By.ID, "share-copy").click()
    copied = ("Link copied.", "Select the link and copy it.")
    wait(driver, lambda d: d.find_element(By.ID, "share-message").text in copied)
    check_accessibility(driver, "share link")
    screenshot(driver, console_shots, "versions-share")

    # delete the object: a delete marker, shown with "show deleted"
    driver.find_element(By.ID, "detail-delete").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-key='doc.txt']"))
    driver.find_element(By.ID, "show-deleted").click()
    row = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr.deleted[data-key='doc.txt']"))
    assert "deleted" in row.text
    row.find_element(By.CSS_SELECTOR, "a.object-link").click()
    wait(driver, lambda d: d.find_element(By.ID, "detail-deleted"))
    markers = driver.find_elements(By.CSS_SELECTOR, "#version-table tr.version[data-marker='1']")
    assert len(markers) == 1 and "delete marker" in markers[0].text
    check_accessibility(driver, "deleted key")
    # restore what was current before the delete: the key is back
    driver.find_elements(By.CSS_SELECTOR, "#version-table button.version-restore")[0].click()
    wait(driver, lambda d: d.find_elements(By.ID, "detail-sha256"))
    assert api(cluster, "GET", f"/v1/objects/{VERSIONED}/doc.txt")[1] == b"one"


def test_versioning_toggle(cluster: LocalCluster, driver: WebDriver, console_shots: Path) -> None:
    driver.get(cluster.peer(1).url + "/ui/#/buckets")
    row = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-bucket={VERSIONED}]"))
    row.find_element(By.CSS_SELECTOR, "button.versioning-toggle").click()
    wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f"tr[data-bucket={VERSIONED}] .versioning").text
            == "suspended"
        ),
    )
    assert api_json(cluster, "GET", f"/v1/buckets/{VERSIONED}")["versioning"] == "suspended"
    driver.get(cluster.peer(1).url + f"/ui/#/bucket/{VERSIONED}")
    wait(driver, lambda d: d.find_element(By.ID, "settings-versioning").text == "suspended")
    driver.find_element(By.ID, "versioning-enable").click()
    wait(driver, lambda d: d.find_element(By.ID, "settings-versioning").text == "enabled")
    assert api_json(cluster, "GET", f"/v1/buckets/{VERSIONED}")["versioning"] == "enabled"


def test_access_keys_and_bucket_permissions(
    cluster: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    base = cluster.peer(1).url
    driver.get(base + "/ui/#/keys")
    wait(driver, lambda d: d.find_element(By.ID, "key-create"))
    driver.find_element(By.ID, "key-name").send_keys("alice")
    driver.find_element(By.ID, "key-create-submit").click()
    key_id = wait(driver, lambda d: d.find_element(By.ID, "key-new-id").text)
    secret = driver.find_element(By.ID, "key-new-secret").text
    KEY.update(id=key_id, secret=secret)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}']"))
    check_accessibility(driver, "access keys")
    screenshot(driver, console_shots, "access-keys")
    listed = api_json(cluster, "GET", "/v1/keys")["keys"]
    assert [k["name"] for k in listed if k["id"] == key_id] == ["alice"]
    # the secret is shown once: a reload of the page no longer has it
    driver.refresh()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}']"))
    assert secret not in driver.page_source

    # grant alice read on the versioned bucket
    driver.get(base + f"/ui/#/bucket/{VERSIONED}")
    wait(driver, lambda d: d.find_element(By.ID, "grant-form"))
    driver.find_element(By.ID, "grant-key").send_keys(key_id)
    driver.find_element(By.ID, "grant-submit").click()
    grant = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-grant='{key_id}']"))
    boxes = grant.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
    assert [b.is_selected() for b in boxes] == [True, False, False]
    perms = api_json(cluster, "GET", f"/v1/buckets/{VERSIONED}/permissions")["permissions"]
    assert perms[key_id] == {"read": True, "write": False, "owner": False}
    # a grant to a key that does not exist is refused in words, next to the form
    field = driver.find_element(By.ID, "grant-key")
    field.clear()
    field.send_keys("DK" + "0" * 24)
    driver.find_element(By.ID, "grant-submit").click()
    message = wait(driver, lambda d: d.find_element(By.ID, "grants-message").text)
    assert "access key does not exist" in message and "{" not in message
    check_accessibility(driver, "bucket settings")
    screenshot(driver, console_shots, "bucket-settings")

    # alice logs in: she sees that bucket only, can read but not share or delete it
    log_out(driver)
    driver.find_element(By.ID, "login-key-id").send_keys(key_id)
    driver.find_element(By.ID, "login-secret").send_keys(secret)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_elements(By.ID, "bucket-create"))
    assert driver.find_element(By.ID, "who").text == f"key {key_id}"
    assert not driver.find_element(By.ID, "nav-keys").is_displayed()
    rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#bucket-table tr[data-bucket]"))
    assert [r.get_attribute("data-bucket") for r in rows] == [VERSIONED]
    driver.get(base + f"/ui/#/objects/{VERSIONED}/")
    wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='doc.txt'] a.object-link")
    ).click()
    wait(driver, lambda d: d.find_element(By.ID, "detail-sha256"))
    assert not driver.find_elements(By.ID, "share-panel")
    driver.find_element(By.ID, "detail-delete").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    refused = wait(driver, lambda d: d.find_element(By.ID, "object-error").text)
    assert "not allowed" in refused
    log_out(driver)

    # the admin disables, then deletes the key
    log_in(driver, base, str(cluster.admin_token))
    driver.get(base + "/ui/#/keys")
    row = wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}']")
    )
    row.find_element(By.CSS_SELECTOR, "button.key-disable").click()
    wait(
        driver,
        lambda d: (
            "disabled"
            in d.find_element(By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}']").text
        ),
    )
    status, _ = api(
        cluster,
        "GET",
        "/v1/buckets",
        auth=False,
        headers={"Authorization": f"Bearer {key_id}.{secret}"},
    )
    assert status == 401
    driver.find_element(
        By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}'] button.key-delete"
    ).click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(
        driver,
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"#key-table tr[data-key='{key_id}']"),
    )


def test_thousands_of_keys_paging_search_sort_and_new_folder(
    cluster: LocalCluster, driver: WebDriver, console_shots: Path
) -> None:
    api_json(cluster, "PUT", f"/v1/buckets/{MANY}", body=b"{}")

    def one(i: int) -> None:
        put(cluster, MANY, f"k-{i:05d}", b"x" * (i % 97 + 1), index=1 + i % 3)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(MANY_KEYS)))
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{MANY}/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.object"))
    driver.find_element(By.CSS_SELECTOR, "#page-size option[value='1000']").click()
    seen: list[str] = []
    for page in (1, 2, 3):
        wait(driver, lambda d, p=page: d.find_element(By.ID, "page-label").text == f"Page {p}")
        wait(driver, lambda d: "Loading" not in d.find_element(By.ID, "object-status").text)
        keys = [
            r.get_attribute("data-key") for r in driver.find_elements(By.CSS_SELECTOR, "tr.object")
        ]
        seen += keys
        if page < 3:
            driver.find_element(By.ID, "page-next").click()
    assert seen == [f"k-{i:05d}" for i in range(MANY_KEYS)]
    assert not driver.find_element(By.ID, "page-next").is_enabled()
    driver.find_element(By.ID, "page-prev").click()
    wait(driver, lambda d: d.find_element(By.ID, "page-label").text == "Page 2")

    # sort by size, largest first (keyboard: Enter on the column button): the whole folder
    # is loaded and sorted, not just the page shown
    size = driver.find_element(By.CSS_SELECTOR, "th[data-sort=size] button")
    size.click()
    wait(driver, lambda d: "smallest first" in d.find_element(By.ID, "sort-note").text)
    size.send_keys("\n")
    note = wait(driver, lambda d: d.find_element(By.ID, "sort-note"))
    wait(driver, lambda d: "largest first" in note.text)
    assert "whole folder (2,100 entries)" in note.text
    header = driver.find_element(By.CSS_SELECTOR, "th[data-sort=size]")
    assert header.get_attribute("aria-sort") == "descending"
    by_size: list[str] = []
    for page in (1, 2, 3):
        wait(driver, lambda d, p=page: d.find_element(By.ID, "page-label").text == f"Page {p} of 3")
        by_size += [
            r.get_attribute("data-key") for r in driver.find_elements(By.CSS_SELECTOR, "tr.object")
        ]
        if page < 3:
            driver.find_element(By.ID, "page-next").click()
    assert not driver.find_element(By.ID, "page-next").is_enabled()
    # largest first over all 2,100 keys; equal sizes keep the key order
    assert by_size == sorted(
        (f"k-{i:05d}" for i in range(MANY_KEYS)), key=lambda k: -(int(k[2:]) % 97)
    )
    check_accessibility(driver, "whole-folder sort")

    # search a prefix: only the ten keys k-0200x
    driver.find_element(By.ID, "object-search").send_keys("k-0200")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.object")) == 10)
    assert "starting with" in driver.find_element(By.ID, "object-status").text
    check_accessibility(driver, "search")
    screenshot(driver, console_shots, "objects-search")

    # a new folder, then its (empty) view
    driver.find_element(By.ID, "folder-name").send_keys("reports")
    driver.find_element(By.ID, "folder-create").click()
    wait(driver, lambda d: d.current_url.endswith(f"#/objects/{MANY}/reports%2F"))
    wait(driver, lambda d: "Empty" in d.find_element(By.ID, "object-status").text)
    assert api(cluster, "HEAD", f"/v1/objects/{MANY}/reports/")[0] == 200
    driver.get(base + f"/ui/#/objects/{MANY}/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.object"))
    driver.find_element(By.ID, "object-search").send_keys("rep")  # it sorts after k-*
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.folder[data-prefix='reports/']"))
    assert not driver.find_elements(By.CSS_SELECTOR, "tr.object")
    assert api(cluster, "GET", f"/v1/objects/{MANY}/k-00000")[1] == b"x"


# In the page: every folder listing of MANY answers its first 1000 keys, "truncated", so the
# folder looks endless and the whole-folder sort must stop at its cap.
ENDLESS_FOLDER = """
const bucket = arguments[0];
const real = window.fetch;
window.fetch = (input, init) => {
  const url = new URL(String(input), location.href);
  if (url.pathname !== "/v1/objects/" + bucket || url.searchParams.get("delimiter") !== "/") {
    return real(input, init);
  }
  url.searchParams.delete("start_after");
  url.searchParams.set("limit", "1000");
  return real(url.pathname + url.search, init).then(async (response) => {
    const doc = await response.json();
    doc.is_truncated = true;
    doc.next_start_after = doc.objects[doc.objects.length - 1].key;
    window.endlessPages = (window.endlessPages || 0) + 1;
    return new Response(JSON.stringify(doc), {headers: {"Content-Type": "application/json"}});
  });
};
"""


def test_a_whole_folder_sort_stops_at_its_cap_and_says_so(
    cluster: LocalCluster, driver: WebDriver
) -> None:
    base = cluster.peer(1).url
    driver.get(base + f"/ui/#/objects/{MANY}/")
    driver.refresh()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.object"))
    driver.execute_script(ENDLESS_FOLDER, MANY)
    driver.find_element(By.CSS_SELECTOR, "th[data-sort=modified] button").click()
    note = wait(driver, lambda d: d.find_element(By.ID, "sort-note"))
    wait(driver, lambda d: "only" in note.text, timeout_s=60)
    assert "first 10,000 entries only" in note.text and "this folder has more" in note.text
    assert driver.execute_script("return window.endlessPages") == 10  # pages of 1000, then stop
    assert driver.find_element(By.ID, "page-label").text == "Page 1 of 100"  # 100 a page
    check_accessibility(driver, "capped sort")
    driver.refresh()  # the real fetch again
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.object"))
