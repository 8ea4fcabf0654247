"""The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver by
Selenium, against the daemon's ASGI application served by uvicorn on a seeded SQLite store.

Pins: a wrong password is refused and a right one opens the funnel; every page opens (and is
kept as a PNG under tests/artifacts/ to look at); a lead followed from the SLA board shows
exactly the timeline rows a person reads; an operator retries a failed email with the button;
a viewer sees no button and their forged POST is refused, as is a POST without the CSRF token
and a cross-site form (the SameSite cookie is not sent); every visible input has a label; the
first Tab reaches the skip link, whose focus ring is visible; the Funnel page first says its
report is being computed and reloads itself (no script) until it shows the figures; its four
charts load as images under the page's Content-Security-Policy, each with its figures in words; the SLA
board shows business hours left.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, insert, update

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from leadflow.store.tables import DEALS, REPS
from tests.conftest import T0, join_funnel_reports
from tests.dashboard_support import (
    HOUR,
    LONG,
    PASSWORDS,
    dashboard_settings,
    seed,
    seed_long_names,
    seed_stage_history,
)
from tests.http_support import build_app, runtime_for
from tests.mail_support import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
IMPLICIT_WAIT = 10
"""Seconds finding an element waits for it to appear."""
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not os.environ.get("CI"):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 (only once the browser is known to exist)
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "state" / "leadflow.db"
    target.parent.mkdir()
    target.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{target}"


@pytest.fixture
def requested() -> list[str]:
    """Every path the browser asked the daemon for, in order."""
    return []


@pytest.fixture
def daemon_url(tmp_path: Path, sqlite_url: str, requested: list[str]) -> Iterator[str]:
    """The daemon's application on a seeded SQLite store, served by uvicorn on a free port."""

    def make_settings(**overrides: Any) -> Settings:
        config = tmp_path / "config.yaml"
        config.write_text("", encoding="utf-8")
        values = {"database.url": sqlite_url, **overrides}
        return load_settings(config, env={}, overrides=values).settings

    # The Funnel page never waits for its report: its first answer is the "being computed"
    # page, which reloads itself (as on a large store).
    settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
    engine: Engine = create_store_engine(sqlite_url)
    seed(engine)
    app, _holder = build_app(runtime_for(engine, settings, SettableClock(T0)))

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            requested.append(scope["path"])
        await app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(recording, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start in 20 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    join_funnel_reports()
    engine.dispose()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Chromium from the operating system; Selenium Manager kept offline (no downloads)."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    # A click that submits a form returns before the next page is there: finding an element
    # waits for it (up to 10 s on a loaded CI machine) instead of failing at once.
    driver.implicitly_wait(IMPLICIT_WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, base: str, user: str, password: str | None = None) -> None:
    driver.get(f"{base}/ui/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password or PASSWORDS[user])
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    # The click returns before the answer is there: wait until the login page is replaced.
    WebDriverWait(driver, 15).until(lambda _: replaced(page))


def replaced(element: Any) -> bool:
    """Whether the page holding ``element`` is gone. Selenium's ``staleness_of`` knows only
    the stale-element answer; while the next page is being swapped in, Chromium 156 may answer
    "Node with given id does not belong to the document" instead, which failed the test."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as answer:
        if "does not belong to the document" in str(answer):
            return True
        raise
    return False


def found_on_the_page(driver: WebDriver, by: str, selector: str) -> list[Any]:
    """The elements the loaded page has, found without the implicit wait: asking for what a
    page must not show waited the whole IMPLICIT_WAIT each time. The server renders the pages
    and no script adds to them, so once the document is complete nothing more can appear."""
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    driver.implicitly_wait(0)
    try:
        return driver.find_elements(by, selector)
    finally:
        driver.implicitly_wait(IMPLICIT_WAIT)


def table_rows(driver: WebDriver, selector: str) -> list[list[str]]:
    """The text a person reads in each body row of the table, cell by cell."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"{selector} tbody tr")
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")] for row in rows]


def shoot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


def unlabelled_inputs(driver: WebDriver) -> list[str]:
    """Visible inputs and selects with neither a <label for> nor an aria-label."""
    script = """
    return [...document.querySelectorAll('input, select, textarea')]
      .filter(e => e.type !== 'hidden')
      .filter(e => !e.getAttribute('aria-label') &&
                   !(e.id && document.querySelector(`label[for="${e.id}"]`)))
      .map(e => e.outerHTML);
    """
    found: list[str] = driver.execute_script(script)
    return found


@pytest.mark.slow
def test_login_every_page_and_the_lead_from_the_sla_board(
    daemon_url: str, browser: WebDriver
) -> None:
    """Refused, then signed in; each page opens with labelled inputs; L2 from the board."""
    log_in(browser, daemon_url, "vera", "wrong")
    assert browser.find_element(By.CSS_SELECTOR, "p.error").text == "Wrong user name or password."
    assert unlabelled_inputs(browser) == []
    shoot(browser, "login-refused")
    log_in(browser, daemon_url, "vera")
    assert browser.current_url == f"{daemon_url}/ui/funnel"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Funnel"
    pages = {
        "funnel": "Funnel",
        "rules": "Rules",
        "sla": "SLA board",
        "outbox": "Outbox",
        "search?q=Analytical": "Search leads",
    }
    for path, heading in pages.items():
        browser.get(f"{daemon_url}/ui/{path}")
        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        assert unlabelled_inputs(browser) == [], path
        shoot(browser, path.split("?")[0])
    assert table_rows(browser, "main table") == [
        [
            "L1",
            "Ada Lovelace",
            "ada@analytical.test",
            "Analytical Engines",
            "sql",
            "40",
            "Rita Rep",
        ],
        ["L3", "Cy Young", "cy@analytical.test", "Analytical Labs", "lead", "5", "unowned"],
    ]

    browser.get(f"{daemon_url}/ui/sla")
    assert [row[0] for row in table_rows(browser, "table.sla")] == [
        "L2\nBob Builder",
        "L1\nAda Lovelace",
    ]
    browser.find_element(By.LINK_TEXT, "L1").click()
    assert browser.current_url == f"{daemon_url}/ui/leads/L1"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Lead L1: Ada Lovelace"
    rows = [row[:2] for row in table_rows(browser, "table.timeline")]
    assert rows == [
        ["2026-03-02 04:00:00 UTC", "activity pricing_visit"],
        ["2026-03-02 05:00:00 UTC", "score 10 → 40 (activity: pricing_visit)"],
        ["2026-03-02 06:00:00 UTC", "assign by rule mql-assign (v1)"],
        ["2026-03-02 06:00:00 UTC", "start_sla by rule mql-assign (v1)"],
        ["2026-03-02 06:00:00 UTC", "email “Welcome, Ada” to ada@analytical.test: failed"],
        ["2026-03-02 06:00:00 UTC", "SLA first_touch started, due 2026-03-02 10:00 UTC (running)"],
        ["2026-03-02 07:00:00 UTC", "set_stage"],
        ["2026-03-02 08:00:00 UTC", "email “Following up” to ada@analytical.test: sent"],
    ]
    crm = browser.find_element(By.LINK_TEXT, "https://crm.example.com/leads/L1")
    assert crm.get_attribute("href") == "https://crm.example.com/leads/L1"
    shoot(browser, "lead")


def test_operator_retries_and_forgeries_are_refused(daemon_url: str, browser: WebDriver) -> None:
    """The viewer has no Retry and a forged POST fails on role; a form without the token and
    one from another site fail too; the operator's button requeues message 1."""
    forge = """
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/ui/outbox/1/retry';
    if (arguments[0]) {
      const token = document.createElement('input');
      token.type = 'hidden'; token.name = 'csrf'; token.value = arguments[0];
      form.appendChild(token);
    }
    document.body.appendChild(form);
    form.submit();
    """
    log_in(browser, daemon_url, "vera")
    browser.get(f"{daemon_url}/ui/outbox?status=failed")
    assert found_on_the_page(browser, By.XPATH, "//button[text()='Retry']") == []
    token = browser.find_element(By.NAME, "csrf").get_attribute("value")
    browser.execute_script(forge, token)
    refusal = browser.find_element(By.CSS_SELECTOR, "p.error")
    assert refusal.text == "vera is a viewer: retrying needs the operator role."
    shoot(browser, "refused")

    log_in(browser, daemon_url, "otto")
    browser.get(f"{daemon_url}/ui/outbox?status=failed")
    browser.execute_script(forge, "")
    assert browser.find_element(By.CSS_SELECTOR, "p.error").text == "The form is out of date."
    cross_site = (
        "data:text/html,<form method=post action='"
        f"{daemon_url}/ui/outbox/1/retry'><input type=hidden name=csrf value=x></form>"
        "<script>document.forms[0].submit()</script>"
    )
    browser.get(cross_site)
    deadline = time.monotonic() + 10
    while "/retry" not in browser.current_url and time.monotonic() < deadline:
        time.sleep(0.05)
    assert browser.find_element(By.CSS_SELECTOR, "p.error").text == "Sign in first."

    browser.get(f"{daemon_url}/ui/outbox?status=failed")
    shoot(browser, "outbox-failed-operator")
    browser.find_element(By.XPATH, "//button[text()='Retry']").click()
    assert browser.find_element(By.CSS_SELECTOR, "p.ok").text == (
        "Message 1 is queued again; the sender picks it up now."
    )
    assert found_on_the_page(browser, By.CSS_SELECTOR, "table.outbox") == []
    browser.get(f"{daemon_url}/ui/outbox?status=pending")
    # Message 2 was due 90 minutes ago, the requeued 1 is due now.
    assert [row[0] for row in table_rows(browser, "table.outbox")] == ["2", "1"]


def test_keyboard_reaches_the_skip_link_with_a_visible_focus(
    daemon_url: str, browser: WebDriver
) -> None:
    """The first Tab focuses "Skip to content", shown on screen with a 3px outline."""
    log_in(browser, daemon_url, "vera")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to content"
    style = browser.execute_script(
        "const s = getComputedStyle(arguments[0]);"
        "return [s.outlineStyle, s.outlineWidth, arguments[0].getBoundingClientRect().left];",
        focused,
    )
    assert style[0] == "solid"
    assert style[1] == "3px"
    assert style[2] >= 0  # moved on screen, not left at -10000px
    shoot(browser, "skip-link-focused")


@pytest.mark.slow
def test_funnel_page_charts_load_with_their_figures(
    daemon_url: str, sqlite_url: str, browser: WebDriver
) -> None:
    """The four charts are images the browser draws (the page's policy allows them), each
    with its figures in words under "The figures"; the SLA board reads business hours."""
    engine = create_store_engine(sqlite_url)
    seed_stage_history(engine)
    engine.dispose()
    log_in(browser, daemon_url, "vera")
    browser.get(f"{daemon_url}/ui/funnel?from=2026-03-01&to=2026-03-02")
    note = browser.find_element(By.CSS_SELECTOR, "p.note[role=status]").text
    assert note.startswith("The report for this period is being computed")
    assert note.endswith("this page reloads itself.")
    shoot(browser, "funnel-computing")
    # The page reloads itself (a meta refresh: no script, and the page's policy allows it)
    # and then shows the figures.
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "p.as-of")
    )
    assert browser.find_element(By.CSS_SELECTOR, "p.as-of").text.startswith(
        "Figures as of 2026-03-02 09:00 UTC, computed in "
    )
    images = browser.find_elements(By.CSS_SELECTOR, "figure.chart img")
    assert [image.get_attribute("alt") for image in images] == [
        "Funnel: entries into each stage, chart",
        "Period conversion by week, chart",
        "SLA compliance by rep, chart",
        "Time in stage (median and p90 days), chart",
    ]
    WebDriverWait(browser, 20).until(
        lambda driver: all(
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
            for i in images
        )
    )
    widths = [browser.execute_script("return arguments[0].naturalWidth", i) for i in images]
    assert widths == [538, 538, 538, 538]  # 403.2pt at 96/72 px a point
    first = browser.find_element(By.CSS_SELECTOR, "#chart-funnel details")
    first.find_element(By.TAG_NAME, "summary").click()
    assert first.find_element(By.TAG_NAME, "p").text == (
        "Entries in the period: lead 1, mql 2, sql 1"
    )
    browser.set_window_size(1280, 2600)  # the whole page in one picture
    shoot(browser, "funnel-charts")
    browser.get(f"{daemon_url}/ui/sla")
    left = [row[5] for row in table_rows(browser, "table.sla")]
    assert left == ["0h 00m overdue", "1h 00m left"]  # hours 09-17 UTC: L2 was due at 08:00


@pytest.mark.slow
def test_a_narrow_window_scrolls_tables_not_the_page(
    daemon_url: str, sqlite_url: str, browser: WebDriver
) -> None:
    """At 500 pixels (Chromium's narrowest headless window; a phone is narrower) the Funnel
    page's report tables, the Rules table and the lead's facts made the whole page wider than
    the window (868, 942 and 752 pixels on the Maven export), the header and the text scrolling
    away with them. Each table now scrolls inside its own box, and a long CRM link wraps."""
    engine = create_store_engine(sqlite_url)
    seed_stage_history(engine)
    engine.dispose()
    log_in(browser, daemon_url, "vera")
    browser.set_window_size(500, 900)
    browser.get(f"{daemon_url}/ui/funnel?from=2026-03-01&to=2026-03-02")
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "p.as-of")
    )
    widths = {}
    for path in ("funnel?from=2026-03-01&to=2026-03-02", "rules", "leads/L1", "sla", "outbox"):
        browser.get(f"{daemon_url}/ui/{path}")
        widths[path.split("?")[0]] = browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
    assert widths == {"funnel": True, "rules": True, "leads/L1": True, "sla": True, "outbox": True}
    shoot(browser, "funnel-narrow")


@pytest.mark.slow
def test_the_pipeline_table_fits_a_desktop_window(
    daemon_url: str, sqlite_url: str, browser: WebDriver
) -> None:
    """The Pipeline table's ten figure headers ("average won cycle days") never wrapped: 1,292
    px at the least, it scrolled sideways in a window of 1,280 (and, with a wider font, of
    1,400). A figure's header now wraps between its words; the figures stay on one line."""
    engine = create_store_engine(sqlite_url)
    seed_stage_history(engine)
    deal = {"lead_id": 1, "owner_id": 1, "account": "Analytical Engines", "attributes": {}}
    with engine.begin() as connection:
        connection.execute(
            insert(DEALS),
            [
                {
                    **deal,
                    "external_id": "D1",
                    "stage": "Won",
                    "outcome": "won",
                    "amount": 1234567.5,
                    "engaged_at": T0 - 40 * HOUR,
                    "closed_at": T0 - 20 * HOUR,
                    "created_at": T0 - 40 * HOUR,
                    "updated_at": T0 - 20 * HOUR,
                },
                {
                    **deal,
                    "external_id": "D2",
                    "stage": "Engaging",
                    "outcome": None,
                    "closed_at": None,
                    "amount": 7654321.25,
                    "engaged_at": T0 - 30 * HOUR,
                    "created_at": T0 - 30 * HOUR,
                    "updated_at": T0 - 30 * HOUR,
                },
            ],
        )
    engine.dispose()
    log_in(browser, daemon_url, "vera")
    browser.set_window_size(1280, 1000)
    browser.get(f"{daemon_url}/ui/funnel?from=2026-02-28&to=2026-03-02")
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "p.as-of")
    )
    assert table_rows(browser, "table#pipeline")[0][:2] == ["all", "1"]
    box = browser.find_element(By.CSS_SELECTOR, "div.wide:has(> table#pipeline)")
    widths = browser.execute_script(
        "return [arguments[0].scrollWidth, arguments[0].clientWidth]", box
    )
    assert widths[0] <= widths[1], widths
    browser.execute_script("arguments[0].scrollIntoView()", box)
    shoot(browser, "funnel-pipeline-1280")


def test_long_unbroken_names_wrap_and_keep_every_column_in_view(
    daemon_url: str, sqlite_url: str, browser: WebDriver
) -> None:
    """A 300-character name, email and company made the lead page 4,625 px wide and pushed the
    search's Stage, Score and Owner columns off the screen: long words now wrap anywhere, so
    both pages keep the window's width and every column header is in view, as wide as its
    text, while the other leads' short words stay whole."""
    engine = create_store_engine(sqlite_url)
    seed_long_names(engine)
    engine.dispose()
    log_in(browser, daemon_url, "vera")
    fits = "return document.documentElement.scrollWidth <= window.innerWidth"
    browser.get(f"{daemon_url}/ui/leads/L4")
    assert browser.execute_script(fits) is True
    shoot(browser, "lead-long-name")
    browser.get(f"{daemon_url}/ui/search?q=Analytical")
    assert browser.execute_script(fits) is True
    shoot(browser, "search-long-name")
    headers = browser.execute_script(
        """return [...document.querySelectorAll('thead th')].map(th => {
             const box = th.getBoundingClientRect();
             return [th.textContent, box.right <= window.innerWidth,
                     th.scrollWidth <= th.clientWidth];
           });"""
    )
    assert headers == [[name, True, True] for name in SEARCH_COLUMNS]
    rows = table_rows(browser, "table")
    assert [row[0] for row in rows] == ["L1", "L3", "L4"]
    # A short word keeps its line: Ada's name and the stages are not broken inside a word.
    assert rows[0][1:5] == ["Ada Lovelace", "ada@analytical.test", "Analytical Engines", "sql"]
    heights = browser.execute_script(
        "return [...document.querySelectorAll('tbody tr:first-child td')].map(td => td.clientHeight)"
    )
    assert len(set(heights)) == 1, heights  # one line each, no cell broken over several


SEARCH_COLUMNS = ("Lead", "Name", "Email", "Company", "Stage", "Score", "Owner")


def test_the_html_report_keeps_a_600_pixel_window_wide(
    tmp_path: Path, sqlite_url: str, browser: WebDriver
) -> None:
    """The report file's tables (and a long rep name in them) made the page wider than a
    600-pixel window, headings and all scrolling sideways: each table now scrolls inside its
    own box, long words wrap, and the charts stack in one column."""
    from leadflow.cli import main

    engine = create_store_engine(sqlite_url)
    seed(engine)
    seed_stage_history(engine)
    seed_long_names(engine)
    with engine.begin() as connection:
        connection.execute(update(REPS).where(REPS.c.id == 1).values(name=LONG))
    engine.dispose()
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {sqlite_url}\n", encoding="utf-8")
    target = tmp_path / "report.html"
    period = ["--from", "2026-03-01", "--to", "2026-03-03", "--by", "rep"]
    assert main(["-c", str(config), "report", *period, "--output", str(target)]) == 0
    browser.set_window_size(600, 900)
    browser.get(target.as_uri())
    assert LONG in browser.page_source
    fits = "return document.documentElement.scrollWidth <= window.innerWidth"
    assert browser.execute_script(fits) is True
    shoot(browser, "report-600")


def test_pages_declare_their_icon_and_nobody_asks_for_favicon_ico(
    daemon_url: str, browser: WebDriver, requested: list[str]
) -> None:
    """Every page made the browser ask for /favicon.ico, a 404 each time: the pages now
    declare leadflow's own small icon, served from /ui/static/ without a login."""
    browser.get(f"{daemon_url}/ui/login")
    log_in(browser, daemon_url, "vera")
    for path in ("funnel", "rules", "sla", "outbox", "search?q=L1", "leads/L1"):
        browser.get(f"{daemon_url}/ui/{path}")
    assert "/favicon.ico" not in requested
    assert "/ui/static/icon.svg" in requested
    icon = browser.execute_script(
        "const i = new Image(); i.src = '/ui/static/icon.svg'; await i.decode();"
        " return [i.naturalWidth > 0, document.querySelector('link[rel=icon]').href];"
    )
    assert icon == [True, f"{daemon_url}/ui/static/icon.svg"]
