"""The tables as SQLAlchemy Core objects, for queries that need no ORM objects (and type-check)."""

from __future__ import annotations

from sqlalchemy import Table

from leadflow.store.models import metadata

REPS: Table = metadata.tables["reps"]
LEADS: Table = metadata.tables["leads"]
DEALS: Table = metadata.tables["deals"]
ACTIVITIES: Table = metadata.tables["activities"]
AUDIT: Table = metadata.tables["audit_log"]
OUTBOX: Table = metadata.tables["outbox"]
SLA_TIMERS: Table = metadata.tables["sla_timers"]
NURTURE: Table = metadata.tables["nurture_enrollments"]
FIRINGS: Table = metadata.tables["rule_firings"]
RULE_RUNS: Table = metadata.tables["rule_runs"]
ROTATIONS: Table = metadata.tables["assignment_rotations"]
IMPORT_RUNS: Table = metadata.tables["import_runs"]
STORE_SECRETS: Table = metadata.tables["store_secrets"]
SCORE_CHANGES: Table = metadata.tables["score_changes"]
SCORING_RUNS: Table = metadata.tables["scoring_runs"]
SCORING_FAILURES: Table = metadata.tables["scoring_failures"]
STAGE_CHANGES: Table = metadata.tables["stage_changes"]
EVALUATOR_LEADER: Table = metadata.tables["evaluator_leader"]
