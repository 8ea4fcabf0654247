"""Issue #15: first touch credits the lead's source at creation, not its current source.

``leads.first_source`` is the ``source`` attribute a lead had when leadflow stored it: set by
an import (each writer: SQLite's inserts and updates, PostgreSQL's COPY of new rows and its
merge, a file read in a process of its own) and by ``POST /v1/leads``, kept by every update,
filled by one only when the lead had no source at creation. Migration 0013 fills it for the
leads already stored from their current source. ``--by source`` still groups by the current
source. On real SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, insert, select, update

from leadflow.clock import SettableClock
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from leadflow.ingest import import_file, runner
from leadflow.store.database import migrate
from leadflow.store.tables import LEADS
from tests.conftest import T0
from tests.http_support import ATTRIBUTES, Api, build_app, http_settings, runtime_for
from tests.test_stage_history import LEADS_BEFORE_0013, OLD, _store_at

HOUR = timedelta(hours=1)
FIRST = """\
external_id,stage,source
L1,lead,ads
L2,lead,seo
L3,lead,
L4,lead,ads
"""
# An hour later the CRM says: L1 came from a webinar (it did not: its source was edited), L2
# unchanged, L3 has a source now, L4's changed but it is still a lead, L5 is new.
SECOND = """\
external_id,stage,source
L1,mql,webinar
L2,mql,seo
L3,mql,referral
L4,lead,seo
L5,mql,seo
"""


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(**{"attributes.leads": {"source": "string"}, "calendar.timezone": "UTC"})


def _first_and_current(engine: Engine) -> list[tuple[str, str | None, str | None]]:
    return [
        (key, first, attributes.get("source"))
        for key, first, attributes in rows(
            engine, "leads", "external_id", "first_source", "attributes"
        )
    ]


def _report(engine: Engine, settings: Any, by: Grouping = Grouping.none) -> Any:
    period = Period(T0, T0 + timedelta(days=1), by, {"mql": timedelta(days=3)})
    return build_report(engine, settings, period, T0 + timedelta(days=1))


class TestImport:
    """Imported with a source, re-imported with another: first touch keeps the first."""

    @pytest.mark.parametrize("fed", [False, True], ids=["in-process", "fed"])
    def test_reimport_with_another_source(
        self,
        engine: Engine,
        settings: Any,
        tmp_path: Path,
        clock: SettableClock,
        fed: bool,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """L1 ads -> webinar: first ads. L2 seo both times. L3 none -> referral: first
        referral (a lead with no source at creation takes the first one given). L4 ads -> seo:
        first ads. L5 created by the second import with seo. On PostgreSQL the first file is
        copied straight in, the second merged; the fed variant reads both in a process of its
        own."""
        if fed:
            monkeypatch.setattr(runner, "FED_MIN_ROWS", 0)
        first = import_file(engine, settings, "leads", write(tmp_path, "a.csv", FIRST), clock=clock)
        assert first.summary == "inserted 4, updated 0, unchanged 0, rejected 0"
        assert _first_and_current(engine) == [
            ("L1", "ads", "ads"),
            ("L2", "seo", "seo"),
            ("L3", None, None),
            ("L4", "ads", "ads"),
        ]
        clock.advance(HOUR)
        second = import_file(
            engine, settings, "leads", write(tmp_path, "b.csv", SECOND), clock=clock
        )
        assert second.summary == "inserted 1, updated 4, unchanged 0, rejected 0"
        assert _first_and_current(engine) == [
            ("L1", "ads", "webinar"),
            ("L2", "seo", "seo"),
            ("L3", "referral", "referral"),
            ("L4", "ads", "seo"),
            ("L5", "seo", "seo"),
        ]
        # The same file again: nothing written, first sources as they were.
        clock.advance(HOUR)
        again = import_file(
            engine, settings, "leads", write(tmp_path, "c.csv", SECOND), clock=clock
        )
        assert again.summary == "inserted 0, updated 0, unchanged 5, rejected 0"
        assert [row[1] for row in _first_and_current(engine)] == [
            "ads",
            "seo",
            "referral",
            "ads",
            "seo",
        ]

    def test_first_touch_and_by_source(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """MQLs of the day: L1 (first ads, now webinar), L2 (seo), L3 (first referral), L5
        (seo). First touch: ads 1, seo 2, referral 1, no webinar. No activities: last touch and
        linear give all 4 to (none). ``--by source`` groups by the current source: the MQL
        entries webinar 1, seo 2, referral 1; the lead entries (L1-L4 at the first import)
        webinar 1, seo 2 (L2, L4), referral 1."""
        import_file(engine, settings, "leads", write(tmp_path, "a.csv", FIRST), clock=clock)
        clock.advance(HOUR)
        import_file(engine, settings, "leads", write(tmp_path, "b.csv", SECOND), clock=clock)
        found = {
            (a.model, a.kind, a.group): (a.conversions, a.amount)
            for a in _report(engine, settings).attribution
        }
        assert found == {
            ("first_touch", "mql", "ads"): (1.0, None),
            ("first_touch", "mql", "referral"): (1.0, None),
            ("first_touch", "mql", "seo"): (2.0, None),
            ("last_touch", "mql", "(none)"): (4.0, None),
            ("linear", "mql", "(none)"): (4.0, None),
        }
        by_source = _report(engine, settings, Grouping.source).entries
        assert by_source == {
            ("referral", "lead"): 1,
            ("referral", "mql"): 1,
            ("seo", "lead"): 2,
            ("seo", "mql"): 2,
            ("webinar", "lead"): 1,
            ("webinar", "mql"): 1,
        }


class TestHttpApi:
    """``POST /v1/leads``, the route a CRM pushes its leads to, keeps the source at creation."""

    def test_posted_then_changed(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """L1 posted with ads, then seo: first ads. L2 posted with no source, then with seo,
        then with partner: first seo. L3 and L4 created by one list: each its own source."""
        declared = {**ATTRIBUTES, "source": "string"}
        settings = http_settings(make_settings, **{"attributes.leads": declared})
        app, _holder = build_app(runtime_for(engine, settings, clock))
        api = Api(app)
        posts: list[Any] = [
            {"external_id": "L1", "source": "ads"},
            {"external_id": "L2"},
            [{"external_id": "L3", "source": "seo"}, {"external_id": "L4", "source": "events"}],
            {"external_id": "L1", "source": "seo"},
            {"external_id": "L2", "source": "seo"},
            {"external_id": "L2", "source": "partner"},
            [{"external_id": "L3", "source": "ads"}, {"external_id": "L4", "source": "events"}],
        ]
        for body in posts:
            clock.advance(HOUR)
            response = api.post("/v1/leads", body)
            assert response.status_code == 200, response.text
        assert _first_and_current(engine) == [
            ("L1", "ads", "seo"),
            ("L2", "seo", "partner"),
            ("L3", "seo", "ads"),
            ("L4", "events", "events"),
        ]


class TestMigration:
    """Migration 0013 fills ``first_source`` of the stored leads from their current source."""

    def test_backfill_from_the_current_source(
        self, store_url: str, request: pytest.FixtureRequest
    ) -> None:
        """A text source as it is, a number or a boolean as its JSON text (what the report
        grouped by on PostgreSQL), none for a missing or null source. Every lead's rescoring
        mark (3.5) is left as it was: the backfill changes nothing a score reads."""
        engine = _store_at(store_url, request, "0012")
        attributes = [
            {"source": "ads", "region": "East"},
            {"source": 7},
            {"source": True},
            {"region": "West"},
            {"source": None},
            {"source": "seo"},
        ]
        lead = {"stage": "lead", "stage_entered_at": OLD, "created_at": OLD, "updated_at": OLD}
        with engine.begin() as connection:
            connection.execute(
                insert(LEADS_BEFORE_0013),
                [
                    {**lead, "external_id": f"L{n}", "attributes": a, "score_next_change_day": 3.5}
                    for n, a in enumerate(attributes, start=1)
                ],
            )
        migrate(engine)
        with engine.connect() as connection:
            found = connection.execute(
                select(
                    LEADS.c.external_id, LEADS.c.first_source, LEADS.c.score_next_change_day
                ).order_by(LEADS.c.id)
            ).all()
        engine.dispose()
        assert [tuple(row) for row in found] == [
            ("L1", "ads", 3.5),
            ("L2", "7", 3.5),
            ("L3", "true", 3.5),
            ("L4", None, 3.5),
            ("L5", None, 3.5),
            ("L6", "seo", 3.5),
        ]


class TestOtherInserts:
    """A Core insert that does not name the column (the demo, rule tests' given leads) gets
    the source of its attributes; an update of the attributes does not touch it."""

    def test_insert_default_and_update(self, engine: Engine) -> None:
        """L1 (ads) and L2 (none) in one insert, L3 (seo) alone; L1's source then set to seo
        by an update: first sources ads, none, seo."""
        lead = {"stage": "lead", "stage_entered_at": OLD, "created_at": OLD, "updated_at": OLD}
        with engine.begin() as connection:
            connection.execute(
                insert(LEADS),
                [
                    {**lead, "external_id": "L1", "attributes": {"source": "ads"}},
                    {**lead, "external_id": "L2", "attributes": {}},
                ],
            )
            connection.execute(
                insert(LEADS).values(**lead, external_id="L3", attributes={"source": "seo"})
            )
            connection.execute(
                update(LEADS)
                .where(LEADS.c.external_id == "L1")
                .values(attributes={"source": "seo"})
            )
        assert _first_and_current(engine) == [
            ("L1", "ads", "seo"),
            ("L2", None, None),
            ("L3", "seo", "seo"),
        ]
