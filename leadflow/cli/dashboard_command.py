"""``leadflow dashboard``: what setting up the web dashboard needs (a password's hash)."""

from __future__ import annotations

import sys

import typer

from leadflow.cli.console import command
from leadflow.errors import UserInputError

app = typer.Typer(
    name="dashboard",
    help="The web dashboard under /ui/: make a password hash for dashboard.users.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def hash_password() -> None:
    """Read a password (prompted twice, or one line on standard input) and print its argon2id
    hash for dashboard.users.NAME.password_hash."""
    from leadflow.dashboard.access import hash_password as argon2_hash

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UserInputError("the password is empty")
    typer.echo(argon2_hash(password))


command(app, "hash-password", hash_password)
