"""Calling dbt with the project's connection: one profile, filled from STUDYIN_DATABASE_URL."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
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
