"""What a night costs the prediction metric marts, against a full rebuild, at a given ledger size.

    .venv/bin/python -m bench.prediction_marts [--predictions 1000000] [--days 90] [--one-version]

Makes the database ``bench_prediction_marts`` (dropped first), builds the prediction models empty,
then fills ``marts.prediction_ledger`` with generated scored predictions (one kind, a model version
per week, outcomes drawn from the probabilities) spread over ``--days`` days, less the last day.
It times a full rebuild of the metric marts, then adds the last day's predictions (received
after the watermark, as a night's) and times the incremental run that follows: the night
recomputes the touched week and versions only. Prints both, with the rows read.

``--one-version`` puts every prediction, the night's included, in one model version: the recall
model's version in force before its first fit, which scored the whole history and keeps
receiving late outcomes. The all-time marts recompute that version every night.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psycopg

from bench.run import _create_database
from python_jobs.warehouse.dbt import run_dbt

DATABASE = "bench_prediction_marts"
METRIC_MARTS = [
    "fct_prediction_metrics_weekly",
    "fct_prediction_buckets",
    "fct_prediction_metrics",
    "fct_prediction_reliability",
]

FILL_SQL = """
insert into marts.prediction_ledger
select
    'recall', md5(%(seed)s || day || '-' || i)::uuid,
    case when %(one_version)s then 'recall-prior' else 'recall-week-' || (day / 7) end,
    null, null, null,
    d, date_trunc('week', d)::date, p, random() < p, d + interval '1 day'
from generate_series(%(first)s::integer, %(last)s::integer) as day
cross join generate_series(1, %(per_day)s) as i
cross join lateral (select date '2026-06-01' + day as d, 0.05 + 0.9 * random() as p) as drawn
"""


def _fill(url: str, first: int, last: int, per_day: int, one_version: bool) -> int:
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.15)")
        params = {
            "seed": "bench", "first": first, "last": last, "per_day": per_day,
            "one_version": one_version,
        }  # fmt: skip
        rows = conn.execute(FILL_SQL, params).rowcount
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze marts.prediction_ledger")
    return rows


def _timed_run(url: str, target: Path, *extra: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of the dbt run (parse included) and each mart's own seconds."""
    started = time.perf_counter()
    run_dbt(["run", "--select", *METRIC_MARTS, *extra], url=url, target_path=target)
    wall = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())["results"]
    return wall, {r["unique_id"].rsplit(".", 1)[-1]: r["execution_time"] for r in results}


def _line(label: str, timed: tuple[float, dict[str, float]]) -> str:
    wall, nodes = timed
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in nodes.items())
    return f"{label}: {sum(nodes.values()):.2f} s in the marts ({parts}); dbt run {wall:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument(
        "--one-version",
        action="store_true",
        help="every prediction in one model version (the recall model's before its first fit)",
    )
    args = parser.parse_args(argv)
    per_day = max(args.predictions // args.days, 1)
    url = _create_database(DATABASE)
    target = Path(tempfile.mkdtemp(prefix="bench_prediction_marts_"))
    run_dbt(["run", "--select", "+path:models/marts/predictions"], url=url, target_path=target)
    history = _fill(url, 0, args.days - 2, per_day, args.one_version)
    full = _timed_run(url, target, "--full-refresh")
    night = _fill(url, args.days - 1, args.days - 1, per_day, args.one_version)
    incremental = _timed_run(url, target)
    versions = "one model version" if args.one_version else "a model version a week"
    print(
        f"ledger: {history + night} predictions over {args.days} days ({per_day} a day, {versions})"
    )
    print(_line("full rebuild of the metric marts", full))
    print(_line(f"one night ({night} new predictions)", incremental))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
