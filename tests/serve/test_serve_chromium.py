"""``kvcheck serve`` in a real browser: Debian's headless chromium driven by Selenium through
Debian's chromedriver, against real ``kvcheck serve`` processes, a store of runs made by
``kvcheck run`` and a real ``kvcheck cluster``.

Skipped when chromium or chromedriver is absent, unless CI=true (then it fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import kvcheck, run_ids

pytestmark = pytest.mark.chromium

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _executables() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        msg = "chromium and chromedriver are needed (apt install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = _executables()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900", "--no-first-run", "--disable-background-networking"]:
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield d
    finally:
        d.quit()


def wait(d: Any, cond: Callable[[Any], Any], timeout: float = 15, what: str = "") -> Any:
    try:
        # the run list and the key tree re-render as data arrives: an element found may be
        # replaced before it is read, which only means "look again"
        return WebDriverWait(d, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda drv: cond(drv))
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what or cond}; page:\n"
                             + d.find_element(By.TAG_NAME, "body").text[:3000]) from None


def visible_runs(d: Any) -> list[str]:
    return [tr.get_attribute("data-run") for tr in d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")]


def set_filter(d: Any, text: str) -> None:
    box = d.find_element(By.ID, "filter")
    box.send_keys(Keys.CONTROL, "a")  # typed, unlike clear(), so the page sees input events
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def test_runs_list_filter_open_recheck_compare(browser: Any, run_store: Path, tmp_path: Path,
                                               serve: type) -> None:
    store = tmp_path / "store"
    shutil.copytree(run_store, store, symlinks=True)
    ids = run_ids(store)
    valid_id, invalid_id, kv_id = ids[("register", 1)], ids[("register", 4)], ids[("kv", 2)]
    server = serve("--store", str(store))
    d = browser
    d.get(server.url + "/runs")
    wait(d, lambda d: len(visible_runs(d)) == 3, what="three runs listed")
    row_text = wait(d, lambda d: d.find_element(By.CSS_SELECTOR, f'#runs tr[data-run="{invalid_id}"]').text)
    assert "local_reads" in row_text and "partition" in row_text
    assert wait(d, lambda d: d.find_element(
        By.CSS_SELECTOR, f'#runs tr[data-run="{invalid_id}"] td[data-col="checker:linearizable"]').text) == "invalid"

    # filter: by a bare word, by column:word, several words at once
    set_filter(d, "invalid")
    wait(d, lambda d: visible_runs(d) == [invalid_id], what="only the invalid run")
    set_filter(d, "workload:kv kill")
    wait(d, lambda d: visible_runs(d) == [kv_id], what="only the kv run with kill")
    # (a bare "valid" also matches the invalid run: its members checker is valid)
    set_filter(d, "verdict:valid register")
    wait(d, lambda d: visible_runs(d) == [valid_id], what="only the valid register run")
    set_filter(d, "seed<3 nodes:5")
    wait(d, lambda d: sorted(visible_runs(d)) == sorted([valid_id, kv_id]), what="seeds 1 and 2")
    set_filter(d, "seed:4")
    wait(d, lambda d: visible_runs(d) == [invalid_id], what="seed 4")
    set_filter(d, "")
    wait(d, lambda d: len(visible_runs(d)) == 3)

    # sort by seed (ascending, then descending)
    d.find_element(By.CSS_SELECTOR, '#runs th[data-key="seed"]').click()
    wait(d, lambda d: visible_runs(d) == [valid_id, kv_id, invalid_id], what="sorted by seed")
    d.find_element(By.CSS_SELECTOR, '#runs th[data-key="seed"]').click()
    wait(d, lambda d: visible_runs(d) == [invalid_id, kv_id, valid_id], what="sorted by seed, descending")

    # a new run appears without a restart; a corrupt one shows its error on its row
    kvcheck("run", "--workload", "register", "--faults", "pause", "--seed", "9", "--time-limit", "3",
            "--store", str(store), "--no-progress")
    wait(d, lambda d: len(visible_runs(d)) == 4, timeout=20, what="the new run")
    (store / kv_id / "results.json").write_text("{broken")
    wait(d, lambda d: "results.json: not JSON" in d.find_element(
        By.CSS_SELECTOR, f'#runs tr[data-run="{kv_id}"] td.err').text, timeout=20, what="the error on its row")

    # open the invalid run and find its anomaly
    set_filter(d, "invalid")
    wait(d, lambda d: visible_runs(d) == [invalid_id])
    d.find_element(By.LINK_TEXT, invalid_id).click()
    wait(d, lambda d: d.find_elements(By.ID, "checkers"), what="the run page")
    results = json.loads((store / invalid_id / "results.json").read_text())
    bad_ops = [k["op"]["index"] for k in results["checkers"]["linearizable"]["keys"].values() if not k["valid"]]
    anomalies = d.find_elements(By.CSS_SELECTOR, "#checkers tr.anomaly")
    assert anomalies, d.find_element(By.ID, "checkers").text
    assert anomalies[0].find_element(By.CSS_SELECTOR, "td.kind").text == "nonlinearizable"
    assert f"op {bad_ops[0]} cannot be linearized" in anomalies[0].text
    assert d.find_element(By.ID, "replay").text == f"kvcheck replay {store.resolve() / invalid_id}"
    d.switch_to.frame(d.find_element(By.ID, "report"))
    wait(d, lambda d: "linearizable" in d.find_element(By.TAG_NAME, "body").text.lower(), what="the report")
    d.switch_to.default_content()

    # view a file as plain text
    files = d.find_element(By.ID, "files")
    assert {"history.jsonl", "config.json", "results.json", "report.html", "node1.log"} <= {
        tr.find_elements(By.TAG_NAME, "td")[0].text for tr in files.find_elements(By.CSS_SELECTOR, "tbody tr")}

    # re-check in the background: progress, then its verdict; results.json is rewritten
    before = (store / invalid_id / "results.json").stat().st_mtime_ns
    d.find_element(By.ID, "recheck").click()
    wait(d, lambda d: "done" in d.find_element(By.ID, "recheck-state").text, timeout=60, what="re-check done")
    assert "exit 1 (invalid)" in d.find_element(By.ID, "recheck-state").text
    assert "INVALID" in d.find_element(By.ID, "recheck-output").text
    assert (store / invalid_id / "results.json").stat().st_mtime_ns > before
    d.find_element(By.ID, "recheck-reload").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#checkers tr.anomaly"), what="the reloaded run page")

    d.get(server.url + f"/view/{invalid_id}/history.jsonl")
    first_line = (store / invalid_id / "history.jsonl").read_text().splitlines()[0]
    assert d.find_element(By.ID, "file-text").text.startswith(first_line)

    # compare two runs: pick both in the list
    d.get(server.url + "/runs?q=register")
    wait(d, lambda d: set(visible_runs(d)) >= {valid_id, invalid_id})
    for rid in (valid_id, invalid_id):
        d.find_element(By.CSS_SELECTOR, f'#runs tr[data-run="{rid}"] input.pick').click()
    button = d.find_element(By.ID, "compare")
    wait(d, lambda d: button.is_enabled())
    button.click()
    wait(d, lambda d: d.find_elements(By.ID, "cmp-verdicts"), what="the compare page")
    heads = [a.text for a in d.find_elements(By.CSS_SELECTOR, "#cmp-verdicts thead a")]
    assert set(heads) == {valid_id, invalid_id}
    verdict_row = d.find_element(By.CSS_SELECTOR, "#cmp-verdicts tbody tr")
    assert "differs" in verdict_row.get_attribute("class")
    assert sorted(td.text for td in verdict_row.find_elements(By.TAG_NAME, "td")) == ["invalid", "valid"]
    config_rows = {tr.find_element(By.TAG_NAME, "th").text: tr for tr in
                   d.find_elements(By.CSS_SELECTOR, "#cmp-config tbody tr")}
    assert "differs" in config_rows["seed"].get_attribute("class")
    assert "differs" not in config_rows["workload"].get_attribute("class")

    # the plots page draws the sweep
    d.get(server.url + "/plots")
    assert d.find_elements(By.CSS_SELECTOR, "#plot-verdicts svg rect")
    assert d.find_elements(By.CSS_SELECTOR, "#plot-throughput svg rect")


def tree_click(d: Any, kind: str, label: str) -> None:
    """Click a folder or key of the tree (the tree re-renders on watch events, so an element
    found may be replaced before the click: then look again)."""
    def click(d: Any) -> bool:
        try:
            for el in d.find_elements(By.CSS_SELECTOR, f"#tree .{kind}"):
                if el.text.lstrip("▸▾ ") == label:
                    el.click()
                    return True
        except StaleElementReferenceException:
            pass
        return False

    wait(d, click, what=f"{kind} {label} in the tree")


def ctl(cluster: Path, *args: str) -> str:
    return kvcheck("ctl", "--data-dir", str(cluster), *args).stdout


def test_key_browser_live_and_read_only(browser: Any, cluster: Path, run_store: Path, serve: type) -> None:
    server = serve("--store", str(run_store), "--data-dir", str(cluster))
    d = browser
    d.get(server.url + "/keys")
    wait(d, lambda d: d.find_element(By.ID, "cluster-state").text == "ok", what="cluster status ok")
    members = d.find_elements(By.CSS_SELECTOR, "#members tbody tr")
    assert len(members) == 3
    assert sum("leader" in tr.text.split() for tr in members) == 1
    assert d.find_element(By.ID, "mode").text == "read-only"

    tree_click(d, "dir", "/")
    tree_click(d, "dir", "registry/")
    tree_click(d, "dir", "pods/")
    tree_click(d, "dir", "default/")
    tree_click(d, "leaf", "web-2")
    wait(d, lambda d: d.find_element(By.ID, "key-value").text == "v2", what="web-2's value")
    tree_click(d, "dir", "config/")
    tree_click(d, "leaf", "app.json")
    wait(d, lambda d: '"replicas": 3' in d.find_element(By.ID, "key-value").text, what="app.json as JSON")
    assert d.find_element(By.ID, "key-version").text == "1"

    # a change made elsewhere shows up live (watch on the viewed prefix), with the old value
    # among the past values
    ctl(cluster, "put", "/config/app.json", '{"replicas": 5}')
    wait(d, lambda d: '"replicas": 5' in d.find_element(By.ID, "key-value").text, what="the live update")
    assert d.find_element(By.ID, "key-version").text == "2"
    history = d.find_element(By.ID, "key-history").text
    assert '{"replicas": 3}' in history
    # a new key in the viewed folder appears in the tree
    ctl(cluster, "put", "/config/feature-flags", "on")
    tree_click(d, "leaf", "feature-flags")

    # read-only: the buttons are disabled and the server refuses the request itself
    assert not d.find_element(By.ID, "put").is_enabled()
    assert not d.find_element(By.ID, "delete").is_enabled()
    status = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/keys/put', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                body: JSON.stringify({key: '/config/app.json', value: 'hacked'})})
          .then(r => done(r.status));""")
    assert status == 403
    assert ctl(cluster, "get", "/config/app.json").split("\n")[1] == '{"replicas": 5}'


def test_key_browser_put_with_allow_writes(browser: Any, cluster: Path, run_store: Path, serve: type) -> None:
    server = serve("--store", str(run_store), "--data-dir", str(cluster), "--allow-writes")
    d = browser
    d.get(server.url + "/keys")
    wait(d, lambda d: d.find_element(By.ID, "cluster-state").text == "ok")
    assert d.find_element(By.ID, "mode").text == "writes allowed"
    d.find_element(By.ID, "put-key").send_keys("/config/new")
    d.find_element(By.ID, "put-value").send_keys("hello")
    d.find_element(By.ID, "put").click()
    alert = wait(d, lambda d: d.switch_to.alert, what="the confirmation")
    assert "/config/new" in alert.text
    alert.accept()
    wait(d, lambda d: d.find_element(By.ID, "write-result").text.startswith("done"), what="put done")
    assert ctl(cluster, "get", "/config/new").split() == ["/config/new", "hello"]
    # a dismissed confirmation writes nothing
    d.find_element(By.ID, "delete").click()
    wait(d, lambda d: d.switch_to.alert).dismiss()
    assert d.find_element(By.ID, "write-result").text == "cancelled"
    assert ctl(cluster, "get", "/config/new").split() == ["/config/new", "hello"]


def test_chromedriver_matches_chromium() -> None:
    chromium, driver = _executables()
    major = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.split()[1].split(".")[0]
    assert major in subprocess.run([driver, "--version"], capture_output=True, text=True).stdout
