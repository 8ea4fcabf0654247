"""Every Prometheus metric leadflow exports, in one registry that ``/metrics`` serves.

The engine, the sender and the rule watcher call the small ``record_*`` functions here, so
metric names and labels are spelled in one place. Gauges that describe the store (outbox depth,
age of the oldest pending message) are filled when scraped, by :func:`observe_outbox`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

EVALUATIONS = Counter(
    "leadflow_rule_evaluations",
    "Rule evaluations, by rule and result (ok; failed: the rule's own error; firings_failed: "
    "the run went through but some firings failed).",
    ["rule_id", "result"],
    registry=REGISTRY,
)
EVALUATION_SECONDS = Histogram(
    "leadflow_rule_evaluation_seconds",
    "How long one evaluation of a rule took.",
    ["rule_id"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
MATCHES = Counter(
    "leadflow_rule_matches",
    "Leads or deals a rule's condition matched, by rule.",
    ["rule_id"],
    registry=REGISTRY,
)
ACTIONS = Counter(
    "leadflow_actions",
    "Actions applied by rules (set_stage, assign, notify, ...), by action type.",
    ["action"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "leadflow_outbox_deliveries",
    "Outbox delivery attempts, by channel (email, webhook) and result (sent, retried, failed).",
    ["channel", "result"],
    registry=REGISTRY,
)
RELOADS = Counter(
    "leadflow_rule_reloads",
    "Rule set loads, by result (success, failure); a failed one keeps the last good set.",
    ["result"],
    registry=REGISTRY,
)
SCORING_PASSES = Counter(
    "leadflow_scoring_passes",
    "Scoring passes over every lead (not a posted lead's rescore), by result (ok, failed); a "
    "failed pass leaves every score as it was, while email and rules go on.",
    ["result"],
    registry=REGISTRY,
)
LAST_TICK = Gauge(
    "leadflow_last_successful_tick_timestamp_seconds",
    "Unix time of the last rule evaluation or funnel tick that finished without error.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "leadflow_leader",
    "1 while this replica is the leader, the one evaluating rules and ticking the funnel; 0 "
    "otherwise (every replica sends from the outbox). Its sum over the replicas is 1.",
    registry=REGISTRY,
)
OUTBOX_MESSAGES = Gauge(
    "leadflow_outbox_messages",
    "Outbox rows by channel and status, as of the last scrape.",
    ["channel", "status"],
    registry=REGISTRY,
)
OUTBOX_OLDEST_PENDING = Gauge(
    "leadflow_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending outbox row by channel (0 when none is pending).",
    ["channel"],
    registry=REGISTRY,
)


def record_evaluation(
    rule_id: str, *, seconds: float, matched: int, error: str | None, failed_firings: int = 0
) -> None:
    """One finished evaluation of ``rule_id`` (not a dry run)."""
    result = "failed" if error else "firings_failed" if failed_firings else "ok"
    EVALUATIONS.labels(rule_id, result).inc()
    EVALUATION_SECONDS.labels(rule_id).observe(seconds)
    MATCHES.labels(rule_id).inc(matched)
    if error is None:
        record_tick()


def record_actions(actions: Iterable[str], firings: int = 1) -> None:
    """Actions of ``firings`` successful firings of one rule."""
    for action in actions:
        ACTIONS.labels(action).inc(firings)


def record_tick() -> None:
    """A tick (evaluation or funnel pass) finished without error, now (wall clock)."""
    LAST_TICK.set(time.time())


def record_leader(*, leader: bool) -> None:
    """This replica became the leader, or stopped being it."""
    LEADER.set(1 if leader else 0)


def record_scoring_pass(*, ok: bool) -> None:
    SCORING_PASSES.labels("ok" if ok else "failed").inc()


def record_reload(*, ok: bool) -> None:
    RELOADS.labels("success" if ok else "failure").inc()


def record_delivery(channel: str, result: str, count: int = 1) -> None:
    """``count`` delivery outcomes: ``result`` is the outbox status they led to (sent, pending,
    failed)."""
    DELIVERIES.labels(channel, _RESULTS.get(result, result)).inc(count)


_RESULTS = {"pending": "retried"}


def observe_outbox(
    counts: Iterable[tuple[str, str, int]],
    oldest_pending: Iterable[tuple[str, datetime]],
    now: datetime,
    statuses: Iterable[str],
) -> None:
    """Set the outbox gauges from (channel, status, count) rows and oldest pending times.

    Every status of every channel seen is set, zeros included, so a status that emptied does
    not keep its last value.
    """
    rows = list(counts)
    channels = {"email"} | {channel for channel, _status, _count in rows}
    known = list(statuses)
    found = {(channel, status): count for channel, status, count in rows}
    for channel in sorted(channels):
        for status in known:
            OUTBOX_MESSAGES.labels(channel, status).set(found.get((channel, status), 0))
        OUTBOX_OLDEST_PENDING.labels(channel).set(0)
    for channel, created in oldest_pending:
        OUTBOX_OLDEST_PENDING.labels(channel).set(max(0.0, (now - created).total_seconds()))
