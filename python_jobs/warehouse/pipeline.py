"""`studyin run`: the nightly pipeline, one command for cron and CI.

Steps, in order: partitions ahead, ``alembic upgrade head``, summaries of the event tables' new BRIN
block ranges, erasure of requested learners and closing of idle sessions, the freshness of the
app's event tables (``dbt source freshness``: a warning per late or stale table, a failure with
``fail_on_stale``), ``dbt build`` of everything that reads no ml table, the recall model's weekly
fit (``python_jobs.jobs.recall``), ``dbt build`` of what reads the recall model (mastery as of
today, knowledge gaps, the recall ledger), the python jobs (exam readiness and gap
recommendations, side by side), ``dbt build`` of what reads their tables, ``dbt docs generate``
after drawing the prediction marts' reliability diagram into its assets
(the catalog only, ``--no-compile``, unless --full-checks or --full-refresh); the dbt commands run
in this process on one parse of the project (``DbtSession``). Each step is logged with its
duration; the first failure stops the run, which exits non-zero naming that step. A
PostgreSQL advisory lock keeps two runs (from any machine) from overlapping. Every step is safe to
repeat, so running twice the same day is harmless.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from python_jobs.warehouse import migrate
from python_jobs.warehouse.dbt import DbtSession

log = logging.getLogger("studyin.run")

LOCK_KEY = 0x5354_5544  # "STUD": pg_advisory_lock key shared by every studyin run
# Models that read the ml tables (and everything downstream of them) build after the step that
# writes those tables: the recall model first (knowledge gaps, which the gap recommendations read,
# use it), then the readiness and recommendations jobs.
ML_SELECTOR = "source:ml+"
RECALL_SELECTOR = ["source:ml.recall_models+", "source:ml.recall_topic_offsets+"]
JOB_OUTPUTS_SELECTOR = [
    "source:ml.exam_readiness_scores+",
    "source:ml.gap_recommendations+",
    "source:ml.model_runs+",
]
# dbt unit tests check SQL logic on fixed inputs: they run in the test suite (make test), not
# against production data every night.
NIGHTLY_EXCLUDED_TYPES = ["--exclude-resource-type", "unit_test"]
# Data tests of the event-sized models scan the whole history (and restate constraints PostgreSQL
# enforces): a nightly run whose cost must follow new data leaves them to `--full-checks`.
EVENT_LOG_TESTS = "tag:event_log,resource_type:test"
# Data tests of views computed on read over every learner that a date window cannot narrow
# (topic_mastery_rollup, topic_mastery_current): also left to `--full-checks`.
FULL_CHECKS_TESTS = "tag:full_checks,resource_type:test"
# Sources whose freshness the run checks before building: the app's event tables. The ml tables
# are written by this very run (a failed job fails it), so their freshness is left to ad-hoc
# `studyin dbt source freshness`.
FRESHNESS_SELECTOR = "source:app"


class PipelineError(RuntimeError):
    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step '{step}' failed: {cause}")
        self.step = step
        self.cause = cause


class PipelineLocked(RuntimeError):
    pass


@dataclass
class RunContext:
    url: str
    target_path: Path | None = None
    full_refresh: bool = False
    full_checks: bool = False  # also run the data tests that scan the whole event log
    # nightly data tests of history-sized models read only their last this many days
    # (macros/test_window.sql); full-checks and full-refresh runs test every row
    test_window_days: int = 7
    retrain: bool = False  # train the readiness model even if a recent stored one exists
    fail_on_stale: bool = False  # an event source past its error_after fails the run (else: warns)
    # more dbt vars for every dbt call of the run, e.g. a pinned mastery_as_of_date and
    # metrics_as_of_date, so a rerun evaluates the same "today" whenever it runs
    dbt_vars: dict[str, object] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    dbt: DbtSession | None = None  # the run's dbt calls share one parse (see _dbt)

    @property
    def full_run(self) -> bool:
        """A full-checks or full-refresh run: tests read every row, docs compile every model."""
        return self.full_checks or self.full_refresh


Step = tuple[str, Callable[[RunContext], object]]


def _partitions(ctx: RunContext) -> object:
    with psycopg.connect(ctx.url) as conn:
        return {"partitions_created": migrate.ensure_partitions(conn)}


def _migrate(ctx: RunContext) -> object:
    migrate.upgrade(ctx.url)
    return None


def _brin_summaries(ctx: RunContext) -> object:
    with psycopg.connect(ctx.url) as conn:
        summarized, skipped = migrate.summarize_brin_ranges(conn)
    for index in skipped:
        log.warning("brin_summaries: %s skipped, its table is locked by maintenance", index)
    return {"brin_ranges_summarized": summarized}


def _erase_and_close(ctx: RunContext) -> object:
    from python_jobs.ingest.tracker import close_idle_sessions
    from python_jobs.warehouse.deletion import apply_deletions

    with psycopg.connect(ctx.url) as conn:
        erased = apply_deletions(conn)
        closed = close_idle_sessions(conn, datetime.now(UTC))
    return {"erased_learners": len(erased), "sessions_closed": closed}


def _dbt(ctx: RunContext) -> DbtSession:
    """The run's dbt session: one parse of the project, with the --vars of every call of the run
    (nightly runs window the tests of history-sized models; full ones test every row)."""
    if ctx.dbt is None:
        dbt_vars = {} if ctx.full_run else {"nightly_test_window_days": ctx.test_window_days}
        dbt_vars |= ctx.dbt_vars
        ctx.dbt = DbtSession(ctx.url, ctx.target_path, ["--vars", json.dumps(dbt_vars)])
    return ctx.dbt


@dataclass(frozen=True)
class SourceFreshness:
    """One source's `dbt source freshness` result: status pass, warn (past warn_after: late) or
    error (past error_after: stale); newest_at is its newest loaded_at, age_hours its age."""

    source: str
    status: str
    newest_at: datetime | None
    age_hours: float | None


def check_source_freshness(
    session: DbtSession, select: str = FRESHNESS_SELECTOR
) -> list[SourceFreshness]:
    """The freshness of the selected sources; DbtError when a check could not run (a bad query)."""
    checked: list[SourceFreshness] = []
    for result in session.results(["source", "freshness", "--select", select]):
        if getattr(result.node, "resource_type", None) != "source":
            continue  # the project's on-run-start hooks
        status = str(getattr(result.status, "value", result.status))
        name = f"{result.node.source_name}.{result.node.name}"
        if status not in ("pass", "warn", "error"):
            raise RuntimeError(f"freshness of {name} could not be checked: {result.message}")
        age = result.age / 3600 if result.age is not None else None
        checked.append(SourceFreshness(name, status, result.max_loaded_at, age))
    return checked


def _source_freshness(ctx: RunContext) -> object:
    checked = check_source_freshness(_dbt(ctx))
    late = [c for c in checked if c.status != "pass"]
    for c in late:
        label = "stale (past error_after)" if c.status == "error" else "late (past warn_after)"
        log.warning(
            "source_freshness: %s is %s: newest row at %s, %.1f hours ago",
            c.source,
            label,
            c.newest_at,
            c.age_hours or 0.0,
        )
    stale = [c.source for c in checked if c.status == "error"]
    if stale and ctx.fail_on_stale:
        raise RuntimeError(f"stale event sources (past error_after): {', '.join(stale)}")
    return {"sources_checked": len(checked), "late": [c.source for c in late], "stale": stale}


def _dbt_build(select: list[str], exclude: list[str]) -> Callable[[RunContext], object]:
    def step(ctx: RunContext) -> object:
        excluded = exclude if ctx.full_checks else [*exclude, EVENT_LOG_TESTS, FULL_CHECKS_TESTS]
        args = ["build", *NIGHTLY_EXCLUDED_TYPES]
        if select:
            args += ["--select", *select]
        if excluded:
            args += ["--exclude", *excluded]
        if ctx.full_refresh:
            args.append("--full-refresh")
        _dbt(ctx).run(args)
        return None

    return step


def _exam_readiness(ctx: RunContext) -> object:
    from python_jobs.jobs.readiness import ReadinessOptions, run_exam_readiness

    with psycopg.connect(ctx.url) as conn:
        options = ReadinessOptions(retrain_every_days=0) if ctx.retrain else ReadinessOptions()
        return run_exam_readiness(conn, options)


def _gap_recommendations(ctx: RunContext) -> object:
    from python_jobs.jobs.recommendations import RecommendationOptions, run_gap_recommendations

    with psycopg.connect(ctx.url) as conn:
        return run_gap_recommendations(conn, RecommendationOptions())


def _recall_model(ctx: RunContext) -> object:
    from python_jobs.jobs.recall import RecallOptions, run_recall

    with psycopg.connect(ctx.url) as conn:
        return run_recall(conn, RecallOptions(force=ctx.retrain))


def _python_jobs(ctx: RunContext) -> object:
    """Exam readiness and gap recommendations at the same time, each on its own connection: they
    read marts the upstream build has finished and write different ml tables, and one is mostly
    Python (features, scoring) while the other is one SQL statement, so on two cores the step
    takes about as long as the slower job instead of the sum. Both always run to the end (each
    commits or rolls back its own transaction); a failure names the job."""
    jobs = {"exam_readiness": _exam_readiness, "gap_recommendations": _gap_recommendations}
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="job") as pool:
        futures = {name: pool.submit(job, ctx) for name, job in jobs.items()}
    errors = {name: future.exception() for name, future in futures.items()}
    failed = [(name, err) for name, err in errors.items() if err is not None]
    for name, err in failed[1:]:
        log.error("job %s also failed: %s", name, err)
    if failed:
        name, err = failed[0]
        raise RuntimeError(f"job {name} failed: {err}") from err
    return {name: str(future.result()) for name, future in futures.items()}


def _docs(ctx: RunContext) -> object:
    # The reliability diagram first: docs generate copies it (an asset) into the site.
    from python_jobs.jobs.calibration_plot import draw_calibration_plot

    curves = draw_calibration_plot(ctx.url)
    # The nightly run refreshes the catalog only; compiling every model's SQL for the docs' code
    # tab doubles the step's time and is left to the full runs.
    _dbt(ctx).run(["docs", "generate", *([] if ctx.full_run else ["--no-compile"])])
    return {"calibration_plot_versions": len(curves)}


def default_steps() -> list[Step]:
    return [
        ("partitions", _partitions),
        ("migrate", _migrate),
        ("brin_summaries", _brin_summaries),
        ("erase_and_close_sessions", _erase_and_close),
        ("source_freshness", _source_freshness),
        ("dbt_build_upstream", _dbt_build([], [ML_SELECTOR])),
        ("recall_model", _recall_model),
        ("dbt_build_recall", _dbt_build(RECALL_SELECTOR, JOB_OUTPUTS_SELECTOR)),
        ("python_jobs", _python_jobs),
        ("dbt_build_downstream", _dbt_build(JOB_OUTPUTS_SELECTOR, [])),
        ("dbt_docs", _docs),
    ]


def run_pipeline(ctx: RunContext, steps: list[Step] | None = None) -> dict[str, float]:
    """Run the steps under the advisory lock; return each step's duration in seconds.

    Every failure is a PipelineError naming its step (``lock`` when the lock could not be taken).
    If the server went away, the failed release of the lock is logged and never hides the step's
    error (the server frees a session's advisory locks when the session ends)."""
    durations: dict[str, float] = {}
    try:
        lock_conn = psycopg.connect(ctx.url, autocommit=True)
    except psycopg.Error as err:
        raise PipelineError("lock", err) from err
    try:
        locked = lock_conn.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
    except psycopg.Error as err:
        lock_conn.close()
        raise PipelineError("lock", err) from err
    try:
        if not locked:
            raise PipelineLocked("another studyin run holds the pipeline lock on this database")
        try:
            for name, fn in steps or default_steps():
                durations[name] = _run_step(ctx, name, fn)
        finally:
            _release_lock(lock_conn)
    finally:
        lock_conn.close()  # never raises, even on a lost connection
    return durations


def _run_step(ctx: RunContext, name: str, fn: Callable[[RunContext], object]) -> float:
    log.info("step %s: starting", name)
    started = time.monotonic()
    try:
        result = fn(ctx)
    except Exception as err:  # noqa: BLE001 - reported with the step's name
        log.error("step %s: failed after %.1fs: %s", name, time.monotonic() - started, err)
        raise PipelineError(name, err) from err
    seconds = time.monotonic() - started
    ctx.notes[name] = result
    log.info("step %s: done in %.1fs%s", name, seconds, f" {result}" if result else "")
    return seconds


def _release_lock(lock_conn: psycopg.Connection) -> None:
    """Release the run's lock; on a lost connection, say so instead of raising."""
    try:
        lock_conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
    except psycopg.Error as err:
        log.warning(
            "pipeline lock not released (%s): the server releases it with the lost session",
            " ".join(str(err).split()),
        )
