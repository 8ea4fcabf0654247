"""Delivering a queued CRM update: a signed JSON POST to ``crm.webhook_url`` with httpx.

The signature is ``X-Leadflow-Signature: sha256=HEX``, the HMAC-SHA256 with
``crm.webhook_secret`` of ``TIMESTAMP.BODY``, where TIMESTAMP is the ``X-Leadflow-Timestamp``
header (Unix seconds of this attempt): signing the time too lets the CRM refuse replays of an
old request. Outcomes are classified at this boundary for the sender: 2xx delivered; a timeout,
a connection error, 408, 429 or 5xx transient (retried with backoff); any other status permanent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

import httpx

from leadflow.errors import ConfigError, DeliveryError
from leadflow.settings import CrmSettings

SIGNATURE_HEADER = "X-Leadflow-Signature"
TIMESTAMP_HEADER = "X-Leadflow-Timestamp"
_TRANSIENT = frozenset({408, 425, 429})


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookTransport:
    """POSTs signed updates over one pooled httpx client; safe to call from many tasks."""

    name = "webhook"

    def __init__(self, settings: CrmSettings, *, client: httpx.AsyncClient | None = None) -> None:
        if settings.webhook_secret is None:
            msg = (
                "crm.webhook_url is set but crm.webhook_secret is not: set "
                "LEADFLOW_CRM__WEBHOOK_SECRET (or LEADFLOW_CRM__WEBHOOK_SECRET_FILE)"
            )
            raise ConfigError(msg)
        self._secret = settings.webhook_secret.get_secret_value().encode()
        seconds = settings.webhook_timeout.total_seconds()
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)),
            follow_redirects=False,
            headers={"User-Agent": "leadflow-webhook/1"},
        )

    async def deliver(
        self, url: str, body: bytes, *, headers: Mapping[str, str], now: datetime
    ) -> None:
        """POST ``body`` to ``url``; :class:`DeliveryError` when it was not accepted."""
        timestamp = int(now.timestamp())
        sent_headers = {
            **headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            response = await self._client.post(url, content=body, headers=sent_headers)
        except httpx.TimeoutException as exc:
            msg = f"timed out posting to {_host(url)}"
            raise DeliveryError(msg, permanent=False) from exc
        except httpx.InvalidURL as exc:
            msg = f"crm.webhook_url {url!r} is not a URL: {exc}"
            raise DeliveryError(msg, permanent=True) from exc
        except httpx.HTTPError as exc:
            msg = f"cannot post to {_host(url)}: {exc!r}"
            raise DeliveryError(msg, permanent=False) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"{status} {response.reason_phrase} from {_host(url)}: {response.text[:200]}"
        transient = status >= 500 or status in _TRANSIENT
        raise DeliveryError(reason, permanent=not transient, code=status)

    async def close(self) -> None:
        await self._client.aclose()


def _host(url: str) -> str:
    # Never the query string: it may carry a token.
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "the webhook URL"
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}"
