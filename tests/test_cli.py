"""The command line's failures: one line on stderr, no traceback, a non-zero exit, the step named.

Each bad input runs the real `studyin` command in a subprocess (its stderr is what a user sees).
The lost-server tests terminate the pipeline's sessions from another connection while it runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from python_jobs import cli
from python_jobs.warehouse import db
from python_jobs.warehouse.pipeline import LOCK_KEY, PipelineError, RunContext, run_pipeline

INJECTION = "'; drop table x; --"


def _studyin(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    environment.pop(cli.DEBUG_ENV, None)
    if url is not None:
        environment[db.ENV_URL] = url
    return subprocess.run(
        [sys.executable, "-m", "python_jobs.cli", *args],
        env=environment,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's only stderr line (asserting that it is the only one, and no traceback)."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["delete-user", INJECTION], 2, "must be a learner id (a UUID)"),
        (["delete-user"], 2, "the following arguments are required: user_id"),
        (["simulate", "--late-share", "5"], 2, "must be a share between 0 and 1, got '5'"),
        (["simulate", "--late-share", "nan"], 2, "must be a share between 0 and 1"),
        (["simulate", "--users", "-3"], 2, "must be a positive whole number, got -3"),
        (["simulate", "--days", "many"], 2, "must be a positive whole number, got 'many'"),
        (["simulate", "--seed", "-1"], 2, "must be a whole number, 0 or more, got -1"),
        (["partitions", "--months-ahead", "-1"], 2, "must be a whole number, 0 or more"),
        (["run", "--test-window-days", "0"], 2, "must be a positive whole number, got 0"),
        (["run", "--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
        (["readiness", "--as-of", "yesterday"], 2, "must be a day YYYY-MM-DD, got 'yesterday'"),
        (["readiness", "--validity", "2026-11-01,2026-13-01"], 2, "got '2026-13-01'"),
        (["recall", "--as-of", "2026-13-01"], 2, "must be a day YYYY-MM-DD, got '2026-13-01'"),
        (["recall", "--refit-days", "0"], 2, "must be a positive whole number, got 0"),
        (["nosuchcommand"], 2, "invalid choice: 'nosuchcommand'"),
        ([], 2, "the following arguments are required: command"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_touching_the_database(
    args: list[str], code: int, expected: str
) -> None:
    # an unusable URL proves nothing was connected to: argument checks come first
    result = _studyin(*args, url="postgresql://127.0.0.1:1/none")
    line = _one_line_error(result)
    assert result.returncode == code
    assert line.startswith("studyin") and expected in line
    assert line.endswith("--help)")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://x", "STUDYIN_DATABASE_URL must be a postgresql:// URL, got scheme 'mysql'"),
        ("host=localhost dbname=x", "must be a postgresql:// URL, got scheme ''"),
        ("postgresql://127.0.0.1:port/x", "STUDYIN_DATABASE_URL has an invalid port"),
    ],
)
def test_unusable_database_url_is_one_line(url: str, expected: str) -> None:
    for args in (["db", "url"], ["migrate"], ["delete-user", str(uuid.uuid4())]):
        result = _studyin(*args, url=url)
        line = _one_line_error(result)
        assert result.returncode == 2
        assert line == f"studyin {args[0]}: {expected}" or expected in line


def test_bad_embedded_port_is_one_line() -> None:
    environment = {k: v for k, v in os.environ.items() if k != db.ENV_URL}
    result = subprocess.run(
        [sys.executable, "-m", "python_jobs.cli", "db", "url"],
        env={**environment, "STUDYIN_PG_PORT": "54x"},
        text=True,
        capture_output=True,
        timeout=60,
    )
    line = _one_line_error(result)
    assert line == "studyin db: STUDYIN_PG_PORT must be a port number (1-65535), got '54x'"


def test_unknown_learner_is_refused_and_nothing_is_recorded(migrated_db: str) -> None:
    learner = uuid.uuid4()
    result = _studyin("delete-user", str(learner), url=migrated_db)
    line = _one_line_error(result)
    assert result.returncode == 1
    assert line == (
        f"studyin delete-user: no learner {learner} (never existed, or already erased):"
        " nothing to delete"
    )
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select count(*) from app.deletion_requests").fetchone()[0] == 0


def test_recall_before_any_dbt_build_says_what_to_run(migrated_db: str) -> None:
    result = _studyin("recall", "--force", url=migrated_db)
    assert result.returncode == 1
    assert _one_line_error(result) == (
        "studyin recall: intermediate.int_topic_reviews_featured does not exist: run dbt build"
        " first (`studyin run` or `studyin dbt build`)"
    )


def test_known_learner_deletion_is_recorded_once(migrated_db: str) -> None:
    learner = uuid.uuid4()
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "insert into app.users (id, timezone, cohort, exam_target)"
            " values (%s, 'UTC', 'c', 'board')",
            (learner,),
        )
        conn.commit()
    first = _studyin("delete-user", str(learner).upper(), url=migrated_db)
    again = _studyin("delete-user", str(learner), url=migrated_db)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert first.stdout == again.stdout and "the next `studyin run` erases" in first.stdout
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute(
            "select user_id from app.deletion_requests where completed_at is null"
        ).fetchall()
    assert rows == [(learner,)]


def test_unknown_migration_revision_is_one_line(database_factory: Callable[..., str]) -> None:
    url = database_factory("studyin_cli_migrate")
    for args, verb in (
        (["migrate", "nosuchrev"], "upgrade to 'nosuchrev'"),
        (["migrate", "--down", "nosuchrev"], "downgrade to 'nosuchrev'"),
        (["migrate", "-50"], "downgrade to '-50'"),
    ):
        result = _studyin(*args, url=url)
        line = _one_line_error(result)
        assert result.returncode == 1
        assert line.startswith(f"studyin migrate: cannot {verb}: "), line
    with psycopg.connect(url) as conn:  # still at head
        assert conn.execute("select to_regclass('ml.model_runs') is not null").fetchone()[0]


def test_unmigrated_database_error_is_one_line(database_factory: Callable[..., str]) -> None:
    url = database_factory("studyin_cli_bare", migrated=False)
    result = _studyin("delete-user", str(uuid.uuid4()), url=url)
    line = _one_line_error(result)
    assert result.returncode == 1
    assert line.startswith("studyin delete-user: database error: ")
    assert 'relation "app.users" does not exist' in line


def test_unreachable_server_is_one_line() -> None:
    result = _studyin("delete-user", str(uuid.uuid4()), url="postgresql://127.0.0.1:1/none")
    line = _one_line_error(result)
    assert result.returncode == 2
    assert line.startswith("studyin delete-user: server did not accept connections at ")


def test_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys) -> None:
    def broken(args) -> int:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(cli, "_cmd_db", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["db", "url"]) == 1
    assert capsys.readouterr().err == (
        "studyin db: unexpected ZeroDivisionError: division by zero | second line"
        " (set STUDYIN_DEBUG=1 for the traceback)\n"
    )
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["db", "url"])


# --------------------------------------------------------------------------- lost server


def _terminate_other_sessions(admin_url: str, url: str) -> int:
    """Terminate every session on `url`'s database, as a server restart would."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (db.parse_url(url).dbname,),
        ).fetchone()[0]


def test_lost_connection_names_the_step_not_the_lock_release(
    migrated_db: str, server_url: str, caplog
) -> None:
    ran: list[str] = []

    def victim(ctx: RunContext) -> None:
        with psycopg.connect(ctx.url) as conn:
            assert _terminate_other_sessions(server_url, ctx.url) >= 2  # this one and the lock's
            conn.execute("select 1")

    steps = [
        ("before", lambda ctx: ran.append("before")),
        ("victim", victim),
        ("after", lambda ctx: ran.append("after")),
    ]
    with caplog.at_level(logging.WARNING, logger="studyin.run"):
        with pytest.raises(PipelineError) as raised:
            run_pipeline(RunContext(url=migrated_db), steps)
    assert raised.value.step == "victim"
    assert str(raised.value).startswith("step 'victim' failed: ")
    assert isinstance(raised.value.cause, psycopg.OperationalError)
    assert ran == ["before"]
    assert "pipeline lock not released" in caplog.text
    # the lost session's lock went with it: the next run takes it
    assert run_pipeline(RunContext(url=migrated_db), [("again", lambda ctx: None)]).keys() == {
        "again"
    }


def _lock_holder_seen(admin_url: str, dbname: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return bool(
            admin.execute(
                "select count(*) from pg_locks as l join pg_database as d on d.oid = l.database"
                " where l.locktype = 'advisory' and d.datname = %s and l.objid = %s",
                (dbname, LOCK_KEY),
            ).fetchone()[0]
        )


def test_server_lost_mid_run_names_the_step_in_the_last_line(
    database_factory: Callable[..., str], server_url: str
) -> None:
    """`studyin run` while every session of its database is terminated: the last line names the
    failed step; the lost lock release is a warning, not a second error."""
    url = database_factory("studyin_cli_lost")
    dbname = db.parse_url(url).dbname
    done = threading.Event()

    def kill_once_locked() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            if _lock_holder_seen(server_url, dbname):
                break
            time.sleep(0.05)
        while not done.is_set() and time.monotonic() < deadline:
            _terminate_other_sessions(server_url, url)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_locked, daemon=True)
    killer.start()
    try:
        result = _studyin("run", url=url, timeout=300)
    finally:
        done.set()
        killer.join()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("studyin run: step '") and "' failed: " in last, result.stderr
    assert len(last) < 400  # the headline; dbt's or the server's full message is in the log
    assert "pipeline lock not released" in result.stderr


def test_a_dbt_stack_trace_goes_to_the_debug_log_not_into_the_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dbt fires its stack trace at error level after the one-line error when an exception of no
    dbt type ends a command (a connection lost mid-run); the failure names the error, the trace
    is kept at debug level only."""
    from dbt.cli.main import dbtRunnerResult
    from dbt.events.types import MainEncounteredError, MainStackTrace
    from dbt_common.events.base_types import msg_from_base_event

    from python_jobs.warehouse.dbt import DbtError, DbtSession

    session = DbtSession("postgresql://nobody@127.0.0.1:1/none")
    trace = 'Traceback (most recent call last):\n  File "connections.py", line 129'
    with caplog.at_level(logging.DEBUG, logger="studyin.dbt"):
        for event in (
            MainEncounteredError(exc="server closed the connection unexpectedly"),
            MainStackTrace(stack_trace=trace),
        ):
            session._collect(msg_from_base_event(event))
        with pytest.raises(DbtError) as raised:
            session._check(["build"], dbtRunnerResult(success=False, exception=OSError("lost")))
    message = str(raised.value)
    assert "server closed the connection unexpectedly" in message and "lost" in message
    assert "Traceback" not in message
    assert [r.levelno for r in caplog.records if "Traceback" in r.getMessage()] == [logging.DEBUG]


@pytest.mark.parametrize("setting, expected", [(None, db.DBT_WORK_MEM), ("96MB", "96MB")])
def test_dbt_sessions_run_with_their_work_mem(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: str
) -> None:
    from python_jobs.warehouse.dbt import run_dbt

    if setting is None:
        monkeypatch.delenv("STUDYIN_DBT_WORK_MEM", raising=False)
    else:
        monkeypatch.setenv("STUDYIN_DBT_WORK_MEM", setting)
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=600000")
    query = "select current_setting('work_mem') as wm, current_setting('statement_timeout') as st"
    result = run_dbt(["show", "--inline", query, "--output", "json"], url=migrated_db)
    assert f'"wm": "{expected}"' in result.stdout
    assert '"st": "10min"' in result.stdout  # the caller's own PGOPTIONS are kept


def test_bad_dbt_work_mem_is_refused_before_dbt_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYIN_DBT_WORK_MEM", "lots; drop table x")
    with pytest.raises(db.DatabaseError, match="STUDYIN_DBT_WORK_MEM must be a size"):
        db.dbt_env("postgresql://u:p@127.0.0.1:5432/d")
