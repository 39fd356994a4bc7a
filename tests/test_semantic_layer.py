"""The semantic layer (MetricFlow) and the learner dimension on a small simulated warehouse.

One module database: 40 simulated learners x 42 days through the tracker, the marts built by dbt
with "today" pinned (metrics_as_of_date = mastery_as_of_date = AS_OF), the exam-readiness job,
then the marts that read its scores. The semantic manifest is parsed for that database. The tests
validate the manifest as `mf validate-configs` does (semantics and warehouse), then query metrics
and the dashboards' saved queries through MetricFlow and compare them with plain SQL on the marts:
rates are sums over sums (accuracy is sum(correct) / sum(attempted), not a mean of accuracies),
per cohort, per week, per learner's last 30 local days. `studyin mf query --csv` is run once end
to end. dim_learners has one row per learner and loses an erased one.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from python_jobs.jobs.readiness import ReadinessOptions, run_exam_readiness
from python_jobs.warehouse import db
from python_jobs.warehouse.dbt import DbtSession
from python_jobs.warehouse.deletion import apply_deletions, request_deletion
from python_jobs.warehouse.metrics import (
    MetricQuery,
    MetricsError,
    load_semantic_manifest,
    query_metrics,
    validate_semantic_layer,
)

pytestmark = pytest.mark.slow

USERS, DAYS, SEED = 40, 42, 7  # more days than the 30-day window
END = datetime(2026, 4, 10, 12, tzinfo=UTC)
AS_OF = date(2026, 4, 10)
DBT_VARS = json.dumps(
    {"metrics_as_of_date": AS_OF.isoformat(), "mastery_as_of_date": AS_OF.isoformat()}
)
WINDOW_DAYS = 30  # metrics_short_window_days: the *_30d columns and the dashboards' window
# The learner-days of each learner's last 30 local days, up to their today (the dashboards' window)
LAST_30_DAYS = (
    " from marts.daily_user_stats as days"
    " inner join marts.dim_learners as learners on days.user_id = learners.user_id"
    " where days.local_date > learners.as_of_date - %s"
    " and days.local_date <= learners.as_of_date"
)
# Rates the marts store as numeric(5,4): rounded to 4 decimals.
ROUNDED_4 = 0.5e-4 + 1e-12


@dataclass(frozen=True)
class Warehouse:
    url: str
    target: Path

    def mf(self, **query) -> pd.DataFrame:
        return query_metrics(MetricQuery(**query), url=self.url, target_path=self.target)

    def sql(self, text: str, params: tuple = ()) -> pd.DataFrame:
        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(text, params)
            columns = [column.name for column in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=columns)


@pytest.fixture(scope="module")
def warehouse(
    database_factory: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Warehouse:
    from python_jobs.simulation.simulator import simulate

    url = database_factory("semantic")
    target = tmp_path_factory.mktemp("dbt_target")
    with psycopg.connect(url) as conn:
        simulate(conn, users=USERS, days=DAYS, seed=SEED, end=END, progress=False)
    # as the nightly run: the marts the jobs read, the readiness job, then what reads its scores
    dbt = DbtSession(url, target, dbt_vars=["--vars", DBT_VARS])  # one parse for both calls
    dbt.run(["run", "--exclude", "source:ml+"])
    with psycopg.connect(url) as conn:
        plots = tmp_path_factory.mktemp("plots")
        run_exam_readiness(conn, ReadinessOptions(as_of=AS_OF, plot_dir=plots))
    dbt.run(["build", "--select", "source:ml+", "dim_learners", "metricflow_time_spine"])
    return Warehouse(url, target)


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimal columns (sums, as PostgreSQL returns them) as floats, for comparisons."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: v is not None and hasattr(v, "as_tuple")).any():
            out[column] = out[column].astype(float)
    return out


def _by(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return _numeric(frame).set_index(list(keys)).sort_index()


def _assert_close(actual: pd.Series, expected: pd.Series, tolerance: float = 1e-9) -> None:
    joined = pd.concat([actual.rename("actual"), expected.rename("expected")], axis=1)
    assert set(actual.index) == set(expected.index), f"{actual.name}: other rows"
    both_null = joined["actual"].isna() & joined["expected"].isna()
    diff = (joined["actual"].astype(float) - joined["expected"].astype(float)).abs()
    bad = joined[~both_null & ~(diff <= tolerance)]
    assert bad.empty, f"{actual.name}: MetricFlow and SQL differ:\n{bad.head(10)}"


# --------------------------------------------------------------------------- validation


def test_semantic_manifest_validates_against_the_warehouse(warehouse: Warehouse) -> None:
    assert validate_semantic_layer(warehouse.target, warehouse.url) == []
    manifest = load_semantic_manifest(warehouse.target)
    names = {metric.name for metric in manifest.metrics}
    assert {"accuracy", "first_attempt_accuracy", "active_study_minutes", "sessions"} <= names
    assert {"mean_mastery", "mean_retrieval_strength", "mean_exam_readiness"} <= names
    assert {"mean_current_streak_days", "knowledge_gaps", "critical_knowledge_gaps"} <= names
    undescribed = [metric.name for metric in manifest.metrics if not metric.description]
    assert undescribed == []
    saved = {query.name for query in manifest.saved_queries}
    assert {"learner_dashboard", "cohort_comparison", "due_reviews", "topic_heatmap"} <= saved


def test_validation_reports_a_broken_saved_query(warehouse: Warehouse, tmp_path: Path) -> None:
    document = json.loads((warehouse.target / "semantic_manifest.json").read_text())
    saved = next(query for query in document["saved_queries"] if query["name"] == "topic_heatmap")
    saved["query_params"]["group_by"].append("Dimension('topic__no_such_name')")
    (tmp_path / "semantic_manifest.json").write_text(json.dumps(document))
    issues = validate_semantic_layer(tmp_path)
    assert any("topic__no_such_name" in issue for issue in issues), issues


def test_unknown_metric_is_a_clear_error(warehouse: Warehouse) -> None:
    with pytest.raises(
        MetricsError,
        match="(?s)MetricFlow query failed.*not exactly match any known metrics.*accuracy_30d",
    ):
        warehouse.mf(metrics=["accuracy_30d"], group_by=["learner__cohort"])


# --------------------------------------------------------------------------- ratios, not means


def test_accuracy_is_a_ratio_of_sums_not_a_mean_of_rates(warehouse: Warehouse) -> None:
    got = _numeric(
        warehouse.mf(metrics=["accuracy", "first_attempt_accuracy", "questions_attempted"])
    )
    expected = _numeric(
        warehouse.sql(
            "select sum(questions_correct)::numeric / sum(questions_attempted) as accuracy,"
            " sum(first_attempts_correct)::numeric / sum(first_attempts) as first_attempt_accuracy,"
            " sum(questions_attempted) as questions_attempted,"
            " avg(accuracy) as mean_daily_accuracy"
            " from marts.daily_user_stats"
        )
    )
    assert got.loc[0, "accuracy"] == pytest.approx(expected.loc[0, "accuracy"], rel=1e-12)
    assert got.loc[0, "first_attempt_accuracy"] == pytest.approx(
        expected.loc[0, "first_attempt_accuracy"], rel=1e-12
    )
    assert got.loc[0, "questions_attempted"] == expected.loc[0, "questions_attempted"]
    # the mean of the learner-days' accuracies is another number: the metric is not it
    assert abs(got.loc[0, "accuracy"] - expected.loc[0, "mean_daily_accuracy"]) > 1e-3


def test_metrics_per_cohort_match_the_marts(warehouse: Warehouse) -> None:
    got = _by(
        warehouse.mf(
            metrics=["accuracy", "questions_attempted", "active_study_minutes", "active_learners"],
            group_by=["learner__cohort"],
        ),
        "learner__cohort",
    )
    expected = _by(
        warehouse.sql(
            "select learners.cohort as learner__cohort,"
            " sum(days.questions_correct)::numeric / nullif(sum(days.questions_attempted), 0)"
            " as accuracy, sum(days.questions_attempted) as questions_attempted,"
            " sum(days.active_study_minutes) as active_study_minutes,"
            " count(distinct days.user_id) as active_learners"
            " from marts.daily_user_stats as days"
            " inner join marts.dim_learners as learners on days.user_id = learners.user_id"
            " group by learners.cohort"
        ),
        "learner__cohort",
    )
    assert list(got.index) == list(expected.index) and len(got) >= 3
    for column in expected.columns:
        _assert_close(got[column], expected[column], 1e-6)


def test_metrics_per_week_match_weekly_user_stats(warehouse: Warehouse) -> None:
    got = _numeric(
        warehouse.mf(
            metrics=["accuracy", "questions_attempted", "active_days_per_active_week"],
            group_by=["metric_time__week"],
        )
    )
    got["week"] = pd.to_datetime(got["metric_time__week"]).dt.date
    got = got.drop(columns="metric_time__week").set_index("week").sort_index()
    expected = _by(
        warehouse.sql(
            "select week_start as week,"
            " sum(questions_correct)::numeric / nullif(sum(questions_attempted), 0) as accuracy,"
            " sum(questions_attempted) as questions_attempted,"
            " sum(active_days)::numeric / count(*) as active_days_per_active_week"
            " from marts.weekly_user_stats group by week_start"
        ),
        "week",
    )
    assert list(got.index) == list(expected.index) and len(got) >= 4
    for column in expected.columns:
        _assert_close(got[column], expected[column])


def test_topic_and_session_metrics_match_the_marts(warehouse: Warehouse) -> None:
    got = _by(
        warehouse.mf(
            metrics=["topic_accuracy", "topic_first_attempt_accuracy", "topic_attempts"],
            group_by=["topic__system_name"],
        ),
        "topic__system_name",
    )
    expected = _by(
        warehouse.sql(
            "select topics.system_name as topic__system_name,"
            " sum(stats.correct_attempts)::numeric / sum(stats.attempts) as topic_accuracy,"
            " sum(stats.first_attempts_correct)::numeric / nullif(sum(stats.first_attempts), 0)"
            " as topic_first_attempt_accuracy, sum(stats.attempts) as topic_attempts"
            " from marts.topic_daily_stats as stats"
            " inner join marts.topic_catalog as topics on stats.topic_id = topics.topic_id"
            " group by topics.system_name"
        ),
        "topic__system_name",
    )
    assert list(got.index) == list(expected.index)
    for column in expected.columns:
        _assert_close(got[column], expected[column])

    sessions = _numeric(
        warehouse.mf(metrics=["sessions", "focus_ratio", "questions_per_active_hour"])
    ).iloc[0]
    truth = _numeric(
        warehouse.sql(
            "select count(*) as sessions,"
            " sum(active_seconds) / sum(active_seconds + idle_seconds) as focus_ratio,"
            " sum(questions_attempted) * 3600.0 / sum(active_seconds) as questions_per_active_hour"
            " from marts.session_efficiency"
        )
    ).iloc[0]
    for column in truth.index:
        assert sessions[column] == pytest.approx(truth[column], rel=1e-9), column


def test_gap_counts_by_severity_match_knowledge_gaps(warehouse: Warehouse) -> None:
    got = _by(
        warehouse.mf(
            metrics=["knowledge_gaps", "critical_knowledge_gaps"],
            group_by=["knowledge_gap__severity"],
        ),
        "knowledge_gap__severity",
    )
    expected = _by(
        warehouse.sql(
            "select severity as knowledge_gap__severity, count(*) as knowledge_gaps"
            " from marts.knowledge_gaps group by severity"
        ),
        "knowledge_gap__severity",
    )
    _assert_close(got["knowledge_gaps"], expected["knowledge_gaps"])
    assert (
        got.loc["critical", "critical_knowledge_gaps"] == expected.loc["critical", "knowledge_gaps"]
    )
    assert got["critical_knowledge_gaps"].drop("critical").isna().all()


# --------------------------------------------------------------------------- the four dashboards


def test_learner_dashboard_matches_user_learning_metrics(warehouse: Warehouse) -> None:
    got = _by(warehouse.mf(saved_query="learner_dashboard"), "learner")
    marts = _by(
        warehouse.sql(
            "select user_id::text as learner, accuracy_30d, questions_30d, active_days_30d,"
            " active_study_minutes_30d, current_streak_days, longest_streak_days, mean_mastery,"
            " latest_exam_readiness from marts.user_learning_metrics"
        ),
        "learner",
    )
    assert len(got) == len(marts) == USERS
    assert marts["latest_exam_readiness"].notna().sum() > 0
    got = got.reindex(marts.index)
    counts = {"questions_attempted": "questions_30d", "active_days": "active_days_30d"}
    for metric, column in counts.items():  # a learner idle for 30 days has no row: 0
        _assert_close(got[metric].fillna(0), marts[column])
    _assert_close(got["active_study_minutes"].fillna(0), marts["active_study_minutes_30d"], 1e-6)
    _assert_close(got["accuracy"], marts["accuracy_30d"], ROUNDED_4)
    _assert_close(got["mean_current_streak_days"], marts["current_streak_days"])
    _assert_close(got["longest_streak_days"], marts["longest_streak_days"])
    _assert_close(got["mean_mastery"], marts["mean_mastery"], ROUNDED_4)
    _assert_close(got["mean_exam_readiness"], marts["latest_exam_readiness"], 1e-12)


def test_learner_dashboard_days_match_daily_user_stats(warehouse: Warehouse) -> None:
    got = _numeric(warehouse.mf(saved_query="learner_dashboard_days"))
    got["local_date"] = pd.to_datetime(got["metric_time__day"]).dt.date
    got = got.set_index(["learner", "local_date"]).sort_index()
    expected = _by(
        warehouse.sql(
            "select days.user_id::text as learner, days.local_date, days.questions_attempted,"
            " days.active_study_minutes, days.questions_correct::numeric"
            " / nullif(days.questions_attempted, 0) as accuracy" + LAST_30_DAYS,
            (WINDOW_DAYS,),
        ),
        "learner",
        "local_date",
    )
    assert list(got.index) == list(expected.index) and len(expected) > USERS
    for column in ("questions_attempted", "active_study_minutes", "accuracy"):
        _assert_close(got[column], expected[column], 1e-9)


def test_cohort_comparison_pools_each_cohort(warehouse: Warehouse) -> None:
    got = _by(warehouse.mf(saved_query="cohort_comparison"), "learner__cohort")
    activity = _by(
        warehouse.sql(
            "select learners.cohort as learner__cohort,"
            " sum(days.questions_correct)::numeric / nullif(sum(days.questions_attempted), 0)"
            " as accuracy, sum(days.first_attempts_correct)::numeric"
            " / nullif(sum(days.first_attempts), 0) as first_attempt_accuracy,"
            " sum(days.questions_attempted) as questions_attempted,"
            " sum(days.active_study_minutes) as active_study_minutes,"
            " count(distinct days.user_id) as active_learners"
            + LAST_30_DAYS
            + " group by learners.cohort",
            (WINDOW_DAYS,),
        ),
        "learner__cohort",
    )
    mastery = _by(
        warehouse.sql(
            "select learners.cohort as learner__cohort, avg(topics.mastery) as mean_mastery"
            " from marts.fct_topic_schedule_current as topics"
            " inner join marts.dim_learners as learners on topics.user_id = learners.user_id"
            " group by learners.cohort"
        ),
        "learner__cohort",
    )
    learners = _by(
        warehouse.sql(
            "select cohort as learner__cohort,"
            " avg(current_streak_days) as mean_current_streak_days,"
            " avg(latest_exam_readiness) as mean_exam_readiness,"
            " avg(accuracy_30d) as mean_of_learner_accuracies"
            " from marts.user_learning_metrics group by cohort"
        ),
        "learner__cohort",
    )
    expected = activity.join(mastery, how="outer").join(learners, how="outer")
    assert list(got.index) == list(expected.index) and len(got) >= 3
    for column in got.columns:
        _assert_close(got[column], expected[column], 1e-9)
    # a cohort's accuracy pools its attempts; the mean of its learners' accuracies is not it
    apart = (got["accuracy"] - expected["mean_of_learner_accuracies"]).abs()
    assert (apart > 1e-3).any()


def test_due_reviews_match_the_analysis(warehouse: Warehouse) -> None:
    learner = warehouse.sql(
        "select user_id::text as learner from marts.fct_topic_schedule_current where is_due"
        " group by user_id order by count(*) desc, user_id limit 1"
    ).loc[0, "learner"]
    got = _numeric(
        warehouse.mf(
            saved_query="due_reviews", where=[f"{{{{ Entity('learner') }}}} = '{learner}'"]
        )
    )
    got = got.set_index("topic").sort_index()
    expected = _by(
        warehouse.sql(
            "select due.topic_id as topic, topics.topic_name, due.next_review_date,"
            " due.retrieval_strength, due.mastery, topics.board_exam_weight"
            " from marts.fct_topic_schedule_current as due"
            " inner join marts.topic_catalog as topics on due.topic_id = topics.topic_id"
            " where due.user_id = %s and due.is_due",
            (learner,),
        ),
        "topic",
    )
    assert len(expected) >= 3 and list(got.index) == list(expected.index)
    assert (got["learner"] == learner).all() and (got["due_topics"] == 1).all()
    assert list(got["topic__topic_name"]) == list(expected["topic_name"])
    assert list(pd.to_datetime(got["learner_topic__next_review_date__day"]).dt.date) == list(
        expected["next_review_date"]
    )
    _assert_close(got["mean_retrieval_strength"], expected["retrieval_strength"])
    _assert_close(got["mean_mastery"], expected["mastery"])
    _assert_close(got["topic__board_exam_weight"], expected["board_exam_weight"])
    everyone = warehouse.mf(saved_query="due_reviews")
    total = warehouse.sql("select count(*) as n from marts.fct_topic_schedule_current where is_due")
    assert len(everyone) == total.loc[0, "n"]


def test_topic_heatmap_matches_the_analysis(warehouse: Warehouse) -> None:
    got = _by(warehouse.mf(saved_query="topic_heatmap"), "learner", "topic")
    expected = _by(
        warehouse.sql(
            "select mastery.user_id::text as learner, mastery.topic_id as topic,"
            " topics.system_name, topics.subject_name, topics.topic_name, mastery.mastery,"
            " mastery.retrieval_strength, mastery.is_due::integer as due"
            " from marts.fct_topic_schedule_current as mastery"
            " inner join marts.topic_catalog as topics on mastery.topic_id = topics.topic_id"
        ),
        "learner",
        "topic",
    )
    assert list(got.index) == list(expected.index) and len(expected) > USERS
    for name in ("system_name", "subject_name", "topic_name"):
        assert list(got[f"topic__{name}"]) == list(expected[name])
    _assert_close(got["mean_mastery"], expected["mastery"])
    _assert_close(got["mean_retrieval_strength"], expected["retrieval_strength"])
    _assert_close(got["due_topics"], expected["due"])


# --------------------------------------------------------------------------- the command line


def test_studyin_mf_query_writes_csv(warehouse: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "accuracy.csv"
    env = {**os.environ, db.ENV_URL: warehouse.url}
    result = subprocess.run(
        [sys.executable, "-m", "python_jobs.cli", "mf", "query", "--quiet",
         "--metrics", "accuracy,questions_attempted", "--group-by", "learner__cohort",
         "--csv", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with out.open() as handle:
        rows = {row["learner__cohort"]: row for row in csv.DictReader(handle)}
    expected = _by(
        warehouse.sql(
            "select learners.cohort as learner__cohort,"
            " sum(days.questions_correct)::numeric / sum(days.questions_attempted) as accuracy,"
            " sum(days.questions_attempted) as questions_attempted"
            " from marts.daily_user_stats as days"
            " inner join marts.dim_learners as learners on days.user_id = learners.user_id"
            " group by learners.cohort"
        ),
        "learner__cohort",
    )
    assert sorted(rows) == list(expected.index)
    for cohort, row in rows.items():
        assert float(row["accuracy"]) == pytest.approx(expected.loc[cohort, "accuracy"], rel=1e-9)
        assert int(float(row["questions_attempted"])) == expected.loc[cohort, "questions_attempted"]


# --------------------------------------------------------------------------- dim_learners


def test_dim_learners_has_one_row_per_learner(warehouse: Warehouse) -> None:
    frame = warehouse.sql(
        "select dim.user_id, dim.cohort = users.cohort and dim.exam_target = users.exam_target"
        " and dim.timezone = users.timezone and dim.created_at = users.created_at"
        " and dim.exam_date is not distinct from users.exam_date as same,"
        " dim.as_of_date, dim.days_until_exam, users.exam_date - %s::date as expected_days,"
        " dim.created_local_date = (users.created_at at time zone users.timezone)::date as local"
        " from marts.dim_learners as dim full join app.users as users on dim.user_id = users.id",
        (AS_OF,),
    )
    assert len(frame) == USERS and frame["user_id"].is_unique
    assert frame["same"].all() and frame["local"].all()
    assert (frame["as_of_date"] == AS_OF).all()
    assert frame["expected_days"].notna().any()
    assert list(frame["days_until_exam"].fillna(-1)) == list(frame["expected_days"].fillna(-1))
    learners = warehouse.mf(metrics=["learners"])
    assert learners.loc[0, "learners"] == USERS
    with psycopg.connect(warehouse.url) as conn:  # BI logins (reporter) read it, not app.users
        conn.execute("set role reporter")
        assert conn.execute("select count(*) from marts.dim_learners").fetchone()[0] == USERS


def test_erased_learner_leaves_dim_learners_and_the_metrics(
    warehouse: Warehouse, database_factory: Callable[..., str]
) -> None:
    copy = database_factory("semantic_erasure", migrated=False)
    admin = db.with_database(warehouse.url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database "{db.parse_url(copy).dbname}"')
        conn.execute(
            f'create database "{db.parse_url(copy).dbname}"'
            f' template "{db.parse_url(warehouse.url).dbname}"'
        )
    with psycopg.connect(copy) as conn:
        erased = conn.execute(
            "select user_id from marts.daily_user_stats group by user_id"
            " order by sum(questions_attempted) desc limit 1"
        ).fetchone()[0]
        request_deletion(conn, erased)
        apply_deletions(conn)
        conn.commit()
        left = conn.execute(
            "select count(*), count(*) filter (where user_id = %s) from marts.dim_learners",
            (erased,),
        ).fetchone()
    assert left == (USERS - 1, 0)
    # the manifest parsed for the module's database names its tables there: read in the copy
    counts = query_metrics(
        MetricQuery(metrics=["learners", "active_learners"]), url=copy, target_path=warehouse.target
    )
    assert counts.loc[0, "learners"] == USERS - 1
    assert (
        counts.loc[0, "active_learners"]
        == warehouse.mf(metrics=["active_learners"]).loc[0, "active_learners"] - 1
    )
