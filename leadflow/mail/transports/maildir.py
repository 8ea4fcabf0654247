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
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from leadflow.errors import DeliveryError

log = structlog.get_logger("leadflow.mail")

STALE_TEMPORARY = timedelta(hours=36)
"""The maildir convention (qmail's maildir(5)): a file in ``tmp/`` untouched this long was left
by a delivery that died (``kill -9``, a power cut) and is deleted."""


class MaildirTransport:
    """Writes messages into ``folder/new`` (creating ``tmp``, ``new`` and ``cur`` if needed)."""

    name = "maildir"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def remove_stale_temporaries(self, now: datetime) -> int:
        """Delete the files in ``tmp/`` last modified :data:`STALE_TEMPORARY` or more before
        ``now``; log and return how many. A delivery killed between writing and renaming left
        its file there forever (a message in ``new/`` is never touched)."""
        cutoff = (now - STALE_TEMPORARY).timestamp()
        removed = 0
        try:
            entries = list(os.scandir(self.folder / "tmp"))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("maildir_tmp_unreadable", folder=str(self.folder), error=exc.strerror)
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError as exc:  # gone meanwhile, or not ours to delete: the next start
                log.warning("maildir_tmp_not_removed", file=entry.path, error=exc.strerror)
        if removed:
            log.info("maildir_tmp_removed", folder=str(self.folder), removed=removed)
        return removed

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
            raise DeliveryError(msg, permanent=False, local=True) from exc
