"""The Dockerfile and compose file, checked without a Docker engine.

Pins: the image installs exactly this project at the versions of constraints.txt (``pip install
--constraint constraints.txt .``), as CI does (``pip install -c constraints.txt -e '.[test]'``),
on a base image pinned to a patch and Debian release; every COPY source
exists and is not excluded by .dockerignore; it runs as a non-root user with ``state/`` as a
volume; the exec-form entrypoint is the ``leadflow`` console script and its ``daemon`` command
exists; the HEALTHCHECK is an exec-form python command (run against a real daemon by
``test_http_daemon.py``); every LEADFLOW_ variable of docker-compose.yml is a valid setting.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import requires, version
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from leadflow.config import load_settings

REPO = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def arguments(keyword: str) -> list[str]:
    return [rest for name, rest in instructions() if name == keyword]


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command, with this interpreter in place of ``python``."""
    [check] = arguments("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


class TestDockerfile:
    """The image is built with the commands the tests run, and runs the daemon safely."""

    def test_base_image_user_volume(self) -> None:
        [base] = arguments("FROM")
        # A patch release on a named Debian release: never a floating tag such as 3.11-slim.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
        [user] = arguments("USER")
        assert user not in {"root", "0"}
        assert arguments("VOLUME") == ['["/app/state"]']
        assert arguments("WORKDIR") == ["/app"]

    def test_installs_this_project_as_ci_does(self) -> None:
        installs = [run for run in arguments("RUN") if "pip" in run]
        assert installs == ["python -m pip install --constraint constraints.txt ."]
        ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
        [ci_install] = [line for line in ci.splitlines() if "pip install" in line and "-e" in line]
        assert shlex.split(ci_install)[-2:] == ["-e", ".[test]"]  # the same project, plus tests
        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        installed = [Requirement(r) for r in requires("leadflow") or [] if "extra ==" not in r]
        declared = [Requirement(r) for r in project["dependencies"]]
        assert {(r.name, r.specifier) for r in installed} == {
            (r.name, r.specifier) for r in declared
        }

    def test_copied_sources_exist_and_are_not_ignored(self) -> None:
        ignored = [
            line.strip()
            for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        for copy in arguments("COPY"):
            for source in copy.split()[:-1]:
                assert (REPO / source).exists(), source
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source

    def test_entrypoint_is_the_console_script_and_daemon_a_command(self) -> None:
        assert arguments("ENTRYPOINT") == ['["leadflow"]']
        assert arguments("CMD") == ['["daemon"]']
        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert project["scripts"]["leadflow"] == "leadflow.cli:run"
        leadflow = Path(sys.executable).with_name("leadflow")
        shown = subprocess.run(
            [str(leadflow), "daemon", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "Usage: leadflow daemon" in shown.stdout

    def test_healthcheck_is_exec_form_python(self) -> None:
        command = healthcheck_command()
        assert command[1] == "-c"
        assert "/healthz" in command[2]
        assert "LEADFLOW_HTTP__PORT" in command[2]


class TestConstraints:
    """constraints.txt pins every package the image installs, within pyproject's ranges."""

    def test_every_dependency_is_pinned_within_its_range(self) -> None:
        pins = {}
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                requirement = Requirement(line)
                [spec] = requirement.specifier
                assert spec.operator == "==", line
                pins[canonical(requirement.name)] = spec.version
        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        for declared in map(Requirement, project["dependencies"]):
            name = canonical(declared.name)
            assert name in pins, f"{declared.name} is not pinned in constraints.txt"
            assert declared.specifier.contains(pins[name]), (declared, pins[name])

    def test_pins_are_what_the_tests_run_with(self) -> None:
        """The versions the tests import are the pinned ones, so the image runs tested code."""
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                requirement = Requirement(line)
                [spec] = requirement.specifier
                assert version(requirement.name) == spec.version, line


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class TestCompose:
    """The trial compose file configures leadflow only with keys leadflow knows."""

    def test_environment_is_valid_configuration(self, tmp_path: Path) -> None:
        compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
        environment = compose["services"]["leadflow"]["environment"]
        env = {
            key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
            for key, value in environment.items()
        }
        # No default token: compose must refuse to start until the user sets one.
        assert environment["LEADFLOW_HTTP__TOKEN"] == (
            "${LEADFLOW_HTTP__TOKEN:?set LEADFLOW_HTTP__TOKEN to a token of your choice}"
        )
        env["LEADFLOW_HTTP__TOKEN"] = "chosen-by-the-user"
        (tmp_path / "config.yaml").write_text("", encoding="utf-8")
        settings = load_settings(tmp_path / "config.yaml", env=env).settings
        assert settings.mail.transport == "smtp"
        assert (settings.mail.smtp.host, settings.mail.smtp.port) == ("mailpit", 1025)
        assert settings.database.url.startswith("postgresql://leadflow:leadflow@postgres:5432/")
        assert settings.http.token is not None
        assert set(compose["services"]) == {"postgres", "mailpit", "leadflow"}
        published = [
            port for service in compose["services"].values() for port in service.get("ports", [])
        ]
        assert published == ["127.0.0.1:8025:8025", "127.0.0.1:8080:8080"]
