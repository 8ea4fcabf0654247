"""The served OpenAPI document lists every route the server answers without the dashboard, and
every answer each gives, as the server gives it.

Pins: the document lacked the 503s (a store that does not answer, a server stopping), the 408
of a late body, and the public routes of tracked email (the pixel, the click redirect, both
unsubscribe links, GET, HEAD and POST), which an integrator or a security review reads there;
``GET /v1/leads/{id}`` listed a 415 it never gives. Signed tokens and a store that does not
answer reach the answers generated requests cannot (a 302, an unsubscribe, a 503): each is
checked against the document by every schemathesis check.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from pydantic import SecretStr
from schemathesis.checks import CHECKS, load_all_checks
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.mail.context import unsubscribe_token
from leadflow.mail.tracking_tokens import Signer, tracking_key
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from tests.conftest import T0
from tests.http_support import AUTH, Api, build_app, http_settings, runtime_for
from tests.mail_support import add_lead

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

J = "application/json"
H = "text/html"
POSTED = {
    "200": [J],
    "401": [J],
    "408": [J],
    "413": [J],
    "415": [J],
    "422": [J],
    "503": [J],
}
LOOKING = {"200": [H], "404": [H], "503": [H]}
UNSUBSCRIBING = {"200": [H], "404": [H, J], "408": [J], "413": [J], "503": [H, J]}
DOCUMENTED = {
    "/v1/leads": {"post": POSTED},
    "/v1/deals": {"post": POSTED},
    "/v1/activities": {"post": POSTED},
    "/v1/reps": {"post": POSTED},
    "/v1/leads/{external_id}": {
        "get": {"200": [J], "401": [J], "404": [J], "422": [J], "503": [J]}
    },
    "/v1/leads/{external_id}/resubscribe": {"post": {**POSTED, "404": [J]}},
    "/healthz": {"get": {"200": [J]}},
    "/readyz": {"get": {"200": [J], "503": [J]}},
    "/metrics": {"get": {"200": ["text/plain; version=1.0.0; charset=utf-8"]}},
    "/t/o/{token}.gif": {
        "get": {"200": ["image/gif"]},
        "head": {"200": ["image/gif"]},
    },
    "/t/c/{token}": {
        "get": {"302": [], "404": [H]},
        "head": {"302": [], "404": [H]},
    },
    "/t/u/{token}": {
        "get": {**LOOKING, "302": []},
        "head": {**LOOKING, "302": []},
        "post": UNSUBSCRIBING,
    },
    "/t/unsubscribe": {"get": LOOKING, "head": LOOKING, "post": UNSUBSCRIBING},
}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _settings(make_settings: Any, **overrides: Any) -> Settings:
    settings = http_settings(make_settings, **overrides)
    mail = settings.mail.model_copy(update={"unsubscribe_secret": SecretStr("s3cret")})
    return settings.model_copy(update={"mail": mail})


def _validated(
    app: FastAPI, calls: list[tuple[str, str, dict[str, Any]]], *, unavailable: bool = False
) -> list[int]:
    """Each ``(method, path, case fields)`` called and held to the document by every check
    (but the one refusing any 5xx, when the 503s are ``unavailable``'s); the statuses."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    load_all_checks()
    checks = [
        check
        for check in CHECKS.get_all()
        if not (unavailable and check.__name__ == "not_a_server_error")
    ]
    statuses = []
    for method, path, fields in calls:
        case = schema[path][method].Case(**fields)
        statuses.append(case.call_and_validate(headers=AUTH, checks=checks).status_code)
    return statuses


def test_the_document_lists_every_route_and_answer(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """Paths, methods, status codes and media types, exactly; 503 and 302 with their headers."""
    app, _ = build_app(runtime_for(engine, _settings(make_settings), clock))
    document = Api(app).get("/openapi.json", auth=False).json()
    listed = {
        path: {
            method: {
                status: list(answer.get("content", {}))
                for status, answer in op["responses"].items()
            }
            for method, op in operations.items()
        }
        for path, operations in document["paths"].items()
    }
    assert listed == DOCUMENTED
    # Sorted as listed above, so that a difference of order alone does not pass.
    assert [list(operations) for operations in listed.values()] == [
        list(operations) for operations in DOCUMENTED.values()
    ]
    paths = document["paths"]
    assert paths["/v1/leads"]["post"]["responses"]["503"]["headers"]["Retry-After"]["required"]
    assert paths["/t/c/{token}"]["get"]["responses"]["302"]["headers"]["Location"]["required"]
    assert "security" not in paths["/t/unsubscribe"]["post"]
    assert paths["/v1/leads"]["post"]["security"] == [{"HTTPBearer": []}]


def test_the_public_routes_answer_as_documented(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """With tokens leadflow signed: the pixel, a click's 302, both unsubscribe pages and their
    one-click POST; with unsigned ones, the 404 page (JSON for a one-click POST)."""
    add_lead(engine, T0)
    runtime = runtime_for(engine, _settings(make_settings), clock)
    app, _ = build_app(runtime)
    signer = Signer(tracking_key(runtime.settings), "<m1@test>", "L-1", "nurture")
    pixel = {"token": signer.token("open")}
    click = {"token": signer.token("click", "https://example.com/guide")}
    tracked = {"token": signer.token("unsubscribe", "https://lf.test/t/unsubscribe?lead=L-1")}
    own = {"lead": "L-1", "token": unsubscribe_token(runtime.settings, "L-1")}
    unsigned = {"token": "eyJ4Ijp9.AAAA"}
    form = {"body": ONE_CLICK, "media_type": "application/x-www-form-urlencoded"}
    statuses = _validated(
        app,
        [
            ("GET", "/t/o/{token}.gif", {"path_parameters": pixel}),
            ("HEAD", "/t/o/{token}.gif", {"path_parameters": unsigned}),
            ("GET", "/t/c/{token}", {"path_parameters": click}),
            ("HEAD", "/t/c/{token}", {"path_parameters": unsigned}),
            ("GET", "/t/u/{token}", {"path_parameters": tracked}),
            ("GET", "/t/unsubscribe", {"query": own}),
            ("HEAD", "/t/unsubscribe", {"query": {**own, "token": "0" * 32}}),
            ("POST", "/t/u/{token}", {"path_parameters": unsigned, **form}),
            ("POST", "/t/u/{token}", {"path_parameters": tracked, **form}),
            ("POST", "/t/unsubscribe", {"query": own, **form}),
        ],
    )
    assert statuses == [200, 200, 302, 404, 200, 200, 404, 404, 200, 200]


def test_the_crm_unsubscribe_page_is_a_documented_redirect(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """With ``mail.unsubscribe_url`` set, a tracked unsubscribe link's GET is a 302 there."""
    add_lead(engine, T0)
    url = "https://crm.example.com/unsubscribe?id={external_id}"
    runtime = runtime_for(engine, _settings(make_settings, **{"mail.unsubscribe_url": url}), clock)
    app, _ = build_app(runtime)
    signer = Signer(tracking_key(runtime.settings), "<m1@test>", "L-1", "nurture")
    tracked = {"token": signer.token("unsubscribe", "https://crm.example.com/unsubscribe?id=L-1")}
    assert _validated(app, [("GET", "/t/u/{token}", {"path_parameters": tracked})]) == [302]


def test_a_store_that_does_not_answer_is_a_documented_503(
    make_settings: Any, clock: SettableClock
) -> None:
    """The API and the unsubscribe links answer 503 with Retry-After; the pixel and a click
    still answer (the store's trouble costs the hit's row, not the answer)."""
    down = create_store_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_timeout=1)
    try:
        runtime = runtime_for(down, _settings(make_settings), clock)
        app, _ = build_app(runtime, load_rules=False)
        signer = Signer(tracking_key(runtime.settings), "<m1@test>", "L-1", "nurture")
        own = {"lead": "L-1", "token": unsubscribe_token(runtime.settings, "L-1")}
        statuses = _validated(
            app,
            [
                ("POST", "/v1/leads", {"body": {"external_id": "L-2", "email": "ann@acme.test"}}),
                ("GET", "/v1/leads/{external_id}", {"path_parameters": {"external_id": "L-1"}}),
                ("GET", "/t/unsubscribe", {"query": own}),
                ("POST", "/t/unsubscribe", {"query": own, "body": ONE_CLICK}),
                ("GET", "/t/o/{token}.gif", {"path_parameters": {"token": signer.token("open")}}),
                (
                    "GET",
                    "/t/c/{token}",
                    {"path_parameters": {"token": signer.token("click", "https://example.com/")}},
                ),
            ],
            unavailable=True,
        )
        assert statuses == [503, 503, 503, 503, 200, 302]
    finally:
        down.dispose()
