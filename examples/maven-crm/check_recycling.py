"""Which open Maven CRM deals should the shipped recycling rule close, worked out from the CSV.

Independent of leadflow: only the standard library reads ``sales_pipeline.csv`` and applies
the definitions of docs/rules.md by hand, so its answer can be held against what leadflow did.

- Average sales cycle: mean of ``close_date - engage_date`` in days over deals *Won* with a
  close date in the 365 days before the as-of instant; per product when the product has at
  least 20 such deals, else the overall mean.
- Idle: ``as_of - engage_date`` (the export has no activity dates). Deals with no engage date
  (Prospecting) are not idle-checked.
- Recycled: an open deal (neither Won nor Lost) idle for more than twice its average.

Usage (from this folder, after the import and ``leadflow run --once --now ...``):

    python check_recycling.py /work/shared/data/maven-crm/sales_pipeline.csv \\
        --as-of 2017-12-31T12:00:00Z --store state/maven.db

With ``--store`` the deals the store marks recycled are compared with the expected set.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

WINDOW = timedelta(days=365)
MIN_DEALS = 20
FACTOR = 2.0
SPELLINGS = {"GTXPro": "GTX Pro"}  # the pipeline's spelling of products.csv's "GTX Pro"


@dataclass(frozen=True)
class Deal:
    opportunity_id: str
    product: str
    stage: str
    engaged: datetime | None
    closed: datetime | None


def day(text: str) -> datetime | None:
    """A ``YYYY-MM-DD`` cell as midnight UTC (the import's ``timezone: UTC``), or None."""
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) if text else None


def read_deals(path: Path) -> list[Deal]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Deal(
                row["opportunity_id"],
                SPELLINGS.get(row["product"], row["product"]),
                row["deal_stage"],
                day(row["engage_date"]),
                day(row["close_date"]),
            )
            for row in csv.DictReader(handle)
        ]


def average_cycles(deals: list[Deal], as_of: datetime) -> tuple[float, dict[str, list[float]]]:
    """The overall mean cycle in days, and every product's won cycles in the window."""
    cycles: dict[str, list[float]] = defaultdict(list)
    for deal in deals:
        if deal.stage != "Won" or deal.engaged is None or deal.closed is None:
            continue
        if as_of - WINDOW <= deal.closed <= as_of:
            cycles[deal.product].append((deal.closed - deal.engaged).total_seconds() / 86400)
    every = [days for values in cycles.values() for days in values]
    return sum(every) / len(every), dict(cycles)


def expected_recycled(
    deals: list[Deal], as_of: datetime
) -> tuple[dict[str, float], float, set[str]]:
    """Per-product average used (fallback applied), the overall mean, and the recycled ids."""
    overall, cycles = average_cycles(deals, as_of)
    used = {
        product: (sum(values) / len(values) if len(values) >= MIN_DEALS else overall)
        for product, values in cycles.items()
    }
    recycled = set()
    for deal in deals:
        if deal.stage in ("Won", "Lost") or deal.engaged is None:
            continue
        average = used.get(deal.product, overall)
        idle = (as_of - deal.engaged).total_seconds() / 86400
        if idle > FACTOR * average:
            recycled.add(deal.opportunity_id)
    return used, overall, recycled


def report(csv_path: Path, as_of: datetime, store: Path | None) -> int:
    deals = read_deals(csv_path)
    used, overall, recycled = expected_recycled(deals, as_of)
    _overall, cycles = average_cycles(deals, as_of)
    stages = Counter(deal.stage for deal in deals)
    print(f"deals by stage: {dict(sorted(stages.items()))}")
    no_engage = sum(1 for d in deals if d.stage not in ("Won", "Lost") and d.engaged is None)
    print(f"open deals without an engage date (not idle-checked): {no_engage}")
    won = sum(len(values) for values in cycles.values())
    print(f"won deals closed in the window: {won}, overall average {overall:.4f} days")
    by_product = Counter(
        SPELLINGS.get(d.product, d.product) for d in deals if d.opportunity_id in recycled
    )
    for product in sorted(used):
        fallback = "" if len(cycles[product]) >= MIN_DEALS else " (fallback to overall)"
        print(
            f"  {product}: {len(cycles[product])} won, average {used[product]:.4f} days, "
            f"threshold {FACTOR * used[product]:.4f}{fallback}; recycled {by_product[product]}"
        )
    print(f"expected recycled: {len(recycled)}")
    if store is None:
        return 0
    with sqlite3.connect(store) as connection:
        rows = connection.execute("select external_id from deals where outcome = 'recycled'")
        actual = {row[0] for row in rows}
    print(f"recycled in the store: {len(actual)}")
    print(f"only expected: {sorted(recycled - actual)}")
    print(f"only in the store: {sorted(actual - recycled)}")
    return 0 if actual == recycled else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="sales_pipeline.csv")
    parser.add_argument("--as-of", required=True, help="ISO instant, e.g. 2017-12-31T12:00:00Z")
    parser.add_argument("--store", type=Path, help="the SQLite store leadflow wrote")
    options = parser.parse_args()
    as_of = datetime.fromisoformat(options.as_of.replace("Z", "+00:00"))
    return report(options.pipeline, as_of, options.store)


if __name__ == "__main__":
    sys.exit(main())
