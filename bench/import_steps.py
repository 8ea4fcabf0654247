"""Where an import's time goes: each step of ``leadflow import leads`` timed in-process.

    .venv/bin/python bench/import_steps.py [--rows 200000] [--shape crm] [--store sqlite]

Generates the file as ``import_bench.py`` does (same shapes and configuration), opens a fresh
store the same way, and imports it once with the steps' methods wrapped in timers: cells to
typed values (``ColumnPlan.read``), column values, checks and hash (``KindWriter.prepare``),
the batch's write (``TableWriter.write``), the stage history (``after_write``). What is left of
the import's CPU time is reading the CSV, batching and committing. The statements' wall-clock
time is summed per statement (the first 60 characters), the server's share on PostgreSQL.
CPU time is the process's own; rows per CPU-second beside it. Prints the load average.

No profiler: cProfile's overhead per call doubles the Python steps' share. The same script
runs against an earlier version of the package (``PYTHONPATH=that/checkout``) as long as it has
these four methods.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from import_bench import SHAPES, _open_store, fresh_store  # the script's own folder

Timings = dict[str, list[float]]


def _timed(owner: type, name: str, label: str, timings: Timings) -> None:
    """Replace ``owner.name`` by the same method adding its CPU and wall time to ``label``."""
    method: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent = timings.setdefault(label, [0.0, 0.0])
            spent[0] += time.process_time() - cpu
            spent[1] += time.perf_counter() - wall

    setattr(owner, name, timed)


def _wrap_steps(timings: Timings) -> None:
    from leadflow.ingest import kind_writer, mapping, stage_entries, writers

    _timed(mapping.ColumnPlan, "read", "cells to typed values (ColumnPlan.read)", timings)
    _timed(kind_writer.KindWriter, "prepare", "values, checks, hash (KindWriter.prepare)", timings)
    _timed(writers.TableWriter, "write", "the write (TableWriter.write)", timings)
    _timed(stage_entries.RecordsStageEntries, "after_write", "stage history (after_write)", timings)


def _count_statements(engine: Any, statements: Timings) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def before(connection: Any, *_args: Any) -> None:
        connection.info["statement_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def after(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        spent = time.perf_counter() - connection.info["statement_started"]
        key = " ".join(statement.split())[:60]
        counted = statements.setdefault(key, [0.0, 0.0])
        counted[0] += 1
        counted[1] += spent


def measure(rows: int, shape_name: str, store: str) -> None:
    from leadflow.clock import SystemClock
    from leadflow.ingest import import_file

    shape = SHAPES[shape_name]
    steps: Timings = {}
    statements: Timings = {}
    _wrap_steps(steps)
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="leadflow-steps-") as folder:
        root = Path(folder)
        csv_path = root / f"{shape.name}.csv"
        shape.generate(csv_path, rows)
        with fresh_store(root, store, f"{shape.name}-steps") as url:
            config = root / "config.yaml"
            config.write_text(shape.config.format(url=json.dumps(url)), encoding="utf-8")
            settings, engine = _open_store(config)
            _count_statements(engine, statements)
            cpu, wall = time.process_time(), time.perf_counter()
            report = import_file(engine, settings, "leads", csv_path, clock=SystemClock())
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            engine.dispose()
    assert report.rejected == 0, report.problems[:3]
    print(
        f"{shape.description}, {store}, {rows:,} rows: {rows / wall:,.0f} rows/s, "
        f"{rows / cpu:,.0f} rows per CPU-second ({cpu / rows * 1e6:.1f} us a row)"
    )
    accounted = 0.0
    for label, (step_cpu, step_wall) in steps.items():
        accounted += step_cpu
        print(f"  {label:<48} {step_cpu / rows * 1e6:5.1f} us CPU  (wall {step_wall:6.1f} s)")
    rest = (cpu - accounted) / rows * 1e6
    print(f"  {'the rest: CSV reading, batching, commits':<48} {rest:5.1f} us CPU")
    print("  statements by wall-clock time:")
    ranked = sorted(statements.items(), key=lambda item: -item[1][1])
    for statement, (count, spent) in ranked[:14]:
        print(f"    {spent:7.2f} s  {count:5.0f}x  {statement}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="crm")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    options = parser.parse_args()
    measure(options.rows, options.shape, options.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
