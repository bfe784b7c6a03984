"""The web page at `/`, driven in a real headless chromium (selenium and Debian's chromium and
chromium-driver, `./install.sh test`) against a real `facerec serve` process: the API key typed
into the page, two LFW people enrolled through it, a third photo searched and verified."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from served import lfw, start_server

from conftest import needs_lfw, needs_mtcnn
from facerec.serve.keys import KeyStore

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    importlib.util.find_spec("selenium") is None or CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs selenium, chromium and chromedriver (`./install.sh test` as root installs Debian's "
    "chromium and chromium-driver)",
)
pytestmark = [needs_mtcnn, needs_lfw, needs_browser]

BUSH, POWELL = "George_W_Bush", "Colin_Powell"
WAIT_S = 30  # for one answer of the service on a CPU
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A served store (plaintext, a test) and a key for everything the page does: (url, key)."""
    data_dir = tmp_path / "data"
    _, token = KeyStore(data_dir).create(frozenset({"admin", "enroll", "search", "embed"}), (), "web page")
    server = start_server(data_dir, "--store-plaintext", "--model", "fast")
    try:
        yield server.url, token
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1500"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def answer_of(driver, element_id: str, previous: str = "") -> str:
    """The text of a result element once it holds an answer (an error fails the test)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d) -> str | bool:
        text = d.find_element(By.ID, element_id).text
        done = text and text != previous and not text.endswith("...")
        return text if done else False

    text = WebDriverWait(driver, WAIT_S).until(ready, f"no answer in #{element_id} within {WAIT_S} s")
    assert not text.startswith("error"), text
    return text


def test_enroll_search_and_verify_through_the_page(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    url, token = server
    assert httpx.get(f"{url}/").status_code == 200  # the page itself needs no key
    browser.get(f"{url}/")
    field = browser.find_element
    field(By.ID, "api-key").send_keys(token)
    gallery = "people"

    for name in (BUSH, POWELL):
        for element_id in ("enroll-gallery", "enroll-name"):
            field(By.ID, element_id).clear()
        field(By.ID, "enroll-gallery").send_keys(gallery)
        field(By.ID, "enroll-name").send_keys(name)
        field(By.ID, "enroll-files").clear()
        field(By.ID, "enroll-files").send_keys("\n".join(str(lfw(name, n)) for n in (1, 2)))
        previous = field(By.ID, "enroll-result").text
        field(By.ID, "enroll-submit").click()
        assert f"enrolled 2 face(s) of {name}" in answer_of(browser, "enroll-result", previous)

    field(By.ID, "search-gallery").clear()
    field(By.ID, "search-gallery").send_keys(gallery)
    field(By.ID, "search-files").send_keys(str(lfw(BUSH, 3)))
    field(By.ID, "search-submit").click()
    found = answer_of(browser, "search-result")
    assert f"face 1: {BUSH}" in found and POWELL not in found, found
    assert field(By.ID, "search-canvas").is_displayed()

    field(By.ID, "verify-file-a").send_keys(str(lfw(POWELL, 3)))
    field(By.ID, "verify-file-b").send_keys(str(lfw(POWELL, 4)))
    field(By.ID, "verify-submit").click()
    assert answer_of(browser, "verify-result").startswith("same person: score")

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_the_page_shows_an_api_error_as_its_message(server, browser) -> None:
    """No key typed: the service's 401 message appears in the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(f"{url}/")
    browser.find_element(By.ID, "search-files").send_keys(str(lfw(BUSH, 3)))
    browser.find_element(By.ID, "search-submit").click()
    result = browser.find_element(By.ID, "search-result")
    WebDriverWait(browser, WAIT_S).until(lambda _: result.text, "no error shown")
    assert result.text.startswith("error: an API key is required") and "unauthorized" in result.text
