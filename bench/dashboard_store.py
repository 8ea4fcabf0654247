"""The dashboard bench's store, generated inside the database as a bulk load is.

Every row comes from one set-based ``INSERT ... SELECT`` per table over a run of numbers (a
recursive CTE on SQLite, ``generate_series`` on PostgreSQL): no row crosses from Python, so a
store of 1,000,000 leads and 10,000,000 audit rows fills in about 3 minutes on 2 busy cores
(both databases at once), where a Python generator of the leads and per-row foreign-key and
index upkeep took 12 (7 for SQLite, then 5.5 for PostgreSQL). The values are drawn from
the row number by a multiplicative hash (the same on both databases, so both stores hold the
same rows), with the shapes the pages read:

- 20 reps in four pools; leads 60% ``lead``, 20% ``subscriber``, 10% ``nurture``, 5% ``mql``,
  3% ``sql``, 2% ``customer``, four in five of the last three owned by a rep, a score of 0-99,
  region/industry/country/employees attributes as bench/evaluation_bench.py's, their stage
  entered in the last year and (nine in ten) an activity in the last 180 days;
- one activity per lead that has one (its ``last_activity_at``), one ``stage_changes`` row per
  lead (its entry into its current stage, as migration 0007 and every write path leave);
- ``audit`` audit rows spread over the leads and over 578 days, a running SLA timer on every
  tenth lead (one in five of them breached), 100,000 outbox rows (sent, failed, pending) and a
  score change on every tenth lead.

The load is done as a bulk load is: the secondary indexes (but the three of ``LIVE_INDEXES``,
appended to in order), the activities' triggers and (on PostgreSQL) the foreign keys and unique constraints of the filled tables are taken off first
and put back afterwards from the catalog's own definitions (one sort per index, one join per
foreign key); SQLite writes without a rollback journal and checks its foreign keys once at the
end. :func:`schema` reads the catalog, so the bench can check that the store it measures has
every index, constraint and trigger the migrations made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from scratch import bulk_load_connection
from sqlalchemy import Engine

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPS = 20
OUTBOX_ROWS = 100_000
AUDIT_STEP = 5  # seconds between audit rows: 10M of them span 578 days
TABLES = (
    "reps",
    "leads",
    "activities",
    "stage_changes",
    "audit_log",
    "sla_timers",
    "outbox",
    "score_changes",
)
_PRIME = 4294967291  # the largest prime below 2**32: n * multiplier stays within 64 bits
_MULTIPLIERS = {
    "stage": 2654435761,
    "score": 2246822519,
    "entered": 3266489917,
    "owned": 668265263,
    "owner": 374761393,
    "active": 2870177450,
    "activity": 1181783497,
    "region": 3735928559,
    "industry": 1540483477,
    "country": 2147483629,
    "employees": 1103515245,
}
_DAY = 86400
LIVE_INDEXES = frozenset({"ix_audit_log_at", "ix_audit_deal_at", "ix_audit_rule_at"})
"""Kept through the load: the audit rows arrive in these keys' order (``at`` grows with the
row number, ``deal_id`` is null, one rule), so each row is appended at the index's right edge,
cheaper than building it afterwards (a scan of 10,000,000 rows and a sort each)."""


@dataclass(frozen=True)
class Dialect:
    """The few expressions the two databases spell differently."""

    name: str
    numbers: Callable[[int], str]
    """A FROM item of the numbers 1..count, as column ``n``."""
    stamp: Callable[[str], str]
    """A timestamp of the given Unix seconds, as the store keeps it."""
    json: Callable[[str], str]
    padded: Callable[[str, int], str]
    """The text of the integer expression zero-padded to a width."""
    true: str
    false: str


SQLITE = Dialect(
    name="sqlite",
    numbers=lambda count: (
        "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
        f"WHERE n < {int(count)}) SELECT n FROM g) AS g"
    ),
    # The text UTCDateTime stores (leadflow.store.types.sqlite_timestamp).
    stamp=lambda seconds: f"strftime('%Y-%m-%d %H:%M:%S.000000', {seconds}, 'unixepoch')",
    json=lambda text: text,
    padded=lambda value, width: f"printf('%0{width}d', {value})",
    true="1",
    false="0",
)
POSTGRES = Dialect(
    name="postgresql",
    numbers=lambda count: f"generate_series(1::bigint, {int(count)}) AS g(n)",
    stamp=lambda seconds: f"to_timestamp({seconds})",
    json=lambda text: f"({text})::jsonb",
    padded=lambda value, width: f"lpad(({value})::text, {width}, '0')",
    true="true",
    false="false",
)


def _hash(name: str) -> str:
    return f"(n * {_MULTIPLIERS[name]} % {_PRIME})"


def statements(
    dialect: Dialect, leads: int, audit: int, *, history: bool = True
) -> list[tuple[str, str]]:
    """The (table, INSERT ... SELECT) pairs that fill the store, in order; without
    ``history``, no ``stage_changes`` rows (the store the bench made before 2026-11-30)."""
    now = int(NOW.timestamp())
    d = dialect
    created = d.stamp(str(now - 400 * _DAY))
    stage = (
        "CASE WHEN stage_h % 100 < 60 THEN 'lead' WHEN stage_h % 100 < 80 THEN 'subscriber' "
        "WHEN stage_h % 100 < 90 THEN 'nurture' WHEN stage_h % 100 < 95 THEN 'mql' "
        "WHEN stage_h % 100 < 98 THEN 'sql' ELSE 'customer' END"
    )
    region = (
        "CASE region_h % 5 WHEN 0 THEN 'EMEA' WHEN 1 THEN 'NA' WHEN 2 THEN 'LATAM' "
        "WHEN 3 THEN 'APAC' ELSE 'ANZ' END"
    )
    industry = (
        "CASE industry_h % 20 WHEN 0 THEN 'software' WHEN 1 THEN 'saas' "
        "WHEN 2 THEN 'manufacturing' WHEN 3 THEN 'healthcare' WHEN 4 THEN 'finance' "
        "ELSE 'industry-' || (industry_h % 20 - 5) END"
    )
    country = (  # evaluation_bench.COUNTRIES' weights
        "CASE WHEN country_h % 100 < 20 THEN 'US' WHEN country_h % 100 < 28 THEN 'DE' "
        "WHEN country_h % 100 < 36 THEN 'GB' WHEN country_h % 100 < 42 THEN 'FR' "
        "WHEN country_h % 100 < 47 THEN 'CA' WHEN country_h % 100 < 49 THEN 'AT' "
        "WHEN country_h % 100 < 51 THEN 'CH' WHEN country_h % 100 < 53 THEN 'IE' "
        "ELSE 'C' || (country_h % 100 - 53) END"
    )
    attributes = (
        f"""'{{"region": "' || {region} || '", "industry": "' || {industry} """
        f"""|| '", "country": "' || {country} || '", "employees": ' """
        "|| (employees_h % 10000 + 1) || '}'"
    )
    hashes = ", ".join(f"{_hash(name)} AS {name}_h" for name in _MULTIPLIERS)
    previous = (
        "CASE stage WHEN 'subscriber' THEN 'lead' WHEN 'nurture' THEN 'subscriber' "
        "WHEN 'mql' THEN 'nurture' WHEN 'sql' THEN 'mql' WHEN 'customer' THEN 'sql' END"
    )
    every = [
        (
            "reps",
            "INSERT INTO reps (id, external_id, name, email, pools, active, timezone, "
            "created_at, updated_at) SELECT n, 'r' || n, 'Rep ' || n, "
            "'rep' || n || '@example.com', "
            + d.json(
                """CASE n % 4 WHEN 0 THEN '["emea"]' WHEN 1 THEN '["na"]' """
                """WHEN 2 THEN '["apac"]' ELSE '["emea", "na"]' END"""
            )
            + f", {d.true}, 'UTC', {created}, {created} FROM {d.numbers(REPS)}",
        ),
        (
            "leads",
            "INSERT INTO leads (id, external_id, email, attributes, score, stage, "
            "stage_entered_at, owner_id, last_activity_at, unsubscribed, do_not_email, "
            "hard_bounced, created_at, updated_at) "
            f"SELECT n, 'L' || {d.padded('n', 7)}, 'lead' || n || '@example.com', "
            f"{d.json(attributes)}, score_h % 100, {stage}, "
            f"{d.stamp(f'{now} - entered_h % {365 * _DAY}')}, "
            f"CASE WHEN {stage} IN ('mql', 'sql', 'customer') AND owned_h % 5 <> 0 "
            f"THEN owner_h % {REPS} + 1 END, "
            f"CASE WHEN active_h % 10 <> 0 THEN {d.stamp(f'{now} - activity_h % {180 * _DAY}')} "
            f"END, {d.false}, {d.false}, {d.false}, {created}, {created} "
            f"FROM (SELECT n, {hashes} FROM {d.numbers(leads)}) AS h",
        ),
        (
            "activities",
            "INSERT INTO activities (external_id, lead_id, type, occurred_at, properties, "
            f"machine, created_at) SELECT 'A' || {d.padded('id', 7)}, id, "
            "CASE id % 3 WHEN 0 THEN 'page_view' WHEN 1 THEN 'email_open' ELSE 'download' END, "
            "last_activity_at, "
            + d.json("""CASE id % 3 WHEN 0 THEN '{"url": "/pricing"}' ELSE '{}' END""")
            + f", {d.false}, last_activity_at FROM leads WHERE last_activity_at IS NOT NULL "
            "ORDER BY id",
        ),
        (
            "stage_changes",
            "INSERT INTO stage_changes (lead_id, at, from_stage, to_stage, from_owner_id, "
            f"to_owner_id, cause) SELECT id, stage_entered_at, {previous}, stage, owner_id, "
            "owner_id, 'import' FROM leads ORDER BY id",
        ),
        (
            "audit_log",
            "INSERT INTO audit_log (at, source, rule_id, rule_version, lead_id, action, params, "
            f"evidence) SELECT {d.stamp(f'{now - 700 * _DAY} + n * {AUDIT_STEP}')}, 'rule', "
            f"'r08-score-42', 'v1', n % {int(leads)} + 1, 'adjust_score', "
            + d.json("""'{"by": 1}'""")
            + ", "
            + d.json("""'{"score": 42}'""")
            + f" FROM {d.numbers(audit)}",
        ),
        (
            "sla_timers",
            "INSERT INTO sla_timers (lead_id, name, rule_id, rule_version, owner_id, "
            "started_at, due_at, calendar, ladder, met_by, level, next_escalation_at, status) "
            f"SELECT n * 10, 'first_touch', 'r', 'v1', n % {REPS} + 1, "
            f"{d.stamp(f'{now} - n')}, {d.stamp(f'{now} + n')}, 'default', "
            + d.json("'[]'")
            + ", "
            + d.json("'{}'")
            + f", n % 3, {d.stamp(f'{now} + n')}, "
            f"CASE WHEN n % 5 = 0 THEN 'breached' ELSE 'running' END "
            f"FROM {d.numbers(leads // 10)}",
        ),
        (
            "outbox",
            "INSERT INTO outbox (idempotency_key, message_id, channel, category, lead_id, "
            "recipient, subject, body_text, headers, status, attempts, next_attempt_at, "
            f"created_at, last_error) SELECT 'k' || {d.padded('n', 7)}, "
            f"'<m' || {d.padded('n', 7)} || '@b>', 'email', 'marketing', "
            f"n * 7 % {int(leads)} + 1, 'lead' || n || '@example.com', 'Hello', 'Hi', "
            + d.json("'{}'")
            + ", CASE n % 10 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' ELSE 'sent' END, 1, "
            f"{d.stamp(f'{now} - n')}, {d.stamp(f'{now} - n')}, '550 no such user' "
            f"FROM {d.numbers(OUTBOX_ROWS)}",
        ),
        (
            "score_changes",
            "INSERT INTO score_changes (lead_id, at, old_score, new_score, cause) "
            f"SELECT n * 10 - 3, {d.stamp(f'{now} - n')}, 1, 2, 'activity' "
            f"FROM {d.numbers(leads // 10)}",
        ),
    ]
    return [item for item in every if history or item[0] != "stage_changes"]


def _in_tables() -> str:
    return ", ".join(f"'{table}'" for table in TABLES)


def _regclasses() -> str:
    return "(" + ", ".join(f"'{table}'::regclass" for table in TABLES) + ")"


def fill_sqlite(
    path: str, leads: int, audit: int, note: Callable[[str], None], *, history: bool = True
) -> None:
    """The store at ``path`` (migrated, empty, no other connection open) filled.

    Its own connection, as bench/retention_bench.py's history: no rollback journal (a WAL
    would write every page twice), foreign keys checked once after the load, the secondary
    indexes and the triggers of the filled tables dropped and created again from their own
    SQL in ``sqlite_master``. The file is back in WAL mode, analysed, when this returns.
    """
    connection = bulk_load_connection(path, sorter_thread=True)
    try:
        taken_off = connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
            f"AND sql IS NOT NULL AND tbl_name IN ({_in_tables()}) ORDER BY type, name"
        ).fetchall()
        taken_off = [row for row in taken_off if row[1] not in LIVE_INDEXES]
        connection.execute("BEGIN")
        for kind, name, _ in taken_off:
            connection.execute(f'DROP {kind.upper()} "{name}"')
        for table, statement in statements(SQLITE, leads, audit, history=history):
            connection.execute(statement)
            note(f"sqlite: {table} written")
        for _, _, sql in taken_off:
            connection.execute(sql)
        note("sqlite: indexes and triggers back")
        connection.execute("COMMIT")
        broken = connection.execute("PRAGMA foreign_key_check").fetchmany(5)
        assert not broken, f"foreign keys broken: {broken}"
        # Statistics as a running store's PRAGMA optimize keeps them: sampled.
        connection.execute("PRAGMA analysis_limit=1000")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
        note("sqlite: foreign keys checked, analysed")
    finally:
        connection.close()


def fill_postgres(
    engine: Engine, leads: int, audit: int, note: Callable[[str], None], *, history: bool = True
) -> None:
    """The (migrated, empty) store of ``engine``'s schema filled in one transaction.

    The filled tables' foreign keys and unique constraints, their secondary indexes and the
    activities' triggers are taken off first (a per-row foreign-key trigger and index upkeep
    made the load several times slower) and put back afterwards from ``pg_get_indexdef`` and
    ``pg_get_constraintdef``: each index built in one sort, each foreign key checked in one
    join. Then VACUUM ANALYZE of each table, as autovacuum would leave a running store.
    """
    tables = _regclasses()
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        constraints = connection.exec_driver_sql(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            f"FROM pg_constraint WHERE contype IN ('f', 'u') AND conrelid IN {tables} "
            "ORDER BY contype DESC, conname"  # unique ones first: put back in this order
        ).all()
        for table, name, _ in reversed(constraints):
            connection.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        indexes = connection.exec_driver_sql(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            f"WHERE indrelid IN {tables} AND NOT indisprimary ORDER BY 1"
        ).all()
        indexes = [row for row in indexes if row[0] not in LIVE_INDEXES]
        for name, _ in indexes:
            connection.exec_driver_sql(f"DROP INDEX {name}")
        connection.exec_driver_sql("ALTER TABLE activities DISABLE TRIGGER USER")
        for table, statement in statements(POSTGRES, leads, audit, history=history):
            connection.exec_driver_sql(statement.replace("%", "%%"))
            note(f"postgresql: {table} written")
        connection.exec_driver_sql("ALTER TABLE activities ENABLE TRIGGER USER")
        for _, definition in indexes:
            connection.exec_driver_sql(definition)
        for table, name, definition in constraints:
            connection.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        # The ids were given: the sequences continue after them, as after any import.
        for table in ("reps", "leads"):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        note("postgresql: indexes and constraints back")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("SET statement_timeout = 0")
        for table in TABLES:  # this schema's tables only
            connection.exec_driver_sql(f'VACUUM ANALYZE "{table}"')
    note("postgresql: vacuumed and analysed")


def schema(engine: Engine) -> list[tuple[str, ...]]:
    """The filled tables' indexes, constraints and triggers as the catalog defines them."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master "
                f"WHERE tbl_name IN ({_in_tables()}) ORDER BY type, name"
            ).all()
        else:
            tables = _regclasses()
            rows = connection.exec_driver_sql(
                "SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
                f"FROM pg_index WHERE indrelid IN {tables} UNION ALL "
                "SELECT 'constraint', conrelid::regclass::text || '.' || conname, "
                f"pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid IN {tables} "
                "UNION ALL SELECT 'trigger', tgname, tgenabled::text || pg_get_triggerdef(oid) "
                f"FROM pg_trigger WHERE tgrelid IN {tables} AND NOT tgisinternal ORDER BY 1, 2"
            ).all()
    return [tuple(str(value) for value in row) for row in rows]
