"""The cache of compiled email templates, on disk.

Compiled templates are kept in ``$XDG_CACHE_HOME/leadflow/templates`` (``~/.cache/...``), as
Python keeps ``__pycache__``: compiling is most of what ``leadflow check`` does with a
template, loading the compiled code a tenth of it. An entry is used only for the same source
text (Jinja compares a checksum), the same file, the same Jinja and Python, and an environment
that compiles alike (its options, filters and tests, and the template's autoescaping are in
the key); a template that does not compile is never stored, so its problem is reported as
before. A cache folder that cannot be made or written is no cache, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from pathlib import Path

import jinja2


def _only_ours(status: os.stat_result) -> bool:
    """A folder no other user can change: the user's or root's, group and others not allowed
    to write, or sticky (they may then add entries, not rename or remove ours)."""
    owner_ok = status.st_uid in (os.getuid(), 0)
    return owner_ok and (not status.st_mode & 0o022 or bool(status.st_mode & stat.S_ISVTX))


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Jinja's file cache of compiled templates, keyed by what the compiled code depends on."""

    def __init__(self, directory: Path, environment: jinja2.Environment) -> None:
        super().__init__(str(directory))
        self._environment = environment
        options = (
            jinja2.__version__,
            sys.version,
            type(environment).__qualname__,
            # The limits on what a part may make are compiled in (operators, concatenation).
            environment.code_generator_class.__qualname__,
            sorted(getattr(environment, "intercepted_binops", ())),
            environment.sandboxed,
            environment.optimized,
            environment.is_async,
            getattr(environment.finalize, "__qualname__", None),
            environment.policies.get("compiler.ascii_str"),
            environment.trim_blocks,
            environment.lstrip_blocks,
            environment.keep_trailing_newline,
            environment.newline_sequence,
            environment.block_start_string,
            environment.block_end_string,
            environment.variable_start_string,
            environment.variable_end_string,
            environment.comment_start_string,
            environment.comment_end_string,
            environment.line_statement_prefix,
            environment.line_comment_prefix,
            sorted(environment.extensions),
            sorted(environment.filters),
            sorted(environment.tests),
        )
        self._fingerprint = repr(options)

    @classmethod
    def for_environment(cls, environment: jinja2.Environment) -> CompiledTemplates | None:
        """The cache in the user's cache folder; None when it cannot be made or another user
        could change what is in it (an entry is loaded as code): the folder and the two above
        it must each be the user's or root's, and writable by nobody else (unless sticky, as
        ``/tmp`` is, where nobody may rename another's folder)."""
        try:
            given = os.environ.get("XDG_CACHE_HOME", "")
            # The XDG spec: a relative path is invalid and ignored.
            base = Path(given) if os.path.isabs(given) else Path.home() / ".cache"
            directory = base / "leadflow" / "templates"
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            chain = [base.stat(), directory.parent.stat(), directory.stat()]
        except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
            return None
        if not all(_only_ours(status) for status in chain) or chain[-1].st_uid != os.getuid():
            return None
        return cls(directory, environment)

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        escaped = bool(self._environment.autoescape(name))  # type: ignore[operator]
        key = f"{self._fingerprint}|{escaped}|{name}|{filename}"
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # an unreadable entry: compiled again, and replaced
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        # A full disk or a read-only folder: the template is compiled again next time.
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)
