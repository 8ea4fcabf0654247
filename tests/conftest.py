"""Shared fixtures: the same store tests run over a real SQLite file and a real PostgreSQL.

PostgreSQL is ``LEADFLOW_TEST_PG_URL`` (default: the local server's ``test`` database). Each
test session works in a schema of its own, so parallel runs never see each other's rows. Locally
an unreachable server skips the PostgreSQL tests; with ``CI`` set it fails them loudly.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.dashboard.funnel_snapshots import THREAD_NAME as FUNNEL_REPORT_THREAD
from leadflow.logs import release_standard_library
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.models import metadata

PG_URL = os.environ.get("LEADFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="session", autouse=True)
def _template_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled email templates go to a cache folder of the session's (the commands the tests
    run as subprocesses included), not to the developer's ~/.cache: every test's templates
    are in a new temporary folder, each an entry of its own."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


def _postgres_reachable() -> str | None:
    try:
        probe = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with probe.connect() as connection:
            connection.execute(text("select 1"))
        probe.dispose()
    except Exception as exc:  # any failure to connect means "not reachable" here
        return str(exc).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, migrated schema of its own on the PostgreSQL server."""
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI: {problem}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {problem}")
    with migrated_schema() as url:
        yield url


@contextmanager
def migrated_schema(revision: str | None = "head") -> Iterator[str]:
    """A new schema of its own on the PostgreSQL server, migrated to ``revision`` (None: left
    empty, as a store nothing has written yet), dropped after."""
    schema = f"lf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    # The tests never stop the server, so a commit that waits for its WAL to reach the disk
    # buys nothing they can see: an asynchronous commit is as visible to every other session
    # at once, and spares a flush per commit (the sixty days alone commit over 12,000 times).
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    url = make_url(PG_URL).update_query_dict({"options": options})
    rendered = url.render_as_string(hide_password=False)
    if revision is not None:
        engine = create_store_engine(rendered)
        migrate(engine, revision)
        engine.dispose()
    try:
        yield rendered
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "leadflow.db"
    engine = create_store_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


def empty_every_table(engine: Engine) -> None:
    """Empty the store's tables and restart their ids, as ``TRUNCATE ... RESTART IDENTITY``
    would, with ``DELETE``: on a test's few rows it takes milliseconds, where ``TRUNCATE``,
    which makes new files for every table and index, took half a second before each of the
    850 PostgreSQL tests (over three minutes of CI). One statement, a ``DO`` block: a
    ``DELETE`` each was a round trip to the server each, 9 ms a test where this takes 4."""
    with engine.begin() as connection:
        connection.execute(text(EMPTY_EVERY_TABLE))


EMPTY_EVERY_TABLE = (
    "DO $$ BEGIN "
    + " ".join(f'DELETE FROM "{table.name}";' for table in reversed(metadata.sorted_tables))
    + " PERFORM setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false)"
    " FROM pg_sequences WHERE schemaname = current_schema(); END $$"
)
"""Every table emptied, children first, and every sequence restarted, in the current schema."""


@pytest.fixture(scope="session")
def postgres_emptier(postgres_url: str) -> Iterator[Engine]:
    """An engine on the session's schema that empties it before each PostgreSQL test: one for
    the session, as a new engine's first connection (its login, the dialect's questions, the
    statement timeout) cost 20 ms more than the emptying, before each of 960 tests."""
    engine = create_store_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_store_url(postgres_url: str, postgres_emptier: Engine) -> str:
    """The URL of an empty, migrated PostgreSQL store, for a test with nothing to test on
    SQLite (override ``store_url`` with it rather than skip half the parametrised test)."""
    empty_every_table(postgres_emptier)
    return postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated store: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        target = tmp_path / "state" / "leadflow.db"
        target.parent.mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    return str(request.getfixturevalue("postgres_store_url"))


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An engine on an empty, migrated store (parametrised over SQLite and PostgreSQL)."""
    created = create_store_engine(store_url)
    yield created
    join_funnel_reports()
    created.dispose()


def join_funnel_reports(timeout: float = 60) -> None:
    """Wait for the Funnel page's background reports a test left running (a page requested
    without waiting for its figures): their connection must go back before the store goes."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(FUNNEL_REPORT_THREAD):
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def clock() -> SettableClock:
    """A clock standing still at Monday 2 March 2026, 09:00 UTC until a test moves it."""
    return SettableClock(T0)


@pytest.fixture
def make_settings(tmp_path: Path, store_url: str) -> Any:
    """Build settings rooted in ``tmp_path`` on the test's store, with dotted-key overrides."""

    def build(**overrides: Any) -> Settings:
        config_file = tmp_path / "config.yaml"
        if not config_file.exists():
            config_file.write_text("", encoding="utf-8")
        values = {"database.url": store_url}
        values.update({key.replace("__", "."): value for key, value in overrides.items()})
        return load_settings(config_file, env={}, overrides=values).settings

    return build


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Property-based tests (hypothesis), and those marked ``untraced``, run untraced by coverage.

    On Python 3.11 a trace function slows every line the process runs about twofold, and a
    property test runs the same code for dozens of generated examples: coverage needs one run
    of each line, which the tests with pinned examples give (the floor below still holds).
    Only while coverage runs: under ``--no-cov`` pytest-cov's marker hook fails on its absent
    controller.

    The tests marked ``slow`` run first (otherwise in their order): two workers share the
    whole run only if the longest tests do not start last, when one worker would be left with
    a minute of the sixty days while the other has nothing to do. xdist's ``worksteal``
    (pyproject) gives the idle worker the rest of the other's queue."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if getattr(config.pluginmanager.getplugin("_cov"), "cov_controller", None) is None:
        return
    for item in items:
        hypothesis = getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        if hypothesis or item.get_closest_marker("untraced") is not None:
            item.add_marker(pytest.mark.no_cover)


@contextmanager
def coverage_paused(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pause coverage's tracing inside a fixture (``no_cover`` pauses a test's call only): for
    a scenario run in a fixture that repeats code many times over, as a property test does."""
    plugin = request.config.pluginmanager.getplugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if controller is None:
        yield
        return
    controller.pause()
    try:
        yield
    finally:
        controller.resume()


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """The stopping signals' handlers as they were before the test.

    An in-process ``leadflow daemon`` (refused at start, say) leaves SIGINT, SIGTERM and SIGHUP
    ignored, as its process does on its way out; in a test worker every later subprocess then
    inherited SIGINT ignored, and a Ctrl-C test's import ran to its end."""
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {sig: signal.getsignal(sig) for sig in stopping}
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults, whatever a CLI call configured, and
    no standard-library records routed into it (a library's thread would print into the next
    test's captured stderr)."""
    structlog.reset_defaults()
    release_standard_library()
    yield
    structlog.reset_defaults()
    release_standard_library()
