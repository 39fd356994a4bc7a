"""Calling dbt with the project's connection: one profile, filled from STUDYIN_DATABASE_URL."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse.db import database_url, dbt_env

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


# Where dbt finds this project and its profile; every call passes them.
PROJECT_ARGS = ("--profiles-dir", str(PROJECT_ROOT), "--project-dir", str(PROJECT_ROOT))
ERROR_TAIL_LINES = 60  # lines of dbt's output a DbtError carries


def _environment(url: str | None, target_path: str | Path | None) -> dict[str, str]:
    """The variables a dbt call needs: the profile's connection, and the target and log folders."""
    env = dbt_env(url or database_url())
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
        env["DBT_LOG_PATH"] = str(Path(target_path) / "logs")
    return env


def _log_summary(command: str, lines: Sequence[str]) -> None:
    """Log the command's "Done. PASS=..." line, if dbt printed one."""
    summary = [line for line in lines if "Done. PASS=" in line]
    if summary:
        log.info("dbt %s: %s", command, summary[-1].split("Done. ", 1)[1])


def _failure(args: Sequence[str], lines: Sequence[str], how: str = "") -> DbtError:
    tail = "\n".join(lines[-ERROR_TAIL_LINES:])
    return DbtError(f"dbt {' '.join(args)} failed{how}:\n{tail}")


def run_dbt(
    args: list[str],
    url: str | None = None,
    target_path: str | Path | None = None,
    capture: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `dbt <args>` in the project against `url`; raise DbtError with its output on failure."""
    ensure_profiles()
    env = {**os.environ, **_environment(url, target_path)}
    command = [dbt_executable(), *args, *PROJECT_ARGS]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, text=True, capture_output=capture)
    _log_summary(args[0], (result.stdout or "").splitlines())
    if check and result.returncode != 0:
        output = ((result.stdout or "") + (result.stderr or "")).splitlines()
        raise _failure(args, output, f" (exit {result.returncode})")
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
        self._env = _environment(url, target_path)
        self._vars = list(dbt_vars)
        self._messages: list[str] = []
        self._runner = None
        # seconds per node of every command run so far, e.g. {"model.studyin.daily_user_stats": 1.2}
        # (a node run by two commands adds up); the bench reports the slowest
        self.node_seconds: dict[str, float] = {}
        self.parse_seconds: float | None = None  # the session's one parse, once done

    def _collect(self, event) -> None:  # an EventMsg; dbt's own type, imported lazily
        if event.info.name == "MainStackTrace":
            # an error-level event, fired after the one-line MainEncounteredError when dbt meets
            # an exception of no dbt type (a connection lost at the wrong moment): the log keeps
            # it for whoever debugs, the failure's message stays the error itself
            log.debug("dbt stack trace:\n%s", event.info.msg)
        elif event.info.level in ("info", "warn", "error") and event.info.msg:
            self._messages.append(event.info.msg)

    def _invoke(self, runner, args: list[str]):
        saved = {key: os.environ.get(key) for key in self._env}
        os.environ.update(self._env)
        try:
            return runner.invoke([*args, *self._vars, "--quiet", *PROJECT_ARGS])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _check(self, args: list[str], result) -> None:
        _log_summary(args[0], self._messages)
        if not result.success:
            cause = [str(result.exception)] if result.exception else []
            raise _failure(args, [*self._messages, *cause])

    def _parsed_runner(self):
        from dbt.cli.main import dbtRunner

        ensure_profiles()
        if self._runner is None:
            started = time.monotonic()
            parsed = self._invoke(dbtRunner(callbacks=[self._collect]), ["parse"])
            self._check(["parse"], parsed)
            self.parse_seconds = time.monotonic() - started
            self._runner = dbtRunner(manifest=parsed.result, callbacks=[self._collect])
        self._messages.clear()
        return self._runner

    @property
    def manifest(self):  # dbt's Manifest, parsed on first use
        return self._parsed_runner().manifest

    @property
    def vars_args(self) -> list[str]:
        """The --vars arguments every command of the session gets."""
        return list(self._vars)

    def run(self, args: list[str]) -> None:
        """Run `dbt <args>` (e.g. ["build", "--select", "x"]); raise DbtError on failure."""
        runner = self._parsed_runner()
        result = self._invoke(runner, args)
        self._record_timings(result)
        self._check(args, result)

    def _record_timings(self, result) -> None:
        for node_result in getattr(result.result, "results", None) or []:
            node = getattr(node_result, "node", None)
            seconds = getattr(node_result, "execution_time", None)
            if node is not None and seconds is not None:
                key = node.unique_id
                self.node_seconds[key] = self.node_seconds.get(key, 0.0) + seconds

    def results(self, args: list[str]) -> list:
        """Run `dbt <args>` and return its node results whatever their status (e.g. the stale
        sources of `source freshness`); raise DbtError only when dbt itself could not run."""
        runner = self._parsed_runner()
        result = self._invoke(runner, args)
        if result.exception is not None or result.result is None:
            self._check(args, result)
        _log_summary(args[0], self._messages)
        return list(result.result.results)
