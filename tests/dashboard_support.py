"""Shared by the dashboard tests: a small store whose every row a test can name, settings with
a viewer and an operator, and an in-process client that keeps the session cookie."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Engine, insert

from leadflow.settings import Settings
from leadflow.store.tables import (
    ACTIVITIES,
    AUDIT,
    LEADS,
    OUTBOX,
    REPS,
    SCORE_CHANGES,
    SLA_TIMERS,
    STAGE_CHANGES,
)
from tests.conftest import T0
from tests.http_support import http_settings

PASSWORDS = {"vera": "viewer-pass-1", "otto": "operator-pass-2"}
# Cheap parameters keep the tests quick; verifying reads them from the hash itself.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_HASHES = {name: _CHEAP.hash(password) for name, password in PASSWORDS.items()}
HOUR = timedelta(hours=1)


def dashboard_settings(make_settings: Any, **overrides: Any) -> Settings:
    """The repository's rules, the dashboard on, vera a viewer and otto an operator."""
    values = {
        "dashboard.enabled": True,
        "dashboard.users": {
            "vera": {"password_hash": _HASHES["vera"], "role": "viewer"},
            "otto": {"password_hash": _HASHES["otto"], "role": "operator"},
        },
        "crm.record_url": "https://crm.example.com/leads/{external_id}",
        **overrides,
    }
    return http_settings(make_settings, **values)


def seed(engine: Engine, now: datetime = T0) -> None:
    """Two reps, three leads, and around lead L1 one row of every kind the timeline joins.

    L1 (Ada, owned by Rita, pool east): an activity 5h ago, a score change 4h ago, assigned by
    a rule 3h ago with a welcome email (failed) and an SLA started then, moved to sql 2h ago
    by hand in the CRM (audit source api), a follow-up email sent 1h ago. L2 (Bob, Sam's, pool
    west): an overdue SLA escalated once, a pending email. L3 (Cy, unowned): a breached SLA.
    """
    created = now - 10 * HOUR
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                _rep(1, "r1", "Rita Rep", "rita@example.com", ["east"], created),
                _rep(2, "r2", "Sam Seller", "sam@example.com", ["west"], created),
            ],
        )
        connection.execute(
            insert(LEADS),
            [
                _lead(1, "L1", "Ada Lovelace", "ada@analytical.test", "Analytical Engines", 1),
                _lead(2, "L2", "Bob Builder", "bob@builder.test", "Builder Ltd", 2),
                _lead(3, "L3", "Cy Young", "cy@analytical.test", "Analytical Labs", None),
            ],
        )
        connection.execute(
            insert(ACTIVITIES),
            [
                {
                    "id": 1,
                    "external_id": "A1",
                    "lead_id": 1,
                    "type": "pricing_visit",
                    "occurred_at": now - 5 * HOUR,
                    "properties": {"page": "/pricing"},
                    "machine": False,
                    "created_at": now - 5 * HOUR,
                }
            ],
        )
        connection.execute(
            insert(SCORE_CHANGES),
            [
                {
                    "id": 1,
                    "lead_id": 1,
                    "at": now - 4 * HOUR,
                    "old_score": 10,
                    "new_score": 40,
                    "old_fit": 10,
                    "new_fit": 10,
                    "old_engagement": 0,
                    "new_engagement": 30,
                    "cause": "activity",
                    "detail": "pricing_visit",
                    "model_version": "m1",
                }
            ],
        )
        connection.execute(
            insert(AUDIT),
            [
                _audit(1, now - 3 * HOUR, "rule", "assign", 1, {"owner": "r1"}, {"score": 40}),
                _audit(2, now - 3 * HOUR, "rule", "start_sla", 1, {"name": "first_touch"}, {}),
                _audit(3, now - 2 * HOUR, "api", "set_stage", 1, {"stage": "sql"}, {}),
                _audit(4, now - 2 * HOUR, "sla", "sla_escalated", 2, {"level": 1}, {}),
            ],
        )
        connection.execute(
            insert(OUTBOX),
            [
                _mail(1, 1, "Welcome, Ada", "failed", now - 3 * HOUR, "550 5.1.1 no such user"),
                _mail(2, 2, "Hello Bob", "pending", now - 90 * timedelta(minutes=1), None),
                _mail(3, 1, "Following up", "sent", now - HOUR, None),
            ],
        )
        connection.execute(
            insert(SLA_TIMERS),
            [
                _timer(1, 1, 1, now - 3 * HOUR, now + HOUR, "running", 0),
                _timer(2, 2, 2, now - 6 * HOUR, now - HOUR, "running", 1),
                _timer(3, 3, None, now - 9 * HOUR, now - 5 * HOUR, "breached", 2),
            ],
        )


def seed_stage_history(engine: Engine) -> None:
    """L2 and L1 became MQLs 3h and 2h before T0, L1 an SQL 1h before; L3 a lead on Sunday:
    entries lead 1, mql 2, sql 1; one ended mql stay of an hour (L1's, 0.04 days)."""
    changes = [
        (3, T0 - 26 * HOUR, "subscriber", "lead"),
        (2, T0 - 3 * HOUR, "lead", "mql"),
        (1, T0 - 2 * HOUR, "lead", "mql"),
        (1, T0 - HOUR, "mql", "sql"),
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(STAGE_CHANGES),
            [
                {"lead_id": lead, "at": at, "from_stage": old, "to_stage": new, "cause": "rule"}
                for lead, at, old, new in changes
            ],
        )


LONG = "W" * 300
"""An unbroken 300-character word, as a CRM export's garbled name or company can hold."""


def seed_long_names(engine: Engine) -> None:
    """Lead L4, owned by Rita, whose name, email and company (Analytical...) are each one word
    of 300 characters and more."""
    lead = {**_lead(3, "L4", LONG, f"{LONG.lower()}@long.test", f"Analytical{LONG}", 1), "id": 4}
    with engine.begin() as connection:
        connection.execute(insert(LEADS), [lead])


def _rep(ident: int, ext: str, name: str, email: str, pools: list[str], at: datetime) -> Any:
    return {
        "id": ident,
        "external_id": ext,
        "name": name,
        "email": email,
        "pools": pools,
        "active": True,
        "timezone": "UTC",
        "created_at": at,
        "updated_at": at,
    }


def _lead(ident: int, ext: str, name: str, email: str, company: str, owner: int | None) -> Any:
    created = T0 - 10 * HOUR
    return {
        "id": ident,
        "external_id": ext,
        "name": name,
        "email": email,
        "company": company,
        "attributes": {},
        "score": 40 if ident == 1 else 5,
        "score_adjustment": 0,
        "stage": {1: "sql", 2: "mql", 3: "lead"}[ident],
        "stage_entered_at": created,
        "owner_id": owner,
        "unsubscribed": False,
        "do_not_email": False,
        "hard_bounced": False,
        "created_at": created,
        "updated_at": T0 - 2 * HOUR,
    }


def _audit(
    ident: int,
    at: datetime,
    source: str,
    action: str,
    lead: int,
    params: dict[str, Any],
    evidence: dict[str, Any],
) -> Any:
    rule = "mql-assign" if source == "rule" else None
    return {
        "id": ident,
        "at": at,
        "source": source,
        "rule_id": rule,
        "rule_version": "v1" if rule else None,
        "lead_id": lead,
        "action": action,
        "params": params,
        "evidence": evidence,
    }


def _mail(ident: int, lead: int, subject: str, status: str, at: datetime, error: str | None) -> Any:
    return {
        "id": ident,
        "idempotency_key": f"k{ident}",
        "message_id": f"<m{ident}@leadflow>",
        "lead_id": lead,
        "rule_id": "mql-assign",
        "recipient": "ada@analytical.test" if lead == 1 else "bob@builder.test",
        "subject": subject,
        "body_text": "Hello",
        "headers": {},
        "status": status,
        "attempts": 3 if status == "failed" else (1 if status == "sent" else 0),
        "next_attempt_at": at,
        "last_error": error,
        "created_at": at,
        "sent_at": at if status == "sent" else None,
    }


def _timer(
    ident: int,
    lead: int,
    owner: int | None,
    started: datetime,
    due: datetime,
    status: str,
    level: int,
) -> Any:
    return {
        "id": ident,
        "lead_id": lead,
        "name": "first_touch",
        "rule_id": "mql-assign",
        "rule_version": "v1",
        "owner_id": owner,
        "started_at": started,
        "due_at": due,
        "calendar": "default",
        "ladder": [],
        "met_by": {},
        "level": level,
        "next_escalation_at": due if status == "running" else None,
        "status": status,
        "closed_at": due if status == "breached" else None,
        "close_reason": "no escalation level left" if status == "breached" else None,
    }


class Browser:
    """An in-process client that keeps cookies, as a browser would (one event loop a call)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.cookies = httpx.Cookies()

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://lf.test", cookies=self.cookies
            ) as http:
                response = await http.request(method, url, **options)
                self.cookies = http.cookies
                return response

        return asyncio.run(call())

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, form: dict[str, str], **options: Any) -> httpx.Response:
        return self.request("POST", url, data=form, **options)

    def login(self, user: str, password: str | None = None) -> httpx.Response:
        secret = PASSWORDS[user] if password is None else password
        return self.post("/ui/login", {"username": user, "password": secret, "next": "/ui/funnel"})

    def csrf(self, url: str = "/ui/funnel") -> str:
        page = self.get(url).text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page
        return found.group(1)
