"""Shared by the HTTP tests: an application on the test's store, and a client for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from leadflow.clock import SettableClock
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots
from leadflow.engine.runtime import Runtime
from leadflow.http import create_app
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ATTRIBUTES = {"region": "string", "employees": "integer"}


def http_settings(make_settings: Any, **overrides: Any) -> Settings:
    """Settings with the repository's rules and templates, a token, declared attributes."""
    values: dict[str, Any] = {
        "paths.rules": str(REPO / "rules"),
        "paths.templates": str(REPO / "templates"),
        "attributes.leads": ATTRIBUTES,
        "http.max_body_bytes": 4096,
    }
    values.update(overrides)
    settings: Settings = make_settings(**values)
    return settings.model_copy(
        update={"http": settings.http.model_copy(update={"token": _secret(TOKEN)})}
    )


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def build_app(
    runtime: Runtime, *, load_rules: bool = True, funnel: FunnelSnapshots | None = None
) -> tuple[FastAPI, SnapshotHolder[RuleSet]]:
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
    if load_rules:
        holder.record_success(runtime.load_rules())
    return create_app(runtime, holder, funnel=funnel), holder


class Api:
    """Calls the application in-process through httpx's ASGI transport, one event loop a call."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lf.test") as http:
                return await http.request(method, url, **options)

        return asyncio.run(call())

    def post(
        self, url: str, body: Any = None, *, auth: bool = True, **options: Any
    ) -> httpx.Response:
        headers = {**(AUTH if auth else {}), **options.pop("headers", {})}
        if body is not None:
            options["json"] = body
        return self.request("POST", url, headers=headers, **options)

    def get(self, url: str, *, auth: bool = True) -> httpx.Response:
        return self.request("GET", url, headers=AUTH if auth else {})


def runtime_for(engine: Any, settings: Settings, clock: SettableClock) -> Runtime:
    return Runtime.build(engine, settings, clock)
