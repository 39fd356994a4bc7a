"""`studyin`: the one command line of the warehouse (a thin layer over plain functions).

Every failure ends with one line on stderr, ``studyin <command>: <what went wrong>``, and a
non-zero exit: 2 when the command could not start (bad arguments, unusable database URL, server
unreachable), 1 when it ran and failed (a pipeline step, which it names; an unknown migration
revision; no such learner), 75 when another run holds the pipeline lock, 130 on Ctrl-C. No
traceback is printed unless ``STUDYIN_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import date
from pathlib import Path
from typing import NoReturn
from uuid import UUID

from python_jobs.paths import CALIBRATION_PLOT
from python_jobs.warehouse import cluster, db

DEBUG_ENV = "STUDYIN_DEBUG"
BI_PASSWORD_ENV = "STUDYIN_BI_PASSWORD"  # bi-login: the password to set instead of a generated one


class CommandFailed(RuntimeError):
    """A command ran and failed; the message says what happened (exit code 1)."""


def _cmd_db(args: argparse.Namespace) -> int:
    if args.cluster is not None and args.action != "start":
        raise CommandFailed("--cluster goes with `db start` only")
    if args.action == "start":
        if args.cluster is not None:
            if not db.uses_embedded():
                raise CommandFailed(f"{db.ENV_URL} is set: --cluster starts embedded servers only")
            cluster.set_mode(args.cluster)
        url = db.ensure_server()
        print(f"PostgreSQL ready at {url}")
    elif args.action == "stop":
        if not db.uses_embedded():
            raise CommandFailed(f"{db.ENV_URL} is set: that server is not ours to stop")
        print("stopped" if db.stop_all() else "not running")
    elif args.action == "status":
        if not db.uses_embedded():
            print(f"external server: {db.redacted(db.database_url())}")
            return 0
        return _print_status()
    elif args.action == "url":
        print(db.database_url())
    return 0


def _print_status() -> int:
    workers = db.cluster_workers()
    if not workers:
        running = db.server_running()
        print(f"embedded server: {'running' if running else 'stopped'} ({db.PGDATA})")
        return 0 if running else 3
    nodes = cluster.status(workers)
    for node, running in nodes:
        state = "running" if running else "stopped"
        print(f"{node.name}: {state} on port {node.port} ({node.pgdata})")
    return 0 if all(running for _, running in nodes) else 3


def _cmd_migrate(args: argparse.Namespace) -> int:
    from python_jobs.warehouse import migrate

    url = db.ensure_server()
    try:
        if args.revision.startswith("-") or args.down:
            migrate.downgrade(url, args.revision)
        else:
            migrate.upgrade(url, args.revision)
    except migrate.MigrationError as err:
        raise CommandFailed(str(err)) from err
    print(f"migrated to {args.revision}")
    return 0


def _cmd_partitions(args: argparse.Namespace) -> int:
    from python_jobs.warehouse import migrate

    with db.connect(db.ensure_server()) as conn:
        made = migrate.ensure_partitions(conn, args.months_ahead)
    print(f"study_events partitions: {made} created, {args.months_ahead} months ahead covered")
    return 0


def _cmd_dbt(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.dbt import run_dbt

    result = run_dbt(args.dbt_args, url=db.ensure_server(), capture=False, check=False)
    return result.returncode


def _cmd_mf(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.dbt import DbtError
    from python_jobs.warehouse.metrics import run_mf

    try:
        return run_mf(args.mf_args, url=db.ensure_server())
    except DbtError as err:  # the parse that refreshes the semantic manifest
        raise CommandFailed(str(err)) from err


def _cmd_delete_user(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.deletion import request_deletion

    with db.connect(db.ensure_server()) as conn:
        try:
            request_id = request_deletion(conn, args.user_id)
        except ValueError as err:  # no such learner (never existed, or already erased)
            raise CommandFailed(str(err)) from err
    print(f"deletion request {request_id} recorded; the next `studyin run` erases the learner")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.pipeline import (
        PipelineError,
        PipelineLocked,
        RunContext,
        run_pipeline,
    )

    _configure_logging()
    ctx = RunContext(
        url=db.ensure_server(),
        full_refresh=args.full_refresh,
        full_checks=args.full_checks,
        retrain=args.retrain,
        test_window_days=args.test_window_days,
        fail_on_stale=args.fail_on_stale,
    )
    try:
        durations = run_pipeline(ctx)
    except PipelineLocked as err:
        _fail("run", str(err))
        return 75  # EX_TEMPFAIL: try again later
    except PipelineError as err:
        raise CommandFailed(_headline(err)) from err
    print(f"studyin run: {len(durations)} steps done in {sum(durations.values()):.1f}s")
    return 0


def _cmd_recall(args: argparse.Namespace) -> int:
    from python_jobs.jobs.recall import RecallOptions, run_recall
    from python_jobs.jobs.report import JobError

    _configure_logging()
    options = RecallOptions(as_of=args.as_of, force=args.force, refit_days=args.refit_days)
    with db.connect(db.ensure_server()) as conn:
        try:
            report = run_recall(conn, options)
        except JobError as err:
            raise CommandFailed(str(err)) from err
    skipped = report.details.get("skipped")
    print(report.summary() + (f" ({skipped})" if skipped else ""))
    return 0


def _cmd_readiness(args: argparse.Namespace) -> int:
    import json

    from python_jobs.jobs.readiness import ReadinessOptions, run_exam_readiness
    from python_jobs.jobs.readiness_validity import readiness_validity
    from python_jobs.jobs.report import JobError

    _configure_logging()
    options = ReadinessOptions(
        as_of=args.as_of,
        write=not args.dry_run,
        retrain_every_days=0 if args.retrain else ReadinessOptions().retrain_every_days,
    )
    with db.connect(db.ensure_server()) as conn:
        try:
            if args.validity:
                result = readiness_validity(conn, args.validity, options)
            else:
                report = run_exam_readiness(conn, options)
                print(report.summary())
                result = report.details.get("comparison")
        except (JobError, ValueError) as err:
            raise CommandFailed(str(err)) from err
    if result:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from python_jobs.simulation.simulator import simulate

    with db.connect(db.ensure_server()) as conn:
        summary = simulate(
            conn, users=args.users, days=args.days, seed=args.seed, late_share=args.late_share
        )
    print(summary)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from python_jobs.demo import DemoOptions, run_demo
    from python_jobs.warehouse.pipeline import PipelineError

    _configure_logging()
    try:
        return run_demo(DemoOptions(users=args.users, days=args.days, seed=args.seed))
    except PipelineError as err:
        raise CommandFailed(_headline(err)) from err


def _cmd_calibration_plot(args: argparse.Namespace) -> int:
    from python_jobs.jobs.calibration_plot import draw_calibration_plot
    from python_jobs.jobs.report import JobError

    try:
        curves = draw_calibration_plot(db.ensure_server(), args.out, args.versions)
    except JobError as err:
        raise CommandFailed(str(err)) from err
    print(f"{args.out}: {len(curves)} model versions")
    return 0


# --- BI tools (python_jobs/warehouse/bi.py): a login for a dashboard tool, its queries ---


def _cmd_bi_login(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.bi import BiLoginError, create_bi_login

    url = db.ensure_server()
    password = os.environ.get(BI_PASSWORD_ENV) or None
    with db.connect(url) as conn:
        try:
            login = create_bi_login(conn, url, args.name, password)
        except BiLoginError as err:
            raise CommandFailed(str(err)) from err
    print(login.describe())
    return 0


def _cmd_bi_queries(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.bi import export_bi_queries

    written = export_bi_queries(db.ensure_server(), args.style, args.out)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _add_bi_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bi-login",
        help="create (or renew) a BI tool's login: member of reporter, reads marts only",
    )
    p.add_argument("name", help="the login's name, e.g. superset")
    p.epilog = f"The password is generated (printed once) unless {BI_PASSWORD_ENV} is set."
    p.set_defaults(func=_cmd_bi_login)

    p = sub.add_parser("bi-queries", help="write analyses/ with a BI tool's parameter syntax")
    p.add_argument("--style", choices=["superset", "metabase"], required=True)
    p.add_argument("--out", type=Path, default=None, help="folder (default target/bi/STYLE)")
    p.set_defaults(func=_cmd_bi_queries)


# --- end of BI tools ---


def _headline(err: Exception) -> str:
    """The first line of a failed step's error; the whole of it (e.g. dbt's output) was logged."""
    lines = str(err).splitlines() or [""]
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0].rstrip(':')} (the log above has the details)"


def _configure_logging() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )


def _whole_number(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "a positive whole number")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "a whole number, 0 or more")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text!r}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a day YYYY-MM-DD, got {text!r}") from None


def _days(text: str) -> list[date]:
    return [_day(part.strip()) for part in text.split(",") if part.strip()]


def _learner_id(text: str) -> str:
    try:
        return str(UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a learner id (a UUID), got {text!r}") from None


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one `--help` away), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="studyin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _add_server_commands(sub)
    _add_data_commands(sub)
    _add_pipeline_commands(sub)
    _add_tool_commands(sub)
    _add_bi_commands(sub)
    return parser


def _add_server_commands(sub: argparse._SubParsersAction) -> None:
    """db, migrate, partitions: the server and its schema."""
    p = sub.add_parser("db", help="embedded PostgreSQL lifecycle (or report the external one)")
    p.add_argument("action", choices=["start", "stop", "status", "url"])
    p.add_argument(
        "--cluster",
        type=int,
        metavar="N",
        help="start: a Citus coordinator and N workers instead of the single server, and make "
        "every later command use the coordinator (0: back to the single server). Coordinator port: "
        f"{db.ENV_CLUSTER_PORT}, default STUDYIN_PG_PORT + {db.CLUSTER_PORT_OFFSET}; workers the "
        f"next ports. {db.ENV_CLUSTER}=N overrides the remembered mode",
    )
    p.set_defaults(func=_cmd_db)

    p = sub.add_parser("migrate", help="alembic upgrade (default head) or downgrade with --down")
    p.add_argument("revision", nargs="?", default="head")
    p.add_argument("--down", action="store_true", help="downgrade to REVISION (e.g. base)")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("partitions", help="create the study_events partitions ahead of time")
    p.add_argument("--months-ahead", type=_non_negative_int, default=3)
    p.set_defaults(func=_cmd_partitions)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """simulate, demo: simulated learners."""
    p = sub.add_parser("simulate", help="load simulated learners through the tracker")
    p.add_argument("--users", type=_positive_int, default=200)
    p.add_argument("--days", type=_positive_int, default=30)
    p.add_argument("--seed", type=_non_negative_int, default=42)
    p.add_argument(
        "--late-share",
        type=_share,
        default=0.03,
        help="share of events delivered 1 hour to 10 days late (default 0.03)",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("demo", help="everything on the embedded database: simulate, run, docs")
    p.add_argument("--users", type=_positive_int, default=200)
    p.add_argument("--days", type=_positive_int, default=30)
    p.add_argument("--seed", type=_non_negative_int, default=42)
    p.set_defaults(func=_cmd_demo)


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """run and its steps alone: recall, readiness, calibration-plot."""
    p = sub.add_parser("run", help="the nightly pipeline: migrate, erase, dbt build, jobs, docs")
    p.add_argument("--full-refresh", action="store_true", help="rebuild every incremental model")
    p.add_argument(
        "--full-checks",
        action="store_true",
        help="also run the data tests that scan the whole event log, and test every row of the"
        " history-sized models (e.g. weekly)",
    )
    p.add_argument(
        "--test-window-days",
        type=_positive_int,
        default=7,
        help="otherwise, the data tests of history-sized models read their last N days (default 7)",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the readiness model and refit the recall model now, whatever their age",
    )
    p.add_argument(
        "--fail-on-stale",
        action="store_true",
        help="fail the run when an event source is past its freshness error_after (else: warn)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "recall",
        help="fit the recall model when one is due (a step of `run`; weekly unless --force)",
    )
    p.add_argument(
        "--as-of",
        type=_day,
        default=None,
        help="fit on the reviews up to this day (YYYY-MM-DD) only, e.g. to score a past period"
        " out of sample",
    )
    p.add_argument("--force", action="store_true", help="fit now, whatever the newest one's age")
    p.add_argument(
        "--refit-days",
        type=_positive_int,
        default=7,
        help="a fit is due when the newest is this many days old (default 7)",
    )
    p.set_defaults(func=_cmd_recall)

    p = sub.add_parser(
        "readiness",
        help="score exam readiness now or as of a past day (the pipeline's readiness step alone)",
    )
    p.add_argument(
        "--as-of",
        type=_day,
        default=None,
        help="score as of this day (YYYY-MM-DD) with only the data up to it (default: today)",
    )
    p.add_argument("--retrain", action="store_true", help="train now, not with the stored model")
    p.add_argument("--dry-run", action="store_true", help="compute and print, write nothing")
    p.add_argument(
        "--validity",
        type=_days,
        default=None,
        metavar="DAY[,DAY...]",
        help="instead, print readiness vs accuracy-only vs oracle on the exams after each as-of"
        " day, with models as of those days (writes nothing)",
    )
    p.set_defaults(func=_cmd_readiness)

    p = sub.add_parser(
        "calibration-plot",
        help="draw each model version's reliability diagram (docs asset; the run draws it too)",
    )
    p.add_argument("--out", type=Path, default=CALIBRATION_PLOT, help="PNG to write")
    p.add_argument(
        "--versions", type=_positive_int, default=6, help="latest model versions per kind"
    )
    p.set_defaults(func=_cmd_calibration_plot)


def _add_tool_commands(sub: argparse._SubParsersAction) -> None:
    """delete-user, and dbt and MetricFlow with the project's connection."""
    p = sub.add_parser("delete-user", help="request erasure of a learner (done by the next run)")
    p.add_argument("user_id", type=_learner_id)
    p.set_defaults(func=_cmd_delete_user)

    p = sub.add_parser("dbt", help="run dbt with the project's connection, e.g. studyin dbt build")
    p.add_argument("dbt_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_dbt)

    p = sub.add_parser(
        "mf",
        help="MetricFlow with the project's connection, e.g. studyin mf query --metrics accuracy",
    )
    p.add_argument("mf_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_mf)


def _one_line(text: str) -> str:
    """A message on one line: its lines joined with ' | ' (multi-line errors from dbt, psycopg)."""
    return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _fail(command: str, message: str) -> None:
    print(f"studyin {command}: {_one_line(message) or 'failed'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import psycopg

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _fail(args.command, "interrupted")
        return 130
    except db.DatabaseError as err:
        _fail(args.command, str(err))
        return 2
    except CommandFailed as err:
        _fail(args.command, str(err))
        return 1
    except psycopg.Error as err:
        _fail(args.command, f"database error: {err}")
        return 1
    except Exception as err:  # noqa: BLE001 - one line for the user; the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(
            args.command,
            f"unexpected {type(err).__name__}: {err} (set {DEBUG_ENV}=1 for the traceback)",
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
