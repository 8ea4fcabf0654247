"""Who is reading the dashboard: passwords, signed session cookies, CSRF tokens, lockout.

Passwords are argon2id hashes (argon2-cffi, the reference implementation's binding, kept by
the author of structlog); the configuration holds hashes only. A session is a cookie carrying
the user, an expiry and a random session id, signed with HMAC-SHA256: nothing is stored on the
server, so every replica accepts it. The user's role is read from the configuration on every
request (``users.DashboardUsers`` reads ``config.yaml`` again when it changes), so removing a
user or lowering their role takes effect at once. The CSRF token of a
session is an HMAC of its session id: a page of another site cannot read it, and the cookie
is SameSite=Strict besides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from leadflow.dashboard.users import DashboardUsers
from leadflow.settings import DashboardRole, DashboardSettings

COOKIE = "leadflow_session"
SESSION_SECRET_NAME = "dashboard.session_secret"  # noqa: S105 (a name, not the secret)
"""The ``store_secrets`` name of the generated cookie-signing key."""

_hasher = PasswordHasher()
# Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """The argon2id hash to put in ``dashboard.users.NAME.password_hash``."""
    return _hasher.hash(password)


@dataclass(frozen=True)
class Principal:
    """The signed-in user of one request."""

    user: str
    role: DashboardRole
    session_id: str

    @property
    def may_write(self) -> bool:
        return self.role == "operator"


class Access:
    """Checks logins and sessions for one dashboard configuration and signing key."""

    def __init__(
        self, settings: DashboardSettings, key: bytes, users: DashboardUsers | None = None
    ) -> None:
        self.settings = settings
        self._key = key
        self.users = users if users is not None else DashboardUsers(settings.users)
        self._failures = LoginFailures(settings.login_attempts, settings.lockout)

    def check_password(self, user: str, password: str, client: str, now: datetime) -> bool:
        """Whether ``password`` is ``user``'s; refused without checking while locked out."""
        if self._failures.locked(user, client, now):
            return False
        account = self.users.current().get(user)
        stored = account.password_hash if account is not None else None
        try:
            good = _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            good = False
        if good:
            self._failures.clear(user, client)
        else:
            self._failures.add(user, client, now)
        return good

    def locked(self, user: str, client: str, now: datetime) -> bool:
        return self._failures.locked(user, client, now)

    def new_session(self, user: str, now: datetime) -> str:
        """The cookie value of a fresh session of ``user``, valid for the session lifetime."""
        expires = now + self.settings.session_lifetime
        payload = {"u": user, "x": int(expires.timestamp()), "s": secrets.token_urlsafe(16)}
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def from_cookie(self, cookie: str | None, now: datetime) -> Principal | None:
        """The cookie's user while it is well signed, unexpired and still configured."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            user, expires, session_id = str(payload["u"]), int(payload["x"]), str(payload["s"])
        except (ValueError, KeyError, TypeError):
            return None
        account = self.users.current().get(user)
        if account is None or account.password_hash is None or now.timestamp() >= expires:
            return None
        return Principal(user, account.role, session_id)

    def from_proxy(self, header_value: str | None, client: str | None) -> Principal | None:
        """The user a trusted reverse proxy names, when the request comes from one."""
        name = (header_value or "").strip()
        if not name or client is None or client not in self.settings.trusted_proxies:
            return None
        account = self.users.current().get(name)
        role = account.role if account is not None else self.settings.proxy_role
        return Principal(name, role, f"proxy:{name}")

    def csrf_token(self, principal: Principal) -> str:
        return self._sign(f"csrf:{principal.session_id}")

    def csrf_ok(self, principal: Principal, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(principal).encode())

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class LoginFailures:
    """Failed logins per (user name, client address): after ``limit`` within ``window`` the
    pair is refused until the window has passed, which makes guessing slow without locking
    the real user out from their own address by someone else's guesses elsewhere."""

    def __init__(self, limit: int, window: timedelta) -> None:
        self._limit = limit
        self._window = window
        self._lock = threading.Lock()
        self._times: dict[tuple[str, str], list[datetime]] = {}

    def add(self, user: str, client: str, now: datetime) -> None:
        with self._lock:
            recent = self._recent((user, client), now)
            recent.append(now)
            self._times[(user, client)] = recent
            if len(self._times) > 10_000:  # bounded memory under a spray of names
                self._times = {k: v for k, v in self._times.items() if v[-1] > now - self._window}

    def locked(self, user: str, client: str, now: datetime) -> bool:
        with self._lock:
            return len(self._recent((user, client), now)) >= self._limit

    def clear(self, user: str, client: str) -> None:
        with self._lock:
            self._times.pop((user, client), None)

    def _recent(self, key: tuple[str, str], now: datetime) -> list[datetime]:
        return [at for at in self._times.get(key, []) if at > now - self._window]
