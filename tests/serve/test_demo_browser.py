"""The demo page in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium).

Search the catalogue, pick items, and see recommendations and similar items appear, under the
page's Content-Security-Policy (a violation is a console error, which fails the test); then the
Swagger UI at /docs, from local files, on a server that needs a token. In CI (`CI=true`) a missing
browser, driver or selenium is a failure, not a skip: .ci/run installs them.
"""
from __future__ import annotations

import base64
import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
DRIVER = shutil.which("chromedriver")


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(message + " (CI=true: .ci/run should have installed it)")
    pytest.skip(message)


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require(False, "selenium is not installed (pip install -e '.[dev]')")
    _require(CHROMIUM is not None, "chromium is not installed (apt-get install chromium chromium-driver)")
    _require(DRIVER is not None, "chromedriver is not installed (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})      # console messages, CSP reports included
    # an explicit driver path: selenium never tries to download one
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_pick_items_and_see_recommendations(browser, server_factory, als_artifact):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = server_factory(als_artifact)
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20)

    # lists are re-rendered live, so each read is one atomic script (no stale element handles)
    def rows(list_id: str) -> list[dict]:
        return browser.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' li')].map(li => ({id: li.dataset.itemId,"
            " title: li.querySelector('.title').textContent,"
            " score: (li.querySelector('.score') || {}).textContent}))", "#" + list_id)

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    wait.until(lambda d: "model als" in text("info"))
    # with no picks the page shows popular items (a popularity fallback)
    wait.until(lambda d: rows("recs") and "popularity" in text("fallback"))

    browser.find_element(By.ID, "search").send_keys("Horror")
    wait.until(lambda d: rows("results") and all("Horror" in r["title"] for r in rows("results")))
    picked_ids = [r["id"] for r in rows("results")[:2]]
    for item_id in picked_ids:   # the "+" button of each result, as a user would click it
        browser.execute_script(
            "document.querySelector(`#results button.pick[data-item-id='${arguments[0]}']`).click()", item_id)

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#picked .chip")) == 2)
    wait.until(lambda d: "history" in text("fallback") and len(rows("recs")) == 10)
    recs = rows("recs")
    assert not set(picked_ids) & {r["id"] for r in recs}           # picks are not recommended back
    assert all(r["score"] and float(r["score"]) == float(r["score"]) for r in recs)
    # two Horror picks: the Horror block should dominate the list
    assert sum("Horror" in r["title"] for r in recs) >= 5
    # each recommendation says why, naming one of the picks by its title
    whys = browser.execute_script("return [...document.querySelectorAll('#recs li .why')].map(e => e.textContent)")
    picked_titles = [r["title"] for r in rows("results") if r["id"] in picked_ids]
    assert len(whys) == 10 and all(any(t in w for t in picked_titles) for w in whys)
    assert sum(w.startswith("because you liked") for w in whys) >= 5
    wait.until(lambda d: len(rows("similar")) == 10)
    assert picked_ids[-1] not in {r["id"] for r in rows("similar")}

    # a filter narrows the list live
    box = browser.find_element(By.ID, "filter")
    box.send_keys("genres=Action")
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('change'))")
    wait.until(lambda d: rows("recs") and all("Action" in r["title"] for r in rows("recs")))
    assert text("status") == ""
    assert _csp_violations(browser) == []


def _csp_violations(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_docs_and_demo_with_a_token(browser, server_factory, als_artifact, tmp_path):
    """The browser sends the token as HTTP Basic credentials, as it does once the user typed it into
    its prompt (DevTools sets the header here: a headless browser shows no prompt)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    (tmp_path / "token").write_text("browser-tok\n")
    server = server_factory(als_artifact, "--token-file", str(tmp_path / "token"))
    credentials = base64.b64encode(b"anyone:browser-tok").decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
    wait = WebDriverWait(browser, 20)

    browser.get(server.url + "/docs")       # Swagger UI, offline: it renders one block per operation
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 5)
    assert "/recommend" in browser.find_element(By.ID, "swagger-ui").text

    browser.get(server.url + "/")
    wait.until(lambda d: "model als" in d.find_element(By.ID, "info").text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#recs li"))
    assert browser.find_element(By.ID, "status").text == ""
    assert _csp_violations(browser) == []
