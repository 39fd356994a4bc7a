"""`studyin`: the one command line of the warehouse (a thin layer over plain functions)."""

from __future__ import annotations

import argparse
import sys

from python_jobs.warehouse import db


def _cmd_db(args: argparse.Namespace) -> int:
    if args.action == "start":
        url = db.ensure_server()
        print(f"PostgreSQL ready at {url}")
    elif args.action == "stop":
        if not db.uses_embedded():
            print(f"{db.ENV_URL} is set: that server is not ours to stop", file=sys.stderr)
            return 1
        print("stopped" if db.stop_embedded() else "not running")
    elif args.action == "status":
        if db.uses_embedded():
            running = db.server_running()
            print(f"embedded server: {'running' if running else 'stopped'} ({db.PGDATA})")
            return 0 if running else 3
        print(f"external server: {db.database_url()}")
    elif args.action == "url":
        print(db.database_url())
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from python_jobs.warehouse import migrate

    url = db.ensure_server()
    if args.revision.startswith("-") or args.down:
        migrate.downgrade(url, args.revision)
    else:
        migrate.upgrade(url, args.revision)
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


def _cmd_delete_user(args: argparse.Namespace) -> int:
    from python_jobs.warehouse.deletion import request_deletion

    with db.connect(db.ensure_server()) as conn:
        request_id = request_deletion(conn, args.user_id)
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
    )
    try:
        durations = run_pipeline(ctx)
    except PipelineLocked as err:
        print(f"studyin run: {err}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except PipelineError as err:
        print(f"studyin run: {err}", file=sys.stderr)
        return 1
    print(f"studyin run: {len(durations)} steps done in {sum(durations.values()):.1f}s")
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
        print(f"studyin demo: {err}", file=sys.stderr)
        return 1


def _configure_logging() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studyin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="embedded PostgreSQL lifecycle (or report the external one)")
    p.add_argument("action", choices=["start", "stop", "status", "url"])
    p.set_defaults(func=_cmd_db)

    p = sub.add_parser("migrate", help="alembic upgrade (default head) or downgrade with --down")
    p.add_argument("revision", nargs="?", default="head")
    p.add_argument("--down", action="store_true", help="downgrade to REVISION (e.g. base)")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("partitions", help="create the study_events partitions ahead of time")
    p.add_argument("--months-ahead", type=int, default=3)
    p.set_defaults(func=_cmd_partitions)

    p = sub.add_parser("simulate", help="load simulated learners through the tracker")
    p.add_argument("--users", type=_positive_int, default=200)
    p.add_argument("--days", type=_positive_int, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--late-share",
        type=float,
        default=0.03,
        help="share of events delivered 1 hour to 10 days late (default 0.03)",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("demo", help="everything on the embedded database: simulate, run, docs")
    p.add_argument("--users", type=_positive_int, default=200)
    p.add_argument("--days", type=_positive_int, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=_cmd_demo)

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
        help="train the readiness model now instead of scoring with the stored one",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("delete-user", help="request erasure of a learner (done by the next run)")
    p.add_argument("user_id")
    p.set_defaults(func=_cmd_delete_user)

    p = sub.add_parser("dbt", help="run dbt with the project's connection, e.g. studyin dbt build")
    p.add_argument("dbt_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_dbt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except db.DatabaseError as err:
        print(f"studyin: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
