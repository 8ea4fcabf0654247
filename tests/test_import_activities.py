"""Importing activities: ids derived from content when missing, last_activity_at bumped in SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from import_support import rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from tests.conftest import T0

SETUP = {
    "reps.csv": "external_id,name,email\nR1,Ada Lovelace,ada@example.com\n",
    "leads.csv": "external_id,last_activity_at\nL1,2026-01-01T00:00:00Z\nL2,2026-03-01T00:00:00Z\n",
    "deals.csv": "external_id,lead,stage\nD1,L1,Engaging\n",
}
ACTIVITIES = """\
type,lead,deal,actor,occurred_at,page
page_view,L1,,,2026-02-01T10:00:00Z,/pricing
call,L1,D1,R1,2026-02-03T10:00:00Z,
page_view,L2,,,2026-02-01T10:00:00Z,/blog
page_view,L9,,,2026-02-01T10:00:00Z,/blog
visit,,,,2026-02-01T10:00:00Z,
"""


def setup(engine: Engine, settings: Any, folder: Path) -> None:
    for kind in ("reps", "leads", "deals"):
        path = write(folder, f"{kind}.csv", SETUP[f"{kind}.csv"])
        assert import_file(engine, settings, kind, path, clock=SettableClock(T0)).rejected == 0


class TestActivities:
    """Upsert by a stable derived id; the newest activity moves last_activity_at forward only."""

    def test_activities_land_and_bump_last_activity(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """L1 moves to its newest activity; L2's later time stays; bad rows are located."""
        settings = make_settings(
            import__mappings={"activities": {"columns": {"page": "properties.page"}}}
        )
        setup(engine, settings, tmp_path)
        path = write(tmp_path, "activities.csv", ACTIVITIES)
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:5: lead: no lead with external id 'L9'; import the leads first",
            f"{path}:6: lead: missing; an activity needs a lead or a deal",
        ]
        assert report.summary == "inserted 3, updated 0, already present 0, rejected 2"
        found = rows(engine, "activities", "external_id", "type", "properties", "occurred_at")
        assert sorted(((t, p, o) for _id, t, p, o in found), key=repr) == [
            ("call", {}, datetime(2026, 2, 3, 10, tzinfo=UTC)),
            ("page_view", {"page": "/blog"}, datetime(2026, 2, 1, 10, tzinfo=UTC)),
            ("page_view", {"page": "/pricing"}, datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ]
        assert all(
            external_id.startswith("auto-") and len(external_id) == 29 for external_id, *_ in found
        )
        assert rows(engine, "leads", "external_id", "last_activity_at") == [
            ("L1", datetime(2026, 2, 3, 10, tzinfo=UTC)),
            ("L2", datetime(2026, 3, 1, tzinfo=UTC)),
        ]
        assert rows(engine, "deals", "external_id", "last_activity_at") == [
            ("D1", datetime(2026, 2, 3, 10, tzinfo=UTC))
        ]

    def test_a_properties_key_column_needs_no_mapping(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """docs/import.md: ``properties.KEY`` puts KEY in the activity's properties, merged
        with a ``properties`` object column; it was refused (``did you mean 'properties'?``)."""
        settings = make_settings()
        setup(engine, settings, tmp_path)
        path = write(
            tmp_path,
            "activities.csv",
            "type,lead,occurred_at,properties,properties.url\n"
            'page_view,L1,2026-02-01T10:00:00Z,"{""ms"": 5}",/pricing\n'
            "page_view,L2,2026-02-01T10:00:00Z,,\n",
        )
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert report.summary == "inserted 2, updated 0, already present 0, rejected 0"
        found = rows(engine, "activities", "type", "properties")
        assert sorted((p for _t, p in found), key=len) == [{}, {"ms": 5, "url": "/pricing"}]

    def test_derived_ids_make_a_reimport_unchanged(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Without an id column the same content gets the same id: nothing is duplicated."""
        settings = make_settings(
            import__mappings={"activities": {"columns": {"page": "properties.page"}}}
        )
        setup(engine, settings, tmp_path)
        path = write(tmp_path, "activities.csv", ACTIVITIES)
        import_file(engine, settings, "activities", path, clock=clock)
        before = rows(engine, "activities", "id", "external_id", "properties")
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert report.summary == "inserted 0, updated 0, already present 3, rejected 2"
        assert rows(engine, "activities", "id", "external_id", "properties") == before

    def test_a_repeated_activity_is_already_present_not_unchanged(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An activity is an event: one imported again is the same event, stored once and
        counted as already present (a row repeated in the file is superseded by its later
        copy); one whose content changed under the same id is updated. A lead's unchanged row
        is still "unchanged"."""
        settings = make_settings()
        setup(engine, settings, tmp_path)
        path = write(
            tmp_path,
            "activities.csv",
            "external_id,type,lead,occurred_at\n"
            "A1,call,L1,2026-02-01T10:00:00Z\n"
            "A1,call,L1,2026-02-01T10:00:00Z\n"
            "A2,email,L1,2026-02-02T10:00:00Z\n",
        )
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert report.summary == (
            "inserted 2, updated 0, already present 0, rejected 0, superseded 1"
        )
        assert rows(engine, "activities", "external_id", "type") == [
            ("A1", "call"),
            ("A2", "email"),
        ]
        changed = write(
            tmp_path,
            "again.csv",
            "external_id,type,lead,occurred_at\n"
            "A1,call,L1,2026-02-01T10:00:00Z\n"
            "A2,meeting,L1,2026-02-02T10:00:00Z\n",
        )
        report = import_file(engine, settings, "activities", changed, clock=clock)
        assert report.summary == "inserted 0, updated 1, already present 1, rejected 0"
        leads = write(tmp_path, "leads.csv", SETUP["leads.csv"])
        report = import_file(engine, settings, "leads", leads, clock=clock)
        assert report.summary == "inserted 0, updated 0, unchanged 2, rejected 0"

    def test_an_activity_in_the_future_is_rejected_a_clock_a_little_ahead_is_not(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Imported at T0 (2026-03-02 09:00): an activity in 2999 (a typo) is a rejected row,
        naming the field and both times, and L1's last activity stays; one 4 minutes ahead (a
        sender's clock) lands and becomes L1's last activity."""
        settings = make_settings()
        setup(engine, settings, tmp_path)
        path = write(
            tmp_path,
            "activities.csv",
            "external_id,type,lead,occurred_at\n"
            "A1,page_view,L1,2999-01-01T00:00:00Z\n"
            "A2,page_view,L1,2026-03-02T09:04:00Z\n",
        )
        report = import_file(engine, settings, "activities", path, clock=SettableClock(T0))
        assert [str(p) for p in report.problems] == [
            f"{path}:2: occurred_at: 2999-01-01T00:00:00+00:00 is in the future (received at "
            "2026-03-02T09:00:00+00:00); an activity cannot have happened yet"
        ]
        assert rows(engine, "activities", "external_id", "occurred_at") == [
            ("A2", datetime(2026, 3, 2, 9, 4, tzinfo=UTC))
        ]
        assert rows(engine, "leads", "external_id", "last_activity_at") == [
            ("L1", datetime(2026, 3, 2, 9, 4, tzinfo=UTC)),
            ("L2", datetime(2026, 3, 1, tzinfo=UTC)),
        ]

    def test_every_bad_field_of_an_activity_is_named(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """A row with an unknown deal, an unknown actor and a time in the future named only
        the actor (the first field checked): each is named now, in column order, on its line;
        the row counts once as rejected."""
        settings = make_settings()
        setup(engine, settings, tmp_path)
        path = write(
            tmp_path,
            "activities.csv",
            "external_id,type,deal,actor,occurred_at\n"
            "A1,call,D9,R9,2999-01-01T00:00:00Z\n"
            "A2,call,D1,R1,2026-03-01T00:00:00Z\n",
        )
        report = import_file(engine, settings, "activities", path, clock=SettableClock(T0))
        assert [str(p) for p in report.problems] == [
            f"{path}:2: deal: no deal with external id 'D9'; import the deals first",
            f"{path}:2: actor: no rep with external id 'R9'; import the reps first",
            f"{path}:2: occurred_at: 2999-01-01T00:00:00+00:00 is in the future (received at "
            "2026-03-02T09:00:00+00:00); an activity cannot have happened yet",
        ]
        assert report.summary == "inserted 1, updated 0, already present 0, rejected 1"
        assert rows(engine, "activities", "external_id") == [("A2",)]


def test_an_activity_may_not_name_another_leads_deal(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """D1 is L1's: a row naming L2 and D1 is rejected at its line, naming ``deal``; the
    deal's own lead, and the deal alone, are imported."""
    settings = make_settings()
    setup(engine, settings, tmp_path)
    path = write(
        tmp_path,
        "activities.csv",
        "external_id,type,lead,deal,occurred_at\n"
        "A1,call,L1,D1,2026-03-01T00:00:00Z\n"
        "A2,call,L2,D1,2026-03-01T00:00:00Z\n"
        "A3,call,,D1,2026-03-01T00:00:00Z\n",
    )
    report = import_file(engine, settings, "activities", path, clock=SettableClock(T0))
    assert [str(p) for p in report.problems] == [
        f"{path}:3: deal: deal 'D1' belongs to lead 'L1', not 'L2'; name the deal's lead, or "
        "leave lead or deal empty",
    ]
    assert report.summary == "inserted 2, updated 0, already present 0, rejected 1"
    assert rows(engine, "activities", "external_id") == [("A1",), ("A3",)]
