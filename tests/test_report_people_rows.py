"""What a person reads of the report's conversion tables: pairs with no entry on either side
are left out of the terminal and HTML tables (and the tables say how many); CSV and JSON keep
every row."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from leadflow.funnel.text import OVER_ONE, for_people, left_out_note, shown

DOC = Path(__file__).resolve().parents[1] / "docs" / "report.md"


def _pair(group: str, from_stage: str, to_stage: str, base: int, converted: int) -> dict[str, Any]:
    return {
        "kind": "period",
        "group": group,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "base": base,
        "converted": converted,
        "rate": converted / base if base else None,
    }


def test_pairs_with_no_entry_on_either_side_are_left_out() -> None:
    """Rep 01: lead -> mql (0 entries into lead, 4 into mql) and mql -> sql (4, 0) stay;
    subscriber -> lead and sql -> opportunity (0, 0) go: 2 left out."""
    rows = [
        _pair("Rep 01", "subscriber", "lead", 0, 0),
        _pair("Rep 01", "lead", "mql", 0, 4),
        _pair("Rep 01", "mql", "sql", 4, 0),
        _pair("Rep 01", "sql", "opportunity", 0, 0),
    ]
    for name in ("conversion", "requalified", "weekly_conversion"):
        kept, notes = for_people(name, rows)
        assert (kept, notes) == ([rows[1], rows[2]], [left_out_note(2)])
    assert left_out_note(2) == (
        "2 pairs with no entry into either stage in the period are not shown "
        "(--format csv and json list every pair)."
    )
    assert left_out_note(1) == (
        "1 pair with no entry into either stage in the period is not shown "
        "(--format csv and json list every pair)."
    )


def test_other_sections_keep_every_row() -> None:
    """A zero is a figure elsewhere: an SLA line with nothing ended, an empty pipeline."""
    rows = [{"group": "Rep 01", "base": 0, "converted": 0, "started": 0}]
    assert for_people("sla", rows) == (rows, [])
    assert for_people("pipeline", rows) == (rows, [])


def test_a_period_rate_above_one_is_explained() -> None:
    """Period conversion 4 of 3 (133 %): the table says why a rate can pass 100 %; a cohort
    rate cannot, and a period rate of 100 % needs no word."""
    over = [_pair("all", "lead", "mql", 3, 4)]
    assert for_people("conversion", over) == (over, [OVER_ONE])
    assert for_people("weekly_conversion", over) == (over, [OVER_ONE])
    whole = [_pair("all", "lead", "mql", 3, 3), {**_pair("all", "mql", "sql", 2, 1)}]
    assert for_people("conversion", whole) == (whole, [])


def test_the_values_printed_are_the_docs() -> None:
    """docs/report.md's table of the values a table prints, example by example (t2report D5:
    it said "decimals to two places" where rates print one, 63.2%): each JSON value of its
    column is printed as the doc shows it, and every kind is there."""
    text = DOC.read_text(encoding="utf-8")
    examples = re.findall(r"`(\w+)` `([^`]+)` → `([^`]+)`", text)
    printed = [(column, shown(json.loads(value), column)) for column, value, _ in examples]
    assert printed == [(column, table) for column, _, table in examples]
    assert printed == [
        ("win_rate", "63.2%"),
        ("rate", "200.0%"),
        ("won", "4,238"),
        ("average_won_amount", "2,360.91"),
        ("median_days", "45.00"),
        ("conversions", "3"),
        ("conversions", "0.33"),
        ("open_value", "-"),
    ]
    assert "decimals to two places" not in text
