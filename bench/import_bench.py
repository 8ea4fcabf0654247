"""Import benchmark: a generated 1,000,000-row leads CSV into a fresh SQLite store.

    .venv/bin/python bench/import_bench.py [--rows N] [--baseline-rows N]

Each measurement runs in a child process, so its peak memory (``ru_maxrss`` of the child) is
the import's own. The naive baseline (one ORM object and one commit per row) runs on a sample
in the same run and is extrapolated as rows per second. Files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

TARGET_ROWS_PER_SECOND = 50_000
TARGET_PEAK_MB = 300
INDUSTRIES = ("software", "retail", "medical", "finance", "telecommunications", "entertainment")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
CONFIG = """\
database:
  url: sqlite:///{db}
attributes:
  leads: {{industry: string, employees: integer, signed_up: date, newsletter: boolean}}
import:
  batch_size: 5000
  mappings:
    leads:
      columns: {{Lead ID: external_id, Email: email, Full Name: name, Company: company}}
"""


def generate(path: Path, rows: int) -> None:
    """A deterministic CSV shaped like a CRM export: foreign headers, dates, Yes/No."""
    pick = random.Random(2017)
    start = date(2016, 1, 1)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        header = ["Lead ID", "Email", "Full Name", "Company", "industry", "employees"]
        writer.writerow([*header, "signed_up", "newsletter"])
        for n in range(rows):
            first, last = pick.choice(FIRST), pick.choice(LAST)
            writer.writerow(
                [
                    f"L{n:07d}",
                    f"{first}.{last}.{n}@example.com".lower(),
                    f"{first} {last}",
                    f"Company {n % 5000}",
                    INDUSTRIES[n % len(INDUSTRIES)],
                    pick.randrange(1, 20_000),
                    (start + timedelta(days=n % 700)).strftime("%d-%m-%Y"),
                    "Yes" if n % 3 else "No",
                ]
            )


def child_import(config: Path, csv_path: Path) -> dict[str, float]:
    """Runs in the child: migrate (not timed), then the timed import."""
    from leadflow.clock import SystemClock
    from leadflow.config import load_settings
    from leadflow.ingest import import_file
    from leadflow.store.database import engine_for, migrate

    settings = load_settings(config, env={}).settings
    engine = engine_for(settings)
    migrate(engine)
    started, cpu = time.perf_counter(), time.process_time()
    report = import_file(engine, settings, "leads", csv_path, clock=SystemClock())
    elapsed = time.perf_counter() - started
    assert report.rejected == 0, report.problems[:3]
    return {"rows": report.counts.inserted, "seconds": elapsed, "cpu": time.process_time() - cpu}


def child_baseline(config: Path, csv_path: Path, rows: int) -> dict[str, float]:
    """Runs in the child: the naive way, one ORM object and one commit per row."""
    from sqlmodel import Session

    from leadflow.config import load_settings
    from leadflow.store.database import engine_for, migrate
    from leadflow.store.models import Lead

    settings = load_settings(config, env={}).settings
    engine = engine_for(settings)
    migrate(engine)
    now = datetime.now(UTC)
    started, cpu = time.perf_counter(), time.process_time()
    with csv_path.open(newline="", encoding="utf-8") as source, Session(engine) as session:
        reader = csv.DictReader(source)
        for count, row in enumerate(reader):
            if count >= rows:
                break
            signed = datetime.strptime(row["signed_up"], "%d-%m-%Y").date().isoformat()  # noqa: DTZ007
            attributes = {
                "industry": row["industry"],
                "employees": int(row["employees"]),
                "signed_up": signed,
                "newsletter": row["newsletter"] == "Yes",
            }
            session.add(
                Lead(
                    external_id=row["Lead ID"],
                    email=row["Email"],
                    name=row["Full Name"],
                    company=row["Company"],
                    attributes=attributes,
                    stage_entered_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.commit()
    return {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
    }


def measure(*args: str) -> tuple[dict[str, float], float]:
    """Run this script as a child with ``args``; its result and its peak RSS in MB."""
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    # The maximum over every child waited for so far: the import child runs first, so this is
    # its own peak; the baseline's reading would be bounded below by it (and is not shown).
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(done.stdout.strip().splitlines()[-1]), peak_kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "CONFIG", "CSV"), help=argparse.SUPPRESS
    )
    options = parser.parse_args()
    if options.child:
        mode, config, csv_path = options.child
        if mode == "import":
            result = child_import(Path(config), Path(csv_path))
        else:
            result = child_baseline(Path(config), Path(csv_path), options.baseline_rows)
        print(json.dumps(result))
        return 0
    return run(options.rows, options.baseline_rows)


def run(rows: int, baseline_rows: int) -> int:
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as folder:
        root = Path(folder)
        csv_path = root / "leads.csv"
        started = time.perf_counter()
        generate(csv_path, rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"generated {rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s"
        )
        results = []
        for mode, extra in (("import", []), ("baseline", ["--baseline-rows", str(baseline_rows)])):
            config = root / f"{mode}.yaml"
            config.write_text(CONFIG.format(db=root / f"{mode}.db"), encoding="utf-8")
            result, peak = measure(*extra, "--child", mode, str(config), str(csv_path))
            results.append((mode, result, peak))
    print()
    print(
        f"{'method':<34} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'rows/CPU-s':>10} {'peak MB':>8}"
    )
    for mode, result, peak in results:
        label = (
            "leadflow import (batched upsert)" if mode == "import" else "naive ORM, commit per row"
        )
        rate, cpu_rate = result["rows"] / result["seconds"], result["rows"] / result["cpu"]
        shown_peak = f"{peak:.0f}" if mode == "import" else "-"
        print(
            f"{label:<34} {int(result['rows']):>10,} {result['seconds']:>8.1f} {rate:>9,.0f} "
            f"{cpu_rate:>10,.0f} {shown_peak:>8}"
        )
    print("(rows/s is wall-clock time; rows/CPU-s excludes waiting for other processes' CPU)")
    _mode, imported, peak = results[0]
    rate = imported["rows"] / imported["seconds"]
    baseline = results[1][1]["rows"] / results[1][1]["seconds"]
    print(f"\nspeed-up over the naive baseline: {rate / baseline:.0f}x")
    ok = rate >= TARGET_ROWS_PER_SECOND and peak < TARGET_PEAK_MB
    verdict = "met" if ok else "NOT met"
    print(f"targets (>= {TARGET_ROWS_PER_SECOND:,} rows/s, < {TARGET_PEAK_MB} MB): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
