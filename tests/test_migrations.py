"""Migrations: an empty database upgrades to head, and head matches the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from leadflow.errors import DowngradeRefusedError
from leadflow.store.database import alembic_config, create_store_engine, migrate
from leadflow.store.models import metadata
from leadflow.store.tables import LEADS, SCORE_CHANGES
from tests.conftest import T0, migrated_schema
from tests.mail_support import add_lead


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_empty_database_upgrades_to_head_matching_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """From nothing to head, twice (idempotent), with no difference to the SQLModel tables."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_store_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            for table in reversed(metadata.sorted_tables):
                connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
        engine.dispose()
    engine = create_store_engine(url)
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == "0026"
        assert set(inspect(connection).get_table_names()) == {
            *(t.name for t in metadata.sorted_tables),
            "alembic_version",
        }
    engine.dispose()


def _sqlite_schema(path: Path) -> dict[str, object]:
    """What a SQLite store's statements depend on: each table's columns, indexes and foreign
    keys, and every trigger's text (whitespace aside)."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name != 'alembic_version' ORDER BY name"
            )
        ]
        schema: dict[str, object] = {}
        for table in tables:
            columns = sorted(
                (name, kind.upper(), notnull, default, pk)
                for _cid, name, kind, notnull, default, pk in connection.execute(
                    f'PRAGMA table_info("{table}")'
                )
            )
            indexes = sorted(
                (
                    unique,
                    origin,
                    tuple(
                        info[2]
                        for info in connection.execute(f'PRAGMA index_xinfo("{name}")')
                        if info[5]  # key columns, not the rowid
                    ),
                    bool(partial),
                )
                for _seq, name, unique, origin, partial in connection.execute(
                    f'PRAGMA index_list("{table}")'
                )
            )
            foreign_keys = sorted(
                row[2:] for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
            )
            schema[table] = {"columns": columns, "indexes": indexes, "foreign_keys": foreign_keys}
        schema["triggers"] = sorted(
            (name, table, " ".join(sql.split()))
            for name, table, sql in connection.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
        )
        return schema
    finally:
        connection.close()


def test_the_rule_tests_scratch_store_is_the_migrated_store(tmp_path: Path) -> None:
    """``leadflow test`` builds its scratch store with ``metadata.create_all`` (no alembic):
    the same tables, columns, indexes, foreign keys and rescoring triggers as a migrated store."""
    migrated = create_store_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    migrate(migrated)
    migrated.dispose()
    created = create_store_engine(f"sqlite:///{tmp_path / 'created.db'}")
    metadata.create_all(created)
    created.dispose()
    schema = _sqlite_schema(tmp_path / "migrated.db")
    assert len(schema["triggers"]) == 5  # type: ignore[arg-type]
    assert _sqlite_schema(tmp_path / "created.db") == schema


@pytest.mark.postgres
def test_0016_downgrade_refuses_scores_beyond_32_bits(request: pytest.FixtureRequest) -> None:
    """Back to 32-bit scores failed half-way with NumericValueOutOfRange; it refuses first now,
    saying how many leads and score history rows are too large, and changes nothing; once
    they fit, it goes down to 0015."""
    request.getfixturevalue("postgres_url")  # skipped as every PostgreSQL test is
    # A schema of its own: the one the other tests share must stay at head.
    with migrated_schema() as url:
        engine = create_store_engine(url)
        try:
            _downgrade_0016(engine)
        finally:
            engine.dispose()


def _downgrade_0016(engine: Engine) -> None:
    big = 3_090_000_000
    first = add_lead(engine, T0, score=big)
    second = add_lead(engine, T0, external_id="L-2", email="b@acme.example", score=5)
    add_lead(engine, T0, external_id="L-3", email="c@acme.example", score=-big)
    with engine.begin() as connection:
        connection.execute(
            SCORE_CHANGES.insert(),
            [
                {"lead_id": first, "at": T0, "old_score": 0, "new_score": big, "cause": "model"},
                {"lead_id": second, "at": T0, "old_score": 0, "new_score": 5, "cause": "model"},
            ],
        )
    with pytest.raises(DowngradeRefusedError) as caught:
        command.downgrade(alembic_config(engine), "0015")
    assert str(caught.value) == (
        "cannot downgrade migration 0016 (scores back to 32 bits): 2 lead(s) and 1 "
        "score_changes row(s) hold a score, fit, engagement or adjustment beyond 32 bits "
        "(-2147483648 to 2147483647); lower them (or delete those score_changes rows) first, "
        "then downgrade again"
    )
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0026"
        scores = connection.execute(select(LEADS.c.score).order_by(LEADS.c.id)).scalars()
        assert list(scores) == [big, 5, -big]
    with engine.begin() as connection:
        connection.execute(LEADS.update().values(score=7))
        connection.execute(SCORE_CHANGES.delete().where(SCORE_CHANGES.c.new_score == big))
    command.downgrade(alembic_config(engine), "0015")
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0015"
        column = {c["name"]: c for c in inspect(connection).get_columns("leads")}["score"]
        assert str(column["type"]) == "INTEGER"


def test_0019_lowers_the_pass_marks_when_the_newest_activities_go(tmp_path: Path) -> None:
    """A SQLite store with a pass's mark, upgraded from 0018: deleting an older activity leaves
    the marks; deleting the newest brings the last pass's (and a pass under way's) down to the
    highest id left, the id SQLite gives the next activity one above; with none left, to 0."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    command.upgrade(alembic_config(engine), "0018")
    activity = (
        "INSERT INTO activities (id, external_id, type, occurred_at, properties, machine,"
        " created_at) VALUES (:id, :external_id, 'page_view', '2026-03-02 09:00:00.000000',"
        " '{}', 0, '2026-03-02 09:00:00.000000')"
    )
    with engine.begin() as connection:
        for index in range(1, 6):
            connection.execute(text(activity), {"id": index, "external_id": f"A{index}"})
        connection.execute(
            text(
                "INSERT INTO scoring_runs (model, model_version, last_run_at, changed,"
                " last_activity_id) VALUES ('default', 'v1', '2026-03-02 09:00:00.000000', 0, 5)"
            )
        )
    migrate(engine)

    def marks_after(delete: str) -> tuple[int | None, int | None]:
        with engine.begin() as connection:
            connection.execute(text(f"DELETE FROM activities WHERE {delete}"))
            row = connection.execute(
                text("SELECT last_activity_id, pass_activity_id FROM scoring_runs")
            ).one()
        return row[0], row[1]

    try:
        assert marks_after("id = 2") == (5, None)
        with engine.begin() as connection:
            connection.execute(text("UPDATE scoring_runs SET pass_activity_id = 5"))
        assert marks_after("id >= 4") == (3, 3)
        with engine.begin() as connection:
            connection.execute(text(activity), {"id": None, "external_id": "A6"})
            new_id = connection.execute(text("SELECT max(id) FROM activities")).scalar()
        assert new_id == 4  # above the marks: an arrival after the pass
        assert marks_after("id = 1") == (3, 3)
        assert marks_after("id > 0") == (0, 0)
    finally:
        engine.dispose()


def test_0019_lowers_a_mark_left_above_the_activities_deleted_before_it(tmp_path: Path) -> None:
    """A SQLite store whose newest activities were deleted at 0018 (ids 4 and 5 under a mark
    of 5): the upgrade brings the mark down to 3, so the next activity, given id 4 again, is
    above it, an arrival after the pass; the mark stayed 5 and its change was named decay."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    command.upgrade(alembic_config(engine), "0018")
    activity = (
        "INSERT INTO activities (id, external_id, type, occurred_at, properties, machine,"
        " created_at) VALUES (:id, :external_id, 'page_view', '2026-03-02 09:00:00.000000',"
        " '{}', 0, '2026-03-02 09:00:00.000000')"
    )
    marks = "SELECT last_activity_id, pass_activity_id FROM scoring_runs ORDER BY model"
    try:
        with engine.begin() as connection:
            for index in range(1, 6):
                connection.execute(text(activity), {"id": index, "external_id": f"A{index}"})
            for model, mark in (("default", 5), ("intent", 2)):
                connection.execute(
                    text(
                        "INSERT INTO scoring_runs (model, model_version, last_run_at, changed,"
                        " last_activity_id) VALUES (:model, 'v1', '2026-03-02 09:00:00.000000',"
                        " 0, :mark)"
                    ),
                    {"model": model, "mark": mark},
                )
            connection.execute(text("DELETE FROM activities WHERE id >= 4"))
        migrate(engine)
        with engine.begin() as connection:
            assert connection.execute(text(marks)).all() == [(3, None), (2, None)]
            connection.execute(text(activity), {"id": None, "external_id": "A6"})
            assert connection.execute(text("SELECT max(id) FROM activities")).scalar() == 4
    finally:
        engine.dispose()


def test_0020_gives_the_runs_before_it_no_superseded_rows(tmp_path: Path) -> None:
    """``import_runs.superseded`` is added as 0 to the runs recorded before it, and dropped
    again by the downgrade with the runs kept."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0019")
    run = (
        "INSERT INTO import_runs (kind, file, started_at, status, inserted, updated, unchanged,"
        " rejected) VALUES ('leads', 'l.csv', '2026-03-02 09:00:00.000000', 'done', 3, 0, 0, 1)"
    )
    with engine.begin() as connection:
        connection.execute(text(run))
    command.upgrade(config, "head")
    counted = "SELECT file, inserted, rejected, superseded FROM import_runs"
    with engine.connect() as connection:
        assert connection.execute(text(counted)).all() == [("l.csv", 3, 1, 0)]
    command.downgrade(config, "0019")
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("import_runs")}
        assert "superseded" not in columns
        assert connection.execute(text("SELECT count(*) FROM import_runs")).scalar() == 1
    engine.dispose()


def test_0022_records_the_owner_a_deal_was_given_without_a_stage_change(tmp_path: Path) -> None:
    """A deal whose history ends with another owner than its own (an import gave it to Sam,
    its stage the same: not recorded before 0022) gets the owner change at its last write; a
    deal given no owner likewise; one whose history ends with its owner, or a later row than
    its last write, gets nothing, or the change at that row's time."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'owners.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0020")
    rep = (
        "INSERT INTO reps (id, external_id, name, email, pools, active, timezone, created_at,"
        " updated_at) VALUES (:id, :id, :name, 'r@x.test', '[]', 1, 'UTC',"
        " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
    )
    deal = (
        "INSERT INTO deals (id, external_id, owner_id, stage, attributes, created_at,"
        " updated_at) VALUES (:id, :id, :owner, 'Engaging', '{}', '2026-01-01 00:00:00.000000',"
        " :updated)"
    )
    entry = (
        "INSERT INTO stage_changes (deal_id, at, from_stage, to_stage, from_owner_id,"
        " to_owner_id, cause) VALUES (:deal, :at, NULL, 'Engaging', :owner, :owner, 'import')"
    )
    march, april, may = (f"2026-0{m}-01 00:00:00.000000" for m in (3, 4, 5))
    with engine.begin() as connection:
        connection.execute(text(rep), [{"id": 1, "name": "Rita"}, {"id": 2, "name": "Sam"}])
        connection.execute(
            text(deal),
            [
                {"id": 1, "owner": 2, "updated": april},  # given to Sam
                {"id": 2, "owner": None, "updated": april},  # given to no one
                {"id": 3, "owner": 1, "updated": april},  # still Rita's
                {"id": 4, "owner": 2, "updated": march},  # given to Sam, history later
            ],
        )
        connection.execute(
            text(entry),
            [
                {"deal": 1, "at": march, "owner": 1},
                {"deal": 2, "at": march, "owner": 1},
                {"deal": 3, "at": march, "owner": 1},
                {"deal": 4, "at": may, "owner": 1},
            ],
        )
    command.upgrade(config, "head")
    changes = (
        "SELECT deal_id, at, from_stage, to_stage, from_owner_id, to_owner_id, cause"
        " FROM stage_changes WHERE cause = 'migration' ORDER BY deal_id"
    )
    with engine.connect() as connection:
        assert connection.execute(text(changes)).all() == [
            (1, april, "Engaging", "Engaging", 1, 2, "migration"),
            (2, april, "Engaging", "Engaging", 1, None, "migration"),
            (4, may, "Engaging", "Engaging", 1, 2, "migration"),
        ]
    engine.dispose()
