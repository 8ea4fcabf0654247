"""Who may read and write the dashboard, on SQLite and PostgreSQL, in-process.

Pins: off unless enabled; every page redirects to the login without a session; a wrong
password is refused, a right one sets an HttpOnly, SameSite=Strict cookie scoped to /ui/
(Secure when configured) that expires with the session lifetime; repeated failures lock the
user name out from that address; a trusted proxy's header is believed only from a trusted
address; the retry needs the operator role and the session's CSRF token; logout ends the
session; a plain password in the configuration is refused; the stylesheet's colour pairs meet
WCAG AA contrast.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.errors import ConfigError
from leadflow.store.tables import OUTBOX
from tests.dashboard_support import HOUR, PASSWORDS, Browser, dashboard_settings, seed
from tests.http_support import build_app, runtime_for

PAGES = ("/ui/funnel", "/ui/rules", "/ui/sla", "/ui/outbox", "/ui/search?q=L1", "/ui/leads/L1")


def browser_for(engine: Engine, make_settings: Any, clock: SettableClock, **over: Any) -> Browser:
    runtime = runtime_for(engine, dashboard_settings(make_settings, **over), clock)
    app, _holder = build_app(runtime)
    return Browser(app)


@pytest.fixture
def ui(engine: Engine, make_settings: Any, clock: SettableClock) -> Browser:
    seed(engine)
    return browser_for(engine, make_settings, clock)


def outbox_status(engine: Engine, outbox_id: int) -> str:
    with engine.connect() as connection:
        query = select(OUTBOX.c.status).where(OUTBOX.c.id == outbox_id)
        return str(connection.execute(query).scalar_one())


class TestLogin:
    def test_the_dashboard_is_off_unless_enabled(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Without dashboard.enabled there is no /ui/ at all."""
        ui = browser_for(engine, make_settings, clock, **{"dashboard.enabled": False})
        assert ui.get("/ui/funnel").status_code == 404

    @pytest.mark.parametrize("path", PAGES)
    def test_every_page_needs_a_login(self, ui: Browser, path: str) -> None:
        """Each page answers a visitor without a session with a redirect to the login."""
        response = ui.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=/ui/")

    def test_a_wrong_password_is_refused(self, ui: Browser) -> None:
        """401, the form again with one line saying why, and no cookie."""
        response = ui.login("vera", "not-her-password")
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
        assert "leadflow_session" not in response.headers.get("set-cookie", "")
        assert ui.login("nobody", "whatever").status_code == 401

    def test_a_right_password_opens_every_page(self, ui: Browser) -> None:
        """The cookie is HttpOnly, SameSite=Strict, scoped to /ui/, not Secure by default."""
        response = ui.login("vera")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/funnel"
        cookie = response.headers["set-cookie"]
        assert re.search(r"HttpOnly", cookie, re.IGNORECASE)
        assert re.search(r"SameSite=strict", cookie, re.IGNORECASE)
        assert "Path=/ui/" in cookie
        assert "Secure" not in cookie
        for path in PAGES:
            page = ui.get(path)
            assert page.status_code == 200, path
            assert "vera (viewer)" in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]

    def test_secure_cookie_when_configured(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """dashboard.secure_cookie marks the cookie Secure (the dashboard behind https)."""
        ui = browser_for(engine, make_settings, clock, **{"dashboard.secure_cookie": True})
        assert "Secure" in ui.login("vera").headers["set-cookie"]

    def test_the_session_expires(self, ui: Browser, clock: SettableClock) -> None:
        """After dashboard.session_lifetime (8h by default) the cookie no longer signs in."""
        ui.login("vera")
        clock.advance(8 * HOUR - HOUR)
        assert ui.get("/ui/funnel").status_code == 200
        clock.advance(HOUR)
        assert ui.get("/ui/funnel").status_code == 303

    def test_a_forged_cookie_is_ignored(self, ui: Browser) -> None:
        """A cookie edited to name another user fails its signature."""
        ui.login("vera")
        value = next(iter(ui.cookies.jar)).value
        assert value is not None
        ui.cookies.set("leadflow_session", "x" + value, domain="lf.test", path="/ui/")
        assert ui.get("/ui/funnel").status_code == 303

    def test_repeated_failures_lock_the_login(self, ui: Browser, clock: SettableClock) -> None:
        """Five wrong passwords, then even the right one is refused (429) for 15 minutes."""
        for _ in range(5):
            assert ui.login("otto", "guess").status_code == 401
        locked = ui.login("otto")
        assert locked.status_code == 429
        assert "Too many failed logins" in locked.text
        assert ui.login("vera").status_code == 303  # another user name is not locked
        clock.advance(HOUR / 4)
        assert ui.login("otto").status_code == 303

    def test_logout_ends_the_session(self, ui: Browser) -> None:
        """The logout form (with its CSRF token) clears the cookie."""
        ui.login("vera")
        token = ui.csrf()
        assert ui.post("/ui/logout", {"csrf": token}).status_code == 303
        assert ui.get("/ui/funnel").status_code == 303

    def test_login_goes_back_only_to_a_dashboard_page(self, ui: Browser) -> None:
        """``next`` pointing at another site lands on the funnel instead (no open redirect)."""
        form = {"username": "vera", "password": "viewer-pass-1", "next": "//evil.test/x"}
        assert ui.post("/ui/login", form).headers["location"] == "/ui/funnel"
        form["next"] = "/ui/sla?status=breached"
        assert ui.post("/ui/login", form).headers["location"] == "/ui/sla?status=breached"


class TestFormTooLarge:
    """A form over a size limit gets 413 as a page of the dashboard, not the API's JSON."""

    @staticmethod
    def alert(response: Any) -> tuple[int, str, str, str]:
        found = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text)
        back = re.search(r'<a href="([^"]+)">Back to the form</a>', response.text)
        assert found is not None, response.text
        assert back is not None, response.text
        return (response.status_code, response.headers["content-type"], found[1], back[1])

    def test_over_the_body_limit_before_the_form_is_read(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """http.max_body_bytes refuses the body before any route; declared or chunked."""
        seed(engine)
        ui = browser_for(engine, make_settings, clock, **{"http.max_body_bytes": 1024})
        page = (
            413,
            "text/html; charset=utf-8",
            "The form sent was larger than 1,024 bytes, more than any dashboard form holds, "
            "so it was not read.",
            "/ui/login",
        )
        response = ui.login("vera", "x" * 2000)
        assert self.alert(response) == page
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<title>Form too large · leadflow</title>" in response.text

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"password=" + b"x" * 1000

        chunked = ui.request("POST", "/ui/login", content=chunks())
        assert "content-length" not in chunked.request.headers
        assert self.alert(chunked) == page
        assert ui.get("/ui/funnel").status_code == 303  # not signed in
        assert ui.login("otto").status_code == 303
        signed_in = ui.post("/ui/outbox/1/retry", {"csrf": ui.csrf(), "pad": "x" * 2000})
        assert self.alert(signed_in)[0::3] == (413, "/ui/outbox?status=failed")
        assert 'aria-label="Pages"' in signed_in.text  # the page keeps its navigation

    def test_over_the_forms_own_limit(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A dashboard form holds a few fields: over 4,096 bytes it is refused unread (it was
        read as an empty form: "Wrong user name or password.", or "The form is out of date.")."""
        seed(engine)
        ui = browser_for(engine, make_settings, clock, **{"http.max_body_bytes": 1_000_000})
        response = ui.login("vera", "x" * 5000)
        assert self.alert(response) == (
            413,
            "text/html; charset=utf-8",
            "The form sent was larger than 4,096 bytes, more than any dashboard form holds, "
            "so it was not read.",
            "/ui/login",
        )
        assert ui.login("otto").status_code == 303
        retry = ui.post("/ui/outbox/1/retry", {"csrf": ui.csrf(), "pad": "x" * 5000})
        assert self.alert(retry)[0::3] == (413, "/ui/outbox?status=failed")
        assert 'aria-label="Pages"' in retry.text  # signed in: the page has its navigation
        assert outbox_status(engine, 1) == "failed"


class TestProxyHeader:
    OVER: dict[str, Any] = {  # noqa: RUF012
        "dashboard.trusted_header": "X-Forwarded-User",
        "dashboard.trusted_proxies": ["127.0.0.1"],
    }

    def test_the_header_signs_in_from_a_trusted_proxy(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """httpx's ASGI client comes from 127.0.0.1: a listed user keeps their role, another
        gets dashboard.proxy_role."""
        seed(engine)
        ui = browser_for(engine, make_settings, clock, **self.OVER)
        page = ui.get("/ui/funnel", headers={"X-Forwarded-User": "otto"})
        assert "otto (operator)" in page.text
        page = ui.get("/ui/funnel", headers={"X-Forwarded-User": "pat"})
        assert "pat (viewer)" in page.text

    def test_the_header_is_ignored_from_other_addresses(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The same header from an address not in trusted_proxies signs nobody in."""
        over = {**self.OVER, "dashboard.trusted_proxies": ["10.0.0.5"]}
        ui = browser_for(engine, make_settings, clock, **over)
        assert ui.get("/ui/funnel", headers={"X-Forwarded-User": "otto"}).status_code == 303


class TestRetry:
    def test_an_operator_retries_a_failed_message(self, ui: Browser, engine: Engine) -> None:
        """The outbox's failed tab has a Retry button; the POST requeues message 1 and says so."""
        assert ui.login("otto").status_code == 303
        page = ui.get("/ui/outbox?status=failed")
        assert 'action="/ui/outbox/1/retry"' in page.text
        assert "550 5.1.1 no such user" in page.text
        response = ui.post("/ui/outbox/1/retry", {"csrf": ui.csrf()})
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/outbox?status=failed&retried=1"
        assert outbox_status(engine, 1) == "pending"
        assert "Message 1 is queued again" in ui.get(response.headers["location"]).text

    def test_a_viewer_gets_no_button_and_a_forged_post_is_refused(
        self, ui: Browser, engine: Engine
    ) -> None:
        """No Retry for a viewer; a POST with a valid token is 403 for the role."""
        ui.login("vera")
        assert "/retry" not in ui.get("/ui/outbox?status=failed").text
        response = ui.post("/ui/outbox/1/retry", {"csrf": ui.csrf()})
        assert response.status_code == 403
        assert "retrying needs the operator role" in response.text
        assert outbox_status(engine, 1) == "failed"

    def test_a_post_without_the_csrf_token_is_refused(self, ui: Browser, engine: Engine) -> None:
        """An operator's cookie alone (a cross-site form) does not retry: 403."""
        assert ui.login("otto").status_code == 303
        assert ui.post("/ui/outbox/1/retry", {}).status_code == 403
        assert ui.post("/ui/outbox/1/retry", {"csrf": "forged"}).status_code == 403
        assert outbox_status(engine, 1) == "failed"

    def test_retrying_a_message_that_is_not_failed_says_why(
        self, ui: Browser, engine: Engine
    ) -> None:
        """The same refusal as ``leadflow outbox --retry`` for a sent message: 409."""
        assert ui.login("otto").status_code == 303
        response = ui.post("/ui/outbox/3/retry", {"csrf": ui.csrf()})
        assert response.status_code == 409
        assert "outbox message 3 is sent; only failed messages are retried" in response.text
        assert outbox_status(engine, 3) == "sent"

    def test_without_a_session_nothing_is_retried(self, ui: Browser, engine: Engine) -> None:
        assert ui.post("/ui/outbox/1/retry", {"csrf": "x"}).status_code == 401
        assert outbox_status(engine, 1) == "failed"


class TestUsersFollowTheConfiguration:
    """The daemon reads dashboard.users again when config.yaml changes: a lowered role counts
    on the next click, a new user signs in, a removed one is signed out, and a configuration
    with a problem keeps the last good users (and says why in the log)."""

    @staticmethod
    def write(config: Path, users: dict[str, tuple[str, str]]) -> None:
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        lines = ["dashboard:", "  enabled: true", "  users:"]
        lines += [
            f'    {name}: {{password_hash: "{hasher.hash(password)}", role: {role}}}'
            for name, (password, role) in users.items()
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @pytest.fixture
    def setup(
        self, engine: Engine, make_settings: Any, clock: SettableClock, tmp_path: Path
    ) -> tuple[Browser, Path]:
        seed(engine)
        config = tmp_path / "config.yaml"
        self.write(
            config, {"vera": (PASSWORDS["vera"], "viewer"), "otto": (PASSWORDS["otto"], "operator")}
        )
        runtime = runtime_for(engine, dashboard_settings(make_settings), clock)
        app, _holder = build_app(replace(runtime, config_file=config))
        return Browser(app), config

    def test_a_lowered_role_counts_on_the_next_click(
        self, setup: tuple[Browser, Path], engine: Engine
    ) -> None:
        ui, config = setup
        assert ui.login("otto").status_code == 303
        assert "otto (operator)" in ui.get("/ui/outbox?status=failed").text
        csrf = ui.csrf()
        self.write(
            config, {"vera": (PASSWORDS["vera"], "viewer"), "otto": (PASSWORDS["otto"], "viewer")}
        )
        page = ui.get("/ui/outbox?status=failed").text
        assert "otto (viewer)" in page
        assert "/retry" not in page
        response = ui.post("/ui/outbox/1/retry", {"csrf": csrf})
        assert response.status_code == 403
        assert outbox_status(engine, 1) == "failed"

    def test_a_new_user_signs_in_and_a_removed_one_is_signed_out(
        self, setup: tuple[Browser, Path]
    ) -> None:
        ui, config = setup
        assert ui.login("vera").status_code == 303
        newcomer = Browser(ui.app)
        nina = {"username": "nina", "password": "nina-pass-3", "next": "/ui/funnel"}
        assert newcomer.post("/ui/login", nina).status_code == 401
        self.write(config, {"nina": ("nina-pass-3", "operator")})
        assert ui.get("/ui/funnel").status_code == 303  # vera's session ended with her user
        assert newcomer.post("/ui/login", nina).status_code == 303
        assert "nina (operator)" in newcomer.get("/ui/funnel").text

    def test_a_configuration_with_a_problem_keeps_the_last_good_users(
        self, setup: tuple[Browser, Path]
    ) -> None:
        ui, config = setup
        assert ui.login("otto").status_code == 303
        config.write_text("dashboard:\n  users:\n    otto: {role: admin}\n", encoding="utf-8")
        with capture_logs() as logs:
            assert "otto (operator)" in ui.get("/ui/funnel").text
            assert "otto (operator)" in ui.get("/ui/funnel").text  # logged once per change
        failures = [e for e in logs if e["event"] == "dashboard_users_reload_failed"]
        assert len(failures) == 1
        assert failures[0]["file"] == str(config)
        assert failures[0]["kept"] == ["otto", "vera"]
        assert failures[0]["errors"][0].startswith(f"{config}:3:12: dashboard.users.otto.role")
        assert "dashboard.users.otto.role" in failures[0]["errors"][0]

    @pytest.mark.parametrize(
        ("written", "error"),
        [
            ("", ":1:1: the file is empty (or holds only comments)"),
            ("  \n\n   \n", ":1:1: the file is empty (or holds only comments)"),
            ("# leadflow configuration\n", ":1:1: the file is empty (or holds only comments)"),
            (
                'dashboard:\n  users:\n    otto: {password_hash: "$argon',
                ":3:34: invalid YAML: found unexpected end of stream",
            ),
        ],
        ids=["empty", "blank", "comments only", "cut short"],
    )
    def test_an_empty_or_broken_file_keeps_the_last_good_users(
        self, setup: tuple[Browser, Path], written: str, error: str
    ) -> None:
        """A save cut short left config.yaml empty (a valid configuration of defaults: no
        users), which signed everyone out; it is a problem now, as one YAML refuses is."""
        ui, config = setup
        assert ui.login("otto").status_code == 303
        config.write_text(written, encoding="utf-8")
        with capture_logs() as logs:
            assert "otto (operator)" in ui.get("/ui/funnel").text
        failures = [e for e in logs if e["event"] == "dashboard_users_reload_failed"]
        assert [(e["kept"], e["errors"][0].startswith(f"{config}{error}")) for e in failures] == [
            (["otto", "vera"], True)
        ], failures
        vera = Browser(ui.app)
        assert vera.login("vera").status_code == 303


def test_a_plain_password_in_the_configuration_is_refused(tmp_path: Path) -> None:
    """dashboard.users.NAME.password_hash must be an argon2 hash, and the error says how."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "dashboard:\n  users:\n    vera: {password_hash: hunter2}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="leadflow dashboard hash-password"):
        load_settings(config, env={})


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    high, low = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


CSS = Path(__file__).resolve().parents[1] / "leadflow/dashboard/static/dashboard.css"


@pytest.mark.parametrize(
    ("foreground", "background", "least"),
    [
        ("text", "page", 4.5),
        ("muted", "page", 4.5),
        ("link", "page", 4.5),
        ("bar-text", "bar", 4.5),
        ("text", "stripe", 4.5),
        ("muted", "stripe", 4.5),
        ("link", "stripe", 4.5),
        ("error", "page", 4.5),
        ("warn-text", "warn-page", 4.5),
        ("ok-text", "ok-page", 4.5),
        ("page", "link", 4.5),  # button text
        ("focus", "page", 3.0),  # a focus ring is not text: WCAG 1.4.11 asks 3:1
    ],
)
def test_stylesheet_colours_meet_wcag_aa(foreground: str, background: str, least: float) -> None:
    """Each pair the stylesheet puts together has at least the contrast WCAG AA requires."""
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", CSS.read_text(encoding="utf-8")))
    assert contrast(colours[foreground], colours[background]) >= least


class TestHashPasswordCommand:
    def test_prints_an_argon2id_hash_of_the_line_read(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``leadflow dashboard hash-password`` reads a line from a pipe, prints its hash."""
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
        assert main(["dashboard", "hash-password"]) == 0
        printed = capsys.readouterr().out.strip()
        assert printed.startswith("$argon2id$")
        assert PasswordHasher().verify(printed, "s3cret pass")

    def test_an_empty_password_is_one_line_and_exit_1(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
        assert main(["dashboard", "hash-password"]) == 1
        assert capsys.readouterr().err == "error: the password is empty\n"


def test_the_configuration_examples_of_the_docs_load(tmp_path: Path) -> None:
    """Each yaml block of docs/dashboard.md, with a real hash for the placeholder, is valid."""
    doc = (Path(__file__).resolve().parents[1] / "docs/dashboard.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^ *```yaml\n(.*?)^ *```$", doc, re.M | re.S)
    assert len(blocks) == 2
    real = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("x")
    for block in blocks:
        config = tmp_path / "config.yaml"
        text = textwrap.dedent(block).replace("$argon2id$v=19$m=65536,t=3,p=4$...", real)
        config.write_text(text, encoding="utf-8")
        settings = load_settings(config, env={}).settings
        assert settings.dashboard.enabled is True
        assert "maria" in settings.dashboard.users


def test_the_dashboard_served_alone_is_read_only(make_settings: Any) -> None:
    """``leadflow dashboard serve``: every user a viewer (an operator's retry is a write), a
    session key of the process's own rather than one stored; refused with the dashboard off."""
    from leadflow.service.viewer import viewer_settings

    settings = viewer_settings(dashboard_settings(make_settings))
    dashboard = settings.dashboard
    assert {name: user.role for name, user in dashboard.users.items()} == {
        "vera": "viewer",
        "otto": "viewer",
    }
    assert dashboard.session_secret is not None
    assert len(dashboard.session_secret.get_secret_value()) == 64
    with pytest.raises(ConfigError) as caught:
        viewer_settings(dashboard_settings(make_settings, **{"dashboard.enabled": False}))
    assert str(caught.value) == (
        "dashboard.enabled is false: nothing to serve; set dashboard.enabled: true "
        "(LEADFLOW_DASHBOARD__ENABLED=true) and a user (docs/dashboard.md)"
    )


def test_head_on_a_page_is_answered_as_get_without_a_body(ui: Browser) -> None:
    """HEAD on a dashboard page (a monitor, ``curl -I``) was a 405 in the API's JSON: it is
    now GET's status and headers without the body, signed in or not."""
    assert ui.request("HEAD", "/ui/funnel", follow_redirects=False).status_code == 303
    ui.login("vera")
    for page in (*PAGES, "/ui/static/dashboard.css", "/ui/nowhere"):
        got, head = ui.get(page), ui.request("HEAD", page)
        assert (head.status_code, head.headers["content-type"], head.content) == (
            got.status_code,
            got.headers["content-type"],
            b"",
        ), page
