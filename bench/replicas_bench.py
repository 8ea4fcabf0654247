"""Evaluation and sending throughput with 1, 2 and 3 daemon replicas on one PostgreSQL.

For each replica count, on a fresh schema of the local PostgreSQL server (``LEADFLOW_BENCH_PG``,
default the tests' ``test`` database) and an aiosmtpd sink in this process:

1. **evaluation**: the replicas run with the sender effectively idle (``mail.poll_interval``
   1 h), ``--leads`` leads that the MQL rule takes are inserted, and the time until the last
   one is an MQL gives leads evaluated per second (one replica evaluates at a time: the leader);
2. **sending**: the replicas are stopped (SIGTERM) and started again with a 0.2 s poll; the time
   from the sink's first to its last accepted message gives emails sent per second (every
   replica claims from the outbox, ``FOR UPDATE SKIP LOCKED``).

    .venv/bin/python bench/replicas_bench.py [--leads 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadflow.store.database import create_store_engine, migrate  # noqa: E402
from tests.mail_support import smtp_server  # noqa: E402
from tests.replica_support import (  # noqa: E402
    GatedSink,
    Replica,
    make_project,
    mql_count,
    seed_funnel,
    sent_message_ids,
    wait_until,
)

PG_URL = os.environ.get("LEADFLOW_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONFIG = """\
mail:
  transport: smtp
  from: "leadflow <leadflow@example.com>"
  poll_interval: 1h
  batch_size: 100
  smtp: {host: 127.0.0.1, timeout: 10s, rate_per_second: 10000}
http:
  enabled: false
calendar:
  timezone: UTC
scheduler:
  evaluation_batch: 200
"""


def fresh_schema(admin: Engine) -> tuple[str, str]:
    schema = f"lf_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    engine = create_store_engine(rendered)
    migrate(engine)
    engine.dispose()
    return schema, rendered


def start(projects: list[Path], url: str, phase: str, **env: str) -> list[Replica]:
    replicas = [Replica(p, url, log_name=f"{phase}.log", **env) for p in projects]
    for replica in replicas:
        wait_until(partial(replica.has, "daemon_started"), "the replicas to start", 60)
    return replicas


def stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.process.terminate()
    for replica in replicas:
        replica.process.wait(timeout=30)


def measure(count: int, leads: int, folder: Path, admin: Engine) -> tuple[float, float]:
    schema, url = fresh_schema(admin)
    store = create_engine(url)
    sink = GatedSink()
    try:
        with smtp_server(sink) as port:  # type: ignore[arg-type]
            env = {"LEADFLOW_MAIL__SMTP__PORT": str(port)}
            projects = [make_project(folder / f"{count}-{i}", CONFIG) for i in range(count)]
            seed_funnel(store, datetime.now(UTC) - timedelta(days=1), 0)
            replicas = start(projects, url, "evaluate", **env)
            try:
                wait_until(
                    lambda: any(r.has("leadership_acquired") for r in replicas), "a leader", 30
                )
                began = time.perf_counter()
                seed_funnel(store, datetime.now(UTC) - timedelta(days=1), leads)
                wait_until(lambda: mql_count(store) == leads, "every MQL", 600, every=0.02)
                evaluated = leads / (time.perf_counter() - began)
            finally:
                stop(replicas)
            replicas = start(projects, url, "send", LEADFLOW_MAIL__POLL_INTERVAL="0.2s", **env)
            try:
                wait_until(lambda: len(sent_message_ids(store)) == leads, "every email", 600)
                times = sorted(a.at for a in sink.accepted)
                sent = (len(times) - 1) / (times[-1] - times[0])
            finally:
                stop(replicas)
    finally:
        store.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    return evaluated, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    args = parser.parse_args()
    admin = create_engine(PG_URL)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for count in (1, 2, 3):
            evaluated, sent = measure(count, args.leads, Path(folder), admin)
            rows.append((count, evaluated, sent))
            print(f"{count} replica(s): {evaluated:.0f} leads/s, {sent:.0f} emails/s", flush=True)
    admin.dispose()
    print(f"\n{args.leads} leads, one MQL email each, PostgreSQL, aiosmtpd sink in-process\n")
    print(f"{'replicas':>8} {'leads evaluated/s':>18} {'emails sent/s':>14}")
    for count, evaluated, sent in rows:
        print(f"{count:>8} {evaluated:>18.0f} {sent:>14.0f}")


if __name__ == "__main__":
    main()
