"""A person following a link in an email reads a page or reaches the link's target, never JSON,
while the store does not answer or the stopping server cuts their request off.

Pins: the unsubscribe page (``GET``, and ``POST`` from its button) answered the API's
``{"detail": "the database is unavailable; retry later"}`` when the store was down; it is now a
page saying the unsubscribe could not be recorded and to try again in a few minutes (503 with
``Retry-After``). A mail client's one-click ``POST`` keeps the JSON 503. The click redirect and
the pixel answer as ever, their hit not recorded; and a request the stopping server cancels
while it waits for a slow store gets the same answers instead of the JSON "server is stopping".
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.types import Message

from leadflow.clock import SettableClock
from leadflow.http.cancelled import AnswerCancelled
from leadflow.mail.context import unsubscribe_token
from leadflow.mail.tracking_tokens import Signer, tracking_key
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from tests.http_support import Api, build_app, http_settings, runtime_for

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>Please try again later</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
    "padding:0 1rem;color:#222}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
    "</style></head>\n"
    "<body><h1>Please try again later</h1>\n"
    "<p>Your unsubscribe could not be recorded right now.</p>\n"
    "<p>Please try again in a few minutes, with the unsubscribe link of the email.</p>\n"
    "</body></html>\n"
)
JSON_503 = '{"detail":"the database is unavailable; retry later"}'
TARGET = "https://example.com/guide?x=1"


def _settings(make_settings: Any) -> Settings:
    settings = http_settings(make_settings)
    mail = settings.mail.model_copy(update={"unsubscribe_secret": SecretStr("s3cret")})
    return settings.model_copy(update={"mail": mail})


def links(settings: Settings) -> dict[str, str]:
    """The links of one email to lead L-1, as leadflow signs them."""
    signer = Signer(tracking_key(settings), "<m1@test>", "L-1", "nurture")
    own = unsubscribe_token(settings, "L-1")
    tracked = signer.token("unsubscribe", "https://lf.test/t/unsubscribe?lead=L-1")
    return {
        "own": f"/t/unsubscribe?lead=L-1&token={own}",
        "tracked": f"/t/u/{tracked}",
        "click": f"/t/c/{signer.token('click', TARGET)}",
        "pixel": f"/t/o/{signer.token('open')}.gif",
    }


@pytest.fixture(params=["postgres-closed-port", "sqlite-unopenable"])
def down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store that cannot be reached: PostgreSQL on a port nothing listens on, or a SQLite
    file that cannot be opened (its path is a folder)."""
    if request.param == "postgres-closed-port":
        url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    else:
        folder = tmp_path / "store-is-a-folder"
        folder.mkdir()
        url = f"sqlite:///{folder}"
    engine = create_store_engine(url, connect_timeout=1)
    yield engine
    engine.dispose()


def answer(response: Any) -> tuple[int, str | None, str | None, str]:
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("retry-after"),
        response.text,
    )


def test_a_person_reads_a_page_while_the_store_is_down(
    down: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """Both unsubscribe links, looked at or their button pressed: the 503 page with
    Retry-After; one-click: JSON 503; the click still redirects, the pixel still loads."""
    settings = _settings(make_settings)
    app, _ = build_app(runtime_for(down, settings, clock), load_rules=False)
    api, link = Api(app), links(settings)
    html = "text/html; charset=utf-8"
    button = {"accept": "text/html,application/xhtml+xml", "content-type": FORM}
    one_click = {"content-type": FORM}
    for name in ("own", "tracked"):
        assert answer(api.request("GET", link[name])) == (503, html, "120", PAGE), name
        pressed = api.request("POST", link[name], headers=button, content=b"")
        assert answer(pressed) == (503, html, "120", PAGE), name
        clicked = api.request("POST", link[name], headers=one_click, content=ONE_CLICK)
        assert answer(clicked) == (503, "application/json", "120", JSON_503), name
    followed = api.request("GET", link["click"])
    assert (followed.status_code, followed.headers["location"]) == (302, TARGET)
    pixel = api.request("GET", link["pixel"])
    assert (pixel.status_code, pixel.headers["content-type"]) == (200, "image/gif")


FORM = "application/x-www-form-urlencoded"
ONE_CLICK = b"List-Unsubscribe=One-Click"


class SilentServer:
    """A TCP server that accepts connections and never answers: a store that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def hanging() -> Iterator[tuple[Engine, SilentServer]]:
    server = SilentServer()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/none"
    engine = create_store_engine(url, connect_timeout=30)
    yield engine, server
    server.close()
    engine.dispose()


async def cut_off(app: Any, server: SilentServer, method: str, path: str) -> list[Message]:
    """Call ``app`` as the server does (behind :class:`AnswerCancelled`), wait until the
    request waits for the store, then cancel it as a stopping server's grace running out does;
    what the client was sent."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"lf.test"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 50000),
        "server": ("lf.test", 80),
    }
    sent: list[Message] = []
    seen = len(server.accepted)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    request = asyncio.create_task(AnswerCancelled(app)(scope, receive, send))
    async with asyncio.timeout(5):
        while len(server.accepted) == seen:  # noqa: ASYNC110 (the server's thread accepts)
            await asyncio.sleep(0.01)
    request.cancel()
    await request
    return sent


def test_a_request_cut_off_by_the_stop_still_reaches_its_page(
    hanging: tuple[Engine, SilentServer], make_settings: Any, clock: SettableClock
) -> None:
    """A click cut off while its hit waits for the store still redirects; the pixel still
    loads; an unsubscribe link's page is the 503 page, not the JSON "server is stopping"."""
    engine, server = hanging
    settings = _settings(make_settings)
    app, _ = build_app(runtime_for(engine, settings, clock), load_rules=False)
    link = links(settings)

    def cut(method: str, name: str) -> tuple[int, dict[bytes, bytes], bytes]:
        start, body = asyncio.run(cut_off(app, server, method, link[name]))
        return start["status"], dict(start["headers"]), body["body"]

    status, headers, _ = cut("GET", "click")
    assert (status, headers[b"location"], headers[b"connection"]) == (
        302,
        TARGET.encode(),
        b"close",
    )
    status, headers, _ = cut("GET", "pixel")
    assert (status, headers[b"content-type"]) == (200, b"image/gif")
    for name in ("own", "tracked"):
        status, headers, body = cut("GET", name)
        assert (status, headers[b"retry-after"], body.decode()) == (503, b"120", PAGE)
