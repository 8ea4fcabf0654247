"""A deal's close date and its outcome agree: a won or lost deal has one, an open deal none.

A won deal imported without a close date landed silently; ``leadflow report`` then counted it
an open opportunity (open at the period's end: no close date) while ``leadflow status`` counted
it won (its outcome). Both the file import and the HTTP API (tests/test_http_api.py) refuse it
now, naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from import_support import rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from tests.conftest import T0

DEALS = """\
external_id,lead,owner,stage,closed_at,engaged_at,amount,product
D1,L1,R1,Won,2024-02-01,2024-01-01,100,P
D7,L1,R1,Won,,2024-01-01,,P
D8,L1,R1,Lost,,2024-01-01,,P
D9,L1,R1,Engaging,2024-02-01,2024-01-01,,P
D10,L1,R1,Engaging,,2024-01-01,,P
D11,L1,R1,Closed Lost,2024-02-01,2024-01-01,,P
"""


def test_a_closed_deal_without_a_close_date_and_an_open_one_with_one_are_rejected(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    clock = SettableClock(T0)
    import_rep_and_lead(engine, settings, tmp_path, clock)
    path = write(tmp_path, "deals.csv", DEALS)
    report = import_file(engine, settings, "deals", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:3: closed_at: a won deal needs its close date; give the date it was won",
        f"{path}:4: closed_at: a lost deal needs its close date; give the date it was lost",
        f"{path}:5: closed_at: 2024-02-01T00:00:00+00:00 closes a deal whose stage is open; "
        "leave it empty until the deal is won or lost, or give its outcome (won or lost)",
    ]
    assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 3"
    assert [r[:2] for r in rows(engine, "deals", "external_id", "outcome", "closed_at")] == [
        ("D1", "won"),
        ("D10", None),
        ("D11", "lost"),
    ]


def test_a_stage_a_typo_away_from_a_closing_one_is_named(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """``Wonn`` was refused as an open deal with a close date, with no hint that it meant
    ``Won``; the stages ``values.outcome`` adds are suggested too, as written there."""
    settings = make_settings(**{"import.mappings.deals.values.outcome": {"Gewonnen": "won"}})
    clock = SettableClock(T0)
    import_rep_and_lead(engine, settings, tmp_path, clock)
    text = "external_id,lead,stage,closed_at,engaged_at\n"
    text += "D1,L1,Wonn,2024-02-01,2024-01-01\nD2,L1,gewonen,2024-02-01,2024-01-01\n"
    path = write(tmp_path, "deals.csv", text)
    report = import_file(engine, settings, "deals", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:{line}: closed_at: 2024-02-01T00:00:00+00:00 closes a deal whose stage is open"
        f" (did you mean {meant!r}?); leave it empty until the deal is won or lost, or give its"
        " outcome (won or lost)"
        for line, meant in ((2, "Won"), (3, "Gewonnen"))
    ]


def test_a_partial_row_keeps_the_stored_close_date_and_a_reopened_deal_loses_it(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """A CRM sync sends what changed: a won deal's new amount without its close date was
    refused (every closed deal of such a file), and a deal the file reopened kept its close
    date, counted closed by the report and open by status. A row is checked only when it
    gives both; a reopened deal's date goes."""
    settings = make_settings()
    clock = SettableClock(T0)
    first = "external_id,stage,closed_at,engaged_at,amount\nD1,Won,2024-02-01,2024-01-01,100\n"
    first += "D2,Won,2024-03-01,2024-01-01,200\n"
    files = (first, "external_id,stage,amount\nD1,Won,250\nD2,Engaging,200\n")
    for number, text in enumerate(files):
        path = write(tmp_path, f"deals{number}.csv", text)
        report = import_file(engine, settings, "deals", path, clock=clock)
        assert (report.problems, report.rejected) == ([], 0)
    assert rows(engine, "deals", "external_id", "outcome", "amount", "closed_at") == [
        ("D1", "won", 250.0, datetime(2024, 2, 1, tzinfo=UTC)),
        ("D2", None, 200.0, None),
    ]


def test_an_empty_outcome_cell_reads_the_stage_and_a_new_closed_deal_needs_its_date(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """An empty outcome cell (a CRM's IsWon column left blank) stored "Closed Won" as open; it
    reads the stage now, as a file without the column does. A file without ``closed_at``
    closes only deals that have a stored date: X11 is new."""
    settings = make_settings()
    clock = SettableClock(T0)
    text = (
        "external_id,stage,outcome,engaged_at,closed_at\n"
        "X9,Closed Won,,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z\n"
        "X10,Closed Won,,2026-01-01T00:00:00Z,\n"
        "X12,Negotiation,,2026-01-01T00:00:00Z,\n"
    )
    path = write(tmp_path, "deals.csv", text)
    report = import_file(engine, settings, "deals", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:3: closed_at: a won deal needs its close date; give the date it was won"
    ]
    partial = write(tmp_path, "partial.csv", "external_id,stage,outcome\nX9,Won,\nX11,Won,\n")
    report = import_file(engine, settings, "deals", partial, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{partial}:3: closed_at: a won deal needs its close date; give the date it was won"
    ]
    assert rows(engine, "deals", "external_id", "stage", "outcome", "closed_at") == [
        ("X12", "Negotiation", None, None),
        ("X9", "Won", "won", datetime(2026, 2, 1, tzinfo=UTC)),
    ]


def test_a_close_date_in_the_future_and_a_negative_amount_are_rejected(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """A ``Won`` deal closing in 2030 and one worth -50 landed: counted won before they were,
    lowering the won amount. They are refused naming line and field as a lead's or an
    activity's future time is, and so is an engage date in the future (an open deal engaged
    in 2099 landed, its age in stage negative); a CRM's clock up to 5 minutes ahead is not an
    error."""
    settings = make_settings(import__mappings={"deals": {"columns": {"close_value": "amount"}}})
    clock = SettableClock(T0)
    import_rep_and_lead(engine, settings, tmp_path, clock)
    path = write(
        tmp_path,
        "deals.csv",
        "external_id,lead,stage,engaged_at,closed_at,close_value\n"
        "D1,L1,Won,2026-01-01,2030-03-01,100\n"
        "D2,L1,Won,2026-01-01,2026-02-01,-50\n"
        "D3,L1,Won,2026-01-01,2026-03-02T09:04:00Z,0\n"
        "D4,L1,Engaging,2026-01-01,,-0.5\n"
        "D5,L1,Engaging,2099-01-01,,10\n",
    )
    report = import_file(engine, settings, "deals", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:2: closed_at: 2030-03-01T00:00:00+00:00 is in the future (the import runs at "
        "2026-03-02T09:00:00+00:00); a deal cannot have closed yet",
        f"{path}:3: close_value (amount): -50 is negative; a deal's amount is 0 or more",
        f"{path}:5: close_value (amount): -0.5 is negative; a deal's amount is 0 or more",
        f"{path}:6: engaged_at: 2099-01-01T00:00:00+00:00 is in the future (the import runs at "
        "2026-03-02T09:00:00+00:00); a deal cannot have been engaged yet",
    ]
    assert rows(engine, "deals", "external_id", "amount", "closed_at") == [
        ("D3", 0.0, datetime(2026, 3, 2, 9, 4, tzinfo=UTC))
    ]


def test_an_amount_above_the_maximum_is_rejected(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """Two won deals of 1e308 landed and ``leadflow report`` ended in an OverflowError
    traceback adding them up. An amount above 1e15 is refused naming line and field; 1e15
    itself is kept."""
    settings = make_settings(import__mappings={"deals": {"columns": {"close_value": "amount"}}})
    clock = SettableClock(T0)
    path = write(
        tmp_path,
        "deals.csv",
        "external_id,stage,closed_at,close_value\n"
        f"D1,Won,2026-02-01,{10**308}\n"  # 1e308 written out: text takes no exponent
        "D2,Won,2026-02-01,1000000000000000\n"
        "D3,Lost,2026-02-01,1000000000000001\n",
    )
    report = import_file(engine, settings, "deals", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:2: close_value (amount): 1e+308 is more than 1,000,000,000,000,000 (1e15), "
        "the most a deal's amount may be",
        f"{path}:4: close_value (amount): 1000000000000001 is more than 1,000,000,000,000,000 "
        "(1e15), the most a deal's amount may be",
    ]
    assert rows(engine, "deals", "external_id", "amount") == [("D2", 1e15)]


def import_rep_and_lead(engine: Engine, settings: Any, folder: Path, clock: SettableClock) -> None:
    """Rep R1 and lead L1, whom the deals of these tests name."""
    for kind, text in (
        ("reps", "external_id,name,email\nR1,Ada Lovelace,ada@example.com\n"),
        ("leads", "external_id\nL1\n"),
    ):
        path = write(folder, f"{kind}.csv", text)
        assert import_file(engine, settings, kind, path, clock=clock).rejected == 0


def test_a_last_activity_in_the_future_is_rejected_for_leads_and_deals(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """A lead active on 9999-12-31 landed (a deal's close date in the future is refused): no
    ``days_since_activity`` rule would ever find it idle. Refused naming line and field, as
    other future times are; a CRM's clock up to 5 minutes ahead is not an error."""
    settings = make_settings()
    clock = SettableClock(T0)
    import_rep_and_lead(engine, settings, tmp_path, clock)
    leads = write(
        tmp_path,
        "leads.csv",
        "external_id,email,last_activity_at\n"
        "L2,l2@example.com,9999-12-31\n"
        "L3,l3@example.com,2026-03-02T09:04:00Z\n",
    )
    report = import_file(engine, settings, "leads", leads, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{leads}:2: last_activity_at: 9999-12-31T00:00:00+00:00 is in the future (the import "
        "runs at 2026-03-02T09:00:00+00:00); a lead cannot have been active yet",
    ]
    assert rows(engine, "leads", "external_id", "last_activity_at") == [
        ("L1", None),
        ("L3", datetime(2026, 3, 2, 9, 4, tzinfo=UTC)),
    ]
    deals = write(
        tmp_path,
        "deals.csv",
        "external_id,lead,stage,last_activity_at\nD1,L1,Engaging,2027-01-01\nD2,L1,Engaging,\n",
    )
    report = import_file(engine, settings, "deals", deals, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{deals}:2: last_activity_at: 2027-01-01T00:00:00+00:00 is in the future (the import "
        "runs at 2026-03-02T09:00:00+00:00); a deal cannot have been active yet",
    ]
    assert rows(engine, "deals", "external_id") == [("D2",)]


def test_a_stage_entered_a_few_minutes_ahead_is_the_crms_clock(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """``stage_entered_at`` refused any time past the import's clock, so a lead the CRM moved
    to MQL a minute before the export, by a clock a minute ahead of ours, was lost; up to
    5 minutes ahead is the CRM's clock, as for every other time, and later is refused."""
    settings = make_settings()
    clock = SettableClock(T0)
    import_rep_and_lead(engine, settings, tmp_path, clock)
    leads = write(
        tmp_path,
        "leads.csv",
        "external_id,email,stage,stage_entered_at\n"
        "L2,l2@example.com,mql,2026-03-02T09:04:00Z\n"
        "L3,l3@example.com,mql,2026-03-02T09:06:00Z\n",
    )
    report = import_file(engine, settings, "leads", leads, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{leads}:3: stage_entered_at: 2026-03-02T09:06:00+00:00 is in the future (the import "
        "runs at 2026-03-02T09:00:00+00:00); a lead cannot have entered its stage yet",
    ]
    assert rows(engine, "leads", "external_id", "stage", "stage_entered_at") == [
        ("L1", "lead", T0),
        ("L2", "mql", datetime(2026, 3, 2, 9, 4, tzinfo=UTC)),
    ]
