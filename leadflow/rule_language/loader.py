"""Turn a rules folder into one validated :class:`RuleSet`, or every problem in it.

A rule set is all-or-nothing: any problem in any file refuses the whole set, so a reload can
keep the last good set running. Every problem names ``file:line:col``, the rule id when there
is one, and what was expected.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from leadflow.errors import Problem, ProblemsError, why_not_a_file
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.rule_set_builder import ContextCheck, RuleSetBuilder, TemplateCheck
from leadflow.rule_language.scoring_model import ScoringModel, misspelt_activity_types
from leadflow.settings import Settings

RULE_FILE_SUFFIXES = (".yaml", ".yml")


MAX_RULE_FILE_BYTES = 1024 * 1024
"""The largest rule file read: parsing keeps every YAML node, so a file of tens of megabytes
(a log pasted into the folder, a generated dump) took minutes of CPU and gigabytes of memory
before its size was noticed. The shipped rule files are a few kilobytes."""


MAX_RULE_FOLDER_BYTES = 4 * 1024 * 1024
"""The most a rules folder's files may hold together: each under the file limit, sixty
generated files of a megabyte (43,140 rules) kept ``check`` parsing for minutes, silently
(an outside tester's find). A real folder is tens of kilobytes; this is a hundred times that."""


def rule_files(folder: Path) -> list[Path]:
    """The rule files below ``folder``, in a stable order; hidden files and folders skipped.

    Skipping hidden names also skips Kubernetes' ``..data``/``..2026_...`` folders, whose
    content is already visible through the ConfigMap's symlinks.
    """
    return [path for path in _rule_entries(folder) if path.is_file()]


def _rule_entries(folder: Path) -> list[Path]:
    """Every visible name below ``folder`` that ends like a rule file, whatever it is."""
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in RULE_FILE_SUFFIXES  # mql.YAML too (saved so on Windows)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def load_rule_set(
    folder: Path,
    settings: Settings,
    *,
    check_template: TemplateCheck | None = None,
    check_context: ContextCheck | None = None,
) -> RuleSet:
    """The validated rule set of ``folder``; :class:`ProblemsError` lists every problem."""
    rule_set, problems = check_rule_set(
        folder, settings, check_template=check_template, check_context=check_context
    )
    if problems or rule_set is None:
        raise ProblemsError(problems)
    return rule_set


def check_rule_set(
    folder: Path,
    settings: Settings,
    *,
    check_template: TemplateCheck | None = None,
    check_context: ContextCheck | None = None,
) -> tuple[RuleSet | None, list[Problem]]:
    """Every problem in the folder, and the rule set when there are none.

    ``check_context`` (with ``check_template``) also checks each use of a template against the
    context its action provides: ``sla`` only where the rule starts one, ``deal`` only in deal
    rules, and so on.
    """
    if folder.is_file():
        # `check --rules rules/mql.yaml` is a natural first try; "not found" sent users looking
        # for a file that is right there.
        message = f"is a file; the rule set is a folder: give {folder.parent} (every file is read)"
        return None, [Problem(str(folder), 0, 0, message)]
    if not folder.is_dir():
        return None, [Problem(str(folder), 0, 0, "rules folder not found")]
    builder = RuleSetBuilder(settings, check_template, check_context)
    digest = hashlib.sha256()
    files = _files_to_read(folder, builder)
    too_much = _too_much(folder, files)
    if too_much is not None:
        return None, [too_much]
    for path in files:
        label = _label(path)
        try:
            size = path.stat().st_size
            if size > MAX_RULE_FILE_BYTES:
                message = (
                    f"{size:,} bytes; a rule file is at most {MAX_RULE_FILE_BYTES:,} bytes "
                    "(split it into several files)"
                )
                builder.problems.append(Problem(label, 1, 1, message))
                continue
            raw = path.read_bytes()
        except OSError as exc:  # a permission, a file gone or turned into a folder meanwhile
            builder.problems.append(Problem(label, 1, 1, f"cannot be read: {exc.strerror or exc}"))
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + raw + b"\0")
        builder.add_file(label, raw)
    builder.check_references()
    if builder.scoring is not None:
        builder.warnings += _misspelt_activity_types(builder.scoring)
    # A disabled scoring model changes no score: alone, it ran nothing either (a folder left
    # with scoring.yaml and `enabled: false` passed as `0 rules, 0 streams OK`).
    scoring = builder.scoring is not None and builder.scoring.enabled
    empty = not (builder.rules or builder.streams or scoring)
    if empty and not builder.problems and not settings.rules.allow_empty:
        disabled = builder.scoring is not None
        builder.problems.append(Problem(_label(folder), 0, 0, _no_rules(files, disabled)))
    if builder.problems:
        order = {_label(path): index for index, path in enumerate(files)}
        ordered = sorted(
            builder.problems, key=lambda p: (order.get(p.file, len(order)), p.line, p.column)
        )
        # One problem is one line of `leadflow check` output, whatever text a key held.
        return None, [
            Problem(p.file, p.line, p.column, p.message.replace("\r", "\\r").replace("\n", "\\n"))
            for p in ordered
        ]
    version = digest.hexdigest()[:12]
    commit = _git_commit(folder)
    if commit:
        version += f"+git.{commit}"
    rule_set = RuleSet(
        rules=tuple(builder.rules),
        streams=dict(builder.streams),
        scoring=builder.scoring,
        version=version,
        files=tuple(_label(path) for path in files),
        warnings=tuple(builder.warnings),  # in file order, as they were read
    )
    return rule_set, []


def _files_to_read(folder: Path, builder: RuleSetBuilder) -> list[Path]:
    """The folder's rule files that are files; each other entry (a folder, a link loop) is a
    problem of the builder's."""
    files = []
    for path in _rule_entries(folder):
        problem = why_not_a_file(path)
        if problem is None:
            files.append(path)
        else:
            builder.problems.append(Problem(_label(path), 1, 1, problem))
    return files


def _too_much(folder: Path, files: list[Path]) -> Problem | None:
    """The folder's one problem when its files hold more than a rules folder may, read before
    any is parsed."""
    sizes = []
    for path in files:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            continue  # said when it is read
    total = sum(sizes)
    if total <= MAX_RULE_FOLDER_BYTES:
        return None
    message = (
        f"{len(files):,} rule files of {total:,} bytes in all; a rules folder holds at most "
        f"{MAX_RULE_FOLDER_BYTES:,} bytes of rules (is a generated or copied folder inside it?)"
    )
    return Problem(_label(folder), 0, 0, message)


def _misspelt_activity_types(model: ScoringModel) -> list[Problem]:
    """A warning, not a problem: a CRM may send any type, and one a letter away from a known
    one is most likely a typo that would match no activity."""
    return [
        Problem(
            criterion.location.file,
            criterion.location.line,
            criterion.location.column,
            f"scoring: criterion {criterion.id}: activity {kind!r} is not a type leadflow knows; "
            f"{hint} (a type your CRM sends is fine)",
        )
        for criterion, kind, hint in misspelt_activity_types(model)
    ]


def _no_rules(files: list[Path], disabled_scoring: bool = False) -> str:
    found = (
        (
            f"its {len(files)} files define nothing"
            if len(files) > 1
            else "its one file defines nothing"
        )
        if files
        else "no rule file (*.yaml, *.yml) in it"
    )
    if disabled_scoring:
        found = "no rule or stream, and its scoring model is disabled (enabled: false)"
    return (
        f"no rules: {found}; running without rules would silently stop every assignment and "
        "email (set rules.allow_empty: true in config.yaml to run so)"
    )


def _label(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _git_commit(folder: Path) -> str | None:
    """The checkout's commit, marked ``-dirty`` when the rules folder has uncommitted edits:
    the content hash already differs, the mark says that no commit holds these rules."""
    # Both asked at once: each mostly waits for git to start (about 10 ms).
    commit, edits = _git(
        folder,
        ("rev-parse", "--short=10", "HEAD"),
        ("status", "--porcelain", "--untracked-files=all", "--", "."),
    )
    if not commit:
        return None
    return f"{commit}-dirty" if edits else commit


def _git(folder: Path, *commands: tuple[str, ...]) -> list[str | None]:
    """Each git command's output in ``folder``, run side by side; None for one that failed,
    printed nothing, or took more than 5 seconds."""
    processes: list[subprocess.Popen[str] | None] = []
    for args in commands:
        try:
            processes.append(
                subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                    ["git", "-C", str(folder), *args],  # noqa: S607 (git from PATH is intended)
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        except (OSError, subprocess.SubprocessError):
            processes.append(None)
    outputs: list[str | None] = []
    for process in processes:
        if process is None:
            outputs.append(None)
            continue
        try:
            output, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            outputs.append(None)
            continue
        output = output.strip()
        outputs.append(output if process.returncode == 0 and output else None)
    return outputs
