"""A person who unsubscribes stops receiving marketing email at once, on SQLite and PostgreSQL.

Through the real ASGI app, the shipped rules (welcome stream: a step now, another after 5 days)
and templates, with tracking on: ``POST /t/u/<token>`` (the page's button) and ``POST`` of the
``List-Unsubscribe`` link (RFC 8058 one-click) flag the lead, end its nurture enrollment
(``exited``, ``unsubscribed``), cancel its pending marketing email and record the activity and
the audit, once; the next nurture tick queues nothing. A ``GET`` (a person, or a link scanner
on delivery) only shows the confirmation page. ``POST /v1/leads {"unsubscribed": true}`` ends
the enrollment too, after its own ``unsubscribed`` audit row. With ``mail.unsubscribe_url`` set,
``GET /t/u/`` redirects there as before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.ingest.runner import import_file
from leadflow.mail.context import email_context, unsubscribe_url
from leadflow.mail.enqueue import enqueue_email
from leadflow.rule_language.model import RuleSet
from leadflow.service.daemon import Daemon
from leadflow.store.database import transaction
from leadflow.store.models import Lead
from leadflow.store.tables import ACTIVITIES, AUDIT, LEADS, NURTURE, OUTBOX
from tests.conftest import T0
from tests.http_support import Api, build_app, http_settings
from tests.mail_support import add_lead

BASE = "https://lf.example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SCANNER = "Barracuda Sentinel (EE)"
_TRACKED_UNSUBSCRIBE = re.compile(re.escape(BASE) + r"(/t/u/[A-Za-z0-9_.-]+)")


class Nurtured:
    """Lead L-1 enrolled in the welcome stream by the shipped rule, its first step queued and
    sent at T0, a second marketing email pending, and the app serving the links."""

    def __init__(self, engine: Engine, make_settings: Any, clock: SettableClock, **extra: Any):
        settings = http_settings(
            make_settings,
            **{"mail.tracking.enabled": True, "mail.tracking.base_url": BASE, **extra},
        )
        self.engine = engine
        self.clock = clock
        self.runtime = Runtime.build(engine, settings, clock)
        self.lead_id = add_lead(engine, T0, stage="lead", score=0, timezone="UTC")
        self.rule_set: RuleSet = self.runtime.load_rules()
        run_due_rules(self.runtime, self.rule_set, T0)
        assert run_nurture_steps(self.runtime, self.rule_set, T0) == 1
        with engine.begin() as connection:
            connection.execute(update(OUTBOX).values(status="sent", sent_at=T0))
        self.queue_promo()
        self.api = Api(build_app(self.runtime)[0])

    def queue_promo(self) -> None:
        with transaction(self.engine) as session:
            lead = session.get(Lead, self.lead_id)
            assert lead is not None
            enqueue_email(
                session,
                key="promo",
                template="nurture_case_study",
                context=email_context(self.runtime.settings, lead=lead),
                to="jo@acme.example",
                category="marketing",
                now=T0,
                catalog=self.runtime.templates,
                settings=self.runtime.settings,
                lead_id=self.lead_id,
            )

    def first_email(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(select(OUTBOX).order_by(OUTBOX.c.id).limit(1)).one()
        return dict(row._mapping)

    def tracked_link(self) -> str:
        """The path of the unsubscribe link in the first email's text, as the person gets it."""
        found = _TRACKED_UNSUBSCRIBE.search(self.first_email()["body_text"])
        assert found is not None
        return found.group(1)

    def hit(
        self, method: str, path: str, *, after: timedelta, agent: str = FIREFOX, **options: Any
    ) -> httpx.Response:
        self.clock.set(T0 + after)
        headers = {"User-Agent": agent, **options.pop("headers", {})}
        return self.api.request(method, path, headers=headers, **options)

    def state(self) -> dict[str, Any]:
        """Everything an unsubscribe may change."""
        with self.engine.connect() as connection:
            return {
                "unsubscribed": connection.execute(
                    select(LEADS.c.unsubscribed).where(LEADS.c.id == self.lead_id)
                ).scalar_one(),
                "enrollments": [
                    tuple(row)
                    for row in connection.execute(
                        select(
                            NURTURE.c.stream,
                            NURTURE.c.status,
                            NURTURE.c.exit_reason,
                            NURTURE.c.next_step,
                        ).order_by(NURTURE.c.id)
                    )
                ],
                "outbox": [
                    tuple(row)
                    for row in connection.execute(
                        select(
                            OUTBOX.c.idempotency_key, OUTBOX.c.status, OUTBOX.c.status_reason
                        ).order_by(OUTBOX.c.id)
                    )
                ],
                "activities": [
                    (kind, machine, props.get("machine_reason"))
                    for kind, machine, props in connection.execute(
                        select(
                            ACTIVITIES.c.type, ACTIVITIES.c.machine, ACTIVITIES.c.properties
                        ).order_by(ACTIVITIES.c.id)
                    )
                ],
                "audit": [
                    (action, params)
                    for action, params in connection.execute(
                        select(AUDIT.c.action, AUDIT.c.params)
                        .where(AUDIT.c.action.in_(["unsubscribed", "nurture_exited"]))
                        .order_by(AUDIT.c.id)
                    )
                ],
            }


WELCOME_KEY = "nurture:L-1:welcome:1:step0"
BEFORE = {
    "unsubscribed": False,
    "enrollments": [("welcome", "active", None, 1)],
    "outbox": [(WELCOME_KEY, "sent", None), ("promo", "pending", None)],
    "activities": [],
    "audit": [],
}


def unsubscribed_state(via: str, activity: tuple[str, bool, str | None]) -> dict[str, Any]:
    return {
        "unsubscribed": True,
        "enrollments": [("welcome", "exited", "unsubscribed", 1)],
        "outbox": [
            (WELCOME_KEY, "sent", None),
            ("promo", "suppressed", "unsubscribed (cancelled 2026-03-02T11:00:00Z)"),
        ],
        "activities": [activity],
        "audit": [
            ("unsubscribed", {"via": via, "cancelled_emails": 1}),
            ("nurture_exited", {"stream": "welcome", "reason": "unsubscribed"}),
        ],
    }


@pytest.fixture
def nurtured(engine: Engine, make_settings: Any, clock: SettableClock) -> Nurtured:
    return Nurtured(engine, make_settings, clock)


class TestTrackedUnsubscribeLink:
    """``/t/u/<token>`` with no unsubscribe page of the operator's: leadflow's own page."""

    def test_post_unsubscribes_once_and_the_next_tick_sends_nothing(
        self, nurtured: Nurtured
    ) -> None:
        """The button's POST flags the lead, ends its enrollment, cancels the pending email,
        records the person's activity and the audit; a second POST and the tick 6 days later
        (when step 2 was due) change nothing."""
        assert nurtured.state() == BEFORE
        path = nurtured.tracked_link()
        response = nurtured.hit("POST", path, after=timedelta(hours=2))
        assert response.status_code == 200
        assert "You are unsubscribed" in response.text
        done = unsubscribed_state("unsubscribe_page", ("unsubscribe", False, None))
        assert nurtured.state() == done
        again = nurtured.hit("POST", path, after=timedelta(hours=3))
        assert (again.status_code, "already unsubscribed" in again.text) == (200, True)
        assert run_nurture_steps(nurtured.runtime, nurtured.rule_set, T0 + timedelta(days=6)) == 0
        assert nurtured.state() == done

    def test_the_activity_keeps_the_link_without_its_token(self, nurtured: Nurtured) -> None:
        """The tracked link's POST records the unsubscribe link it stands for without the
        token, as the plain link does: the token would unsubscribe the lead."""
        response = nurtured.hit("POST", nurtured.tracked_link(), after=timedelta(hours=2))
        assert response.status_code == 200
        assert followed_urls(nurtured) == [f"{BASE}/t/unsubscribe?lead=L-1"]

    def test_get_shows_the_page_and_changes_nothing(self, nurtured: Nurtured) -> None:
        """A person's GET and a scanner's GET get the self-contained page with one button that
        POSTs back; neither unsubscribes nor records anything."""
        path = nurtured.tracked_link()
        for agent in (FIREFOX, SCANNER):
            response = nurtured.hit("GET", path, after=timedelta(seconds=2), agent=agent)
            assert response.status_code == 200
            assert '<form method="post"><button type="submit">Unsubscribe</button></form>' in (
                response.text
            )
            assert "src=" not in response.text
            assert "<link" not in response.text
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert nurtured.state() == BEFORE

    def test_get_after_unsubscribing_says_so(self, nurtured: Nurtured) -> None:
        """The page of a lead already unsubscribed has no button, only the note."""
        path = nurtured.tracked_link()
        nurtured.hit("POST", path, after=timedelta(hours=2))
        response = nurtured.hit("GET", path, after=timedelta(hours=3))
        assert "You are already unsubscribed" in response.text
        assert "<form" not in response.text

    def test_tampered_token_is_a_clean_404(self, nurtured: Nurtured) -> None:
        """One character changed: 404 for GET and POST, nothing written; a person reads the
        small page (not JSON), a mail client's one-click POST gets the JSON answer."""
        path = nurtured.tracked_link()
        last = path[-1]
        tampered = path[:-1] + ("A" if last != "A" else "B")
        assert unknown_link_answers(nurtured, tampered) == UNKNOWN_LINK_ANSWERS
        assert nurtured.state() == BEFORE


class TestListUnsubscribe:
    """The header points at leadflow's own endpoint, which takes the RFC 8058 one-click POST."""

    def test_one_click_post_unsubscribes(self, nurtured: Nurtured) -> None:
        """The header carries the plain link and the One-Click header; POSTing the form body a
        mail client sends unsubscribes as the page's button does."""
        email = nurtured.first_email()
        link = unsubscribe_url(nurtured.runtime.settings, "L-1")
        assert link.startswith(f"{BASE}/t/unsubscribe?lead=L-1&token=")
        assert email["headers"]["List-Unsubscribe"] == f"<{link}>"
        assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        response = nurtured.hit(
            "POST",
            link.removeprefix(BASE),
            after=timedelta(hours=2),
            agent="Mozilla/5.0",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        # A mail provider's server posts it, with a bare agent, only when the person presses
        # its unsubscribe button: the person's activity (it was kept as a scanner's, and
        # earned none of the scoring model's points for unsubscribing).
        expected = unsubscribed_state("one_click", ("unsubscribe", False, None))
        assert nurtured.state() == expected
        # The activity keeps the link it came by, without its token: the token unsubscribes
        # the lead, and activities are read (and exported) by more people than the mail.
        with nurtured.engine.connect() as connection:
            properties = connection.execute(select(ACTIVITIES.c.properties)).scalar_one()
        assert properties["url"] == "http://lf.test/t/unsubscribe?lead=L-1"

    def test_get_shows_the_page_and_a_wrong_token_is_404(self, nurtured: Nurtured) -> None:
        """The plain link opened in a browser is the page; another lead's token is refused."""
        link = unsubscribe_url(nurtured.runtime.settings, "L-1").removeprefix(BASE)
        page = nurtured.hit("GET", link, after=timedelta(hours=2))
        assert (page.status_code, "<form" in page.text) == (200, True)
        other = unsubscribe_url(nurtured.runtime.settings, "L-2").removeprefix(BASE)
        forged = other.replace("lead=L-2", "lead=L-1")
        assert unknown_link_answers(nurtured, forged) == UNKNOWN_LINK_ANSWERS
        assert nurtured.state() == BEFORE


UNKNOWN_LINK_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>Link not recognised</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
    "padding:0 1rem;color:#222}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
    "</style></head>\n"
    "<body><h1>Link not recognised</h1>\n"
    "<p>This unsubscribe link is not one we recognise: it may have been cut short or "
    "mistyped, or come from an older email.</p>\n"
    "<p>Please use the unsubscribe link of a more recent email.</p>\n</body></html>\n"
)
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
UNKNOWN_LINK_ANSWERS = {
    "GET": (404, "text/html; charset=utf-8", PAGE_CSP, UNKNOWN_LINK_PAGE),
    "GET as JSON": (404, "text/html; charset=utf-8", PAGE_CSP, UNKNOWN_LINK_PAGE),
    "POST from the page": (404, "text/html; charset=utf-8", PAGE_CSP, UNKNOWN_LINK_PAGE),
    "one-click POST": (404, "application/json", None, '{"detail":"unknown link"}'),
}


def unknown_link_answers(nurtured: Nurtured, path: str) -> dict[str, tuple[Any, ...]]:
    """What a link leadflow did not sign answers: a browser's GET (whatever it accepts) and
    its POST get the page, a mail client's one-click POST (no HTML asked for) the JSON."""
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "GET": ("GET", {"headers": browser}),
        "GET as JSON": ("GET", {"headers": {"Accept": "application/json"}}),
        "POST from the page": ("POST", {"headers": browser}),
        "one-click POST": (
            "POST",
            {
                "content": b"List-Unsubscribe=One-Click",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
        ),
    }
    answers = {}
    for name, (method, options) in requests.items():
        response = nurtured.hit(method, path, after=timedelta(hours=2), **options)
        answers[name] = (
            response.status_code,
            response.headers["content-type"],
            response.headers.get("content-security-policy"),
            response.text,
        )
    return answers


def test_operator_page_keeps_the_redirect(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """With mail.unsubscribe_url set (the CRM's preference centre owns the flag) GET /t/u/
    records the activity and redirects there, as before; the header carries that page."""
    page = "https://crm.example.com/prefs?lead={external_id}&t={token}"
    nurtured = Nurtured(engine, make_settings, clock, **{"mail.unsubscribe_url": page})
    link = unsubscribe_url(nurtured.runtime.settings, "L-1")
    assert link.startswith("https://crm.example.com/prefs?lead=L-1&t=")
    assert nurtured.first_email()["headers"]["List-Unsubscribe"] == f"<{link}>"
    response = nurtured.hit("GET", nurtured.tracked_link(), after=timedelta(hours=2))
    assert (response.status_code, response.headers["location"]) == (302, link)
    assert nurtured.state() == {**BEFORE, "activities": [("unsubscribe", False, None)]}
    # The redirect carries the token the CRM's page needs; the activity does not keep it.
    assert followed_urls(nurtured) == ["https://crm.example.com/prefs?lead=L-1"]


def followed_urls(nurtured: Nurtured) -> list[str]:
    """The ``url`` of every activity, oldest first."""
    with nurtured.engine.connect() as connection:
        rows = connection.execute(select(ACTIVITIES.c.properties).order_by(ACTIVITIES.c.id))
        return [properties["url"] for (properties,) in rows]


def exits(nurtured: Nurtured) -> list[tuple[Any, ...]]:
    """The ``nurture_exited`` audit rows: when, by whom, which lead, which enrolling rule."""
    with nurtured.engine.connect() as connection:
        found = connection.execute(
            select(AUDIT.c.at, AUDIT.c.source, AUDIT.c.lead_id, AUDIT.c.rule_id)
            .where(AUDIT.c.action == "nurture_exited")
            .order_by(AUDIT.c.id)
        )
        return [tuple(row) for row in found]


def test_posted_unsubscribe_ends_the_enrollment(nurtured: Nurtured) -> None:
    """POST /v1/leads {"unsubscribed": true} ends the active enrollment at once (it showed
    active until its next step was due); the tick when step 2 was due queues nothing, and the
    pending email is withheld by the sender when it claims it."""
    nurtured.clock.set(T0 + timedelta(hours=1))
    response = nurtured.api.post("/v1/leads", {"external_id": "L-1", "unsubscribed": True})
    assert response.status_code == 200, response.text
    after = {
        **BEFORE,
        "unsubscribed": True,
        "enrollments": [("welcome", "exited", "unsubscribed", 1)],
        # The opt-out (the CRM's, posted), then the exit nurture's own step writes.
        "audit": [
            ("unsubscribed", {"via": "api"}),
            ("nurture_exited", {"stream": "welcome", "reason": "unsubscribed"}),
        ],
    }
    assert nurtured.state() == after
    assert exits(nurtured) == [
        (T0 + timedelta(hours=1), "nurture", nurtured.lead_id, "nurture-new-leads")
    ]
    assert run_nurture_steps(nurtured.runtime, nurtured.rule_set, T0 + timedelta(days=6)) == 0
    with nurtured.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 2


PLACEHOLDER_WARNING = (
    "marketing email (nurture streams, notify to the lead) would carry the placeholder "
    "unsubscribe link https://example.com/unsubscribe?lead={external_id}&token={token} and "
    "no List-Unsubscribe header: set mail.tracking.base_url (the daemon's public URL, for "
    "leadflow's own unsubscribe page) or mail.unsubscribe_url (your own page)"
)
STAGE_ONLY = """\
rules:
  - id: qualify
    when: {field: score, at_least: 60}
    actions: [set_stage: mql]
"""


NOTIFY_THE_LEAD = """\
rules:
  - id: welcome-the-lead
    when: {field: stage, equals: lead}
    actions:
      - notify: {to: lead, template: nurture_welcome}
"""


@pytest.mark.parametrize("marketing", ["streams", "notify the lead"])
def test_the_daemon_warns_of_the_placeholder_only(
    engine: Engine, make_settings: Any, tmp_path: Path, marketing: str
) -> None:
    """With marketing email (nurture streams, or only a rule's notify to the lead) and neither
    leadflow's public URL nor an unsubscribe page of the operator's, the daemon says at start
    that the link would be the placeholder; with leadflow's own page (mail.tracking.base_url,
    tracking off) it says nothing."""
    rules: dict[str, Any] = {}
    if marketing == "notify the lead":
        (tmp_path / "lead-rules").mkdir()
        (tmp_path / "lead-rules" / "welcome.yaml").write_text(NOTIFY_THE_LEAD, encoding="utf-8")
        rules = {"paths.rules": str(tmp_path / "lead-rules")}

    def warnings(**overrides: Any) -> list[str]:
        settings = http_settings(make_settings, **{"http.enabled": False, **rules, **overrides})
        daemon = Daemon(Runtime.build(engine, settings, SettableClock(T0)))

        async def run_briefly() -> None:
            asyncio.get_running_loop().call_later(1.0, daemon.request_stop)
            await daemon.run()

        with capture_logs() as logs:
            asyncio.run(run_briefly())
        return [e["detail"] for e in logs if e["event"] == "unsubscribe_url_placeholder"]

    assert warnings() == [PLACEHOLDER_WARNING]
    assert warnings(**{"mail.tracking.base_url": BASE}) == []


async def _until(
    condition: Callable[[], bool], what: str, within: float = 20.0, *, fail: bool = True
) -> bool:
    """Poll ``condition`` every 50 ms; after ``within`` seconds fail, or (``fail`` off) False."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            if fail:
                pytest.fail(f"not within {within} s: {what}")
            return False
        await asyncio.sleep(0.05)
    return True


def test_a_reload_that_adds_email_to_the_lead_warns_once(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """A daemon started without marketing email says nothing; the reload that adds a notify to
    the lead, with no unsubscribe address set, logs the warning ``leadflow check`` prints (once:
    a later reload of the same rules does not repeat it) and keeps it with the reload status
    the Rules page shows; the reload that removes it clears it."""
    rules = tmp_path / "lead-rules"
    rules.mkdir()
    (rules / "qualify.yaml").write_text(STAGE_ONLY, encoding="utf-8")
    settings = http_settings(make_settings, **{"http.enabled": False, "paths.rules": str(rules)})
    daemon = Daemon(Runtime.build(engine, settings, SettableClock(T0)))
    seen: list[tuple[str, ...]] = []

    def version() -> str | None:
        rule_set = daemon.holder.current_or_none()
        return None if rule_set is None else rule_set.version

    def warnings() -> tuple[str, ...]:
        return daemon.holder.status().warnings

    async def scenario() -> None:
        running = asyncio.create_task(daemon.run())
        await _until(lambda: version() is not None, "the first load")
        first = version()
        # The watcher starts after the first load: edit until a reload shows it is watching.
        for _ in range(20):
            (rules / "qualify.yaml").write_text("# watched\n" + STAGE_ONLY, encoding="utf-8")
            if await _until(lambda: version() != first, "a reload", within=1.0, fail=False):
                break
        assert version() != first, "no reload within 20 s of editing the rules"
        seen.append(warnings())
        (rules / "welcome.yaml").write_text(NOTIFY_THE_LEAD, encoding="utf-8")
        await _until(lambda: warnings() != (), "the reload adding the notify")
        seen.append(warnings())
        before = version()
        (rules / "qualify.yaml").write_text(STAGE_ONLY.replace("60", "70"), encoding="utf-8")
        await _until(lambda: version() != before, "the reload of another edit")
        seen.append(warnings())
        (rules / "welcome.yaml").unlink()
        await _until(lambda: warnings() == (), "the reload removing the notify")
        seen.append(warnings())
        daemon.request_stop()
        await running

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert seen == [(), (PLACEHOLDER_WARNING,), (PLACEHOLDER_WARNING,), ()]
    warned = [e for e in logs if e["event"] == "unsubscribe_url_placeholder"]
    assert [(e["detail"], e["log_level"]) for e in warned] == [(PLACEHOLDER_WARNING, "warning")]


def test_imported_do_not_email_ends_the_enrollment(nurtured: Nurtured, tmp_path: Path) -> None:
    """A CSV import setting do_not_email ends the enrollment in its transaction, with the reason
    nurture's own step writes for that flag."""
    leads = tmp_path / "leads.csv"
    leads.write_text("external_id,do_not_email\nL-1,true\n")
    settings = nurtured.runtime.settings
    report = import_file(nurtured.engine, settings, "leads", leads, clock=nurtured.clock)
    assert report.summary == "inserted 0, updated 1, unchanged 0, rejected 0"
    assert nurtured.state()["enrollments"] == [("welcome", "exited", "do not email", 1)]
    assert nurtured.state()["audit"] == [
        ("nurture_exited", {"stream": "welcome", "reason": "do not email"})
    ]
    assert exits(nurtured) == [(T0, "nurture", nurtured.lead_id, "nurture-new-leads")]


def one_click(nurtured: Nurtured, after: timedelta) -> None:
    link = unsubscribe_url(nurtured.runtime.settings, "L-1").removeprefix(BASE)
    response = nurtured.hit(
        "POST",
        link,
        after=after,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


def audit_actions(nurtured: Nurtured) -> list[tuple[str, str, dict[str, Any]]]:
    with nurtured.engine.connect() as connection:
        found = connection.execute(
            select(AUDIT.c.source, AUDIT.c.action, AUDIT.c.params)
            .where(AUDIT.c.action.in_(["unsubscribed", "resubscribed"]))
            .order_by(AUDIT.c.id)
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


KEPT_BY_ONE_CLICK = (
    "false ignored: lead 'L-1' unsubscribed through leadflow (one_click at "
    "2026-03-02T11:00:00Z) and stays unsubscribed (an opt-out sticks); mark it unsubscribed "
    "in the CRM, or if the person asked to be mailed again run `leadflow resubscribe L-1`"
)


class TestAnOptOutSticks:
    """A CRM's stale copy saying ``unsubscribed: false``, posted or imported after the person
    unsubscribed through leadflow, keeps the lead unsubscribed and says so; marketing email
    queued after it is suppressed. ``leadflow resubscribe`` is the explicit way back."""

    def test_a_posted_false_keeps_the_lead_unsubscribed_and_warns(self, nurtured: Nurtured) -> None:
        one_click(nurtured, timedelta(hours=2))
        done = unsubscribed_state("one_click", ("unsubscribe", False, None))
        assert nurtured.state() == done
        nurtured.clock.set(T0 + timedelta(hours=3))
        record = {"external_id": "L-1", "name": "Jo Stale", "unsubscribed": False}
        response = nurtured.api.post("/v1/leads", [{"external_id": "L-2"}, record])
        assert response.status_code == 200, response.text
        assert response.json() == {
            "kind": "leads",
            "received": 2,
            "inserted": 1,
            "updated": 1,
            "unchanged": 0,
            "warnings": [
                {
                    "loc": ["body", 1, "unsubscribed"],
                    "field": "unsubscribed",
                    "msg": KEPT_BY_ONE_CLICK,
                }
            ],
        }
        # The rest of the record is written; the flag, the enrollment and the audit stand.
        assert nurtured.state() == done
        with nurtured.engine.connect() as connection:
            name = connection.execute(
                select(LEADS.c.name).where(LEADS.c.id == nurtured.lead_id)
            ).scalar_one()
        assert name == "Jo Stale"
        # Posted again, unchanged: still unsubscribed, still said.
        again = nurtured.api.post("/v1/leads", record)
        assert again.json()["unchanged"] == 1
        assert again.json()["warnings"] == [
            {"loc": ["body", "unsubscribed"], "field": "unsubscribed", "msg": KEPT_BY_ONE_CLICK}
        ]
        # A rule's marketing email queued now is suppressed, as for any unsubscribed lead.
        with transaction(nurtured.engine) as session:
            lead = session.get(Lead, nurtured.lead_id)
            assert lead is not None
            enqueue_email(
                session,
                key="after-the-sync",
                template="nurture_case_study",
                context=email_context(nurtured.runtime.settings, lead=lead),
                to="jo@acme.example",
                category="marketing",
                now=T0 + timedelta(hours=3),
                catalog=nurtured.runtime.templates,
                settings=nurtured.runtime.settings,
                lead_id=nurtured.lead_id,
            )
        assert nurtured.state()["outbox"][-1] == ("after-the-sync", "suppressed", "unsubscribed")

    @pytest.mark.parametrize("bulk", [False, True], ids=["batches", "second process"])
    def test_an_imported_false_keeps_the_lead_unsubscribed_with_a_note(
        self,
        nurtured: Nurtured,
        tmp_path: Path,
        bulk: bool,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        if bulk:  # a large leads file is read and hashed by a process of its own
            monkeypatch.setattr("leadflow.ingest.runner.FED_MIN_ROWS", 0)
        # L-2 was unsubscribed by the CRM itself (an earlier import): that sticks too.
        first = tmp_path / "first.csv"
        first.write_text("external_id,unsubscribed\nL-2,true\n", encoding="utf-8")
        import_file(
            nurtured.engine, nurtured.runtime.settings, "leads", first, clock=nurtured.clock
        )
        one_click(nurtured, timedelta(hours=2))
        stale = tmp_path / "crm.csv"
        stale.write_text(
            "external_id,unsubscribed\nL-3,false\nL-1,false\nL-2,no\n", encoding="utf-8"
        )
        report = import_file(
            nurtured.engine, nurtured.runtime.settings, "leads", stale, clock=nurtured.clock
        )
        # L-2's row differs from the one stored only in the false it keeps: unchanged.
        assert report.summary == "inserted 1, updated 1, unchanged 1, rejected 0"
        assert [str(note) for note in report.notes] == [
            f"{stale}:3: unsubscribed: {KEPT_BY_ONE_CLICK}",
            f"{stale}:4: unsubscribed: false ignored: lead 'L-2' was unsubscribed by an earlier "
            "import or post and stays unsubscribed (an opt-out sticks); mark it unsubscribed in "
            "the CRM, or if the person asked to be mailed again run `leadflow resubscribe L-2`",
        ]
        with nurtured.engine.connect() as connection:
            flags = connection.execute(
                select(LEADS.c.external_id, LEADS.c.unsubscribed).order_by(LEADS.c.external_id)
            ).all()
        assert [tuple(row) for row in flags] == [("L-1", True), ("L-2", True), ("L-3", False)]
        assert nurtured.state() == unsubscribed_state("one_click", ("unsubscribe", False, None))

    def test_resubscribe_is_the_explicit_way_back(
        self,
        nurtured: Nurtured,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        from leadflow.cli import main

        one_click(nurtured, timedelta(hours=2))
        config = tmp_path / "resubscribe.yaml"
        config.write_text(f"database:\n  url: {store_url}\n", encoding="utf-8")
        # `leadflow import` says it on stderr, at the row's line.
        stale = tmp_path / "crm.csv"
        stale.write_text("external_id,unsubscribed\nL-1,false\n", encoding="utf-8")
        assert main(["--config", str(config), "import", "leads", str(stale)]) == 0
        assert capsys.readouterr().err == f"{stale}:2: unsubscribed: {KEPT_BY_ONE_CLICK}\n"
        assert nurtured.state()["unsubscribed"] is True
        reason = "asked again by phone on 2026-03-03"
        assert main(["--config", str(config), "resubscribe", "L-1", "--reason", reason]) == 0
        assert capsys.readouterr().out == (
            "lead 'L-1' re-subscribed: marketing email may be sent to it again\n"
        )
        assert nurtured.state()["unsubscribed"] is False
        assert audit_actions(nurtured) == [
            ("unsubscribe", "unsubscribed", {"via": "one_click", "cancelled_emails": 1}),
            ("cli", "resubscribed", {"reason": reason}),
        ]
        assert main(["--config", str(config), "resubscribe", "L-1", "--reason", reason]) == 0
        assert capsys.readouterr().out == "lead 'L-1' is not unsubscribed: nothing to do\n"
        assert main(["--config", str(config), "resubscribe", "L-9", "--reason", reason]) == 1
        assert capsys.readouterr().err == "error: no lead with external id 'L-9'\n"
        # Re-subscribed, a CRM's false is taken without a word.
        response = nurtured.api.post("/v1/leads", {"external_id": "L-1", "unsubscribed": False})
        assert "warnings" not in response.json()


def queue_marketing(nurtured: Nurtured, key: str) -> tuple[str, str, str | None]:
    """A rule's marketing email to L-1 queued now: its outbox row (key, status, reason)."""
    with transaction(nurtured.engine) as session:
        lead = session.get(Lead, nurtured.lead_id)
        assert lead is not None
        enqueue_email(
            session,
            key=key,
            template="nurture_case_study",
            context=email_context(nurtured.runtime.settings, lead=lead),
            to="jo@acme.example",
            category="marketing",
            now=nurtured.clock.now(),
            catalog=nurtured.runtime.templates,
            settings=nurtured.runtime.settings,
            lead_id=nurtured.lead_id,
        )
    with nurtured.engine.connect() as connection:
        row = connection.execute(
            select(OUTBOX.c.idempotency_key, OUTBOX.c.status, OUTBOX.c.status_reason).where(
                OUTBOX.c.idempotency_key == key
            )
        ).one()
    return tuple(row)  # type: ignore[return-value]


class TestUnbounce:
    """``leadflow unbounce ID --reason TEXT`` clears a lead's ``hard_bounced`` (a mailbox fixed,
    or a lead wrongly flagged by a relay refusing leadflow itself), as ``leadflow resubscribe``
    clears an opt-out: one ``bounce_cleared`` audit row with the reason, no re-enrolment."""

    def test_unbounce_clears_the_flag_with_the_reason_in_the_audit(
        self,
        nurtured: Nurtured,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        from leadflow.cli import main
        from leadflow.mail.enqueue import cancel_pending_marketing

        # What the sender records for a hard bounce: the flag, the pending marketing suppressed.
        bounced_at = T0 + timedelta(hours=2)
        with transaction(nurtured.engine) as session:
            session.execute(
                update(LEADS).where(LEADS.c.id == nurtured.lead_id).values(hard_bounced=True)
            )
            cancel_pending_marketing(session, [nurtured.lead_id], "hard_bounced", bounced_at)
        # The next step is due after 5 days: nurture sees the flag and ends the enrollment.
        nurtured.clock.set(T0 + timedelta(days=6))
        run_nurture_steps(nurtured.runtime, nurtured.rule_set, T0 + timedelta(days=6))
        assert queue_marketing(nurtured, "while-bounced") == (
            "while-bounced",
            "suppressed",
            "hard_bounced",
        )
        config = tmp_path / "unbounce.yaml"
        config.write_text(f"database:\n  url: {store_url}\n", encoding="utf-8")
        reason = "mailbox restored by acme's IT on 2026-03-08"

        assert main(["--config", str(config), "unbounce", "L-1", "--reason", f" {reason}\n"]) == 0
        assert capsys.readouterr().out == (
            "lead 'L-1' no longer hard-bounced: marketing email may be sent to it again\n"
        )
        with nurtured.engine.connect() as connection:
            flags = connection.execute(
                select(LEADS.c.hard_bounced, LEADS.c.unsubscribed).where(
                    LEADS.c.id == nurtured.lead_id
                )
            ).one()
            audit = connection.execute(
                select(AUDIT.c.source, AUDIT.c.action, AUDIT.c.lead_id, AUDIT.c.params).where(
                    AUDIT.c.action == "bounce_cleared"
                )
            ).all()
        assert tuple(flags) == (False, False)
        assert [tuple(row) for row in audit] == [
            ("cli", "bounce_cleared", nurtured.lead_id, {"reason": reason})
        ]
        # Not re-enrolled: the stream it left stays left (a rule may enrol it again).
        assert nurtured.state()["enrollments"] == [("welcome", "exited", "hard bounce", 1)]
        # Marketing email queued now is no longer suppressed.
        assert queue_marketing(nurtured, "after-unbounce") == ("after-unbounce", "pending", None)

        # Again: nothing to do, nothing written.
        assert main(["--config", str(config), "unbounce", "L-1", "--reason", reason]) == 0
        assert capsys.readouterr().out == "lead 'L-1' is not hard-bounced: nothing to do\n"
        assert main(["--config", str(config), "unbounce", "L-9", "--reason", reason]) == 1
        assert capsys.readouterr().err == "error: no lead with external id 'L-9'\n"
        assert main(["--config", str(config), "unbounce", "L-1", "--reason", "  "]) == 1
        assert capsys.readouterr().err == (
            "error: --reason: say why the lead's address may be mailed again "
            "(the mailbox fixed, a wrong bounce)\n"
        )
        with nurtured.engine.connect() as connection:
            count = connection.execute(
                select(func.count()).where(AUDIT.c.action == "bounce_cleared")
            ).scalar_one()
        assert count == 1
