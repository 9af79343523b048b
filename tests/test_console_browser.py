"""The console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by selenium against receiver served on 127.0.0.1.

Set CONSOLE_SCREENSHOTS=docs/console to save a screenshot of each page there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from receiver.models import Role
from tests.console_story import AS_SAID, NUMBER, PASSWORD, SMS_ID, Mp3Stub, post_story, user

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
WIDE, PHONE = (1366, 900), (390, 844)


@pytest.fixture
def stub() -> Iterator[Mp3Stub]:
    with Mp3Stub() as server:
        yield server


@pytest.fixture
def settings(settings: dict[str, Any], stub: Mp3Stub) -> dict[str, Any]:
    settings.update(DOWNLOAD_ALLOW_PRIVATE=True, DOWNLOAD_ALLOW_HTTP=True, RECORDING_MAX_ATTEMPTS=1)
    return settings


@pytest.fixture
def server(app) -> Iterator[str]:
    """receiver's app served over HTTP on 127.0.0.1 (threads, so the page and its audio load at once)."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), (
        "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    )
    profile = tempfile.mkdtemp(prefix="receiver-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        f"--window-size={WIDE[0]},{WIDE[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(browser: webdriver.Chrome, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def sign_in(browser: webdriver.Chrome, server: str, name: str) -> None:
    browser.get(f"{server}/console/")
    assert "/console/sign-in" in browser.current_url  # signed out: sent to sign in
    shot(browser, "sign-in")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "q"))


def test_an_operator_finds_a_number_plays_its_call_and_replays_a_quarantined_event(
    app, hooks, stub, server, browser
):
    story = post_story(app, hooks, stub)
    user(app, "otto", Role.operator)
    sign_in(browser, server, "otto")
    shot(browser, "search")

    box = browser.find_element(By.ID, "q")
    box.send_keys(AS_SAID + Keys.ENTER)  # as the customer said it; stored as 919845012345
    WebDriverWait(browser, 10).until(lambda b: f"/console/numbers/{NUMBER}" in b.current_url)
    page = browser.find_element(By.TAG_NAME, "main").text
    assert SMS_ID in page and "This is a simple text message" in page and "OPT-OUT" in page.upper()
    shot(browser, "timeline")

    audio = browser.find_element(By.CSS_SELECTOR, f'audio[src$="/recordings/{story["recording"]}/audio"]')
    browser.execute_script("arguments[0].load()", audio)
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return arguments[0].readyState", audio) >= 1)
    assert browser.execute_script("return arguments[0].duration", audio) > 1.0  # the silent MP3 decoded
    assert browser.execute_script("return arguments[0].error", audio) is None

    browser.find_element(By.LINK_TEXT, f"Call {story['call']}").click()
    WebDriverWait(browser, 10).until(lambda b: "Recordings" in b.page_source)
    shot(browser, "call")
    browser.find_element(By.LINK_TEXT, SMS_ID) if False else browser.get(
        f"{server}/console/messages/{SMS_ID}"
    )
    assert "Status history" in browser.page_source
    shot(browser, "message")

    browser.find_element(By.LINK_TEXT, "Waiting events").click()
    assert str(story["quarantined"]) in browser.find_element(By.TAG_NAME, "table").text
    shot(browser, "waiting-events")
    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Replay event {story["quarantined"]}"]').click()
    WebDriverWait(browser, 10).until(lambda b: f"Raw event {story['quarantined']} replayed" in b.page_source)
    assert "replayed 1 times" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "raw-event")

    browser.find_element(By.LINK_TEXT, "Health").click()
    assert "recordings waiting" in browser.page_source
    shot(browser, "health")
    week_of_messages(app)
    browser.find_element(By.LINK_TEXT, "Dashboard").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")) == 5
    tiles = browser.find_element(By.CLASS_NAME, "tiles").text
    assert "86\nmessages" in tiles and "82.6 %" in tiles  # 71 delivered of 86 final, the story's SMS too
    shot(browser, "dashboard")


def week_of_messages(app) -> None:
    """A week of SMS traffic for the dashboard: delivered, failed and rejected, each day."""
    from datetime import UTC, datetime, timedelta

    from receiver.models import Status
    from tests.factories import messages

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)
    step = timedelta(hours=1, minutes=7)
    messages(app, 70, start=start, step=step * 2, mobile="919000000001")
    messages(app, 10, start=start, step=step * 14, status=Status.failed, provider_status="ABSENT-SUB")
    messages(app, 5, start=start, step=step * 28, status=Status.rejected, provider_status="DNDNUMB")


def test_a_viewer_cannot_replay(app, hooks, stub, server, browser):
    story = post_story(app, hooks, stub)
    user(app, "vera", Role.viewer)
    sign_in(browser, server, "vera")
    browser.get(f"{server}/console/events/{story['quarantined']}")
    assert not browser.find_elements(By.XPATH, "//button[contains(., 'Replay')]")
    # The POST a replay button would send, with this session's valid CSRF token: refused for the role.
    browser.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        const token = document.querySelector('input[name=csrf_token]').cloneNode();
        form.appendChild(token);
        document.body.appendChild(form);
        form.submit();
        """,
        f"/console/events/{story['quarantined']}/replay",
    )
    WebDriverWait(browser, 10).until(lambda b: "403" in b.title)
    assert "operator" in browser.find_element(By.TAG_NAME, "main").text


def test_keyboard_and_a_phones_width(app, hooks, stub, server, browser):
    post_story(app, hooks, stub)
    user(app, "vera", Role.viewer)
    browser.get(f"{server}/console/sign-in")
    # Sign in with the keyboard only: the name field has the focus; type, Tab, type, Enter.
    ActionChains(browser).send_keys("vera", Keys.TAB, PASSWORD, Keys.ENTER).perform()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "q"))
    # The first Tab reaches the skip link, which moves the focus to the page's content.
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.text == "Skip to content"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    for element in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        labelled = browser.execute_script("return arguments[0].labels.length", element)
        assert labelled >= 1, element.get_attribute("outerHTML")
    browser.set_window_size(*PHONE)
    for path in (f"/console/numbers/{NUMBER}", "/console/events", "/console/health"):
        browser.get(server + path)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is wider than a phone"
    browser.get(f"{server}/console/numbers/{NUMBER}")
    shot(browser, "timeline-phone")
