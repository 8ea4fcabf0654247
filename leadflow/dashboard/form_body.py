"""A dashboard form's body, read with a bound: a huge body is refused, not read."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

MAX_FORM = 4096


class FormTooLargeError(Exception):
    """A form's body over ``MAX_FORM``: answered with the too-large page, not read."""


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (first value each); bounded, so a huge body is not read."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormTooLargeError
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
