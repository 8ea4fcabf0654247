"""Start-up of ``leadflow --help``, ``check`` and ``test``, beside importing yaml+jinja2+pydantic.

    .venv/bin/python bench/startup_bench.py            # about 1-3 minutes on 2 cores

Each round runs every command once as a fresh process (wall clock, output discarded), in an
order that rotates from round to round, so load from other processes falls on all of them
alike. The baseline, ``python -c "import yaml, jinja2, pydantic"``, runs in the same rounds:
the libraries a command that reads settings, rules and templates cannot do without. Per
command the table gives the median, the fastest and slowest round, and the ratio of medians
to the baseline; ``per-round`` is the spread of each round's own ratio. The machine is shared,
so the CPU time each process used (user + system, its children included) is given beside the
wall clock: other processes' load lengthens the wall clock of a start-up, hardly its CPU time.

The commands run in the repository root on the shipped sample, as the README does:
``leadflow check`` (``rules/``, ``templates/``, ``config.yaml``) and ``leadflow test
rule_tests`` (8 rule test cases, each on a scratch SQLite store). ``test imports`` is the part
of ``test`` that is start-up: a process importing what ``leadflow test`` loads before its first
case runs; the rest of ``test`` is the cases themselves.

The processes run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their
environment), as in an ordinary install: with it set, as in the development container, every
leadflow module is compiled from source at every start while the baseline's libraries come
with their ``.pyc`` files, and the comparison would measure the compiler. The first, unmeasured
round writes ``__pycache__/`` (git-ignored).

Target: ``--help``, ``check`` and ``test`` within 2x of the baseline. Options: ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = 2.0
BASELINE = "baseline"

TEST_IMPORTS = (
    "from leadflow.cli import rule_test_command; import leadflow.config; "
    "import leadflow.rule_testing.runner, leadflow.rule_testing.report"
)
COMMANDS: dict[str, list[str]] = {
    BASELINE: [sys.executable, "-c", "import yaml, jinja2, pydantic"],
    "leadflow --help": [str(BIN / "leadflow"), "--help"],
    "leadflow check": [str(BIN / "leadflow"), "check"],
    "leadflow test rule_tests": [str(BIN / "leadflow"), "test", "rule_tests"],
    "test imports": [sys.executable, "-c", TEST_IMPORTS],
}
TARGETED = ("leadflow --help", "leadflow check", "leadflow test rule_tests")
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Row:
    name: str
    seconds: list[float]
    ratios: list[float]
    """Each round's time over that round's baseline."""
    cpu: list[float]
    """CPU seconds (user + system) of each round's process."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def machine() -> str:
    """CPU model, cores, memory, Python, SQLite and the load: what a figure was measured on."""
    cpu = "unknown CPU"
    memory = ""
    try:
        cpu = cpu_model()
        total = Path("/proc/meminfo").read_text(encoding="utf-8").splitlines()[0].split()[1]
        memory = f", {int(total) / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError, IndexError):
        cpu = platform.processor() or cpu
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        msg = f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        raise SystemExit(msg)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def measure(rounds: int) -> list[Row]:
    names = list(COMMANDS)
    for name in names:  # once unmeasured: bytecode written, the page cache warm
        run_once(COMMANDS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        took = {name: run_once(COMMANDS[name]) for name in order}
        for name in names:
            times[name].append(took[name][0])
            ratios[name].append(took[name][0] / took[BASELINE][0])
            cpu[name].append(took[name][1])
        print(f"round {round_number + 1}/{rounds}: load {load()}", file=sys.stderr, flush=True)
    return [Row(name, times[name], ratios[name], cpu[name]) for name in names]


def print_table(rows: list[Row]) -> None:
    baseline = next(row for row in rows if row.name == BASELINE)
    print(
        "| command | wall median | fastest-slowest | x baseline (medians) | per-round x "
        "| CPU median | CPU x baseline |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.name} | {row.median:.3f} s | {min(row.seconds):.3f}-{max(row.seconds):.3f} s "
            f"| {row.median / baseline.median:.2f}x "
            f"| {min(row.ratios):.2f}-{max(row.ratios):.2f}x "
            f"| {row.cpu_median:.3f} s | {row.cpu_median / baseline.cpu_median:.2f}x |"
        )
    print()
    for row in rows:
        if row.name in TARGETED:
            ratio = row.median / baseline.median
            verdict = "met" if ratio <= TARGET else "NOT met"
            print(
                f"{row.name}: {ratio:.2f}x the baseline (CPU {row.cpu_median / baseline.cpu_median:.2f}x), "
                f"target <= {TARGET:g}x: {verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"load average before: {load()}")
    rows = measure(args.rounds)
    print(f"load average after: {load()}")
    print(f"{args.rounds} rounds, baseline: python -c 'import yaml, jinja2, pydantic'\n")
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
