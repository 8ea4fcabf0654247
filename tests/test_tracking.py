"""Engagement tracking of nurture email, on SQLite and PostgreSQL, through the real ASGI app.

Pins: a marketing email queued with ``mail.tracking.enabled`` carries the open pixel and its
web links through signed redirects (the unsubscribe link through its own route, the
List-Unsubscribe header keeping the plain link, operational email untouched); each hit on the pixel or a
link is exactly one activity row, a person's or a machine's with its reason (HEAD, privacy
proxy, scanner agent, scanner window after ``sent_at``, repeat); a forged or altered token
records nothing and redirects nowhere; a person's click bumps ``last_activity_at`` and, with
an enabled scoring model, the lead's score, a machine's does neither.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.errors import ConfigError
from leadflow.http.tracking import PIXEL
from leadflow.mail.context import email_context, unsubscribe_url
from leadflow.mail.enqueue import enqueue_email
from leadflow.mail.tracking_tokens import Signer, TrackedLink, tracking_key, verify
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine, transaction
from leadflow.store.models import Lead
from leadflow.store.tables import ACTIVITIES, LEADS, OUTBOX
from tests.conftest import T0
from tests.http_support import Api, build_app, http_settings, runtime_for
from tests.mail_support import add_lead, write_templates

BASE = "https://lf.example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GOOGLE_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
GUIDE = "https://example.com/guide?a=1&b=2"
TEMPLATES = {
    "nurture.subject.txt": "Hello {{ lead.first_name }}",
    "nurture.txt": "Start here: https://example.com/guide?a=1&b=2.\nStop: {{ unsubscribe_url }}\n",
    "nurture.html": (
        '<html><head><link href="https://cdn.example.com/s.css" rel="stylesheet"></head>'
        '<body><p>Hi {{ lead.first_name }}, <a href="https://example.com/guide?a=1&b=2">'
        "the guide</a>, <a href='mailto:help@example.com'>mail us</a>.</p>\n"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n</body></html>\n'
    ),
    "notify.subject.txt": "New MQL",
    "notify.txt": "Yours: https://crm.example.com/L-1\n",
}
SCORING = """\
scoring:
  enabled: true
  engagement:
    - id: clicks
      activity: email_click
      points: 10
      window: 30d
"""


def sign(link: TrackedLink, key: bytes) -> str:
    """The token leadflow puts in an email for ``link``."""
    return Signer(key, link.message_id, link.lead, link.template).token(link.kind, link.url)


def tracked_settings(make_settings: Any, tmp_path: Path, **overrides: Any) -> Settings:
    write_templates(tmp_path / "templates", TEMPLATES)
    (tmp_path / "rules").mkdir(exist_ok=True)
    values = {
        "paths.templates": str(tmp_path / "templates"),
        "paths.rules": str(tmp_path / "rules"),
        "mail.tracking.enabled": True,
        "mail.tracking.base_url": BASE + "/",
        **overrides,
    }
    return http_settings(make_settings, **values)


class Mailing:
    """A lead, its tracked nurture email queued (and sent at T0), and the app serving the links."""

    def __init__(self, engine: Engine, settings: Settings, clock: SettableClock) -> None:
        self.engine = engine
        self.clock = clock
        self.runtime = runtime_for(engine, settings, clock)
        self.lead_id = add_lead(engine, T0, timezone="UTC", score=0)
        self.message_id = self.queue("n1", "marketing")
        self.api = Api(build_app(self.runtime, load_rules=_has_rules(settings))[0])

    def queue(self, key: str, category: str) -> str:
        settings = self.runtime.settings
        with transaction(self.engine) as session:
            lead = session.get(Lead, self.lead_id)
            assert lead is not None
            enqueue_email(
                session,
                key=key,
                template="nurture" if category == "marketing" else "notify",
                context=email_context(settings, lead=lead),
                to="jo@acme.example",
                category=category,  # type: ignore[arg-type]
                now=T0,
                catalog=self.runtime.templates,
                settings=settings,
                lead_id=self.lead_id,
            )
            session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.idempotency_key == key)
                .values(status="sent", sent_at=T0)
            )
        return str(self.message(key)["message_id"])

    def message(self, key: str) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(select(OUTBOX).where(OUTBOX.c.idempotency_key == key)).one()
        return dict(row._mapping)

    def token(self, kind: str, url: str | None = None) -> str:
        link = TrackedLink(kind, self.message_id, "L-1", "nurture", url)  # type: ignore[arg-type]
        return sign(link, tracking_key(self.runtime.settings))

    def hit(
        self, path: str, *, after: timedelta, agent: str | None = FIREFOX, method: str = "GET"
    ) -> httpx.Response:
        self.clock.set(T0 + after)
        headers = {"User-Agent": agent} if agent is not None else {}
        return self.api.request(method, path, headers=headers)

    def activities(self) -> list[tuple[Any, ...]]:
        query = select(
            ACTIVITIES.c.type,
            ACTIVITIES.c.occurred_at,
            ACTIVITIES.c.machine,
            ACTIVITIES.c.properties,
        ).order_by(ACTIVITIES.c.id)
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def reasons(self) -> list[tuple[str, str | None]]:
        return [(kind, props.get("machine_reason")) for kind, _at, _m, props in self.activities()]

    def lead(self, *columns: str) -> tuple[Any, ...]:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*(LEADS.c[c] for c in columns)).where(LEADS.c.id == self.lead_id)
            ).one()
        return tuple(row)


def _has_rules(settings: Settings) -> bool:
    return any(settings.path(settings.paths.rules).iterdir())


@pytest.fixture
def mailing(engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock) -> Mailing:
    return Mailing(engine, tracked_settings(make_settings, tmp_path), clock)


class TestTrackedEmail:
    """What tracking does to a queued email's bodies, and what it leaves alone."""

    def test_nurture_email_has_pixel_and_tracked_links(self, mailing: Mailing) -> None:
        """Anchor links and text links go through /t/c/, the unsubscribe link through /t/u/,
        the pixel sits before </body>; stylesheets, mailto and the header stay as they were."""
        row = mailing.message("n1")
        unsubscribe = unsubscribe_url(mailing.runtime.settings, "L-1")
        click = f"{BASE}/t/c/{mailing.token('click', GUIDE)}"
        leave = f"{BASE}/t/u/{mailing.token('unsubscribe', unsubscribe)}"
        pixel = f"{BASE}/t/o/{mailing.token('open')}.gif"
        assert row["body_html"] == (
            '<html><head><link href="https://cdn.example.com/s.css" rel="stylesheet"></head>'
            f'<body><p>Hi Jo, <a href="{click}">the guide</a>, '
            "<a href='mailto:help@example.com'>mail us</a>.</p>\n"
            f'<p><a href="{leave}">Unsubscribe</a></p>\n'
            f'<img src="{pixel}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">\n'
            "</body></html>\n"
        )
        assert row["body_text"] == f"Start here: {click}.\nStop: {leave}\n"
        assert row["headers"]["List-Unsubscribe"] == f"<{unsubscribe}>"
        key = tracking_key(mailing.runtime.settings)
        assert verify(click.rsplit("/", 1)[1], key, "click") == TrackedLink(
            "click", mailing.message_id, "L-1", "nurture", GUIDE
        )

    def test_operational_email_is_not_tracked(self, mailing: Mailing) -> None:
        """A rep's email keeps its links: tracking is for marketing email only."""
        mailing.queue("op1", "operational")
        assert mailing.message("op1")["body_text"] == "Yours: https://crm.example.com/L-1\n"

    def test_tracking_off_leaves_the_email_alone(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Without mail.tracking.enabled the rendered bodies are queued unchanged."""
        settings = tracked_settings(make_settings, tmp_path, **{"mail.tracking.enabled": False})
        mailing = Mailing(engine, settings, clock)
        unsubscribe = unsubscribe_url(mailing.runtime.settings, "L-1")
        assert mailing.message("n1")["body_text"] == f"Start here: {GUIDE}.\nStop: {unsubscribe}\n"

    def test_enabled_without_a_base_url_is_one_line(self, make_settings: Any) -> None:
        """The settings refuse tracking with nowhere to send the hits, naming the key."""
        with pytest.raises(ConfigError) as caught:
            make_settings(**{"mail.tracking.enabled": True})
        assert (
            str(caught.value)
            .splitlines()[-1]
            .endswith(
                "mail.tracking: base_url is required when enabled is true: the daemon's public URL, "
                "e.g. https://leadflow.example.com"
            )
        )


class TestHits:
    """Each hit is one activity row: a person's, or a machine's with its reason."""

    def test_open_and_click_of_a_person(self, mailing: Mailing) -> None:
        """The pixel answers a GIF, the link a 302 to the email's URL; two rows of a person with
        the message, template, URL, agent and address; last_activity_at moves to the click."""
        opened = mailing.hit(f"/t/o/{mailing.token('open')}.gif", after=timedelta(minutes=5))
        assert (opened.status_code, opened.content) == (200, PIXEL)
        assert opened.headers["content-type"] == "image/gif"
        clicked = mailing.hit(f"/t/c/{mailing.token('click', GUIDE)}", after=timedelta(minutes=6))
        assert (clicked.status_code, clicked.headers["location"]) == (302, GUIDE)
        common = {"message_id": mailing.message_id, "template": "nurture"}
        client = {"user_agent": FIREFOX, "ip": "127.0.0.1"}
        assert mailing.activities() == [
            ("email_open", T0 + timedelta(minutes=5), False, {**common, **client}),
            ("email_click", T0 + timedelta(minutes=6), False, {**common, "url": GUIDE, **client}),
        ]
        assert mailing.lead("last_activity_at") == (T0 + timedelta(minutes=6),)

    def test_unsubscribe_link_records_unsubscribe_and_redirects(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """With an unsubscribe page of the operator's, the unsubscribe link is an
        ``unsubscribe`` activity, then that page (leadflow's own: tests/test_unsubscribe.py)."""
        page = {"mail.unsubscribe_url": "https://crm.example.com/u?l={external_id}&t={token}"}
        mailing = Mailing(engine, tracked_settings(make_settings, tmp_path, **page), clock)
        unsubscribe = unsubscribe_url(mailing.runtime.settings, "L-1")
        path = f"/t/u/{mailing.token('unsubscribe', unsubscribe)}"
        response = mailing.hit(path, after=timedelta(hours=2))
        assert (response.status_code, response.headers["location"]) == (302, unsubscribe)
        assert mailing.reasons() == [("unsubscribe", None)]

    def test_machines_are_kept_with_their_reason(self, mailing: Mailing) -> None:
        """Apple's prefetch, a HEAD, a scanner's agent, an empty agent, and a click 3 s after the send
        are machine rows; Google's image proxy is a person opening the mail in Gmail."""
        open_path = f"/t/o/{mailing.token('open')}.gif"
        click_path = f"/t/c/{mailing.token('click', GUIDE)}"
        minute = timedelta(minutes=1)
        mailing.hit(open_path, after=minute, agent="Mozilla/5.0")
        mailing.hit(click_path, after=2 * minute, method="HEAD")
        mailing.hit(click_path, after=3 * minute, agent="Barracuda Sentinel (EE)")
        mailing.hit(click_path, after=4 * minute, agent="")
        mailing.hit(click_path, after=timedelta(seconds=3))
        mailing.hit(open_path, after=5 * minute, agent=GOOGLE_PROXY)
        assert mailing.reasons() == [
            ("email_open", "privacy_proxy"),
            ("email_click", "head_request"),
            ("email_click", "scanner_agent"),
            ("email_click", "scanner_agent"),
            ("email_click", "scanner_window"),
            ("email_open", None),
        ]
        assert [machine for _t, _at, machine, _p in mailing.activities()] == [
            True,
            True,
            True,
            True,
            True,
            False,
        ]
        assert mailing.lead("last_activity_at") == (T0 + 5 * minute,)

    def test_scanner_click_still_redirects(self, mailing: Mailing) -> None:
        """A click inside the scanner window is recorded as a machine's, and still redirected:
        the gateway must see the page the person will see."""
        response = mailing.hit(f"/t/c/{mailing.token('click', GUIDE)}", after=timedelta(seconds=9))
        assert (response.status_code, response.headers["location"]) == (302, GUIDE)
        assert mailing.reasons() == [("email_click", "scanner_window")]
        assert mailing.lead("last_activity_at") == (None,)

    def test_repeat_within_the_window_is_marked(self, mailing: Mailing) -> None:
        """The same link again within the hour is a repeat; after the hour it counts again; the
        identical request retried in the same second is one row."""
        path = f"/t/c/{mailing.token('click', GUIDE)}"
        mailing.hit(path, after=timedelta(minutes=1))
        mailing.hit(path, after=timedelta(minutes=1))
        mailing.hit(path, after=timedelta(minutes=30), agent=FIREFOX + " again")
        mailing.hit(path, after=timedelta(minutes=62))
        mailing.hit(f"/t/o/{mailing.token('open')}.gif", after=timedelta(minutes=63))
        assert mailing.reasons() == [
            ("email_click", None),
            ("email_click", "repeat"),
            ("email_click", None),
            ("email_open", None),
        ]


class TestStoreDown:
    """A store that cannot take the row costs the row, never the person's redirect."""

    def test_click_redirects_and_pixel_answers_without_a_store(
        self, mailing: Mailing, tmp_path: Path
    ) -> None:
        """With the store unreachable the link still answers 302 and the pixel 200; the lost
        hit is logged with its message."""
        unreachable = create_store_engine(f"sqlite:///{tmp_path / 'missing' / 'gone.db'}")
        runtime = replace(mailing.runtime, engine=unreachable)
        api = Api(build_app(runtime, load_rules=False)[0])
        with capture_logs() as logs:
            clicked = api.request("GET", f"/t/c/{mailing.token('click', GUIDE)}")
            opened = api.request("GET", f"/t/o/{mailing.token('open')}.gif")
        assert (clicked.status_code, clicked.headers["location"]) == (302, GUIDE)
        assert (opened.status_code, opened.content) == (200, PIXEL)
        lost = [
            (e["kind"], e["message_id"]) for e in logs if e["event"] == "tracking_hit_not_recorded"
        ]
        assert lost == [("click", mailing.message_id), ("open", mailing.message_id)]
        assert mailing.activities() == []


class TestRefusedTokens:
    """Only what leadflow signed redirects; a refused token writes nothing."""

    def test_altered_token_is_404_and_records_nothing(self, mailing: Mailing) -> None:
        """One changed character of the payload or the signature: 404, no Location, no row."""
        token = mailing.token("click", GUIDE)
        payload, signature = token.split(".")
        flipped = "A" if payload[5] != "A" else "B"
        altered = [
            f"{payload[:5]}{flipped}{payload[6:]}.{signature}",
            f"{payload}.{signature[:-1]}{'B' if signature[-1] != 'B' else 'C'}",
            f"{payload}.{signature}x",
            "not-a-token",
        ]
        for bad in altered:
            response = mailing.hit(f"/t/c/{bad}", after=timedelta(minutes=5))
            assert response.status_code == 404, bad
            assert "location" not in response.headers
            # A person clicked: a page saying so, not {"detail":"unknown link"}.
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert "<h1>Link not recognised</h1>" in response.text
            assert "<p>This link is not one we recognise" in response.text
        assert mailing.activities() == []

    def test_forged_pixel_answers_the_gif_and_records_nothing(self, mailing: Mailing) -> None:
        """The pixel does not tell a valid token from a forged one; only the valid one counts."""
        forged = sign(TrackedLink("open", mailing.message_id, "L-1", "nurture"), b"k" * 32)
        response = mailing.hit(f"/t/o/{forged}.gif", after=timedelta(minutes=5))
        assert (response.status_code, response.content) == (200, PIXEL)
        assert mailing.activities() == []

    def test_redirect_goes_only_to_urls_of_the_email(self, mailing: Mailing) -> None:
        """A URL signed with another key, or a pixel token used as a link, redirects nowhere."""
        evil = sign(
            TrackedLink("click", mailing.message_id, "L-1", "nurture", "https://evil.example/"),
            b"k" * 32,
        )
        for path in (f"/t/c/{evil}", f"/t/c/{mailing.token('open')}"):
            assert mailing.hit(path, after=timedelta(minutes=5)).status_code == 404
        unsubscribe_token = mailing.token("unsubscribe", GUIDE)
        assert (
            mailing.hit(f"/t/c/{unsubscribe_token}", after=timedelta(minutes=5)).status_code == 404
        )
        assert mailing.activities() == []


class TestScoring:
    """With an enabled scoring model, a person's click moves the score; a machine's does not."""

    def test_person_click_scores_machine_click_does_not(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """The scanner's click 2 s after the send leaves the score at 0; the person's click a
        minute later makes it 10 (the model's points for email_click)."""
        settings = tracked_settings(make_settings, tmp_path)
        (tmp_path / "rules" / "scoring.yaml").write_text(SCORING, encoding="utf-8")
        mailing = Mailing(engine, settings, clock)
        path = f"/t/c/{mailing.token('click', GUIDE)}"
        mailing.hit(path, after=timedelta(seconds=2))
        assert mailing.lead("score", "score_engagement") == (0, None)
        mailing.hit(path, after=timedelta(minutes=1))
        assert mailing.lead("score", "score_engagement") == (10, 10)
        assert mailing.reasons() == [("email_click", "scanner_window"), ("email_click", None)]


def test_hits_at_fixed_times_are_exact(mailing: Mailing) -> None:
    """occurred_at is the injected clock's time of the hit, to the microsecond."""
    at = timedelta(minutes=7, microseconds=250)
    mailing.hit(f"/t/o/{mailing.token('open')}.gif", after=at)
    assert [when for _t, when, _m, _p in mailing.activities()] == [
        datetime(2026, 3, 2, 9, 7, 0, 250, tzinfo=T0.tzinfo)
    ]


def test_tokens_round_trip_any_url() -> None:
    """A URL with non-ASCII text, escapes and quotes comes back from its token unchanged, and
    only for the kind it was signed for."""
    key = b"k" * 32
    url = 'https://example.com/caf\u00e9?q="a\\b"&x=\u2603'
    link = TrackedLink("click", "<m@leadflow>", "L-\u00e9", "nurture", url)
    token = sign(link, key)
    assert verify(token, key, "click") == link
    assert verify(token, key, "unsubscribe") is None
    assert verify(token, b"j" * 32, "click") is None
