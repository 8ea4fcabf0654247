"""The ``leadflow`` console script. User mistakes are one line on stderr and exit 1.

Every command module is imported here, so each keeps its top level light (typer, the standard
library, settings): what a command runs (the store, the engine, rich tables) it imports inside
its function. ``--help``, ``check`` and ``test`` then load neither SQLAlchemy nor the daemon's
libraries they never use; ``tests/test_cli_imports.py`` holds them to it.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from leadflow.cli import (
    audit_command,
    check_command,
    config_command,
    daemon_command,
    dashboard_command,
    demo_command,
    import_command,
    mail_commands,
    migrate_command,
    plan_command,
    prune_command,
    report_command,
    resubscribe_command,
    rule_test_command,
    run_command,
    schema_command,
    score_commands,
    simulate_command,
    status_command,
    unbounce_command,
)
from leadflow.cli.choice_errors import choice_error
from leadflow.cli.console import command
from leadflow.cli.context import CliContext
from leadflow.errors import ExternalSystemError, UserInputError

EXIT_USER_ERROR = 1
EXIT_EXTERNAL_FAILURE = 3

app = typer.Typer(
    name="leadflow",
    help="Keeps leads moving through the funnel: rules as code, next to your CRM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib import metadata

        typer.echo(f"leadflow {metadata.version('leadflow')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="config.yaml to use (default: ./config.yaml)."),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = CliContext(config_file=config)
    ctx.call_on_close(ctx.obj.close)


command(app, "config", config_command.show_config)
command(app, "check", check_command.check_rules)
command(app, "schema", schema_command.print_schema)
command(app, "run", run_command.run_once)
command(app, "audit", audit_command.show_audit)
command(app, "daemon", daemon_command.daemon)
command(app, "demo", demo_command.demo)
command(app, "simulate", simulate_command.simulate_range)
command(app, "send", mail_commands.send)
command(app, "outbox", mail_commands.outbox)
command(app, "import", import_command.import_records)
command(app, "status", status_command.show_status)
command(app, "report", report_command.show_report)
command(app, "test", rule_test_command.run_rule_tests)
command(app, "plan", plan_command.plan_rules)
command(app, "prune", prune_command.prune_store)
command(app, "migrate", migrate_command.migrate_store)
command(app, "resubscribe", resubscribe_command.resubscribe)
command(app, "unbounce", unbounce_command.unbounce)
app.add_typer(score_commands.app, name="score")
app.add_typer(dashboard_command.app, name="dashboard")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; translate leadflow's errors into exit codes without a traceback."""
    try:
        # Outside standalone mode click returns a command's ``typer.Exit`` code instead of raising.
        result = app(args=argv, prog_name="leadflow", standalone_mode=False)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ExternalSystemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EXTERNAL_FAILURE
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`leadflow audit | head`): nothing more to say, and
        # nobody to say it to; the interpreter's last flush must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USER_ERROR
    except OSError as exc:
        # A file the user named (`--chart`, `--junit`) or stdout that cannot be written: a
        # full disk, a read-only or special file system. One line, not a traceback.
        written = _write_error(exc)
        if written is None:
            raise
        print(f"error: {written}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        database_error = _database_error(exc)
        if database_error is not None:
            print(f"error: {database_error}", file=sys.stderr)
            return EXIT_EXTERNAL_FAILURE
        return _usage_or_raise(exc)
    return result if isinstance(result, int) else 0


def _write_error(exc: OSError) -> str | None:
    """``FILE: reason`` for a file the command could not open or write, ``cannot write the
    output: reason`` for a full stdout; None for any other OSError (a bug to show whole)."""
    if exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return f"cannot write the output: {exc.strerror}"
    return None


def _database_error(exc: Exception) -> str | None:
    """What to say of a database that failed under a command, else None: for a lock or
    statement timeout what happened in the user's words, with the setting that gave up (a
    SQLite file write-locked past its busy timeout, a PostgreSQL ``LOCK TABLE``); otherwise
    ``the database failed:`` and the driver's first line (a PostgreSQL server gone).

    Commands wrap the failures they expect; this is the net under the rest (``run --once``
    recording its runs, ``outbox --retry``), so an outage is exit 3 in one line, not a
    traceback. By module, because the CLI does not import SQLAlchemy unless a command did.
    """
    exc_module = sys.modules.get("sqlalchemy.exc")
    if exc_module is None or not isinstance(exc, exc_module.OperationalError):
        return None
    notes = getattr(exc.orig, "__notes__", None)  # leadflow's words: store/database.py
    if notes:
        return str(notes[-1])
    lines = str(exc.orig).strip().splitlines()
    return f"the database failed: {lines[0] if lines else type(exc.orig).__name__}"


def _usage_or_raise(exc: Exception) -> int:
    # typer vendors click, so its usage errors are recognised by shape, not by class.
    show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
    choice = choice_error(exc)
    if choice is not None and isinstance(exit_code, int):
        print(f"error: {choice}", file=sys.stderr)
        return exit_code
    if callable(show) and isinstance(exit_code, int):
        show()
        return exit_code
    raise exc


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
