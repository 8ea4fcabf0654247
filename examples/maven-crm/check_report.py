"""Check ``leadflow report``'s pipeline figures per product against the raw Maven CSV.

Reads only ``sales_pipeline.csv`` with the standard library and applies docs/report.md's
definitions by hand (dates are midnight UTC, "GTXPro" is "GTX Pro" as the import maps it):

- win rate = won / (won + lost) over deals closed in [from, to + 1 day);
- average won cycle = mean of close_date - engage_date in days over those won deals;
- average won amount = mean close_value of those won deals;
- open opportunities = deals engaged before the end and not closed before it;
- velocity = open x win rate x average won amount / average won cycle;
- deals entering each stage: ``Engaging`` = deals engaged in the period (the import's
  ``stages.deal_open``), ``won`` and ``lost`` = deals closed so in it.

Then runs ``leadflow report --format json --by product`` on the store and compares every figure
(to 1e-9 relative); exits 1 on any difference.

    python check_report.py $D/sales_pipeline.csv --from 2017-01-01 --to 2017-12-31 -c config.yaml
    python check_report.py $D/sales_pipeline.csv --from 2017-01-01 --to 2017-12-31 --now 2017-06-30

With ``--now DAY`` the report is read as of that day's start and the figures by hand are the
period's up to it, that instant included (docs/report.md, "As of").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta


def _day(text: str) -> datetime | None:
    return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC) if text else None


def by_hand(path: str, start: datetime, end: datetime) -> dict[str, dict[str, float | None]]:
    groups: dict[str, dict[str, list[float] | int]] = defaultdict(
        lambda: {"won": 0, "lost": 0, "cycles": [], "amounts": [], "open": 0, "engaged": 0}
    )
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            product = "GTX Pro" if row["product"] == "GTXPro" else row["product"]
            group = groups[product]
            engaged, closed = _day(row["engage_date"]), _day(row["close_date"])
            stage = row["deal_stage"]
            if closed is not None and start <= closed < end and stage in ("Won", "Lost"):
                if stage == "Won":
                    group["won"] += 1  # type: ignore[operator]
                    group["amounts"].append(float(row["close_value"]))  # type: ignore[union-attr]
                    if engaged is not None:
                        days = (closed - engaged).total_seconds() / 86400
                        group["cycles"].append(days)  # type: ignore[union-attr]
                else:
                    group["lost"] += 1  # type: ignore[operator]
            if engaged is not None and start <= engaged < end:
                group["engaged"] += 1  # type: ignore[operator]
            if engaged is not None and engaged < end and (closed is None or closed >= end):
                group["open"] += 1  # type: ignore[operator]
    figures = {}
    for product, g in groups.items():
        won, lost = int(g["won"]), int(g["lost"])  # type: ignore[arg-type]
        cycles, amounts = list(g["cycles"]), list(g["amounts"])  # type: ignore[arg-type]
        if not (won or lost or g["open"] or g["engaged"]):
            continue
        rate = won / (won + lost) if won + lost else None
        cycle = sum(cycles) / len(cycles) if cycles else None
        amount = sum(amounts) / len(amounts) if amounts else None
        velocity = (
            g["open"] * rate * amount / cycle if rate is not None and amount and cycle else None
        )
        figures[product] = {
            "won": won,
            "lost": lost,
            "win_rate": rate,
            "average_won_cycle_days": cycle,
            "average_won_amount": amount,
            "open_opportunities": g["open"],
            "velocity_per_day": velocity,
            "entered": {"Engaging": g["engaged"], "won": won, "lost": lost},
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    parser.add_argument("-c", "--config", default="config.yaml")
    parser.add_argument("--now", help="a day: the report read as of it (nothing after counts)")
    args = parser.parse_args()
    start = _day(args.start)
    end = _day(args.end) + timedelta(days=1)  # --to names the last day, included
    # Read as of now when the period ends later: the period's figures up to now, now itself
    # included (a close dated that day, midnight, has happened), as if the period ended a
    # microsecond later; open at now.
    as_of = end if args.now is None else min(end, _day(args.now) + timedelta(microseconds=1))
    expected = by_hand(args.pipeline, start, as_of)
    command = ["leadflow", "-c", args.config, "report", "--from", args.start, "--to", args.end]
    if args.now is not None:
        command += ["--now", args.now]
    shown = subprocess.run(  # noqa: S603 (a fixed argv of the installed leadflow, no shell)
        [*command, "--by", "product", "--format", "json"], check=True, capture_output=True
    )
    document = json.loads(shown.stdout)
    report: dict[str, dict[str, object]] = {line["group"]: line for line in document["pipeline"]}
    for line in document["deal_stage_entries"]:
        entered = report.setdefault(line["group"], {}).setdefault("entered", {})
        entered[line["stage"]] = line["entered"]  # type: ignore[index]
    differences = 0
    for product in sorted(set(expected) | set(report)):
        mine, theirs = expected.get(product, {}), report.get(product, {})
        for name, value in mine.items():
            other = theirs.get(name)
            if name == "entered":  # a stage nobody entered is not a row
                other = {stage: other.get(stage, 0) for stage in value} if other else None
                if value != other:
                    differences += 1
                    print(f"{product} entered: by hand {value}, report {other}")
                continue
            same = (value is None and other is None) or (
                value is not None and other is not None and math.isclose(value, other, rel_tol=1e-9)
            )
            if not same:
                differences += 1
                print(f"{product} {name}: by hand {value}, report {other}")
        print(
            f"{product:15} won {mine.get('won'):>4} lost {mine.get('lost'):>4} "
            f"win rate {mine.get('win_rate') or 0:.4f} cycle {mine.get('average_won_cycle_days') or 0:.4f} d "
            f"amount {mine.get('average_won_amount') or 0:.2f} open {mine.get('open_opportunities')} "
            f"velocity {mine.get('velocity_per_day') or 0:.2f}/d; entered {mine.get('entered')}"
        )
    print("same figures" if not differences else f"{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
