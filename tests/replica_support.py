"""Shared by the daemon process tests and the replicas bench: daemon processes, a gated SMTP
sink, the store.

- :class:`Replica`: ``python daemon.py`` (or ``leadflow daemon``) in a project folder of its own,
  configured by ``config.yaml`` plus ``LEADFLOW_...`` variables, its JSON log in ``daemon.log``;
  :func:`make_project` writes the folder, :func:`smtp_daemon_config` its config for a daemon
  that sends to an SMTP sink, :func:`wait_until` polls for what the test waits on.
- :class:`GatedSink`: an aiosmtpd handler that records every accepted message with its
  Message-ID and time, can be slowed and can be *held*: a held sink keeps each DATA waiting and
  accepts it only if the client is still connected when released, as a real relay discards a
  message whose client vanished before the ``250``.
- The funnel a test seeds (reps of one pool, leads that the MQL rule takes) and what it reads
  back (each lead's stage and owner, audit actions, outbox keys).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url

from leadflow.store.database import create_store_engine
from leadflow.store.tables import AUDIT, LEADS, OUTBOX, REPS
from tests.conftest import empty_every_table

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

MQL_RULE = """\
rules:
  - id: hot-leads
    description: Leads at or above 60 become MQLs of the inbound pool, round robin.
    every: 1s
    reentry: once
    when:
      all:
        - {field: score, at_least: 60}
        - {field: stage, equals: lead}
    actions:
      - set_stage: mql
      - assign: {pool: inbound}
      - notify: {to: owner, template: mql_assigned}
"""

REPS_IN_POOL = ("r1", "r2", "r3")

SMTP_DAEMON: dict[str, Any] = {
    "mail": {
        "transport": "smtp",
        "from": "leadflow <leadflow@example.com>",
        "poll_interval": "0.2s",
        "smtp": {"host": "127.0.0.1", "timeout": "2s", "data_done_timeout": "2s"},
        "retry": {"first_delay": "0.5s", "max_delay": "2s", "give_up_after": "1h"},
    },
    "http": {"enabled": False},
    "calendar": {"timezone": "UTC"},
    "scheduler": {"shutdown_grace": "5s"},
}
"""A daemon sending to an SMTP sink on 127.0.0.1 (its port from ``LEADFLOW_MAIL__SMTP__PORT``),
retrying a failed delivery within seconds, HTTP off, stopping within 5 s."""


def smtp_daemon_config(**sections: dict[str, Any]) -> str:
    """``config.yaml`` text: :data:`SMTP_DAEMON` with ``sections`` merged in, key by key."""

    def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        result = dict(base)
        for key, value in extra.items():
            nested = isinstance(value, dict) and isinstance(base.get(key), dict)
            result[key] = merged(base[key], value) if nested else value
        return result

    return yaml.safe_dump(merged(SMTP_DAEMON, sections), sort_keys=False)


def wait_until(
    probe: Callable[[], T],
    what: str,
    timeout: float = 20.0,
    every: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` after.
    A probe raising one of ``retry_on`` (a server not listening yet) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except retry_on:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}; last value {value!r}"
            raise AssertionError(msg)
        time.sleep(every)


def via(url: str, port: int) -> str:
    """``url`` pointed at 127.0.0.1:``port`` (a proxy), everything else unchanged."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def make_project(folder: Path, config: str, rules: str = MQL_RULE) -> Path:
    """A project folder: ``config.yaml``, ``rules/hot.yaml``, the repository's templates."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "hot.yaml").write_text(rules, encoding="utf-8")
    if not (folder / "templates").exists():
        shutil.copytree(REPO / "templates", folder / "templates")
    return folder


def emptied_store(postgres_url: str) -> Iterator[Engine]:
    """A fixture's body: the session's PostgreSQL schema, emptied, and an engine reading it
    directly."""
    engine = create_store_engine(postgres_url)
    empty_every_table(engine)
    yield engine
    engine.dispose()


class Replica:
    """One daemon process (``python daemon.py`` unless ``command`` says otherwise); its JSON log
    lines are read back as events; ``environment`` holds all the variables it was started with."""

    def __init__(
        self,
        project: Path,
        database_url: str,
        *,
        log_name: str = "daemon.log",
        command: Sequence[str] = (sys.executable, str(REPO / "daemon.py")),
        **env: str,
    ) -> None:
        self.project = project
        self.log_path = project / log_name
        self.started_at = time.monotonic()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        environment |= {"LEADFLOW_DATABASE__URL": database_url, "LEADFLOW_LOG__FORMAT": "json"}
        environment |= env
        self.environment = environment
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(command),
                cwd=project,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_port(self) -> int:
        """The port its HTTP server was told to listen on (``LEADFLOW_HTTP__PORT``)."""
        return int(self.environment["LEADFLOW_HTTP__PORT"])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def has(self, name: str) -> bool:
        return bool(self.events(name))

    def kill(self) -> float:
        """SIGKILL; the monotonic time of the kill."""
        at = time.monotonic()
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        return at

    def terminate(self, timeout: float = 15.0) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=timeout)
        return self.process.returncode


@dataclass(frozen=True)
class Accepted:
    """One message the sink accepted."""

    message_id: str
    recipient: str
    at: float
    """time.monotonic() of the acceptance."""


@dataclass
class GatedSink:
    """An aiosmtpd handler: ``delay`` before each DATA reply; :meth:`hold` keeps DATA waiting."""

    delay: float = 0.0
    accepted: list[Accepted] = field(default_factory=list)
    waiting: int = 0
    discarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _open: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(a.message_id for a in self.accepted)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.waiting += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if not self._open.is_set():
                await asyncio.to_thread(self._open.wait)
        finally:
            with self.lock:
                self.waiting -= 1
        if server.transport is None or server.transport.is_closing():
            with self.lock:
                self.discarded += 1  # the client is gone before our 250: nothing was delivered
            return "451 client gone"
        message_id = _message_id(envelope.original_content)
        with self.lock:
            self.accepted.append(
                Accepted(message_id, ",".join(envelope.rcpt_tos), time.monotonic())
            )
        return "250 OK"


def _message_id(content: bytes) -> str:
    for line in content.split(b"\r\n\r\n", 1)[0].splitlines():
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def seed_funnel(engine: Engine, now: datetime, leads: int, *, prefix: str = "M") -> list[str]:
    """Three active reps of pool ``inbound`` and ``leads`` leads at score 80 (the rule takes
    them all, in id order); the leads' external ids."""
    with engine.begin() as connection:
        if connection.execute(select(func.count()).select_from(REPS)).scalar_one() == 0:
            connection.execute(
                insert(REPS),
                [
                    {
                        "external_id": rep,
                        "name": f"Rep {rep.upper()}",
                        "email": f"{rep}@example.com",
                        "pools": ["inbound"],
                        "timezone": "UTC",
                        "active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for rep in REPS_IN_POOL
                ],
            )
        ids = [f"{prefix}{i:05}" for i in range(leads)]
        if not ids:
            return ids
        connection.execute(
            insert(LEADS),
            [
                {
                    "external_id": external_id,
                    "name": f"Lead {external_id}",
                    "company": "Acme",
                    "email": f"{external_id.lower()}@acme.test",
                    "score": 80,
                    "stage": "lead",
                    "attributes": {},
                    "stage_entered_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for external_id in ids
            ],
        )
    return ids


def round_robin(ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """What one uninterrupted evaluation does to ``ids`` (in id order): MQL, reps in turn."""
    return {lead: ("mql", REPS_IN_POOL[i % len(REPS_IN_POOL)]) for i, lead in enumerate(ids)}


def lead_states(engine: Engine) -> dict[str, tuple[str, str | None]]:
    """Each lead's stage and its owner's external id."""
    query = select(
        LEADS.c.external_id, LEADS.c.stage, REPS.c.external_id.label("owner")
    ).select_from(LEADS.outerjoin(REPS, LEADS.c.owner_id == REPS.c.id))
    with engine.connect() as connection:
        return {row.external_id: (row.stage, row.owner) for row in connection.execute(query)}


def mql_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(LEADS).where(LEADS.c.stage == "mql")
            ).scalar_one()
        )


def audit_actions(engine: Engine) -> Counter[tuple[str, str]]:
    """(lead external id, action) -> how many audit rows say so."""
    query = select(LEADS.c.external_id, AUDIT.c.action).join(LEADS, AUDIT.c.lead_id == LEADS.c.id)
    with engine.connect() as connection:
        return Counter((row.external_id, row.action) for row in connection.execute(query))


def outbox(engine: Engine) -> dict[str, tuple[str, str]]:
    """Idempotency key -> (Message-ID, status) of every outbox row."""
    query = select(OUTBOX.c.idempotency_key, OUTBOX.c.message_id, OUTBOX.c.status)
    with engine.connect() as connection:
        return {row[0]: (row[1], row[2]) for row in connection.execute(query)}


def outbox_per_lead(engine: Engine) -> Counter[str]:
    """Lead external id -> how many outbox rows it caused."""
    query = select(LEADS.c.external_id).join(OUTBOX, OUTBOX.c.lead_id == LEADS.c.id)
    with engine.connect() as connection:
        return Counter(connection.execute(query).scalars())


def postgres_port(url: str) -> int:
    return make_url(url).port or 5432


def sent_message_ids(engine: Engine) -> set[str]:
    query = select(OUTBOX.c.message_id).where(OUTBOX.c.status == "sent")
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())
