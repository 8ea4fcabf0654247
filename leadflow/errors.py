"""Every exception leadflow raises, in one place.

Each message names the offending thing (file:line:col, rule id, lead id, config key) and says
what to do. The CLI turns :class:`UserInputError` into one line on stderr and exit 1, and
:class:`ExternalSystemError` into exit 3; nothing here ever exits. A few keep another base
because of where they are caught: ``ValueError`` so pydantic reports them at the key
(:class:`DurationError`, :class:`CronExpressionError`), plain ``Exception`` for the ones
leadflow turns into something else itself (:class:`YamlSyntaxError` into a located
:class:`Problem`, :class:`BodyTooLargeError` into a 413 answer, :class:`BodyTimeoutError` into
a 408).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

    from leadflow.rule_language.yaml_source import Mark


def why_not_a_file(path: Path) -> str | None:
    """Why ``path``, named like one of the user's files (a rule file, a template), cannot be
    read as one; None for a regular file.

    Skipping such a name silently dropped what it held: ``mql.yaml`` replaced by a folder, or a
    symbolic link whose target went away, loaded as a valid set without the MQL rule; an HTML
    template part that became a dangling link sent every email text-only.
    """
    loop = "is a symbolic link loop: point it at a file, or remove it"
    try:
        if path.is_file():
            return None
        if path.is_dir():
            return "is a folder, not a file: rename it, or move its files up"
        if not path.is_symlink():
            return "is not a regular file (a pipe, socket or device)"
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11's resolve() says "Symlink loop" so
        return loop
    except OSError as exc:
        if "loop" in str(exc).lower():  # ELOOP, on Python 3.13
            return loop
        if path.is_symlink() and not path.exists():
            return f"is a symbolic link to {path.readlink()}, which does not exist"
        return f"cannot be read: {exc.strerror or exc}"
    return "is not a regular file (a pipe, socket or device)"


def uses_aliases(root: yaml.Node) -> bool:
    """Whether a YAML document names a value twice (``*name``, ``<<: *name``): a node it
    reaches twice. Asked only of a file (config.yaml, a rule file) refused for its size, to say
    why its values are so many."""
    import yaml  # only on that error path

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += node.value
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
    return False


def not_utf8_position(raw: bytes, error: UnicodeDecodeError) -> tuple[int, int]:
    """The 1-based line and column of the byte ``error`` stopped at."""
    line = raw[: error.start].count(b"\n") + 1
    column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
    return line, column


class LeadflowError(Exception):
    """Base class of every error leadflow raises on purpose."""


class UserInputError(LeadflowError):
    """The user's input (config, rule file, import file, command option) is wrong: exit 1."""


class ExternalSystemError(LeadflowError):
    """The database or the mail server failed after retries: exit 3."""


class DowngradeRefusedError(LeadflowError):
    """A migration's downgrade would fail half-way on the data the store holds: said first."""


@dataclass(frozen=True)
class Problem:
    """One located problem in a user's file; ``line`` and ``column`` are 1-based, 0 if unknown."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        if self.line:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


MISSING_TEMPLATES_FOLDER = "templates folder not found"
"""A template check's one problem when the folder itself is missing: the rule loader reports
it once, not once for each template a rule uses."""


class ProblemsError(UserInputError):
    """Several located problems found at once; the message lists them all, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class FieldError:
    """One problem of a request body, located the way FastAPI locates its own (``loc``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_json(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class RecordsRejectedError(UserInputError):
    """The posted records were not written; ``errors`` says which field of which record."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{list(e.loc)}: {e.msg}" for e in self.errors))


class BodyTooLargeError(Exception):
    """Raised inside an HTTP request's ``receive`` once its body passed ``max_body_bytes``."""


class BodyTimeoutError(Exception):
    """Raised inside an HTTP request's ``receive`` once its body is late: not all arrived
    ``http.body_timeout`` after the headers."""


class YamlSyntaxError(Exception):
    """The text is not YAML; carries the position the parser stopped at."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class CronExpressionError(ValueError):
    """A cron expression cronsim refuses, or one that never matches a date."""


class ConfigError(UserInputError):
    """config.yaml or a LEADFLOW_... variable is wrong."""


class DurationError(ValueError):
    """A duration like ``90m`` could not be read (a ValueError so pydantic reports it in place)."""


class ImportFileError(UserInputError):
    """An import file cannot be read at all (encoding, header, unknown column)."""


class DatabaseUnavailableError(ExternalSystemError):
    """The state store could not be reached after retries."""


class LockWaitExpiredError(DatabaseUnavailableError):
    """A caller's bound on lock waits (an HTTP request's ``http.lock_timeout``) ran out before
    the lock it needed came free."""


class StoreNotReadyError(UserInputError):
    """A read-only command met a store that was never created or not yet migrated."""


class StoreSchemaTooNewError(StoreNotReadyError):
    """The store was migrated by a newer leadflow: this one does not know its schema."""


class MailTransportError(ExternalSystemError):
    """The mail transport failed in a way that is not about one message."""


class TemplateError(UserInputError):
    """An email template is missing, does not compile, or does not render with the context."""

    def __init__(self, message: str, problem: Problem | None = None) -> None:
        self.problem = problem
        super().__init__(message)


class DeliveryError(ExternalSystemError):
    """One message could not be delivered; ``permanent`` says whether retrying can help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: int | None = None,
        outcome_unknown: bool = False,
        local: bool = False,
        relay_refusal: bool = False,
        unreachable: bool = False,
    ) -> None:
        self.permanent = permanent
        self.code = code
        self.outcome_unknown = outcome_unknown
        """The destination had the whole message but did not say what it did with it (no reply
        to the end of DATA, RFC 1047): it may have delivered it. Always transient."""
        self.local = local
        """This host failed, not a recipient's server (the maildir full, read-only or not
        writable): no wait fixes it by itself, so its retries are logged as warnings."""
        self.relay_refusal = relay_refusal
        """The relay refused leadflow itself, not a recipient's mailbox (a 5.7.x policy reply:
        this host not allowed to relay, authentication required; its sender refused; a 5xx to
        the greeting or MAIL): fixed by configuration, so retried on the normal schedule; the
        sender warns of the outage it is (:mod:`leadflow.outbox.outage`). Always transient."""
        self.unreachable = unreachable
        """The destination could not be reached or talked to (connection refused or lost, a
        timeout, a 421 closing the channel): every message fails alike until it is back, so the
        sender tells of the outage, not of each message. Always transient."""
        super().__init__(message)


class RecipientRejectedError(DeliveryError):
    """The server refused the recipient's mailbox itself (a hard bounce when permanent): a
    reply to RCPT with RFC 3463's 5.1.x addressing codes or 5.2.1 (mailbox disabled), or a
    bare 550/551/553 without an enhanced code."""


class UnknownCalendarError(UserInputError):
    """A rule names a business calendar that config.yaml does not define."""


class AnotherDaemonRunningError(UserInputError):
    """A second daemon was started on a SQLite store that one daemon already owns."""


class NoSnapshotError(LeadflowError):
    """Asked for the current rule set before any set loaded successfully."""


class AmountTooLargeError(UserInputError):
    """The store holds a deal amount above the maximum (written before it was refused): the
    report names those deals instead of adding them up."""


class ImportRowError(UserInputError):
    """One row of an import file is wrong: reported as FILE:LINE: field: reason, then skipped."""

    def __init__(self, field: str, reason: str, *, also: tuple[ImportRowError, ...] = ()) -> None:
        self.field = field
        self.reason = reason
        self.also = also
        """The row's other bad fields, in the file's column order: all are reported at once,
        so that one round of fixes makes the row import."""
        super().__init__(f"{field}: {reason}")

    @classmethod
    def of(cls, errors: Sequence[ImportRowError]) -> ImportRowError:
        """One error for a row's bad fields (at least one), the first carrying the others."""
        first, *others = errors
        return cls(first.field, first.reason, also=tuple(others))

    def each(self) -> tuple[ImportRowError, ...]:
        """This field's error and the row's others', one per bad field."""
        return (self, *self.also)

    def messages(self) -> list[str]:
        return [str(error) for error in self.each()]
