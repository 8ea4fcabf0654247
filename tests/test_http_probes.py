"""Probes, metrics and the OpenAPI document, in-process.

Pins: /healthz answers while the process lives; /readyz is 200 with the rule version when the
database answers and rules are loaded, 503 naming each missing piece otherwise; /metrics shows
outbox depth by channel and status, the age of the oldest pending row, reloads and rule
evaluations; a schemathesis run over the OpenAPI document (valid and invalid inputs, every check)
finds no difference between the document and the server, the public ``/t/`` routes included.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from sqlalchemy import Engine, insert

from leadflow import metrics
from leadflow.clock import SettableClock
from leadflow.engine.evaluation import run_rule
from leadflow.service.rule_reload import reload_snapshot
from leadflow.store.database import create_store_engine
from leadflow.store.tables import OUTBOX
from tests.http_support import AUTH, Api, build_app, http_settings, runtime_for
from tests.test_import_nested import HUBSPOT_COLUMNS

VALID_BUT_REFUSED = ["2xx", "401", "404", "409", "422"]
"""What a schema-valid request may get: the check's defaults that apply here, and 422."""
INVALID_REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428"]
"""What a schema-violating request may get: the check's defaults, and 413: a list past
``maxItems`` (http.max_records) is longer than the test's http.max_body_bytes."""


def outbox_row(key: str, status: str, created: Any, channel: str = "email") -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "message_id": f"<{key}@test>",
        "channel": channel,
        "category": "operational",
        "recipient": "rita@example.com",
        "subject": "s",
        "body_text": "b",
        "headers": {},
        "status": status,
        "attempts": 0,
        "next_attempt_at": created,
        "created_at": created,
    }


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class TestProbes:
    """Liveness always; readiness only with a reachable database and a loaded rule set."""

    def test_ready_with_database_and_rules(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        app, holder = build_app(runtime)
        response = Api(app).get("/readyz", auth=False)
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "rule_version": holder.current().version}

    def test_not_ready_without_rules(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        app, holder = build_app(runtime, load_rules=False)
        holder.record_failure(["rules/mql.yaml:3:5: rule mql: unknown key 'colour'"])
        api = Api(app)
        response = api.get("/readyz", auth=False)
        assert response.status_code == 503
        assert response.json() == {
            "status": "not ready",
            "reasons": [
                "rules: no valid rule set is loaded: rules/mql.yaml:3:5: rule mql: unknown key 'colour'"
            ],
        }
        assert api.get("/healthz", auth=False).status_code == 200

    @pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
    def test_not_ready_when_the_database_does_not_answer(
        self, make_settings: Any, clock: SettableClock
    ) -> None:
        down = create_store_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_timeout=1
        )
        # The unsubscribe key is configured, as in production: nothing to read from the store
        # while the runtime is built, and the database is first asked by the probe.
        settings = http_settings(make_settings)
        mail = settings.mail.model_copy(update={"unsubscribe_secret": SecretStr("s3cret")})
        runtime = runtime_for(down, settings.model_copy(update={"mail": mail}), clock)
        app, _ = build_app(runtime)
        response = Api(app).get("/readyz", auth=False)
        assert response.status_code == 503
        [reason] = response.json()["reasons"]
        assert reason.startswith(
            'database: connection failed: connection to server at "127.0.0.1", port 1 failed'
        )
        down.dispose()


class TestMetrics:
    """The Prometheus text has the outbox, reload and evaluation series."""

    def test_outbox_depth_age_reloads_and_evaluations(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        app, holder = build_app(runtime)
        now = clock.now()
        with engine.begin() as connection:
            connection.execute(
                insert(OUTBOX),
                [
                    outbox_row("a", "pending", now - timedelta(seconds=90)),
                    outbox_row("b", "pending", now - timedelta(seconds=30)),
                    outbox_row("c", "failed", now),
                    outbox_row("d", "pending", now - timedelta(seconds=5), channel="webhook"),
                ],
            )
        reloads = sample("leadflow_rule_reloads_total", {"result": "failure"})
        assert not reload_snapshot(
            lambda: runtime.load_rules(runtime.rules_folder / "missing"), holder
        )
        evaluations = sample(
            "leadflow_rule_evaluations_total", {"rule_id": "mql-assignment", "result": "ok"}
        )
        rule_set = holder.current()
        rule = rule_set.rule("mql-assignment")
        assert rule is not None
        run_rule(runtime, rule_set, rule, now)

        text = Api(app).get("/metrics", auth=False).text
        lines = set(text.splitlines())
        assert {
            'leadflow_outbox_messages{channel="email",status="pending"} 2.0',
            'leadflow_outbox_messages{channel="email",status="failed"} 1.0',
            'leadflow_outbox_messages{channel="email",status="sent"} 0.0',
            'leadflow_outbox_messages{channel="webhook",status="pending"} 1.0',
            'leadflow_outbox_oldest_pending_age_seconds{channel="email"} 90.0',
            'leadflow_outbox_oldest_pending_age_seconds{channel="webhook"} 5.0',
        } <= lines
        assert sample("leadflow_rule_reloads_total", {"result": "failure"}) == reloads + 1
        assert (
            sample("leadflow_rule_evaluations_total", {"rule_id": "mql-assignment", "result": "ok"})
            == evaluations + 1
        )
        assert 'leadflow_rule_evaluation_seconds_count{rule_id="mql-assignment"}' in text
        assert "leadflow_last_successful_tick_timestamp_seconds" in text


@pytest.mark.slow
class TestOpenApiFuzz:
    """Generated requests, valid and invalid, against every operation, with every schemathesis
    check: never a 5xx, the responses as documented, invalid requests refused, valid ones not
    refused for their shape.

    A schema-valid record may still be refused with 422 for what JSON Schema cannot say: a
    reference to a rep or lead that does not exist, text that does not parse as the field's
    number, date or yes/no, an unknown timezone. ``positive_data_acceptance`` therefore also
    expects 422, and only 422; any other refusal of valid data is a failure.
    """

    # Generated requests by the hundred: untraced by coverage, as every property test is.
    @pytest.mark.untraced
    @pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
    @pytest.mark.parametrize(
        ("overrides", "paths"),
        [
            ({}, None),
            # HubSpot's shape: nested properties mapped, keys that set one field twice. The
            # mapping is the leads' only, so the other operations are the first case's.
            (
                {
                    "attributes.leads": {"region": "string", "lead_status": "string"},
                    "import.mappings": {"leads": {"columns": HUBSPOT_COLUMNS}},
                },
                {"/v1/leads"},
            ),
        ],
        ids=["declared-attributes", "hubspot-mapping"],
    )
    def test_no_server_error(
        self,
        engine: Engine,
        make_settings: Any,
        clock: SettableClock,
        overrides: dict[str, Any],
        paths: set[str] | None,
    ) -> None:
        settings_ = http_settings(make_settings, **{"http.max_body_bytes": 65536, **overrides})
        runtime = runtime_for(engine, settings_, clock)
        app, _ = build_app(runtime)
        config = SchemathesisConfig.from_dict(
            {
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": VALID_BUT_REFUSED},
                    "negative_data_rejection": {"expected-statuses": INVALID_REFUSED},
                }
            }
        )
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        load_all_checks()
        every_check = CHECKS.get_all()
        failures: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            if paths is not None and operation.path not in paths:
                continue
            # Negative cases need something to break: a body or a path parameter. Not on the
            # public /t/ routes: whatever a request holds, only the signature tells a link
            # from a guess, which no schema can say (the pixel answers any token, by design).
            # Generated requests there meet the unsigned-link answers (the pixel, 404 pages);
            # tests/test_http_openapi.py holds the signed ones and the 503s to the document.
            public = operation.path.startswith("/t/")
            has_input = not public and (operation.method.upper() == "POST" or "{" in operation.path)
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
            for mode in modes:

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=30,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                def call(case: Any) -> None:
                    try:
                        case.call_and_validate(headers=AUTH, checks=every_check)
                    except (AssertionError, FailureGroup) as exc:
                        failures.append(f"{case.method} {case.formatted_path} {case.body!r}: {exc}")

                call()
        assert failures == []
