"""The two python jobs on a demo-like simulation (200 learners x 30 days) and the marts built on it.

One module fixture simulates the learners through the tracker and builds the marts the jobs read;
the leakage test works on a copy of that database (``create database ... template``) so the events
it adds stay out of the other tests.
"""

from __future__ import annotations

import math
import pickle
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import skops.io as sio

from python_jobs.jobs.readiness import (
    ReadinessOptions,
    _model_key,
    active_learners,
    exam_features,
    heuristic_calibration,
    load_labels,
    run_exam_readiness,
    scoring_frame,
)
from python_jobs.jobs.readiness_features import (
    ALL_COLUMNS,
    KNOWLEDGE_ESTIMATE_SQL,
    KnowledgeInputs,
    _knowledge_inputs,
    compute_features,
)
from python_jobs.jobs.recommendations import RecommendationOptions, run_gap_recommendations
from python_jobs.jobs.report import JobError, RunReport
from python_jobs.warehouse import db
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.pipeline import PipelineError, RunContext, default_steps, run_pipeline

pytestmark = pytest.mark.slow

USERS, DAYS, SEED = 200, 30, 42
# Held-out AUC floor on this small simulation: ~460 exams, of which ~110 are held out. With so few
# test exams the AUC's standard error is about 0.03-0.04, so the floor sits well below the
# 2,000-learner figure (acceptance there: 0.80) while still failing a model that learned nothing.
AUC_FLOOR = 0.70
# The model against the accuracy-only baseline on the same ~110 held-out exams: each AUC has a
# standard error of about 0.04, so which one is higher is not decided by a sample this size (the
# old simulator gave a margin of +0.004 on the demo; the current one, with noisy exams, -0.02 to
# -0.06 depending on its calibration). The baseline must be evaluated on the held-out exams and
# reported; whether the model beats it is measured where that is powered (the validity bench,
# 1,000 learners).
# A fixed window end makes the simulation (and so every figure below) the same on every run; the
# jobs and the mastery marts are evaluated as of that day instead of the wall-clock today.
END = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
TODAY = END.date()
# the trained path: on ~460 exams the heuristic may rank the validation slice better and replace
# the trained model (tests/test_readiness_validity.py covers that choice); these tests are about
# the trained model, its storage and its scores
TRAINED = {"heuristic_competes": False}


@pytest.fixture(scope="module")
def sim_url(database_factory: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> str:
    from python_jobs.simulation.simulator import simulate

    url = database_factory("ml_jobs")
    with psycopg.connect(url) as conn:
        simulate(conn, users=USERS, days=DAYS, seed=SEED, end=END, progress=False)
    target = tmp_path_factory.mktemp("dbt_target")
    run_dbt(
        [
            "run",
            "--select",
            "+knowledge_gaps",
            "+daily_user_stats",
            "+topic_mastery_current",
            "int_question_answers_folded",
            "--vars",
            f"{{mastery_as_of_date: '{TODAY.isoformat()}'}}",
        ],
        url=url,
        target_path=target,
    )
    return url


@pytest.fixture(scope="module")
def plot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plots")


@pytest.fixture(scope="module")
def readiness_run(sim_url: str, plot_dir: Path):
    with psycopg.connect(sim_url) as conn:
        options = ReadinessOptions(as_of=TODAY, plot_dir=plot_dir, **TRAINED)
        return run_exam_readiness(conn, options)


def _clone(url: str, prefix: str, database_factory: Callable[..., str]) -> str:
    """A copy of the database at `url` (the factory drops it at the end of the session)."""
    copy = database_factory(prefix, migrated=False)
    source = db.parse_url(url).dbname
    target = db.parse_url(copy).dbname
    admin = db.with_database(url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database "{target}"')
        conn.execute(f'create database "{target}" template "{source}"')
    return copy


# --------------------------------------------------------------------------- exam readiness


def test_model_path_is_evaluated_against_the_accuracy_baseline(readiness_run, sim_url: str) -> None:
    report = readiness_run
    details = report.details
    with psycopg.connect(sim_url) as conn:
        n_labels = conn.execute("select count(*) from app.exam_results").fetchone()[0]
        run = conn.execute(
            "select model_kind, n_train, n_test, auc, brier, calibration, params, plot_path"
            " from ml.model_runs where model_version = %s",
            (report.model_version,),
        ).fetchone()
    kind, n_train, n_test, auc, brier, calibration, params, plot_path = run
    evaluation = params["evaluation"]
    baseline = evaluation["baseline_accuracy_only"]
    print(
        f"\nreadiness on {USERS} learners x {DAYS} days: {n_labels} labelled exams, "
        f"model {report.model_version}: held-out AUC {auc:.3f}, Brier {brier:.3f} "
        f"(n_train {n_train}, n_test {n_test}); accuracy-only baseline AUC {baseline['auc']:.3f}; "
        f"candidates {evaluation['candidates']}"
    )
    assert n_labels >= 200 and details["n_labels"] == n_labels
    assert kind in ("logistic", "hgb") and report.model_version.startswith(f"readiness-{kind}-")
    assert n_train + n_test == n_labels and n_test > 0
    assert auc >= AUC_FLOOR
    assert 0.5 < baseline["auc"] <= 1 and 0 < baseline["brier"] < 0.25
    assert report.details["baseline_auc"] == baseline["auc"]
    assert 0 < brier < 0.25
    # both candidates were compared on the validation slice and the better one was kept
    val = {name: c["validation"]["auc"] for name, c in evaluation["candidates"].items()}
    assert set(val) == {"logistic", "hgb"} and val[kind] == max(val.values())
    # the calibration table covers every held-out exam (day-before rows) and is consistent
    assert sum(b["n"] for b in calibration) == n_test
    for b in calibration:
        if b["n"]:
            assert b["bin_low"] <= b["mean_predicted"] <= b["bin_high"]
            assert 0 <= b["observed_rate"] <= 1
    assert Path(plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # beside the accuracy-only baseline and the oracle, over all and per exam kind
    comparison = params["comparison"]
    assert comparison["project"]["n"] == n_test and comparison["accuracy_only_fit"] == "earlier"
    assert math.isclose(comparison["project"]["auc"], auc, abs_tol=1e-4)
    assert comparison["oracle"]["auc"] > comparison["project"]["auc"]
    assert set(comparison["by_kind"]) == {"practice", "board"}
    for table in comparison["by_kind"].values():
        assert {"project", "accuracy_only", "oracle"} == set(table)
    assert sum(t["project"]["n"] for t in comparison["by_kind"].values()) == n_test
    assert details["comparison"] == comparison
    # the heuristic was measured on the same validation and held-out exams (not competing here)
    heuristic = evaluation["heuristic"]
    assert heuristic["test"]["n"] == n_test and not heuristic["chosen"]


def test_scores_every_active_learner(readiness_run, sim_url: str) -> None:
    stamp = datetime.combine(TODAY, datetime.min.time(), UTC)
    with psycopg.connect(sim_url) as conn:
        active = {
            str(r[0])
            for r in conn.execute(
                "select distinct user_id from app.study_events where occurred_at >= %s"
                " and occurred_at < %s",
                (stamp - timedelta(days=29), stamp + timedelta(days=1)),
            )
        }
        scores = pd.DataFrame(
            conn.execute(
                "select user_id::text, model_version, pass_probability, predicted_score,"
                " interval_low, interval_high, top_factors from ml.exam_readiness_scores"
                " where scored_at = %s",
                (stamp,),
            ).fetchall(),
            columns=["user_id", "model_version", "p", "score", "low", "high", "factors"],
        )
    assert set(scores["user_id"]) == active and len(scores) == len(active)
    assert (scores["model_version"] == readiness_run.model_version).all()
    assert scores["p"].between(0, 1).all() and scores["p"].nunique() > len(scores) // 2
    assert ((scores["low"] <= scores["score"]) & (scores["score"] <= scores["high"])).all()
    assert scores["score"].between(1, 300).all()
    for factors in scores["factors"]:
        assert 1 <= len(factors) <= ReadinessOptions().top_factors
        assert all(f["feature"] in ALL_COLUMNS for f in factors)
        effects = [abs(f["effect"]) for f in factors]
        assert effects == sorted(effects, reverse=True)


def test_same_day_rerun_replaces_scores(readiness_run, sim_url: str, plot_dir: Path) -> None:
    stamp = datetime.combine(TODAY, datetime.min.time(), UTC)
    query = (
        "select user_id, model_version, pass_probability, predicted_score, interval_low,"
        " interval_high, top_factors::text from ml.exam_readiness_scores where scored_at = %s"
        " order by user_id"
    )
    with psycopg.connect(sim_url) as conn:
        before = conn.execute(query, (stamp,)).fetchall()
        options = ReadinessOptions(as_of=TODAY, plot_dir=plot_dir, **TRAINED)
        again = run_exam_readiness(conn, options)
        after = conn.execute(query, (stamp,)).fetchall()
        versions = conn.execute(
            "select count(*) from ml.model_runs where model_version = %s", (again.model_version,)
        ).fetchone()[0]
    assert again.model_version == readiness_run.model_version  # same data, same model
    assert again.rows_deleted == len(before)
    assert after == before  # one row per learner for the day, identical values
    assert versions == 1


def test_stored_model_scores_until_retrain_is_due(
    readiness_run, sim_url: str, plot_dir: Path, database_factory: Callable[..., str]
) -> None:
    """Within retrain_every_days the stored model scores (no training); then, or under other
    shaping options, a new model is trained."""
    url = _clone(sim_url, "cadence", database_factory)

    def run(days_later: int, **changes) -> RunReport:
        as_of = TODAY + timedelta(days=days_later)
        options = ReadinessOptions(as_of=as_of, plot_dir=plot_dir, **{**TRAINED, **changes})
        with psycopg.connect(url) as conn:
            return run_exam_readiness(conn, options)

    next_day = run(1)
    six_days = run(6)
    other_options = run(1, logistic_c=0.5)
    a_week = run(7)
    every_run = run(1, retrain_every_days=0)
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "select model_version from ml.model_runs where model is not null order by 1"
        ).fetchall()
        next_day_versions = conn.execute(
            "select distinct model_version from ml.exam_readiness_scores where scored_at = %s",
            (datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), UTC),),
        ).fetchall()
    original = readiness_run.model_version
    assert next_day.details["stored_model"] and next_day.model_version == original
    assert next_day.rows_written > 100
    assert six_days.details["stored_model"] and six_days.model_version == original
    assert "stored_model" not in other_options.details and other_options.model_version != original
    assert "stored_model" not in a_week.details and a_week.model_version != original
    assert "stored_model" not in every_run.details
    trained = (original, other_options, a_week, every_run)
    assert [v for (v,) in stored] == sorted(
        r if isinstance(r, str) else r.model_version for r in trained
    )
    # the last run of the day (trained, retrain_every_days=0) replaced the stored-model scores
    assert next_day_versions == [(every_run.model_version,)]


class _OpenOnUnpickle:
    """A planted pickle: unpickling it creates `path` (any callable would run the same way)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _TouchOnBuild:
    """A planted skops object of a type nobody trusted: building it creates `path`."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).touch()
        self.__dict__.update(state)


def _plant(url: str, version: str, model: bytes, key: str, trained_as_of: date) -> None:
    """Write a model row as the ml_writer role can: the newest stored model under `key`."""
    with psycopg.connect(url) as conn:
        conn.execute("set role ml_writer")
        conn.execute(
            "insert into ml.model_runs (model_version, model_kind, trained_as_of, model_key,"
            " model, model_format) values (%s, 'logistic', %s, %s, %s, 'skops')",
            (version, trained_as_of, key, model),
        )


def test_stored_model_is_a_skops_file_that_scores_like_the_trained_one(
    readiness_run, sim_url: str, plot_dir: Path, database_factory: Callable[..., str]
) -> None:
    url = _clone(sim_url, "stored_format", database_factory)
    query = (
        "select user_id, pass_probability, predicted_score, interval_low, interval_high,"
        " top_factors::text from ml.exam_readiness_scores order by user_id"
    )
    with psycopg.connect(url) as conn:
        model, model_format = conn.execute(
            "select model, model_format from ml.model_runs where model_version = %s",
            (readiness_run.model_version,),
        ).fetchone()
        trained = conn.execute(query).fetchall()
        options = ReadinessOptions(as_of=TODAY, plot_dir=plot_dir, **TRAINED)
        rerun = run_exam_readiness(conn, options)
        stored = conn.execute(query).fetchall()
    assert model_format == "skops" and bytes(model)[:2] == b"PK"  # a zip of data, not a pickle
    # the same day scored again with the model read back: the very same rows
    assert rerun.details["stored_model"] and rerun.model_version == readiness_run.model_version
    assert len(trained) > 100 and stored == trained


@pytest.mark.parametrize("kind", ["pickle", "skops_untrusted", "garbage"])
def test_planted_model_stops_the_run_and_runs_nothing(
    kind: str,
    readiness_run,
    sim_url: str,
    database_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    """A model written into ml.model_runs by whoever holds ml_writer is refused by the next
    plain run: the step fails naming the model version, and nothing in the model is run."""
    url = _clone(sim_url, f"planted_{kind}", database_factory)
    marker = tmp_path / "planted-model-ran"
    planted = {
        "pickle": pickle.dumps(_OpenOnUnpickle(marker)),
        "skops_untrusted": sio.dumps({"classifier": _TouchOnBuild(marker)}),
        "garbage": b"PK\x03\x04 not really a zip",
    }[kind]
    version = f"readiness-planted-{kind}"
    # trained "today" under the key of a plain run's options: the run's newest stored model
    _plant(url, version, planted, _model_key(ReadinessOptions()), datetime.now(UTC).date())
    steps = [step for step in default_steps() if step[0] == "python_jobs"]
    with pytest.raises(PipelineError) as raised:
        run_pipeline(RunContext(url=url), steps)
    message = str(raised.value)
    assert raised.value.step == "python_jobs"
    assert f"stored model {version} in ml.model_runs was refused, nothing in it was run" in message
    assert "\n" not in message
    assert not marker.exists()
    # the plant is live: loading it the unsafe way would have run it
    if kind == "pickle":
        pickle.loads(planted)
        assert marker.exists()
    elif kind == "skops_untrusted":
        sio.loads(planted, trusted=sio.get_untrusted_types(data=planted))
        assert marker.exists()


def test_heuristic_fallback_below_min_labels(sim_url: str, plot_dir: Path) -> None:
    """Early in the window fewer than 200 exams are known: the transparent heuristic scores."""
    with psycopg.connect(sim_url) as conn:
        first_exam = conn.execute("select min(taken_at)::date from app.exam_results").fetchone()[0]
        as_of = first_exam + timedelta(days=4)
        options = ReadinessOptions(as_of=as_of, plot_dir=plot_dir, **TRAINED)
        n_known = len(load_labels(conn, options, as_of))
        report = run_exam_readiness(conn, options)
        kind, n_train = conn.execute(
            "select model_kind, n_train from ml.model_runs where model_version = %s",
            (report.model_version,),
        ).fetchone()
        rows = conn.execute(
            "select user_id, pass_probability, predicted_score, top_factors"
            " from ml.exam_readiness_scores where scored_at = %s",
            (datetime.combine(as_of, datetime.min.time(), UTC),),
        ).fetchall()
        assert 0 < n_known < options.min_labels
        assert report.model_version.startswith("heuristic-v2-") and kind == "heuristic"
        assert n_train == 0 and str(n_known) in report.details["fallback_reason"]
        assert rows
        scoring = scoring_frame(conn, options, as_of).set_index("user_id")
        labelled = exam_features(conn, load_labels(conn, options, as_of), options)
        calibration = heuristic_calibration(labelled[labelled["days_to_exam"] == 1], options)
        assert calibration.n_exams == n_known
        for user_id, p, score, factors in rows:
            assert score is None
            # by hand: Phi((share - cut) / spread) from the in-app share, offset and earlier exam
            f = scoring.loc[str(user_id)]
            in_app, var = f["expected_share"] + calibration.offset, calibration.estimate_var
            share, precision = in_app / var, 1 / var
            if f["prior_exams"] > 0:
                cut = 0.52 if f["last_exam_is_board"] else 0.44
                days = f["days_since_last_exam"] + f["days_to_exam"]
                exam = cut + (f["last_exam_score"] - 196) / 400 + calibration.growth_per_day * days
                exam_var = 0.04**2 + (0.004 * days) ** 2
                share, precision = share + exam / exam_var, precision + 1 / exam_var
            z = (share / precision - 0.52) / math.sqrt(1 / precision + 0.04**2)
            assert math.isclose(p, 0.5 * (1 + math.erf(z / math.sqrt(2))), abs_tol=1e-6)
            assert factors and factors[0]["feature"] in (
                "expected_share",
                "coverage_high_weight",
                "last_exam_share",
            )
            assert abs(factors[0]["effect"]) >= abs(factors[-1]["effect"])


def test_features_ignore_events_after_the_exam(
    sim_url: str, database_factory: Callable[..., str], tmp_path: Path
) -> None:
    """Leakage: events dated at or after an exam do not change that exam's features (the review
    log and the daily stats the features read are rebuilt with the added events in them)."""
    url = _clone(sim_url, "leakage", database_factory)
    options = ReadinessOptions(as_of=TODAY)
    with psycopg.connect(url) as conn:
        labels = load_labels(conn, options, TODAY)
        labels = labels[labels["exam_day"] <= TODAY - timedelta(days=6)].head(60)
        # control: the same learners 6 days later, when the added events are in the past
        later = labels.assign(exam_day=labels["exam_day"] + timedelta(days=6))
        before = exam_features(conn, labels, options)
        later_before = exam_features(conn, later, options)
        added = _add_events_after_exams(conn, labels["exam_id"].tolist())
        conn.commit()
        run_dbt(
            [
                "run",
                "--select",
                "+int_topic_reviews_scheduled",
                "+daily_user_stats",
                "--full-refresh",
            ],
            url=url,
            target_path=tmp_path,
        )
        after = exam_features(conn, labels, options)
        later_after = exam_features(conn, later, options)
    assert len(labels) > 10 and added > 0
    # A learner's own features ignore everything from their exam on. The unstudied prior (and so
    # expected_share) also reads the population's first-day accuracy up to the cutoff, which the
    # events added after *other* learners' earlier exams legitimately change; it is compared on
    # the cutoffs before the first added event (tests/test_readiness_validity.py checks that no
    # event after an as-of day, anyone's, changes its scores).
    population = ["expected_share", "unstudied_prior"]
    pd.testing.assert_frame_equal(before.drop(columns=population), after.drop(columns=population))
    as_of = pd.to_datetime(before["exam_day"]) - pd.to_timedelta(before["days_to_exam"], unit="D")
    earliest = as_of < pd.Timestamp(labels["exam_day"].min() - timedelta(days=1))
    assert earliest.sum() > 10
    pd.testing.assert_frame_equal(before.loc[earliest], after.loc[earliest])
    # the control moves, so the added events are visible to the feature engine
    day_before = later_after["days_to_exam"] == 1
    for column in ("log_attempts_total", "log_attempts_long", "prior_exams"):
        grew = (
            later_after.loc[day_before, column].to_numpy()
            > later_before.loc[day_before, column].to_numpy()
        )
        assert grew.all(), column


def test_a_chunks_knowledge_estimates_reach_the_view_by_learner(sim_url: str) -> None:
    """knowledge_source="knowledge_estimate" reads a chunk's estimates from topic_mastery_current:
    the chunk's rows of the view, the learner's position in the chunk as user_idx, with the ids
    reaching topic_mastery's scan (a join alone computed the view for every learner per chunk)."""
    with psycopg.connect(sim_url) as conn:
        rows = conn.execute(
            "select user_id::text, topic_id, knowledge_estimate::float8"
            " from marts.topic_mastery_current"
        ).fetchall()
        chunk = sorted({user for user, _, _ in rows})[1:4]
        marker = KnowledgeInputs(pd.DataFrame(), pd.DataFrame())
        got = _knowledge_inputs(conn, chunk, marker).estimates
        conn.execute("set enable_seqscan = off")  # the tables here are tiny
        plan = "\n".join(
            r[0]
            for r in conn.execute("explain (costs off) " + KNOWLEDGE_ESTIMATE_SQL, {"users": chunk})
        )
    want = sorted((chunk.index(u), t, e) for u, t, e in rows if u in chunk)
    assert len(want) > 10 and len({i for i, _, _ in want}) == 3
    assert list(got[["user_idx", "topic_id", "knowledge_estimate"]].itertuples(index=False)) == want
    lines = plan.splitlines()
    # "Index Scan using <index> on topic_mastery" or "Bitmap Heap Scan on topic_mastery"
    scan_line = re.compile(r"Scan (using \S+ )?on topic_mastery\b")
    scan = next(i for i, line in enumerate(lines) if scan_line.search(line))
    assert "user_id = ANY" in lines[scan + 1], plan  # its Index (or Recheck) Cond


def test_scoring_reads_only_the_last_reviews_and_gets_the_same_features(sim_url: str) -> None:
    """A chunk whose cutoffs are all on its last day (a scoring run) reads only each topic's last
    review; the features equal those of the full-log read, forced here by one earlier cutoff."""
    options = ReadinessOptions(as_of=TODAY)
    with psycopg.connect(sim_url) as conn:
        today = active_learners(conn, options, TODAY)
        earlier = today.head(1).assign(as_of=TODAY - timedelta(days=3))
        latest_read = compute_features(conn, today, options.mastery, options.features)
        full_read = compute_features(
            conn, pd.concat([today, earlier], ignore_index=True), options.mastery, options.features
        )
    assert len(today) > 100 and latest_read["weighted_mastery"].gt(0).sum() > 100
    pd.testing.assert_frame_equal(latest_read, full_read.iloc[: len(today)])


def _add_events_after_exams(conn: psycopg.Connection, exam_ids: list[str]) -> int:
    """For each exam: 12 correct answers, a material completion and a perfect practice exam, from
    1 minute to 5 days after it, on the learner's own questions, or the bank's first ones for a
    learner who logged an exam before answering any (typed rows, events, receipts)."""
    exams = conn.execute(
        """
        select e.user_id, e.taken_at,
            coalesce(
                (select array_agg(distinct question_id) from app.question_attempts q
                 where q.user_id = e.user_id),
                (select array_agg(id) from (select id from app.questions order by id limit 12) b)
            ) as questions,
            (select min(id) from app.materials) as material_id
        from app.exam_results e where e.event_id = any(%s::uuid[])
        """,
        (exam_ids,),
    ).fetchall()
    rows = 0
    for user_id, taken_at, questions, material_id in exams:
        questions = (questions or [])[:12]
        for k, question_id in enumerate(questions):
            at = taken_at + [timedelta(minutes=1), timedelta(days=1), timedelta(days=5)][k % 3]
            _insert_attempt(conn, user_id, question_id, at)
            rows += 1
        _insert_completion(conn, user_id, material_id, taken_at + timedelta(hours=2))
        _insert_exam(conn, user_id, taken_at + timedelta(days=1))
        rows += 2
    return rows


def _receipt(conn: psycopg.Connection, user_id: uuid.UUID, at: datetime, kind: str) -> uuid.UUID:
    event_id = uuid.uuid4()
    conn.execute("insert into app.event_receipts (event_id) values (%s)", (event_id,))
    conn.execute(
        "insert into app.study_events (event_id, user_id, event_type, occurred_at, received_at)"
        " values (%s, %s, %s, %s, %s)",
        (event_id, user_id, kind, at, at),
    )
    return event_id


def _insert_attempt(conn: psycopg.Connection, user_id, question_id: int, at: datetime) -> None:
    event_id = _receipt(conn, user_id, at, "question_attempt")
    conn.execute(
        """
        insert into app.question_attempts (event_id, user_id, question_id, topic_id,
            attempt_number, selected_answer, is_correct, time_to_answer_ms, confidence_level,
            hint_used, answered_at, received_at)
        select %(e)s, %(u)s, q.id, q.topic_id, 1, q.correct_answer, true, 20000, 5, false,
            %(at)s, %(at)s
        from app.questions q where q.id = %(q)s
        """,
        {"e": event_id, "u": user_id, "q": question_id, "at": at},
    )


def _insert_exam(conn: psycopg.Connection, user_id, at: datetime) -> None:
    event_id = _receipt(conn, user_id, at, "exam_result")
    conn.execute(
        "insert into app.exam_results (event_id, user_id, exam_kind, taken_at, scaled_score,"
        " passed, received_at) values (%s, %s, 'practice', %s, 300, true, %s)",
        (event_id, user_id, at, at),
    )


def _insert_completion(conn: psycopg.Connection, user_id, material_id: int, at: datetime) -> None:
    event_id = _receipt(conn, user_id, at, "material_interaction")
    conn.execute(
        "insert into app.material_interactions (event_id, user_id, material_id, interaction_type,"
        " progress, active_seconds, occurred_at, received_at)"
        " values (%s, %s, %s, 'complete', 1, 600, %s, %s)",
        (event_id, user_id, material_id, at, at),
    )


# --------------------------------------------------------------------------- recommendations


def _recommendations(conn: psycopg.Connection, day: date) -> pd.DataFrame:
    return pd.DataFrame(
        conn.execute(
            "select user_id::text, topic_id, rank, action, target_id, reason, generated_at"
            " from ml.gap_recommendations where generated_on = %s order by user_id, rank",
            (day,),
        ).fetchall(),
        columns=["user_id", "topic_id", "rank", "action", "target_id", "reason", "generated_at"],
    )


@pytest.fixture(scope="module")
def recommendations(sim_url: str) -> pd.DataFrame:
    with psycopg.connect(sim_url) as conn:
        report = run_gap_recommendations(conn, RecommendationOptions(as_of=TODAY))
        frame = _recommendations(conn, TODAY)
    assert report.rows_written == len(frame) > 0
    return frame


def test_all_three_actions_on_demo_data(recommendations: pd.DataFrame) -> None:
    counts = recommendations["action"].value_counts().to_dict()
    print(f"\nrecommendations on {USERS} learners x {DAYS} days: {counts}")
    assert set(counts) == {"learn_prerequisite", "review_questions", "read_material"}
    # ranks are 1..n per learner, at most top_n gaps each
    for _, group in recommendations.groupby("user_id"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert group["topic_id"].nunique() <= RecommendationOptions().top_n


def test_weaker_prerequisite_comes_first(recommendations: pd.DataFrame, sim_url: str) -> None:
    with psycopg.connect(sim_url) as conn:
        # gaps are graded by the knowledge estimate (gap_basis), and so are their prerequisites
        mastery = {
            (str(u), t): float(m)
            for u, t, m in conn.execute(
                "select user_id, topic_id, knowledge_estimate from marts.topic_mastery_current"
            )
        }
        gaps = {
            (str(u), t): (float(m), float(p), g)
            for u, t, m, p, g in conn.execute(
                "select user_id, topic_id, gap_score, priority, gap_type from marts.knowledge_gaps"
            )
        }
        prerequisites: dict[int, list[int]] = {}
        for source, target in conn.execute(
            "select from_topic_id, to_topic_id from app.topic_relationships"
            " where kind = 'prerequisite'"
        ):
            prerequisites.setdefault(target, []).append(source)
    checked = 0
    for (user_id, topic_id), group in recommendations.groupby(["user_id", "topic_id"]):
        gap_mastery = gaps[(user_id, topic_id)][0]
        weaker = sorted(
            (mastery.get((user_id, p), 0.0), p)
            for p in prerequisites.get(topic_id, [])
            if mastery.get((user_id, p), 0.0) < gap_mastery
        )
        actions = group.sort_values("rank")
        if weaker:
            checked += 1
            # the gap's first action is its weakest prerequisite, before any question or reading
            assert actions.iloc[0]["action"] == "learn_prerequisite"
            assert actions.iloc[0]["target_id"] == weaker[0][1]
            learn = actions[actions["action"] == "learn_prerequisite"]["target_id"].tolist()
            limit = RecommendationOptions().max_prerequisites_per_gap
            assert learn == [p for _, p in weaker][:limit]
            kinds = actions["action"].tolist()
            last_prerequisite = max(i for i, a in enumerate(kinds) if a == "learn_prerequisite")
            assert "learn_prerequisite" not in kinds[last_prerequisite + 1 :]
            assert all(a == "learn_prerequisite" for a in kinds[: last_prerequisite + 1])
        else:
            assert "learn_prerequisite" not in set(actions["action"])
    assert checked > 0
    # gaps come in priority order within each learner, at most 2 of them unstudied, and the
    # studied gaps chosen are that learner's highest-priority ones
    studied_by_user: dict[str, list[tuple[float, int]]] = {}
    for (user_id, topic_id), (_, priority, gap_type) in gaps.items():
        if gap_type != "unstudied":
            studied_by_user.setdefault(user_id, []).append((-priority, topic_id))
    for user_id, group in recommendations.groupby("user_id"):
        order = group.drop_duplicates("topic_id")["topic_id"].tolist()
        priorities = [gaps[(user_id, t)][1] for t in order]
        assert priorities == sorted(priorities, reverse=True)
        kinds = [gaps[(user_id, t)][2] for t in order]
        assert kinds.count("unstudied") <= RecommendationOptions().max_unstudied_gaps
        studied = [t for t, k in zip(order, kinds, strict=True) if k != "unstudied"]
        best = [t for _, t in sorted(studied_by_user.get(user_id, []))[: len(studied)]]
        assert studied == best


def test_questions_to_review_follow_the_learners_last_answers(
    recommendations: pd.DataFrame, sim_url: str
) -> None:
    """Each gap's review_questions, recomputed from app.question_attempts: the questions whose
    latest answer was wrong (longest ago first), then, when the topic is due, those answered
    right, at most max_questions_per_gap."""
    latest: dict[tuple[str, int], dict[int, tuple[datetime, bool]]] = {}
    with psycopg.connect(sim_url) as conn:
        for user_id, topic_id, question_id, is_correct, answered_at in conn.execute(
            "select user_id::text, topic_id, question_id, is_correct, answered_at"
            " from app.question_attempts"
        ):
            answers = latest.setdefault((user_id, topic_id), {})
            candidate = (answered_at, not is_correct)  # later wins; on a tie the wrong answer
            if question_id not in answers or candidate > answers[question_id]:
                answers[question_id] = candidate
        due = {
            (u, t): bool(d)
            for u, t, d in conn.execute(
                "select user_id::text, topic_id, coalesce(next_review_date <= as_of_date, false)"
                " from marts.knowledge_gaps"
            )
        }
    limit = RecommendationOptions().max_questions_per_gap
    questions = recommendations[recommendations["action"] == "review_questions"]
    gaps = recommendations.drop_duplicates(["user_id", "topic_id"])
    wrong_seen = 0
    for user_id, topic_id in zip(gaps["user_id"], gaps["topic_id"], strict=True):
        answers = latest.get((user_id, topic_id), {})
        order = sorted(answers, key=lambda q: (answers[q][1] is False, answers[q][0], q))
        chosen = [q for q in order if answers[q][1] or due[(user_id, topic_id)]][:limit]
        got = questions[(questions["user_id"] == user_id) & (questions["topic_id"] == topic_id)]
        assert got.sort_values("rank")["target_id"].tolist() == chosen, (user_id, topic_id)
        wrong_seen += sum(answers[q][1] for q in chosen)
    assert wrong_seen > 50 and len(questions) > 100  # both kinds of question were recommended


def test_a_few_learners_get_what_the_run_for_everyone_gave_them(
    recommendations: pd.DataFrame, sim_url: str
) -> None:
    """A run for named learners gives them the rows the run for every learner gave them."""
    prerequisites = recommendations[recommendations["action"] == "learn_prerequisite"]
    learners = tuple(sorted(prerequisites["user_id"].unique())[:3])
    assert learners, "no prerequisite recommended: the comparison would prove nothing"
    with psycopg.connect(sim_url) as conn:
        few = run_gap_recommendations(conn, RecommendationOptions(as_of=TODAY, user_ids=learners))
        stored = _recommendations(conn, TODAY)
    theirs = recommendations[recommendations["user_id"].isin(learners)]
    assert few.details["unchanged"] and few.rows_written == 0
    assert few.details["recommendations"] == len(theirs)
    pd.testing.assert_frame_equal(stored, recommendations)


def test_rerun_is_deterministic_and_replaces_the_day(
    recommendations: pd.DataFrame, sim_url: str
) -> None:
    columns = ["user_id", "topic_id", "rank", "action", "target_id", "reason"]
    with psycopg.connect(sim_url) as conn:
        same = run_gap_recommendations(conn, RecommendationOptions(as_of=TODAY))
        unchanged = _recommendations(conn, TODAY)
        # different options give different rows: the day's rows are replaced, not added to
        fewer = run_gap_recommendations(conn, RecommendationOptions(as_of=TODAY, top_n=2))
        replaced = _recommendations(conn, TODAY)
        back = run_gap_recommendations(conn, RecommendationOptions(as_of=TODAY))
        restored = _recommendations(conn, TODAY)
    assert same.details["unchanged"] and same.rows_written == 0
    pd.testing.assert_frame_equal(unchanged, recommendations)  # generated_at untouched too
    assert fewer.rows_deleted == len(recommendations) and fewer.rows_written == len(replaced)
    assert len(replaced) < len(recommendations)
    assert replaced["topic_id"].groupby(replaced["user_id"]).nunique().max() <= 2
    assert back.rows_written == len(restored) == len(recommendations)
    pd.testing.assert_frame_equal(restored[columns], recommendations[columns])
    assert not restored.duplicated(["user_id", "rank"]).any()


def test_jobs_explain_missing_inputs(database_factory: Callable[..., str]) -> None:
    url = database_factory("ml_jobs_empty")
    with psycopg.connect(url) as conn:
        with pytest.raises(JobError, match="run dbt build first"):
            run_gap_recommendations(conn)
        conn.rollback()
        with pytest.raises(JobError, match="int_topic_reviews_scheduled does not exist: run dbt"):
            run_exam_readiness(conn, ReadinessOptions(write=False))


def test_probabilities_follow_features(readiness_run, sim_url: str) -> None:
    """The learners the model ranks highest have the stronger study record on average."""
    stamp = datetime.combine(TODAY, datetime.min.time(), UTC)
    with psycopg.connect(sim_url) as conn:
        rows = conn.execute(
            """
            select s.pass_probability, avg(q.is_correct::int)
            from ml.exam_readiness_scores s
            join app.question_attempts q on q.user_id = s.user_id
            where s.scored_at = %s group by s.user_id, s.pass_probability
            """,
            (stamp,),
        ).fetchall()
    p = np.array([r[0] for r in rows])
    accuracy = np.array([float(r[1]) for r in rows])
    assert np.corrcoef(p, accuracy)[0, 1] > 0.3
