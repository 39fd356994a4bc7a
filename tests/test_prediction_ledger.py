"""The prediction ledger and its metric marts (models/marts/predictions) on a real PostgreSQL.

Generated learners get readiness scores on most days (three model versions in turn, probabilities
rounded so that some tie, a few exactly 0 or 1) and practice and board exams, some delivered days
late. Both reach the warehouse in five batches, each followed by an incremental ``dbt build``; then
a run without new data, and the erasure of a learner. The tests pair each exam with its score in
Python and recompute every metric with scikit-learn (log loss, Brier, ROC AUC, an unpenalised
logistic regression for the calibration fit) and numpy (calibration bins), and compare the
incremental tables with a full refresh.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from python_jobs.ingest.events import ExamResult
from python_jobs.ingest.tracker import Tracker
from python_jobs.jobs.calibration_plot import draw_calibration_plot, draw_reliability_diagram
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.deletion import apply_deletions, request_deletion

pytestmark = pytest.mark.slow

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
DAYS = 63
BATCH_DAYS = 14
LEAD = timedelta(hours=24)  # readiness_prediction_lead_hours
HORIZON = timedelta(days=30)  # readiness_prediction_horizon_days
CLIP = 1e-6
BINS = 10
VERSIONS = ("ledger-test-a", "ledger-test-b", "ledger-test-c")  # 21 scoring days each
TIMEZONES = ("UTC", "America/New_York", "Asia/Tokyo", "Pacific/Auckland")
USERS = 48
# buildable: a test runs only when every model it reads is selected (the recall ledger brings the
# attempts' staging view, whose relationship tests read reference views this selection leaves out)
SELECTION = [
    "--select", "+path:models/marts/predictions", "stg_ml__model_runs",
    "--indirect-selection", "buildable",
]  # fmt: skip
MODELS = (
    "fct_readiness_predictions",
    "prediction_ledger",
    "fct_prediction_metrics_weekly",
    "fct_prediction_metrics",
    "fct_prediction_reliability",
)
METRIC_KEYS = {
    "fct_prediction_metrics_weekly": ["prediction_kind", "model_version", "week_start"],
    "fct_prediction_metrics": ["prediction_kind", "model_version"],
}


@dataclass
class World:
    users: pd.DataFrame  # user_id, timezone
    scores: pd.DataFrame  # user_id, scored_at, model_version, pass_probability
    exams: pd.DataFrame  # event_id, user_id, exam_kind, taken_at, passed, received_at


def generate(seed: int = 15) -> World:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame(
        {
            "user_id": [uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i) for i in range(USERS)],
            "timezone": [TIMEZONES[i % len(TIMEZONES)] for i in range(USERS)],
        }
    )
    ability = rng.normal(0.0, 1.2, USERS)
    score_rows, exam_rows = [], []
    for i, user in enumerate(users["user_id"]):
        for day in range(DAYS):
            if rng.random() < 0.25:
                continue  # not scored that day (inactive)
            logit = ability[i] + rng.normal(0.0, 0.6)
            p = round(float(1 / (1 + math.exp(-logit))), 2)  # 2 decimals: ties
            if rng.random() < 0.01:
                p = float(rng.integers(0, 2))  # exactly 0 or 1: log loss needs the clip
            score_rows.append((user, START + timedelta(days=day), VERSIONS[day // 21], p))
        for _ in range(rng.integers(3, 9)):
            taken = START + timedelta(seconds=float(rng.uniform(0, (DAYS + 3) * 86400)))
            # Outcomes less extreme than the scores (true slope about 0.7): a fit that can be wrong.
            passed = rng.random() < 1 / (1 + math.exp(-(0.3 + 0.7 * ability[i])))
            late = timedelta(days=float(rng.uniform(1, 10))) if rng.random() < 0.2 else timedelta()
            exam_rows.append(
                (
                    uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | len(exam_rows)),
                    user,
                    "board" if rng.random() < 0.3 else "practice",
                    taken,
                    bool(passed),
                    taken + timedelta(minutes=5) + late,
                )
            )
    scores = pd.DataFrame(
        score_rows, columns=["user_id", "scored_at", "model_version", "pass_probability"]
    )
    exams = pd.DataFrame(
        exam_rows,
        columns=["event_id", "user_id", "exam_kind", "taken_at", "passed", "received_at"],
    )
    return World(users, scores, exams)


def load_users(conn: psycopg.Connection, world: World) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into app.users (id, created_at, timezone, cohort, exam_target)"
            " values (%s, %s, %s, 'ledger', 'board')",
            [(u, START - timedelta(days=30), tz) for u, tz in world.users.itertuples(index=False)],
        )
        cur.executemany(
            "insert into ml.model_runs (model_version, model_kind) values (%s, 'logistic')",
            [(v,) for v in VERSIONS],
        )
    conn.commit()


def load_batch(conn: psycopg.Connection, world: World, since: datetime, until: datetime) -> int:
    """Scores written and exams received in [since, until), as the app and the job would."""
    scores = world.scores[(world.scores.scored_at >= since) & (world.scores.scored_at < until)]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into ml.exam_readiness_scores"
            " (user_id, scored_at, model_version, pass_probability) values (%s, %s, %s, %s)",
            list(scores.itertuples(index=False, name=None)),
        )
    conn.commit()
    exams = world.exams[(world.exams.received_at >= since) & (world.exams.received_at < until)]
    events = [
        ExamResult(
            event_id=e.event_id,
            user_id=e.user_id,
            occurred_at=e.taken_at.to_pydatetime(),
            received_at=e.received_at.to_pydatetime(),
            exam_kind=e.exam_kind,
            scaled_score=220 if e.passed else 180,
            passed=e.passed,
        )
        for e in exams.itertuples(index=False)
    ]
    Tracker(conn, trust_received_at=True).track_batch(events)
    conn.commit()
    return len(events)


def dbt_build(url: str, target: Path, *extra: str, command: str = "build") -> None:
    run_dbt([command, *SELECTION, *extra], url=url, target_path=target)


def read(url: str, query: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        cur = conn.execute(query)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def table_rows(url: str, table: str) -> pd.DataFrame:
    keys = METRIC_KEYS.get(table, [])
    order = ", ".join(keys) if keys else "1, 2, 3"
    return read(url, f"select * from marts.{table} order by {order}")


@dataclass
class Built:
    url: str
    target: Path
    world: World
    erased: uuid.UUID
    batch_sizes: list[int]
    before_rerun: dict[str, pd.DataFrame]
    after_rerun: dict[str, pd.DataFrame]
    incremental: dict[str, pd.DataFrame]
    full_refresh: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def built(database_factory, tmp_path_factory) -> Iterator[Built]:
    url = database_factory("studyin_ledger")
    target = tmp_path_factory.mktemp("dbt_ledger")
    world = generate()
    sizes = []
    with psycopg.connect(url) as conn:
        load_users(conn, world)
        edges = [START + timedelta(days=d) for d in range(0, DAYS + 28, BATCH_DAYS)]
        batches = list(zip(edges, edges[1:], strict=False))
        for number, (since, until) in enumerate(batches, start=1):
            sizes.append(load_batch(conn, world, since, until))
            # the data tests run on the last batch's build and on every build after it
            dbt_build(url, target, command="build" if number == len(batches) else "run")
    before = {t: table_rows(url, t) for t in MODELS}
    dbt_build(url, target)
    after = {t: table_rows(url, t) for t in MODELS}
    erased = world.users.user_id.iloc[5]
    with psycopg.connect(url) as conn:
        request_deletion(conn, erased)
        conn.commit()
        apply_deletions(conn)
    dbt_build(url, target)
    incremental = {t: table_rows(url, t) for t in MODELS}
    dbt_build(url, target, "--full-refresh")
    full = {t: table_rows(url, t) for t in MODELS}
    kept = world.users.user_id != erased
    world = World(
        world.users[kept],
        world.scores[world.scores.user_id != erased],
        world.exams[world.exams.user_id != erased],
    )
    yield Built(url, target, world, erased, sizes, before, after, incremental, full)


# ----------------------------------------------------------------------------- expected values


def expected_pairs(world: World) -> pd.DataFrame:
    """Each exam with the latest score at least LEAD and at most HORIZON before it."""
    rows = []
    by_user = {u: s.sort_values("scored_at") for u, s in world.scores.groupby("user_id")}
    tz = dict(zip(world.users.user_id, world.users.timezone, strict=True))
    for exam in world.exams.itertuples(index=False):
        scores = by_user.get(exam.user_id)
        if scores is None:
            continue
        window = scores[
            (scores.scored_at < exam.taken_at - LEAD)
            & (scores.scored_at >= exam.taken_at - HORIZON)
        ]
        if window.empty:
            continue
        score = window.iloc[-1]
        local_day = exam.taken_at.to_pydatetime().astimezone(ZoneInfo(tz[exam.user_id])).date()
        rows.append(
            {
                "prediction_id": exam.event_id,
                "exam_kind": exam.exam_kind,
                "predicted_for": local_day,
                "scored_at": score.scored_at,
                "model_version": score.model_version,
                "probability": score.pass_probability,
                "outcome": exam.passed,
            }
        )
    pairs = pd.DataFrame(rows)
    pairs["week_start"] = [d - timedelta(days=d.weekday()) for d in pairs.predicted_for]
    return pairs


def calibration_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    pc = np.clip(p, CLIP, 1 - CLIP)
    x = np.log(pc / (1 - pc)).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-12, max_iter=1000)
    fit.fit(x, y)
    return float(fit.intercept_[0]), float(fit.coef_[0][0])


def bin_of(p: np.ndarray) -> np.ndarray:
    return np.minimum(np.floor(p * BINS).astype(int), BINS - 1) + 1


def expected_metrics(group: pd.DataFrame) -> dict[str, float | None]:
    y = group.outcome.to_numpy(dtype=int)
    p = group.probability.to_numpy(dtype=float)
    both = 0 < y.sum() < len(y)
    bins = bin_of(p)
    ece = sum(
        (bins == b).sum() / len(p) * abs(p[bins == b].mean() - y[bins == b].mean())
        for b in np.unique(bins)
    )
    intercept, slope = calibration_fit(y, p) if both else (None, None)
    return {
        "predictions": len(y),
        "positives": int(y.sum()),
        "mean_probability": p.mean(),
        "observed_rate": y.mean(),
        "log_loss": log_loss(y, np.clip(p, CLIP, 1 - CLIP), labels=[0, 1]),
        "brier_score": brier_score_loss(y, p) if both else float(np.mean((p - y) ** 2)),
        "auc": roc_auc_score(y, p) if both else None,
        "expected_calibration_error": ece,
        "calibration_intercept": intercept,
        "calibration_slope": slope,
    }


def assert_metrics_match(actual: pd.DataFrame, pairs: pd.DataFrame, keys: list[str]) -> int:
    expected = {
        k: expected_metrics(g) for k, g in pairs.assign(prediction_kind="readiness").groupby(keys)
    }
    got = {tuple(r[k] for k in keys): r for r in actual.to_dict("records")}
    assert set(got) == set(expected)
    fits = 0
    for key, want in expected.items():
        row = got[key]
        for column, value in want.items():
            if column.startswith("calibration_") and not row["calibration_converged"]:
                continue  # a small or separable group: the fit is flagged, not compared
            if value is None:
                assert row[column] is None or pd.isna(row[column]), (key, column)
            else:
                assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, column)
        fits += bool(row["calibration_converged"])
    return fits


# ----------------------------------------------------------------------------- tests


def test_batches_delivered_late_exams(built: Built):
    assert len(built.batch_sizes) >= 5
    late = built.world.exams.received_at - built.world.exams.taken_at > timedelta(days=1)
    assert late.sum() >= 20


def test_readiness_predictions_pair_each_exam_with_the_latest_earlier_score(built: Built):
    pairs = expected_pairs(built.world)
    got = built.incremental["fct_readiness_predictions"]
    assert len(pairs) > 150
    assert len(got) == len(pairs)
    want = pairs.set_index("prediction_id")
    for row in got.itertuples(index=False):
        exp = want.loc[row.exam_event_id]
        assert row.scored_at == exp.scored_at
        assert row.model_version == exp.model_version
        assert row.pass_probability == exp.probability
        assert row.passed == exp.outcome
        assert row.exam_kind == exp.exam_kind
        assert row.exam_date == exp.predicted_for
    # point in time: never a score from less than the lead before the exam
    assert (got.taken_at - got.scored_at >= LEAD).all()
    # exams with no score in the window have no row: the ledger grows with exams only
    assert len(got) < len(built.world.exams)


def test_prediction_ledger_holds_the_readiness_predictions(built: Built):
    ledger = built.incremental["prediction_ledger"]
    readiness = built.incremental["fct_readiness_predictions"]
    assert set(ledger.prediction_kind) == {"readiness"}
    assert ledger.topic_id.isna().all()
    merged = ledger.merge(readiness, left_on="prediction_id", right_on="exam_event_id")
    assert len(merged) == len(ledger) == len(readiness)
    assert (merged.probability == merged.pass_probability).all()
    assert (merged.outcome == merged.passed).all()
    assert (merged.predicted_for == merged.exam_date).all()
    assert (merged.exam_kind_x == merged.exam_kind_y).all()


def test_weekly_metrics_equal_scikit_learn(built: Built):
    pairs = expected_pairs(built.world)
    actual = built.incremental["fct_prediction_metrics_weekly"]
    fits = assert_metrics_match(actual, pairs, METRIC_KEYS["fct_prediction_metrics_weekly"])
    assert fits >= 8  # most weeks are fitted and compared
    weeks = actual.week_start.map(lambda d: f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}")
    assert (weeks == actual.iso_week).all()


def test_all_time_metrics_equal_scikit_learn(built: Built):
    pairs = expected_pairs(built.world)
    actual = built.incremental["fct_prediction_metrics"]
    assert assert_metrics_match(actual, pairs, METRIC_KEYS["fct_prediction_metrics"]) == 3
    # the generated outcomes are less extreme than the scores: the fit must see it
    assert (actual.calibration_slope < 0.95).all()


def logit_buckets(p: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Each probability's logit (clipped) and its bucket number, as fct_prediction_buckets."""
    pc = np.clip(p, CLIP, 1 - CLIP)
    x = np.log(pc / (1 - pc))
    return x, np.floor(x / width).astype(int)


def bucketed_fit(y: np.ndarray, x: np.ndarray, bucket: np.ndarray) -> tuple[float, float]:
    """The calibration fit over the buckets: each at its mean logit, weighted by its outcomes."""
    frame = pd.DataFrame({"x": x, "y": y, "bucket": bucket}).groupby("bucket")
    points = frame.agg(x=("x", "mean"), positives=("y", "sum"), n=("y", "size"))
    xs = np.concatenate([points.x, points.x]).reshape(-1, 1)
    ys = np.concatenate([np.ones(len(points)), np.zeros(len(points))])
    weights = np.concatenate([points.positives, points.n - points.positives])
    fit = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-12, max_iter=1000)
    fit.fit(xs[weights > 0], ys[weights > 0], sample_weight=weights[weights > 0])
    return float(fit.intercept_[0]), float(fit.coef_[0][0])


def test_all_time_metrics_tie_the_predictions_of_a_logit_bucket(built: Built):
    """Buckets 0.5 wide put several of the scores' distinct probabilities in one: the all-time
    AUC is then scikit-learn's on the bucket numbers (the predictions of a bucket tied) and the
    fit a weighted one over the buckets' mean logits, while the other metrics stay those of the
    predictions themselves."""
    width = 0.5
    select = ["--select", "fct_prediction_buckets", "fct_prediction_metrics"]
    try:
        run_dbt(
            [
                "run",
                *select,
                "--full-refresh",
                "--vars",
                json.dumps({"prediction_logit_bucket_width": width}),
            ],
            url=built.url,
            target_path=built.target,
        )
        actual = table_rows(built.url, "fct_prediction_metrics").set_index("model_version")
    finally:
        run_dbt(["run", *select, "--full-refresh"], url=built.url, target_path=built.target)
    moved = 0
    for version, group in expected_pairs(built.world).groupby("model_version"):
        y = group.outcome.to_numpy(dtype=int)
        p = group.probability.to_numpy(dtype=float)
        x, bucket = logit_buckets(p, width)
        row = actual.loc[version]
        assert row.auc == pytest.approx(roc_auc_score(y, bucket), rel=1e-9)
        moved += abs(row.auc - roc_auc_score(y, p)) > 1e-4
        assert row.calibration_converged
        intercept, slope = bucketed_fit(y, x, bucket)
        assert row.calibration_intercept == pytest.approx(intercept, rel=1e-9, abs=1e-9)
        assert row.calibration_slope == pytest.approx(slope, rel=1e-9, abs=1e-9)
        exact = expected_metrics(group)
        for column in ("predictions", "mean_probability", "log_loss", "brier_score"):
            assert row[column] == pytest.approx(exact[column], rel=1e-12), column
        assert row.expected_calibration_error == pytest.approx(exact["expected_calibration_error"])
    assert moved == len(VERSIONS)  # the ties moved every version's AUC: the test can tell


def test_reliability_table_equals_numpy(built: Built):
    pairs = expected_pairs(built.world)
    pairs["calibration_bin"] = bin_of(pairs.probability.to_numpy(dtype=float))
    actual = built.incremental["fct_prediction_reliability"]
    expected = pairs.groupby(["model_version", "calibration_bin"]).agg(
        predictions=("outcome", "size"),
        positives=("outcome", "sum"),
        mean_predicted=("probability", "mean"),
        observed_rate=("outcome", "mean"),
    )
    got = actual.set_index(["model_version", "calibration_bin"]).sort_index()
    assert list(got.index) == list(expected.index)
    assert (got.predictions == expected.predictions).all()
    assert (got.positives == expected.positives).all()
    assert np.allclose(got.mean_predicted, expected.mean_predicted, rtol=1e-12)
    assert np.allclose(got.observed_rate, expected.observed_rate, rtol=1e-12)
    assert np.allclose(got.bin_upper - got.bin_lower, 1 / BINS)


def test_a_run_without_new_data_changes_nothing(built: Built):
    for table in MODELS:
        pd.testing.assert_frame_equal(built.before_rerun[table], built.after_rerun[table])


def test_erasure_recomputes_the_metrics(built: Built):
    assert built.erased not in set(built.incremental["prediction_ledger"].user_id)
    assert built.erased in set(built.before_rerun["prediction_ledger"].user_id)
    # the erased learner's predictions left the counts of their weeks and versions
    before = built.before_rerun["fct_prediction_metrics"].predictions.sum()
    after = built.incremental["fct_prediction_metrics"].predictions.sum()
    erased_rows = (built.before_rerun["prediction_ledger"].user_id == built.erased).sum()
    assert erased_rows > 0 and after == before - erased_rows


def test_incremental_tables_equal_a_full_refresh(built: Built):
    for table in MODELS:
        assert len(built.incremental[table]) > 0, table
        pd.testing.assert_frame_equal(built.incremental[table], built.full_refresh[table])


def test_a_second_kind_is_one_more_input_entry(built: Built):
    """The recall kind joins by listing its model in prediction_ledger_inputs; here the readiness
    model stands in for it, under another kind and with its own column names."""
    entries = [
        {
            "kind": "readiness",
            "model": "fct_readiness_predictions",
            "columns": {
                "prediction_id": "exam_event_id",
                "predicted_for": "exam_date",
                "probability": "pass_probability",
                "outcome": "passed",
                "topic_id": None,
            },
        }
    ]
    entries.append({**entries[0], "kind": "recall", "columns": {**entries[0]["columns"]}})
    entries[1]["columns"]["exam_kind"] = None
    vars_ = json.dumps({"prediction_ledger_inputs": entries})
    select = ["--select", "prediction_ledger+"]
    try:
        run_dbt(
            ["build", *select, "--full-refresh", "--vars", vars_],
            url=built.url,
            target_path=built.target,
        )
        ledger = table_rows(built.url, "prediction_ledger")
        metrics = table_rows(built.url, "fct_prediction_metrics")
    finally:
        run_dbt(["build", *select, "--full-refresh"], url=built.url, target_path=built.target)
    kinds = ledger.groupby("prediction_kind").size()
    assert kinds["recall"] == kinds["readiness"] == len(built.full_refresh["prediction_ledger"])
    assert ledger[ledger.prediction_kind == "recall"].exam_kind.isna().all()
    by_kind = metrics.set_index(["prediction_kind", "model_version"])
    assert np.allclose(by_kind.loc["recall"].log_loss, by_kind.loc["readiness"].log_loss)


def fits_with(built: Built, *steps: tuple[int, int]) -> list[pd.DataFrame]:
    """The weekly and all-time calibration fits rebuilt with each (warm-start steps, Newton steps)
    in turn, then put back once."""
    select = ["--select", "fct_prediction_metrics_weekly", "fct_prediction_metrics"]
    columns = ["calibration_intercept", "calibration_slope", "calibration_converged"]
    fits = []
    try:
        for warm_start_steps, newton_steps in steps:
            step_vars = {
                "calibration_warm_start_steps": warm_start_steps,
                "calibration_newton_steps": newton_steps,
            }
            run_dbt(
                ["run", *select, "--full-refresh", "--vars", json.dumps(step_vars)],
                url=built.url,
                target_path=built.target,
            )
            tables = [table_rows(built.url, table)[columns] for table in select[1:]]
            fits.append(pd.concat(tables, ignore_index=True))
    finally:
        run_dbt(["run", *select, "--full-refresh"], url=built.url, target_path=built.target)
    return fits


def test_the_binned_warm_start_gives_the_plain_fit_in_two_steps(built: Built):
    """Two steps over the predictions from the binned fit land where eight from intercept 0 and
    slope 1 do, with the same groups converged; two from intercept 0 and slope 1 do not."""
    warm = pd.concat(
        [built.incremental[t] for t in ("fct_prediction_metrics_weekly", "fct_prediction_metrics")],
        ignore_index=True,
    )
    plain, cold_two = fits_with(built, (0, 8), (0, 2))
    assert (warm.calibration_converged == plain.calibration_converged).all()
    converged = warm.calibration_converged.to_numpy(dtype=bool)
    assert converged.sum() >= 10
    for column in ("calibration_intercept", "calibration_slope"):
        assert np.allclose(warm[column][converged], plain[column][converged], rtol=0, atol=1e-9)
    assert cold_two.calibration_converged.sum() < converged.sum()


def test_reporter_reads_the_prediction_marts(built: Built):
    with psycopg.connect(built.url) as conn:
        for table in MODELS:
            allowed = conn.execute(
                "select has_table_privilege('reporter', %s, 'select')", (f"marts.{table}",)
            ).fetchone()[0]
            assert allowed, table
        count = conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier("marts", "prediction_ledger"))
        ).fetchone()[0]
    assert count == len(built.full_refresh["prediction_ledger"])


# ----------------------------------------------------------------------------- calibration plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_calibration_plot_draws_each_model_version_from_the_reliability_mart(
    built: Built, tmp_path: Path
):
    path = tmp_path / "reliability.png"
    curves = draw_calibration_plot(built.url, path)
    # the latest version first (by the last day it predicted for)
    assert [c.version for c in curves] == list(reversed(VERSIONS))
    reliability = built.full_refresh["fct_prediction_reliability"]
    for curve in curves:
        bins = reliability[reliability.model_version == curve.version]
        assert curve.points == list(
            zip(bins.mean_predicted, bins.observed_rate, bins.predictions, strict=True)
        )
        assert curve.predictions == bins.predictions.sum()
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert len(draw_calibration_plot(built.url, path, max_versions=1)) == 1


def test_calibration_plot_without_predictions_says_so(tmp_path: Path):
    path = draw_reliability_diagram([], tmp_path / "empty.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def _studyin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDYIN_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "python_jobs.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
    )


def test_calibration_plot_command(built: Built, migrated_db: str, tmp_path: Path):
    out = tmp_path / "plot.png"
    done = _studyin(built.url, "calibration-plot", "--out", str(out), "--versions", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{out}: 2 model versions"
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    missing = _studyin(migrated_db, "calibration-plot", "--out", str(tmp_path / "no.png"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        "studyin calibration-plot: marts.fct_prediction_metrics does not exist:"
        " run dbt build first (`studyin run`)"
    )
