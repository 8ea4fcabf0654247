"""What several benches share: a migrated scratch store that is gone afterwards, and the
wall-clock and CPU time of each round."""

from __future__ import annotations

import resource
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from leadflow.store.database import create_store_engine, migrate


@contextmanager
def scratch_store(postgres: str | None, prefix: str) -> Iterator[Engine]:
    """A migrated store: a SQLite file in a temporary folder when ``postgres`` is None, else a
    schema of its own (``prefix`` and a random suffix) on that server, dropped afterwards."""
    if postgres is None:
        with tempfile.TemporaryDirectory() as folder:
            engine = create_store_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            try:
                migrate(engine)
                yield engine
            finally:
                engine.dispose()
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = create_store_engine(url.render_as_string(hide_password=False))
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (a `leadflow` run)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timings:
    """Wall-clock and CPU seconds of each round, scaled; shown with ``digits`` decimals."""

    def __init__(self, digits: int = 3) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.digits = digits

    @contextmanager
    def measure(self, scale: float = 1.0) -> Iterator[None]:
        cpu = cpu_seconds()
        started = time.perf_counter()
        yield
        self.wall.append((time.perf_counter() - started) * scale)
        self.cpu.append((cpu_seconds() - cpu) * scale)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def __str__(self) -> str:
        d = self.digits
        if len(self.wall) == 1:
            return f"{self.wall[0]:.{d}f} s (CPU {self.cpu[0]:.{d}f} s)"
        return (
            f"{self.median:.{d}f} s ({min(self.wall):.{d}f}-{max(self.wall):.{d}f}; "
            f"CPU {statistics.median(self.cpu):.{d}f} s)"
        )


def bulk_load_connection(path: str, *, sorter_thread: bool = False) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` set for a bulk load the benches make: no
    rollback journal (a WAL would write every page twice), no sync, foreign keys off (checked
    once after the load), 256 MB of page cache for the index sorts. The file's other
    connections must be closed: leaving WAL mode needs the only one."""
    connection = sqlite3.connect(path, isolation_level=None)
    pragmas = [
        "journal_mode=DELETE",
        "journal_mode=OFF",
        "synchronous=OFF",
        "foreign_keys=OFF",
        "temp_store=MEMORY",
        "cache_size=-262144",
    ]
    if sorter_thread:
        pragmas.append("threads=2")  # a sorter thread when the other core is free
    for pragma in pragmas:
        connection.execute(f"PRAGMA {pragma}")
    return connection
