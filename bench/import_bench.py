"""Import benchmark: generated leads CSVs of two shapes into fresh SQLite and PostgreSQL stores.

    .venv/bin/python bench/import_bench.py [--rows N] [--rounds N] [--baseline-rows N]
                                           [--shapes bench,crm] [--stores sqlite,postgresql]

Two shapes of file, 1,000,000 rows each by default:

* ``bench``: the benchmark's own narrow rows (8 columns, 4 declared attributes, none indexed);
* ``crm``: the columns a CRM export has (16: names, job title, phone, stage, owner-free
  lifecycle fields, scores, dates, Yes/No), three of them declared attributes, two of those
  indexed (``attributes.indexed``), the rest mapped to lead fields or to ``skip``.

Each import runs the machinery of ``leadflow import leads FILE``: the store is opened, migrated
and given its attribute indexes as the command does (not timed), then ``import_file`` is timed.
Each measurement runs in a child process of its own, which reports its own peak memory
(``ru_maxrss``) plus that of the import's reading process, if it had one. The naive baseline (one ORM object and one commit per row) runs on
``--baseline-rows`` rows of the same file, in the same run, against the same kind of store, and
is extrapolated as rows per second. Each round imports every shape into every store, then runs
the baselines; the table shows the median of the rounds and their spread (min-max).

PostgreSQL is ``LEADFLOW_BENCH_PG_URL`` (default: the local server's ``test`` database); every
measurement gets a schema of its own (``lf_bench_...``), dropped afterwards. Files go to a
temporary folder.

On a loaded 2-core machine all of it takes longer than 5 minutes; one shape and store per
invocation stays under it (``--rounds 1 --shapes crm --stores sqlite``, and so on), and
``--rows 200000`` scales a comparison down.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET_ROWS_PER_SECOND = 50_000
RUSAGE_SELF, RUSAGE_CHILDREN = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
TARGET_PEAK_MB = 300
PG_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INDUSTRIES = ("software", "retail", "medical", "finance", "telecommunications", "entertainment")
COUNTRIES = ("Germany", "France", "United States", "Japan", "Brazil", "India", "Kenya", "Canada")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
TITLES = ("CTO", "Head of Sales", "Engineer", "Marketing Manager", "CEO", "Buyer", "Analyst")
SOURCES = ("Organic Search", "Paid Search", "Referral", "Email", "Direct Traffic", "Events")
STAGES = {"Lead": "lead", "Subscriber": "subscriber", "Marketing Qualified Lead": "mql"}

BENCH_CONFIG = """\
database:
  url: {url}
attributes:
  leads: {{industry: string, employees: integer, signed_up: date, newsletter: boolean}}
import:
  mappings:
    leads:
      columns: {{Lead ID: external_id, Email: email, Full Name: name, Company: company}}
      date_formats: ["%d-%m-%Y"]
"""

CRM_CONFIG = """\
database:
  url: {url}
attributes:
  leads: {{industry: string, country: string, employees: integer}}
  indexed: [industry, country]
import:
  mappings:
    leads:
      columns:
        Record ID: external_id
        Email: email
        Full Name: name
        Company Name: company
        Job Title: skip
        Phone Number: skip
        City: skip
        Country/Region: attributes.country
        Industry: attributes.industry
        Number of Employees: attributes.employees
        Lifecycle Stage: stage
        HubSpot Score: score
        Original Source: skip
        Create Date: skip
        Last Activity Date: last_activity_at
        Unsubscribed from all email: unsubscribed
      values:
        stage: {{Lead: lead, Subscriber: subscriber, Marketing Qualified Lead: mql}}
      date_formats: ["%d-%m-%Y %H:%M"]
"""


def generate_bench(path: Path, rows: int) -> None:
    """The benchmark's own narrow rows: foreign headers, day-first dates, Yes/No."""
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


CRM_HEADER = [
    "Record ID",
    "Email",
    "Full Name",
    "Company Name",
    "Job Title",
    "Phone Number",
    "City",
    "Country/Region",
    "Industry",
    "Number of Employees",
    "Lifecycle Stage",
    "HubSpot Score",
    "Original Source",
    "Create Date",
    "Last Activity Date",
    "Unsubscribed from all email",
]


def generate_crm(path: Path, rows: int) -> None:
    """A CRM contacts export: 16 columns, day-first times, some empty cells, Yes/No."""
    pick = random.Random(2024)
    start = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)
    stages = list(STAGES)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CRM_HEADER)
        for n in range(rows):
            first, last = pick.choice(FIRST), pick.choice(LAST)
            created = start + timedelta(minutes=n % 50_000)
            active = created + timedelta(days=pick.randrange(0, 400))
            writer.writerow(
                [
                    str(100_000_000 + n),
                    f"{first}.{last}.{n}@example.com".lower(),
                    f"{first} {last}",
                    f"{last} {pick.choice(('GmbH', 'Inc', 'Ltd', 'SA'))} {n % 5000}",
                    pick.choice(TITLES),
                    f"+49 30 {pick.randrange(1_000_000, 9_999_999)}" if n % 4 else "",
                    pick.choice(("Berlin", "Paris", "Austin", "Osaka", "Recife", "Pune")),
                    COUNTRIES[n % len(COUNTRIES)],
                    INDUSTRIES[n % len(INDUSTRIES)],
                    str(pick.randrange(1, 20_000)) if n % 5 else "",
                    stages[n % len(stages)],
                    str(pick.randrange(0, 100)),
                    pick.choice(SOURCES),
                    created.strftime("%d-%m-%Y %H:%M"),
                    active.strftime("%d-%m-%Y %H:%M") if n % 7 else "",
                    "Yes" if n % 11 == 0 else "No",
                ]
            )


def naive_bench(row: dict[str, str]) -> dict[str, Any]:
    signed = datetime.strptime(row["signed_up"], "%d-%m-%Y").date().isoformat()  # noqa: DTZ007
    return {
        "external_id": row["Lead ID"],
        "email": row["Email"],
        "name": row["Full Name"],
        "company": row["Company"],
        "attributes": {
            "industry": row["industry"],
            "employees": int(row["employees"]),
            "signed_up": signed,
            "newsletter": row["newsletter"] == "Yes",
        },
    }


def naive_crm(row: dict[str, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "country": row["Country/Region"],
        "industry": row["Industry"],
    }
    if row["Number of Employees"]:
        attributes["employees"] = int(row["Number of Employees"])
    active = row["Last Activity Date"]
    return {
        "external_id": row["Record ID"],
        "email": row["Email"],
        "name": row["Full Name"],
        "company": row["Company Name"],
        "attributes": attributes,
        "stage": STAGES[row["Lifecycle Stage"]],
        "score": int(row["HubSpot Score"]),
        "last_activity_at": (
            datetime.strptime(active, "%d-%m-%Y %H:%M").replace(tzinfo=UTC) if active else None
        ),
        "unsubscribed": row["Unsubscribed from all email"] == "Yes",
    }


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    config: str
    generate: Callable[[Path, int], None]
    naive: Callable[[dict[str, str]], dict[str, Any]]


SHAPES = {
    "bench": Shape(
        "bench",
        "bench's own rows: 8 columns, 4 attributes",
        BENCH_CONFIG,
        generate_bench,
        naive_bench,
    ),
    "crm": Shape(
        "crm",
        "CRM export: 16 columns, 3 attributes (2 indexed)",
        CRM_CONFIG,
        generate_crm,
        naive_crm,
    ),
}


def _open_store(config: Path) -> tuple[Any, Any]:
    """The settings and engine, opened as ``leadflow import`` opens them (CliContext.engine)."""
    from leadflow.config import load_settings
    from leadflow.store.database import engine_for, ensure_attribute_indexes, migrate
    from leadflow.store.tables import LEADS

    settings = load_settings(config, env={}).settings
    engine = engine_for(settings)
    migrate(engine)
    attributes = settings.attributes
    ensure_attribute_indexes(engine, LEADS, attributes.leads, attributes.indexed)
    return settings, engine


def child_import(config: Path, csv_path: Path) -> dict[str, float]:
    """Runs in the child: open the store (not timed), then the timed import."""
    from leadflow.clock import SystemClock
    from leadflow.ingest import import_file

    settings, engine = _open_store(config)
    backends = _server_processes(engine)
    started, cpu = time.perf_counter(), time.process_time()
    reader, server = _children_cpu(), _server_cpu(backends)
    report = import_file(engine, settings, "leads", csv_path, clock=SystemClock())
    elapsed = time.perf_counter() - started
    assert report.rejected == 0, report.problems[:3]
    return {
        "rows": report.counts.inserted,
        "seconds": elapsed,
        "cpu": time.process_time() - cpu,
        "reader_cpu": _children_cpu() - reader,
        "server_cpu": _server_cpu(backends) - server,
    }


def _server_processes(engine: Any) -> set[int]:
    """The PostgreSQL server processes of ``engine``'s connections (the server is on this
    machine), filled as connections open: their CPU is the server's share of the import."""
    from sqlalchemy import event

    pids: set[int] = set()
    if engine.dialect.name != "postgresql":
        return pids

    @event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, _record: Any) -> None:
        pids.add(dbapi_connection.info.backend_pid)

    engine.dispose()  # the migration's connections: opened again, and so seen
    return pids


def _server_cpu(pids: set[int]) -> float:
    """CPU seconds of those server processes so far (not the parallel index builds' workers)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def child_floor(config: Path, csv_path: Path) -> dict[str, float]:
    """Runs in the child: the CRM rows with no leadflow code: the csv module's cells, the
    columns picked, the stage renamed, the attributes as JSON text, the day-first times as the
    store's text; into the same table without its secondary indexes, one history row per lead
    by one ``INSERT ... SELECT``, the indexes built after, one transaction. What the store and
    the csv module take at least: no checks, no hash, no upsert, no second process."""
    _settings, engine = _open_store(config)
    stages = {"Lead": "lead", "Subscriber": "subscriber", "Marketing Qualified Lead": "mql"}
    dumps = json.dumps
    started, cpu = time.perf_counter(), time.process_time()
    raw = engine.raw_connection()
    driver = raw.driver_connection
    postgres = engine.dialect.name == "postgresql"
    backend = {driver.info.backend_pid} if postgres else set()
    server = _server_cpu(backend)
    cursor = driver.cursor()
    if postgres:
        cursor.execute("SET LOCAL statement_timeout = 0")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        found = cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relname IN ('leads', 'stage_changes') AND t.relnamespace = "
            " (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
            " AND NOT x.indisunique AND NOT x.indisprimary"
            " AND i.relname NOT IN ('ix_stage_changes_lead', 'ix_stage_changes_deal')"
        ).fetchall()
    else:
        cursor.execute("BEGIN")
        found = cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('leads', 'stage_changes')"
            " AND name NOT IN ('ix_stage_changes_lead', 'ix_stage_changes_deal')"
            " AND sql NOT LIKE 'CREATE UNIQUE%'"
        ).fetchall()
    for name, _create in found:
        cursor.execute(f"DROP INDEX {name}")
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    names = (
        "external_id, email, name, company, attributes, stage, score, last_activity_at,"
        " unsubscribed, stage_entered_at, created_at, updated_at, do_not_email, hard_bounced"
    )

    def when(text: str) -> str | None:
        return f"{text[6:10]}-{text[3:5]}-{text[:2]} {text[11:16]}:00" if text else None

    with csv_path.open(newline="", encoding="utf-8") as source:
        cells = csv.reader(source)
        next(cells)
        rows = (
            (
                c[0], c[1] or None, c[2] or None, c[3] or None,
                dumps({"country": c[7], "industry": c[8], "employees": int(c[9])} if c[9]
                      else {"country": c[7], "industry": c[8]}),
                stages[c[10]], int(c[11]), when(c[14]), c[15] == "Yes",
                now, now, now, False, False,
            )
            for c in cells
        )  # fmt: skip
        if postgres:
            with cursor.copy(f"COPY leads ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * 14)
            cursor.executemany(f"INSERT INTO leads ({names}) VALUES ({marks})", rows)
    cursor.execute(
        "INSERT INTO stage_changes (lead_id, at, to_stage, cause, source)"
        " SELECT id, stage_entered_at, stage, 'import', 'floor' FROM leads"
    )
    for _name, create in found:
        cursor.execute(create)
    driver.commit()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = _server_cpu(backend) - server
    raw.close()
    with csv_path.open(encoding="utf-8") as lines:
        rows = sum(1 for _ in lines) - 1
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "server_cpu": server}


def _children_cpu() -> float:
    """CPU seconds of the joined child processes: the import's reading process, if it had one."""
    usage = resource.getrusage(RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_baseline(config: Path, csv_path: Path, shape: Shape, rows: int) -> dict[str, float]:
    """Runs in the child: the naive way, one ORM object and one commit per row."""
    from sqlmodel import Session

    from leadflow.store.models import Lead

    _settings, engine = _open_store(config)
    now = datetime.now(UTC)
    started, cpu = time.perf_counter(), time.process_time()
    with csv_path.open(newline="", encoding="utf-8") as source, Session(engine) as session:
        reader = csv.DictReader(source)
        for count, row in enumerate(reader):
            if count >= rows:
                break
            fields = {"stage_entered_at": now, "created_at": now, "updated_at": now}
            session.add(Lead(**fields, **shape.naive(row)))
            session.commit()
    return {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
    }


@contextmanager
def fresh_store(root: Path, store: str, label: str) -> Iterator[str]:
    """The URL of an empty store of its own: a new SQLite file, or a new PostgreSQL schema."""
    if store == "sqlite":
        path = root / f"{label}-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"lf_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def measure(
    root: Path, shape: Shape, store: str, mode: str, csv_path: Path, extra: list[str]
) -> dict[str, float]:
    """Run this script as a child measuring ``mode``; its result, with its own peak RSS in MB."""
    with fresh_store(root, store, f"{shape.name}-{mode}") as url:
        config = root / f"{shape.name}-{store}-{mode}.yaml"
        config.write_text(shape.config.format(url=json.dumps(url)), encoding="utf-8")
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                *extra,
                "--child",
                mode,
                shape.name,
                str(config),
                str(csv_path),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        msg = f"{mode} of {shape.name} into {store} failed"
        raise SystemExit(msg)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rows", type=int, default=3_000)
    parser.add_argument("--shapes", default="bench,crm")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--child", nargs=4, metavar=("MODE", "SHAPE", "CONFIG", "CSV"), help=argparse.SUPPRESS
    )
    options = parser.parse_args()
    if options.child:
        mode, shape_name, config, csv_path = options.child
        if mode == "import":
            result = child_import(Path(config), Path(csv_path))
        elif mode == "floor":
            result = child_floor(Path(config), Path(csv_path))
        else:
            shape = SHAPES[shape_name]
            result = child_baseline(Path(config), Path(csv_path), shape, options.baseline_rows)
        # With the import's reading process (a child, joined): the sum of both peaks.
        peaks = (resource.getrusage(who).ru_maxrss for who in (RUSAGE_SELF, RUSAGE_CHILDREN))
        result["peak_mb"] = sum(peaks) / 1024
        print(json.dumps(result))
        return 0
    shapes = [SHAPES[name] for name in options.shapes.split(",")]
    stores = options.stores.split(",")
    return run(shapes, stores, options.rows, options.rounds, options.baseline_rows)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run(shapes: list[Shape], stores: list[str], rows: int, rounds: int, baseline_rows: int) -> int:
    print(f"load average at start: {_load()}")
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as folder:
        root = Path(folder)
        files = {}
        for shape in shapes:
            started = time.perf_counter()
            files[shape.name] = path = root / f"{shape.name}.csv"
            shape.generate(path, rows)
            size_mb = path.stat().st_size / 1e6
            print(
                f"generated {shape.name}: {rows:,} rows ({size_mb:.0f} MB) "
                f"in {time.perf_counter() - started:.1f} s"
            )
        for number in range(1, rounds + 1):
            for shape in shapes:
                for store in stores:
                    for mode, extra in (
                        ("import", []),
                        ("baseline", ["--baseline-rows", str(baseline_rows)]),
                        *([("floor", [])] if shape.name == "crm" else []),
                    ):
                        result = measure(root, shape, store, mode, files[shape.name], extra)
                        results.setdefault((shape.name, store, mode), []).append(result)
                        rate = result["rows"] / result["seconds"]
                        cpu = result["cpu"] + result.get("reader_cpu", 0.0)
                        server = (
                            f" + server {result['server_cpu']:.1f} s"
                            if result.get("server_cpu")
                            else ""
                        )
                        print(
                            f"round {number}: {shape.name:<5} {store:<10} {mode:<8} "
                            f"{rate:>9,.0f} rows/s  peak {result['peak_mb']:.0f} MB  "
                            f"CPU {result['cpu']:.1f} s + reading process "
                            f"{result.get('reader_cpu', 0.0):.1f} s{server} "
                            f"({result['rows'] / cpu:,.0f} rows/CPU-s)  (load {_load()})"
                        )
    return report(shapes, stores, results)


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def report(
    shapes: list[Shape],
    stores: list[str],
    results: dict[tuple[str, str, str], list[dict[str, float]]],
) -> int:
    print()
    print(
        f"{'shape':<48} {'store':<10} {'import rows/s (min-max)':>26} {'rows/CPU-s':>10} "
        f"{'peak MB':>7} {'naive rows/s (min-max)':>24} {'ratio':>6}"
    )
    ok = True
    for shape in shapes:
        for store in stores:
            imports = results[(shape.name, store, "import")]
            naive = results[(shape.name, store, "baseline")]
            rates = [r["rows"] / r["seconds"] for r in imports]
            cpu_rates = [r["rows"] / r["cpu"] for r in imports]
            naive_rates = [r["rows"] / r["seconds"] for r in naive]
            rate, naive_rate = statistics.median(rates), statistics.median(naive_rates)
            peak = max(r["peak_mb"] for r in imports)
            shown = f"{rate:,.0f} ({_spread(rates)})"
            shown_naive = f"{naive_rate:,.0f} ({_spread(naive_rates)})"
            print(
                f"{shape.description:<48} {store:<10} {shown:>26} "
                f"{statistics.median(cpu_rates):>10,.0f} {peak:>7.0f} {shown_naive:>24} "
                f"{rate / naive_rate:>5.0f}x"
            )
            ok = ok and rate >= TARGET_ROWS_PER_SECOND and peak < TARGET_PEAK_MB
            floors = [
                r["rows"] / r["seconds"] for r in results.get((shape.name, store, "floor"), [])
            ]
            if floors:
                floor = statistics.median(floors)
                print(
                    f"{'':<48} {store:<10} floor, no leadflow code (csv module, plain "
                    f"{'COPY' if store == 'postgresql' else 'executemany'}, history, index builds): "
                    f"{floor:,.0f} rows/s; the import is {rate / floor:.2f}x it"
                )
    print(
        "(medians of the rounds, min-max in brackets; rows/s is wall-clock time, rows/CPU-s "
        "excludes waiting for other processes' CPU; peak MB is the largest of the rounds)"
    )
    print(f"load average at end: {_load()}")
    verdict = "met" if ok else "NOT met"
    print(
        f"targets (>= {TARGET_ROWS_PER_SECOND:,} rows/s, < {TARGET_PEAK_MB} MB, every shape "
        f"and store): {verdict}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
