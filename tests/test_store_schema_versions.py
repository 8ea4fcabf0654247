"""A store's schema against this leadflow's: a command that only reads never migrates (a store
behind is refused with what to do), ``leadflow migrate`` lists and applies, and a store migrated
by a newer leadflow is one line, not alembic's traceback, from every command and the daemon."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from leadflow.cli import main
from leadflow.errors import DatabaseUnavailableError
from leadflow.service.leadership import AdvisoryLockLeadership, SingleInstance
from leadflow.store.database import create_store_engine, migrate
from tests.conftest import migrated_schema

HEAD = "0026"
OLD = "0002"


def revision_of(url: str) -> str | None:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def store_at(url: str, revision: str) -> str:
    engine = create_store_engine(url)
    migrate(engine, revision)
    engine.dispose()
    return url


def set_revision(url: str, revision: str) -> None:
    engine = create_store_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "database:\n  url: sqlite:///state/leadflow.db\nlog:\n  format: json\n"
        "http:\n  enabled: false\n"
    )
    (tmp_path / "reps.csv").write_text("external_id,name,email\nR1,Ann,ann@example.com\n")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'leadflow.db'}"


def leadflow(
    capsys: pytest.CaptureFixture[str], config: Path, *args: str
) -> tuple[int, str, list[str]]:
    code = main(["-c", str(config), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def behind(url: str) -> str:
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"error: the store at {where} has schema {OLD}, older than this leadflow's ({HEAD}), "
        "and this command only reads: back it up, then run `leadflow migrate` (`--dry-run` "
        "lists the migrations), or run the leadflow that wrote it"
    )


READING = {
    "status": ("status",),
    "audit": ("audit",),
    "outbox": ("outbox",),
    "report": ("report", "--from", "2026-03-01", "--to", "2026-03-31"),
    "prune-dry-run": ("prune", "--dry-run"),
    "simulate": ("simulate", "--from", "2026-03-02", "--to", "2026-03-03"),
    "score-explain": ("score", "explain", "L-1"),
}


@pytest.mark.parametrize("command", list(READING), ids=list(READING))
def test_a_reading_command_refuses_an_older_store_and_leaves_it(
    command: str, config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`leadflow status` "just to look" on a store of schema 0002 migrated it to head."""
    store_at(sqlite_url, OLD)
    code, out, errors = leadflow(capsys, config, *READING[command])
    assert (code, out, errors) == (1, "", [behind(sqlite_url)])
    assert revision_of(sqlite_url) == OLD


def test_writing_commands_still_migrate(
    config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_at(sqlite_url, OLD)
    reps = str(config.with_name("reps.csv"))
    assert leadflow(capsys, config, "import", "reps", reps) == (
        0,
        f"reps {reps}: inserted 1, updated 0, unchanged 0, rejected 0\n",
        [],
    )
    assert revision_of(sqlite_url) == HEAD
    code, out, errors = leadflow(capsys, config, "status")
    assert (code, errors) == (0, [])
    assert out.startswith("leads: 0\n")


def test_migrate_lists_then_applies(
    config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_at(sqlite_url, "0014")
    code, out, errors = leadflow(capsys, config, "migrate", "--dry-run")
    assert (code, errors) == (0, [])
    pending = [
        "  0015  Failing nurture steps are kept, not only logged",
        "  0016  Scores in 64 bits",
    ]
    lines = out.splitlines()
    assert lines[0] == f"the store at {sqlite_url}: 12 migrations pending"
    assert lines[1:3] == pending
    assert [line.split()[0] for line in lines[1:-1]] == [f"{n:04d}" for n in range(15, 27)]
    assert lines[-1] == "--dry-run: nothing applied"
    assert revision_of(sqlite_url) == "0014"

    listed = out
    code, out, errors = leadflow(capsys, config, "migrate")
    assert (code, errors) == (0, [])
    assert out == listed.replace("--dry-run: nothing applied", f"migrated to {HEAD}")
    assert revision_of(sqlite_url) == HEAD

    code, out, _ = leadflow(capsys, config, "migrate")
    assert (code, out) == (
        0,
        f"the store at {sqlite_url} is at this leadflow's schema: nothing to migrate\n",
    )


def newer(url: str) -> str:
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"error: the store at {where} has schema 0027, newer than this leadflow knows ({HEAD}): "
        "run the leadflow that migrated it, or restore a backup taken before (downgrades are "
        "not automatic: docs/operations.md, Rolling back)"
    )


NEWER = {
    "status": ("status",),
    "import": ("import", "reps", "reps.csv"),
    "migrate": ("migrate", "--dry-run"),
    "outbox-retry": ("outbox", "--retry-failed"),
}


@pytest.mark.parametrize("command", list(NEWER), ids=list(NEWER))
def test_a_newer_store_is_one_line(
    command: str, config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was alembic's `CommandError: Can't locate revision identified by '0027'`."""
    store_at(sqlite_url, HEAD)
    set_revision(sqlite_url, "0027")
    args = [str(config.with_name(a)) if a.endswith(".csv") else a for a in NEWER[command]]
    code, out, errors = leadflow(capsys, config, *args)
    assert (code, out, errors) == (1, "", [newer(sqlite_url)])
    assert revision_of(sqlite_url) == "0027"


def test_the_daemon_logs_a_newer_store_as_one_json_line(
    config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_at(sqlite_url, HEAD)
    set_revision(sqlite_url, "0027")
    code, out, errors = leadflow(capsys, config, "daemon")
    assert (code, out, len(errors)) == (1, "", 1)
    line = json.loads(errors[0])
    assert (line["event"], line["level"]) == ("daemon_not_started", "error")
    assert line["error"] == newer(sqlite_url).removeprefix("error: ")


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """An empty schema of its own (``postgres_url`` only checks the server is there)."""
    with migrated_schema(revision=None) as url:
        yield url


@pytest.mark.postgres
def test_postgres_older_and_newer_stores(
    postgres_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0016 rewrites ``leads`` under an ACCESS EXCLUSIVE lock here: `status` must not run it."""
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {json.dumps(postgres_schema)}\n")
    store_at(postgres_schema, OLD)
    assert leadflow(capsys, config, "status") == (1, "", [behind(postgres_schema)])
    assert revision_of(postgres_schema) == OLD
    code, out, errors = leadflow(capsys, config, "migrate")
    assert (code, errors) == (0, [])
    lines = out.splitlines()
    where = make_url(postgres_schema).render_as_string(hide_password=True)
    assert lines[0] == f"the store at {where}: 24 migrations pending"
    assert [line.split()[0] for line in lines[1:-1]] == [f"{n:04d}" for n in range(3, 27)]
    assert "  0016  Scores in 64 bits" in lines
    assert lines[-1] == f"migrated to {HEAD}"
    assert revision_of(postgres_schema) == HEAD
    set_revision(postgres_schema, "0027")
    assert leadflow(capsys, config, "status") == (1, "", [newer(postgres_schema)])
    assert leadflow(capsys, config, "import", "reps", str(tmp_path / "none.csv")) == (
        1,
        "",
        [newer(postgres_schema)],
    )


@pytest.mark.postgres
def test_a_migration_gives_up_on_a_lock_a_session_holds(postgres_schema: str) -> None:
    """0016's ALTER TABLE waited, silently and for as long as the session lived, behind a
    session's open transaction on ``leads``, and every query of the daemons on the table queued
    behind it. It gives up after the wait, applying nothing, and names the session."""
    import psycopg

    store_at(postgres_schema, "0015")
    url = make_url(postgres_schema)
    arguments = url.translate_connect_args(username="user", database="dbname")
    with psycopg.connect(
        **arguments, options=url.query["options"], application_name="report-in-psql"
    ) as holder:
        holder.execute("SELECT count(*) FROM leads").fetchone()  # its lock held till the end
        pid = holder.info.backend_pid
        engine = create_store_engine(postgres_schema)
        try:
            with pytest.raises(DatabaseUnavailableError) as refused:
                migrate(engine, lock_wait=timedelta(milliseconds=300))
        finally:
            engine.dispose()
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    where = url.render_as_string(hide_password=True)
    assert str(refused.value) == (
        f"cannot migrate the store at {where}: another session holds a lock on its tables "
        f"(pid {pid} report-in-psql (idle in transaction)) and the migration gave up after "
        "0.3 s rather than hold up every query queued behind it; nothing applied: run it again "
        "once that session has ended (docs/operations.md, Upgrading leadflow)"
    )
    assert revision_of(postgres_schema) == "0015"
    store_at(postgres_schema, HEAD)
    assert revision_of(postgres_schema) == HEAD


NOT_A_DATABASE = {
    "status": ("status",),
    "migrate": ("migrate",),
    "import": ("import", "reps", "reps.csv"),
    "run": ("run", "--once"),
    "send": ("send",),
    "daemon": ("daemon",),
}


@pytest.mark.parametrize("command", list(NOT_A_DATABASE), ids=list(NOT_A_DATABASE))
def test_a_file_that_is_not_sqlite_is_one_line(
    command: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a 145-line traceback ending `file is not a database`, from every command."""
    path = tmp_path / "state" / "leadflow.db"
    path.parent.mkdir()
    path.write_text("hi\n")
    args = [str(config.with_name(a)) if a.endswith(".csv") else a for a in NOT_A_DATABASE[command]]
    code, out, errors = leadflow(capsys, config, *args)
    expected = f"{path} is not an SQLite database (file is not a database): check database.url"
    assert (code, out, len(errors)) == (1, "", 1)
    if command == "daemon":
        line = json.loads(errors[0])
        assert (line["event"], line["error"]) == ("daemon_not_started", expected)
    else:
        assert errors == [f"error: {expected}"]
    assert path.read_text() == "hi\n"


UNRECORDED = {
    "status": ("status",),
    "migrate": ("migrate",),
    "migrate-dry-run": ("migrate", "--dry-run"),
    "import": ("import", "reps", "reps.csv"),
    "daemon": ("daemon",),
}


def assert_one_line(command: str, result: tuple[int, str, list[str]], expected: str) -> None:
    code, out, errors = result
    assert (code, out, len(errors)) == (1, "", 1)
    if command == "daemon":
        line = json.loads(errors[0])
        assert (line["event"], line["error"]) == ("daemon_not_started", expected)
    else:
        assert errors == [f"error: {expected}"]


def foreign(url: str) -> str:
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"the store at {where} holds tables leadflow did not create (leads): point "
        "database.url at an empty database, or at a schema of its own "
        "(PostgreSQL: ?options=-csearch_path=<schema>)"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("command", list(UNRECORDED), ids=list(UNRECORDED))
def test_a_schema_with_a_foreign_leads_table_is_one_line(
    command: str, postgres_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate`, `import` and the daemon ended in a 140-line DuplicateTable traceback, and
    `status` said the store had no leadflow tables yet."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: {json.dumps(postgres_schema)}\nlog:\n  format: json\n"
        "http:\n  enabled: false\n"
    )
    (tmp_path / "reps.csv").write_text("external_id,name,email\nR1,Ann,ann@example.com\n")
    engine = create_store_engine(postgres_schema)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE leads (id int)"))
    args = [str(tmp_path / a) if a.endswith(".csv") else a for a in UNRECORDED[command]]
    assert_one_line(command, leadflow(capsys, config, *args), foreign(postgres_schema))
    with engine.connect() as connection:
        names = set(inspect(connection).get_table_names())
    engine.dispose()
    assert names == {"leads"}


def unrecorded(url: str) -> str:
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"the store at {where} has leadflow's tables but no schema version recorded (its "
        "alembic_version row or table is gone), so leadflow cannot tell which migrations it "
        "has had and changes nothing: restore it from a backup"
    )


@pytest.mark.parametrize("loss", ["row", "table"])
@pytest.mark.parametrize("command", list(UNRECORDED), ids=list(UNRECORDED))
def test_a_store_without_its_version_record_is_one_line(
    command: str, loss: str, config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` said "no leadflow tables yet", `migrate --dry-run` listed all 24 migrations,
    `migrate` failed on `table import_runs already exists` (plain text from the daemon)."""
    store_at(sqlite_url, HEAD)
    engine = create_store_engine(sqlite_url)
    with engine.begin() as connection:
        sql = "DELETE FROM alembic_version" if loss == "row" else "DROP TABLE alembic_version"
        connection.execute(text(sql))
    engine.dispose()
    args = [str(config.with_name(a)) if a.endswith(".csv") else a for a in UNRECORDED[command]]
    assert_one_line(command, leadflow(capsys, config, *args), unrecorded(sqlite_url))
    assert revision_of(sqlite_url) is None


@pytest.mark.parametrize("command", list(UNRECORDED), ids=list(UNRECORDED))
def test_a_store_recording_two_versions_is_one_line(
    command: str, config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second alembic_version row (a hand edit, a restore over the live table) was alembic's
    `Requested revision 0024 overlaps with other requested revisions` traceback."""
    store_at(sqlite_url, HEAD)
    engine = create_store_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": OLD})
    engine.dispose()
    args = [str(config.with_name(a)) if a.endswith(".csv") else a for a in UNRECORDED[command]]
    where = make_url(sqlite_url).render_as_string(hide_password=True)
    expected = (
        f"the store at {where} records 2 schema versions ({OLD}, {HEAD}) where leadflow keeps "
        "one (its alembic_version table was edited or restored over), so leadflow cannot tell "
        "which migrations it has had and changes nothing: restore it from a backup"
    )
    assert_one_line(command, leadflow(capsys, config, *args), expected)
    with create_store_engine(sqlite_url).connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert sorted(versions) == [OLD, HEAD]


def under_daemon(url: str, holder: str) -> str:
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"error: {holder} is running on the store at {where}: stop the daemons first, then run "
        "`leadflow migrate` (docs/operations.md, Upgrading leadflow); nothing applied"
    )


def test_migrate_refuses_a_store_a_daemon_runs_on(
    config: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon's lock file is what refuses a second daemon on SQLite: migrate obeys it too."""
    store_at(sqlite_url, OLD)
    daemon = SingleInstance(Path(make_url(sqlite_url).database or ""))
    daemon.acquire()
    capsys.readouterr()  # the lock's own log line
    try:
        holder = f"a leadflow daemon (pid {os.getpid()})"
        assert leadflow(capsys, config, "migrate") == (1, "", [under_daemon(sqlite_url, holder)])
        assert revision_of(sqlite_url) == OLD
        # Listing changes nothing: it runs beside the daemon.
        code, out, errors = leadflow(capsys, config, "migrate", "--dry-run")
        assert (code, errors, out.splitlines()[-1]) == (0, [], "--dry-run: nothing applied")
    finally:
        daemon.release()
    code, out, _ = leadflow(capsys, config, "migrate")  # stderr: the lock's release line
    assert (code, out.splitlines()[-1]) == (0, f"migrated to {HEAD}")
    assert revision_of(sqlite_url) == HEAD


@pytest.mark.postgres
def test_migrate_refuses_a_postgres_store_a_daemon_leads(
    postgres_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It migrated the live store with no warning while the daemon held its leadership lock."""
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {json.dumps(postgres_schema)}\n")
    store_at(postgres_schema, OLD)
    daemon = AdvisoryLockLeadership(postgres_schema)
    assert daemon.check()
    capsys.readouterr()  # the lock's own log line
    try:
        holder = "the evaluating leadflow daemon (it holds the store's leadership lock)"
        result = leadflow(capsys, config, "migrate")
        assert result == (1, "", [under_daemon(postgres_schema, holder)])
        assert revision_of(postgres_schema) == OLD
    finally:
        daemon.close()
    code, out, _ = leadflow(capsys, config, "migrate")  # stderr: the lock's release line
    assert (code, out.splitlines()[-1]) == (0, f"migrated to {HEAD}")
    assert revision_of(postgres_schema) == HEAD


@pytest.mark.parametrize("dry_run", [False, True], ids=["migrate", "dry-run"])
def test_migrate_refuses_a_missing_sqlite_store(
    dry_run: bool, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It created the file and its folder, and `--dry-run` listed 24 pending migrations."""
    args = ["migrate", "--dry-run"] if dry_run else ["migrate"]
    path = tmp_path / "state" / "leadflow.db"
    assert leadflow(capsys, config, *args) == (
        1,
        "",
        [
            f"error: no store at {path} (database.url 'sqlite:///state/leadflow.db'): nothing "
            "has imported into it or run on it yet, or the path is wrong; `leadflow import` or "
            "`leadflow run` creates it"
        ],
    )
    assert not path.parent.exists()
