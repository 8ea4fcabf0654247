"""What the score marks (``leadflow/store/score_marks.py``) cost an activity insert on SQLite.

The triggers mark the lead of every activity written, so a steady rescoring pass reads only the
leads due. On SQLite they are row triggers: each inserted activity runs one primary-key probe
of its lead (and one write, the first time since the lead's last pass). Measured: 300,000
activities on 20,000 scored leads inserted by one executemany, in a fresh store with the
triggers and in one without them, alternated, in the same run.

    cd bench && ../.venv/bin/python score_marks_bench.py [--rounds 3] [--activities 300000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe
from sqlalchemy import insert

from leadflow.store.database import create_store_engine, migrate
from leadflow.store.score_marks import SQLITE_DROP
from leadflow.store.tables import ACTIVITIES, LEADS

AT = datetime(2026, 1, 1, tzinfo=UTC)
LEADS_SCORED = 20_000


def insert_seconds(folder: Path, activities: int, *, marks: bool) -> float:
    engine = create_store_engine(f"sqlite:///{folder / ('marks.db' if marks else 'bare.db')}")
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": number,
                    "external_id": f"L{number}",
                    "score": 0,
                    "stage": "lead",
                    "stage_entered_at": AT,
                    "attributes": {},
                    "created_at": AT,
                    "updated_at": AT,
                    "score_next_change_day": 30_000.0,  # scored, next change far ahead
                }
                for number in range(1, LEADS_SCORED + 1)
            ],
        )
        if not marks:
            for statement in SQLITE_DROP:
                connection.exec_driver_sql(statement)
    rows = [
        {
            "external_id": f"A{number}",
            "lead_id": 1 + number % LEADS_SCORED,
            "type": "page_view",
            "occurred_at": AT,
            "properties": {},
            "created_at": AT,
        }
        for number in range(activities)
    ]
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(ACTIVITIES), rows)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--activities", type=int, default=300_000)
    args = parser.parse_args()
    with_marks: list[float] = []
    without: list[float] = []
    loads: list[float] = []
    for _round in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            with_marks.append(insert_seconds(Path(tmp), args.activities, marks=True))
            without.append(insert_seconds(Path(tmp), args.activities, marks=False))
        loads.append(os.getloadavg()[0])
    marked, bare = statistics.median(with_marks), statistics.median(without)
    print(f"{describe()}; load average {min(loads):.1f}-{max(loads):.1f}")
    print(
        f"{args.activities:,} activities on {LEADS_SCORED:,} scored leads, one executemany, "
        f"medians of {args.rounds} rounds (min-max):"
    )
    print(
        f"  with the score marks {marked:.2f} s ({min(with_marks):.2f}-{max(with_marks):.2f}), "
        f"without {bare:.2f} s ({min(without):.2f}-{max(without):.2f}): {marked / bare:.2f}x"
    )


if __name__ == "__main__":
    main()
