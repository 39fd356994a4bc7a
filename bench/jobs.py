"""Both python jobs at scale: wall time and peak memory (RSS) of each, and the readiness figures.

    .venv/bin/python -m bench.jobs                         # 10,000 learners x 30 days, both jobs
    .venv/bin/python -m bench.jobs --users 2000 --days 120 --jobs readiness   # acceptance 3

The data is built once per (users, days, seed) in its own database
``bench_jobs_<users>x<days>_s<seed>``
on the configured server (simulator through the tracker, then ``dbt run`` of everything upstream of
the jobs) and reused by later runs (``--fresh`` rebuilds it). Each job then runs in a fresh child
process, so its peak RSS (``VmHWM`` of that process) is the job's own, not the simulator's or
another job's. (``ru_maxrss`` is not: Linux carries the parent's peak across the fork and exec
that start the child, so a bench process holding the held-back days, 6 GB, reported 6 GB for
every job.) The PostgreSQL server's memory is not included (it is a separate, shared process).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from python_jobs.warehouse import db, migrate
from python_jobs.warehouse.dbt import run_dbt

log = logging.getLogger("bench.jobs")
RSS_LIMIT_MB = 2048


def _database_name(users: int, days: int, seed: int) -> str:
    return f"bench_jobs_{users}x{days}_s{seed}"


def prepare(
    users: int, days: int, seed: int, fresh: bool, target_path: Path, build_marts: bool = True
) -> tuple[str, dict]:
    """The bench database, simulated and built (reused when it already holds the simulation)."""
    server = db.ensure_server()
    name = _database_name(users, days, seed)
    url = db.with_database(server, name)
    admin = db.with_database(server, "postgres")
    timings: dict[str, float] = {}
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(f'drop database if exists "{name}" with (force)')
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'create database "{name}"')
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        simulated = conn.execute("select count(*) from app.users").fetchone()[0]
    if not simulated:
        from python_jobs.simulation.simulator import simulate

        started = time.monotonic()
        with psycopg.connect(url) as conn:
            summary = simulate(conn, users=users, days=days, seed=seed)
        timings["simulate_s"] = time.monotonic() - started
        print(f"simulated in {timings['simulate_s']:.0f}s: {summary}", flush=True)
    if build_marts:  # both jobs read dbt models (the review log, daily stats, gaps, mastery)
        started = time.monotonic()
        run_dbt(["run", "--exclude", "source:ml+"], url=url, target_path=target_path)
        timings["dbt_run_s"] = time.monotonic() - started
        print(f"dbt run upstream of the jobs in {timings['dbt_run_s']:.0f}s", flush=True)
    return url, timings


def _child(job: str, url: str, plot_dir: str, queue: mp.Queue) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        if job == "readiness":
            from python_jobs.jobs.readiness import ReadinessOptions, run_exam_readiness

            # always train: the training run is the job's peak, not a night scored with a stored
            # model
            options = ReadinessOptions(plot_dir=Path(plot_dir), retrain_every_days=0)
            report = run_exam_readiness(conn, options)
        else:
            from python_jobs.jobs.recommendations import run_gap_recommendations

            report = run_gap_recommendations(conn)
    wall = time.monotonic() - started
    rss_mb = _peak_rss_kib() / 1024
    queue.put(
        {
            "job": job,
            "wall_s": wall,
            "peak_rss_mb": rss_mb,
            "summary": report.summary(),
            "details": report.details,
            "model_version": report.model_version,
        }
    )


def _peak_rss_kib() -> int:
    """This process's peak resident set since it started (Linux: VmHWM of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: the best there is


def run_job(job: str, url: str, plot_dir: Path) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue: mp.Queue = context.Queue()
    process = context.Process(target=_child, args=(job, url, str(plot_dir), queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"job {job} exited with {process.exitcode}")
    return result


def readiness_figures(url: str, model_version: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select n_train, n_test, auc, brier, params -> 'evaluation', plot_path"
            " from ml.model_runs where model_version = %s",
            (model_version,),
        ).fetchone()
    n_train, n_test, auc, brier, evaluation, plot_path = row
    figures = {
        "model_version": model_version,
        "n_train": n_train,
        "n_test": n_test,
        "auc": auc,
        "brier": brier,
        "plot_path": plot_path,
    }
    if evaluation:
        figures["baseline_auc"] = evaluation["baseline_accuracy_only"]["auc"]
        figures["candidates"] = {
            name: {
                "validation_auc": c["validation"]["auc"],
                "test_auc": c["test"]["auc"],
                "test_brier": c["test"]["brier"],
            }
            for name, c in evaluation["candidates"].items()
        }
        figures["test_by_horizon"] = evaluation["test_by_horizon"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", default="readiness,gaps", help="comma list: readiness,gaps")
    parser.add_argument("--fresh", action="store_true", help="rebuild the bench database")
    parser.add_argument("--target-path", type=Path, default=Path("/tmp/studyin_bench_jobs_target"))
    parser.add_argument("--plot-dir", type=Path, default=Path("target/ml/bench"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    url, timings = prepare(
        args.users, args.days, args.seed, args.fresh, args.target_path, "gaps" in jobs
    )
    results: dict[str, Any] = {
        "users": args.users,
        "days": args.days,
        "seed": args.seed,
        "database": db.parse_url(url).dbname,
        **timings,
    }
    ok = True
    for job in jobs:
        result = run_job(job, url, args.plot_dir)
        results[job] = result
        within = result["peak_rss_mb"] < RSS_LIMIT_MB
        ok &= within
        print(
            f"{job:<10} wall {result['wall_s']:7.1f}s   peak RSS {result['peak_rss_mb']:7.0f} MB"
            f"   ({'under' if within else 'OVER'} {RSS_LIMIT_MB} MB)   {result['summary']}",
            flush=True,
        )
        if job == "readiness":
            figures = readiness_figures(url, result["model_version"])
            results["readiness_figures"] = figures
            print(json.dumps(figures, indent=2, default=str), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
