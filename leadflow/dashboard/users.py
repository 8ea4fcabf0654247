"""The dashboard's users and roles, read again from ``config.yaml`` when the file changes.

A role lowered or a user removed must count on that user's next click, and a new user must be
able to sign in, without restarting the daemon: every request asks :meth:`DashboardUsers.current`,
which compares the file's bytes with those last read (a few kilobytes: cheaper than a
page, and unlike a modification time it never misses two saves within one clock tick) and
validates the whole configuration again only when they differ. A configuration with any problem is
refused as the daemon would refuse it at start-up: the last good users keep signing in, and the
problem is logged once per change of the file. Only ``dashboard.users`` is taken from the new
file; every other key still needs a restart.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

import structlog
import yaml

from leadflow.config import LoadedSettings, load_settings
from leadflow.errors import ConfigError
from leadflow.settings import DashboardUser

log = structlog.get_logger("leadflow.dashboard")

_FileIdentity = bytes | None


class DashboardUsers:
    """The users of ``config_file`` as last read well; fixed when there is no file."""

    def __init__(
        self,
        users: Mapping[str, DashboardUser],
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._users = dict(users)
        self._file = config_file
        self._env = env
        self._lock = threading.Lock()
        self._seen = _identity(config_file) if config_file is not None else None

    def current(self) -> Mapping[str, DashboardUser]:
        """The users now: read again first when the configuration file changed."""
        if self._file is None:
            return self._users
        seen = _identity(self._file)
        if seen == self._seen:
            return self._users
        with self._lock:
            if seen != self._seen:
                self._reread(self._file, seen)
        return self._users

    def _reread(self, config_file: Path, seen: _FileIdentity) -> None:
        self._seen = seen
        try:
            settings = _settings_of(
                config_file, seen, os.environ if self._env is None else self._env
            )
        except ConfigError as exc:
            log.warning(
                "dashboard_users_reload_failed",
                file=str(config_file),
                errors=str(exc).splitlines(),
                kept=sorted(self._users),
            )
            return
        users = dict(settings.settings.dashboard.users)
        if users != self._users:
            log.info(
                "dashboard_users_reloaded",
                file=str(config_file),
                users={name: user.role for name, user in sorted(users.items())},
            )
            self._users = users


def _settings_of(config_file: Path, seen: _FileIdentity, env: Mapping[str, str]) -> LoadedSettings:
    """The file's settings, refusing one empty or comments only as it is a problem too."""
    if seen is not None and _holds_nothing(seen):
        # A save cut short (or an editor's truncate-then-write caught between the two) leaves
        # an empty file, or only its leading comments: a valid configuration of defaults, so
        # no users and everyone signed out. The daemon's config.yaml is never empty on purpose.
        msg = (
            f"{config_file}:1:1: the file is empty (or holds only comments); the dashboard "
            "keeps its users until config.yaml is written whole again"
        )
        raise ConfigError(msg)
    return load_settings(config_file, env=env)


def _holds_nothing(raw: bytes) -> bool:
    """Whether the file is empty, blank or comments only; a file YAML refuses is not (the
    settings loader says where it goes wrong)."""
    try:
        return yaml.compose(raw.decode("utf-8-sig"), Loader=yaml.SafeLoader) is None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return False


def _identity(path: Path) -> _FileIdentity:
    try:
        return path.read_bytes()
    except OSError:
        return None
