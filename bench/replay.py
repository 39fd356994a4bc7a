"""Replay the last day of a history: a profiling loop for the nightly run, not a benchmark figure.

    .venv/bin/python -m bench.replay bench_large_90d [--days 1] [--top 12]

Moves every incremental model's watermark back `--days` days, so that `studyin run` reprocesses
the events received in that span (every model recomputes the keys they touch: the same rows come
out), then prints the seconds of each pipeline step and of the slowest dbt nodes of each build.
It can be repeated on the same history at will, where `bench.run` uses up a held-back day per
measurement. A replayed day is a little cheaper than a new one: its pages are already cached and
the gap job finds its recommendations unchanged and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.run import RESULTS
from python_jobs.warehouse import db
from python_jobs.warehouse.pipeline import RunContext, Step, default_steps, run_pipeline

StepFn = Callable[[RunContext], object]


def rewind_watermarks(url: str, days: int) -> int:
    """Move the received_at watermarks (not the erasure ones) back `days` days."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "update intermediate.incremental_watermarks"
            " set received_at = received_at - make_interval(days => %s)"
            " where received_at > '-infinity' and model_name not like '%%\\_\\_erasures'",
            (days,),
        ).rowcount


def slowest_nodes(run_results: Path, top: int) -> list[tuple[str, float]]:
    results = json.loads(run_results.read_text())["results"]
    timed = sorted(results, key=lambda r: -r["execution_time"])[:top]
    return [(r["unique_id"].split(".", 2)[-1], round(r["execution_time"], 1)) for r in timed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("database", help="a history database on the configured server")
    parser.add_argument("--days", type=int, default=1, help="days to replay (default 1)")
    parser.add_argument("--top", type=int, default=12, help="slowest dbt nodes shown per build")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    url = db.with_database(db.ensure_server(), args.database)
    target = RESULTS / f"target-replay-{args.database}"
    moved = rewind_watermarks(url, args.days)
    if not moved:
        print(f"{args.database}: no watermark to move (has the pipeline run?)", file=sys.stderr)
        return 1

    def keeping_run_results(name: str, fn: StepFn) -> StepFn:
        def run(ctx: RunContext) -> object:
            result = fn(ctx)
            shutil.copyfile(target / "run_results.json", target / f"{name}.json")
            return result

        return run

    steps: list[Step] = [
        (name, keeping_run_results(name, fn) if name.startswith("dbt_build") else fn)
        for name, fn in default_steps()
    ]
    seconds = run_pipeline(RunContext(url=url, target_path=target), steps)
    print(f"{args.database}: {sum(seconds.values()):.1f} s in all")
    for name, value in seconds.items():
        print(f"  {name:26} {value:6.1f} s")
        if name.startswith("dbt_build"):
            for node, node_s in slowest_nodes(target / f"{name}.json", args.top):
                print(f"      {node_s:6.1f} s  {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
