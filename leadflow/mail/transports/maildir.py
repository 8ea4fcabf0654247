"""The embedded default: each message an ``.eml`` file in a maildir, no mail server needed.

Files are written the maildir way, into ``tmp/`` then renamed into ``new/``, so a reader never
sees half a message. The file name comes from the Message-ID, so delivering the same outbox row
twice (the at-least-once window) replaces the file instead of adding a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from leadflow.errors import DeliveryError


class MaildirTransport:
    """Writes messages into ``folder/new`` (creating ``tmp``, ``new`` and ``cur`` if needed)."""

    name = "maildir"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def deliver(
        self, message: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> None:
        await asyncio.to_thread(self._write, message, sender, message_id)

    async def close(self) -> None:
        return None

    def file_name(self, message_id: str) -> str:
        return f"{hashlib.sha256(message_id.encode()).hexdigest()[:32]}.leadflow.eml"

    def _write(self, message: bytes, sender: str, message_id: str) -> None:
        name = self.file_name(message_id)
        temporary = self.folder / "tmp" / f"{name}.{uuid.uuid4().hex}"
        try:
            for sub in ("tmp", "new", "cur"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                handle.write(b"Return-Path: <" + sender.encode() + b">\n")
                handle.write(message.replace(b"\r\n", b"\n"))
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.folder / "new" / name)
        except OSError as exc:
            # A full disk leaves the half-written file behind: one per attempt, forever.
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            msg = f"cannot write {message_id} into the maildir {self.folder}: {exc.strerror}"
            raise DeliveryError(msg, permanent=False) from exc
