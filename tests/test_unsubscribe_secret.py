"""The unsubscribe links' key: never a public constant; generated once per store when unset.

Before, ``mail.unsubscribe_secret`` unset meant the HMAC key ``leadflow-unsubscribe-not-secret``
from the source, so anyone could compute the link that unsubscribes anyone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.runtime import Runtime
from leadflow.mail.context import _PROCESS_UNSUBSCRIBE_KEY, unsubscribe_token, unsubscribe_url
from leadflow.service.daemon import Daemon
from leadflow.settings import Settings
from leadflow.store.tables import STORE_SECRETS
from tests.conftest import T0

OLD_PUBLIC_KEY = b"leadflow-unsubscribe-not-secret"


def _hmac(key: bytes, external_id: str) -> str:
    return hmac.new(key, external_id.encode(), hashlib.sha256).hexdigest()[:32]


def _stored(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [
            (row.name, row.value)
            for row in connection.execute(select(STORE_SECRETS.c.name, STORE_SECRETS.c.value))
        ]


def test_two_runtimes_on_one_store_share_the_generated_secret(
    engine: Engine, make_settings: Any
) -> None:
    """The first runtime generates and stores it; the second reads the same one."""
    first = Runtime.build(engine, make_settings(), SettableClock(T0))
    second = Runtime.build(engine, make_settings(), SettableClock(T0))
    [(name, value)] = _stored(engine)
    assert name == "mail.unsubscribe_secret"
    assert len(value) == 64
    int(value, 16)  # hex
    for runtime in (first, second):
        secret = runtime.settings.mail.unsubscribe_secret
        assert secret is not None
        assert secret.get_secret_value() == value
        assert runtime.unsubscribe_secret_stored is True
    token = unsubscribe_token(first.settings, "L-1")
    assert token == unsubscribe_token(second.settings, "L-1") == _hmac(value.encode(), "L-1")
    assert token != _hmac(OLD_PUBLIC_KEY, "L-1")
    assert unsubscribe_url(first.settings, "L-1") == (
        f"https://example.com/unsubscribe?lead=L-1&token={token}"
    )


def test_without_a_runtime_no_link_uses_the_public_key(make_settings: Any) -> None:
    """Settings that reached no runtime (template checks on sample data) sign with a random key."""
    settings = make_settings()
    assert settings.mail.unsubscribe_secret is None
    assert unsubscribe_token(settings, "L-1") != _hmac(OLD_PUBLIC_KEY, "L-1")
    # ... the process's own: 32 random bytes, so the link verifies nowhere else.
    assert len(_PROCESS_UNSUBSCRIBE_KEY) == 32
    assert unsubscribe_token(settings, "L-1") == _hmac(_PROCESS_UNSUBSCRIBE_KEY, "L-1")


def _with_secret(tmp_path: Path, store_url: str, **overrides: Any) -> Settings:
    """Settings with ``LEADFLOW_MAIL__UNSUBSCRIBE_SECRET=s3cret``, as production sets it."""
    config_file = tmp_path / "config.yaml"
    if not config_file.exists():
        config_file.write_text("", encoding="utf-8")
    values = {"database.url": store_url, **{k.replace("__", "."): v for k, v in overrides.items()}}
    env = {"LEADFLOW_MAIL__UNSUBSCRIBE_SECRET": "s3cret"}
    return load_settings(config_file, env=env, overrides=values).settings


def test_an_explicit_secret_wins_and_nothing_is_stored(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    runtime = Runtime.build(engine, _with_secret(tmp_path, store_url), SettableClock(T0))
    assert unsubscribe_token(runtime.settings, "L-1") == _hmac(b"s3cret", "L-1")
    assert runtime.unsubscribe_secret_stored is False
    assert _stored(engine) == []


def test_read_only_commands_store_nothing(engine: Engine, make_settings: Any) -> None:
    """``plan``, ``status`` and dry runs never write the store: a random key for the process."""
    runtime = Runtime.build(engine, make_settings(), SettableClock(T0), read_only=True)
    assert runtime.settings.mail.unsubscribe_secret is not None
    key = runtime.settings.mail.unsubscribe_secret.get_secret_value()
    other = Runtime.build(engine, make_settings(), SettableClock(T0), read_only=True)
    assert other.settings.mail.unsubscribe_secret is not None
    assert len(key) == 64  # random, per runtime: never a shared constant
    assert key != other.settings.mail.unsubscribe_secret.get_secret_value()
    assert runtime.unsubscribe_secret_stored is False
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(STORE_SECRETS)).scalar() == 0


def test_the_daemon_warns_once_at_start(
    engine: Engine, make_settings: Any, store_url: str, tmp_path: Path
) -> None:
    """One warning naming the stored secret and the variable to set when it is generated;
    none when a later start reuses it, nor with a secret set."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "templates").mkdir()

    def warnings(settings: Settings) -> list[dict[str, Any]]:
        daemon = Daemon(Runtime.build(engine, settings, SettableClock(T0)))

        async def run_briefly() -> None:
            asyncio.get_running_loop().call_later(1.0, daemon.request_stop)
            await daemon.run()

        with capture_logs() as logs:
            asyncio.run(run_briefly())
        assert [e["event"] for e in logs if e["event"] == "daemon_stopped"] == ["daemon_stopped"]
        return [e for e in logs if e["log_level"] == "warning"]

    # An empty rules folder, allowed: only the start's own warnings are logged.
    quiet = {"http__enabled": False, "rules__allow_empty": True}
    assert warnings(make_settings(**quiet)) == [
        {
            "event": "unsubscribe_secret_generated",
            "log_level": "warning",
            "detail": "mail.unsubscribe_secret is not set: a random secret was generated and "
            "stored in the store (table store_secrets), and unsubscribe links are signed with "
            "it; to verify links outside leadflow, set LEADFLOW_MAIL__UNSUBSCRIBE_SECRET",
        }
    ]
    # The next start reuses the stored secret: nothing new to say (it was said at every start).
    assert warnings(make_settings(**quiet)) == []
    assert warnings(_with_secret(tmp_path, store_url, **quiet)) == []
