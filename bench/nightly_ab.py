"""Nightly `studyin run` of two checkouts of the project, alternated on one history database.

    .venv/bin/python -m bench.nightly_ab --database bench_small_30d \\
        --since '2026-11-26 06:17' --rounds 4 before=/tmp/base after=.

Each round rewinds the incremental watermarks (intermediate.incremental_watermarks) that are past
`--since` back to it, so every run redoes the same day's work (the keys touched by the rows
received since then, deleted and inserted again), then times `studyin run` from each checkout in
a subprocess whose PYTHONPATH is that checkout (its own python_jobs, dbt project and dbt target
folder, so partial parsing works as in production). The order of the checkouts alternates from
round to round. Rows named `<model>__<clock>` (erasure and score watermarks) keep their own
clocks. The medians go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from python_jobs.warehouse import db

DRIVER = """
import json, sys
from python_jobs.warehouse.pipeline import RunContext, run_pipeline
print(json.dumps(run_pipeline(RunContext(url=sys.argv[1], target_path=sys.argv[2]))))
"""


def rewind(url: str, since: str) -> int:
    """Set every model watermark past `since` back to it; the number of rows moved."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "update intermediate.incremental_watermarks set received_at = %s::timestamptz"
            " where received_at > %s::timestamptz and model_name not like '%%\\_\\_%%'",
            (since, since),
        ).rowcount


def timed_run(url: str, checkout: Path) -> tuple[float, dict[str, float]]:
    """`studyin run` with the code and dbt project of `checkout`: wall seconds and its steps."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    target = checkout / "target" / "nightly_ab"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, url, str(target)],
        env=env,
        cwd=checkout,
        text=True,
        capture_output=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"run of {checkout} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", required=True)
    parser.add_argument("--since", required=True, help="received_at the watermarks rewind to")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("checkouts", nargs="+", help="label=path of a checkout of the project")
    args = parser.parse_args(argv)
    checkouts = {
        label: Path(path).resolve() for label, path in (c.split("=", 1) for c in args.checkouts)
    }
    url = db.with_database(db.with_database(db.ensure_server(), "postgres"), args.database)
    runs: dict[str, list[float]] = {label: [] for label in checkouts}
    steps: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
    for round_ in range(args.rounds):
        order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
        for label in order:
            rewind(url, args.since)
            seconds, step_s = timed_run(url, checkouts[label])
            runs[label].append(seconds)
            steps[label].append(step_s)
            print(f"round {round_ + 1} {label}: {seconds:.1f}s", file=sys.stderr)
    summary = {
        label: {
            "runs_s": seconds,
            "median_s": statistics.median(seconds),
            "step_median_s": {
                step: statistics.median(s[step] for s in steps[label]) for step in steps[label][0]
            },
        }
        for label, seconds in runs.items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
