"""Calling dbt with the project's connection: one profile, filled from STUDYIN_DATABASE_URL."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from python_jobs.db import database_url, dbt_env
from python_jobs.paths import PROJECT_ROOT

log = logging.getLogger("studyin.dbt")

PROFILES_EXAMPLE = PROJECT_ROOT / "profiles.yml.example"
PROFILES = PROJECT_ROOT / "profiles.yml"


class DbtError(RuntimeError):
    """dbt exited non-zero; the message holds the tail of its output."""


def ensure_profiles() -> Path:
    """Write ./profiles.yml (git-ignored) from the example; it reads the connection from env."""
    if not PROFILES.exists() or PROFILES.read_text() != PROFILES_EXAMPLE.read_text():
        shutil.copyfile(PROFILES_EXAMPLE, PROFILES)
    return PROFILES


def dbt_executable() -> str:
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(
    args: list[str],
    url: str | None = None,
    target_path: str | Path | None = None,
    capture: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `dbt <args>` in the project against `url`; raise DbtError with its output on failure."""
    ensure_profiles()
    env = {**os.environ, **dbt_env(url or database_url())}
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
        env["DBT_LOG_PATH"] = str(Path(target_path) / "logs")
    command = [
        dbt_executable(),
        *args,
        "--profiles-dir",
        str(PROJECT_ROOT),
        "--project-dir",
        str(PROJECT_ROOT),
    ]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, text=True, capture_output=capture)
    summary = [line for line in (result.stdout or "").splitlines() if "Done. PASS=" in line]
    if summary:
        log.info("dbt %s: %s", args[0], summary[-1].split("Done. ", 1)[1])
    if check and result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).splitlines()[-60:])
        raise DbtError(f"dbt {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return result


class DbtSession:
    """dbt commands run inside this process on one parse of the project.

    The nightly pipeline calls dbt three times (the build before the jobs, the build after them,
    the docs); as subprocesses each paid for importing dbt and loading the project again, some
    2.5 s a call. A session parses once, with the ``dbt_vars`` every call then uses, and hands
    that manifest to each command. dbt's own console output is kept quiet; the session keeps its
    messages, logs each command's summary line and puts the tail in the DbtError of a failure.
    """

    def __init__(
        self, url: str, target_path: str | Path | None = None, dbt_vars: Sequence[str] = ()
    ) -> None:
        self._env = dbt_env(url)
        if target_path is not None:
            self._env["DBT_TARGET_PATH"] = str(target_path)
            self._env["DBT_LOG_PATH"] = str(Path(target_path) / "logs")
        self._vars = list(dbt_vars)
        self._messages: list[str] = []
        self._runner = None

    def _collect(self, event) -> None:  # an EventMsg; dbt's own type, imported lazily
        if event.info.level in ("info", "warn", "error") and event.info.msg:
            self._messages.append(event.info.msg)

    def _invoke(self, runner, args: list[str]):
        saved = {key: os.environ.get(key) for key in self._env}
        os.environ.update(self._env)
        try:
            return runner.invoke(
                [
                    *args,
                    *self._vars,
                    "--quiet",
                    "--profiles-dir",
                    str(PROJECT_ROOT),
                    "--project-dir",
                    str(PROJECT_ROOT),
                ]
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _check(self, args: list[str], result) -> None:
        summary = [m for m in self._messages if m.lstrip().startswith("Done. PASS=")]
        if summary:
            log.info("dbt %s: %s", args[0], summary[-1].split("Done. ", 1)[1])
        if not result.success:
            tail = "\n".join(self._messages[-60:])
            cause = f"\n{result.exception}" if result.exception else ""
            raise DbtError(f"dbt {' '.join(args)} failed:\n{tail}{cause}")

    def run(self, args: list[str]) -> None:
        """Run `dbt <args>` (e.g. ["build", "--select", "x"]); raise DbtError on failure."""
        from dbt.cli.main import dbtRunner

        ensure_profiles()
        if self._runner is None:
            parsed = self._invoke(dbtRunner(callbacks=[self._collect]), ["parse"])
            self._check(["parse"], parsed)
            self._runner = dbtRunner(manifest=parsed.result, callbacks=[self._collect])
        self._messages.clear()
        self._check(args, self._invoke(self._runner, args))
