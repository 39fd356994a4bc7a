"""The recall model: P(the next first attempt on a fresh question of a leaf topic is correct).

The features are computed by dbt (macros/recall.sql) before every review in
``intermediate.int_topic_reviews_featured``, together with the outcome (the review day's first
answer to a question never seen before). This job fits

    P = floor + (1 - floor) * logistic(intercept + sum(coefficient * feature) + topic offset)

by maximum likelihood (L-BFGS, a small L2 penalty on the coefficients and a larger one on the topic
offsets, so a topic with few answers stays near the average), comparing candidate feature sets on a
split by time (the newest ``test_share`` of review days held out) by log loss. The best candidate
is refitted on every review and stored as numbers in ``ml.recall_models`` and
``ml.recall_topic_offsets``; dbt evaluates the version in force in SQL. The held-out metrics of
every candidate and of a constant (the training rate) are stored with it.

The nightly run calls :func:`run_recall`, which refits only when the newest fitted version is
``refit_days`` old or more (a weekly fit by default), or when asked to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb
from scipy.optimize import minimize
from scipy.special import expit

from python_jobs.jobs.probability_metrics import probability_metrics
from python_jobs.jobs.report import DBT_FIRST, RunReport, query_frame, require_relations
from python_jobs.warehouse import db

log = logging.getLogger("studyin.recall")

# The feature columns of int_topic_reviews_featured, in the order of recall_feature_names() in
# macros/recall.sql (tests/test_recall.py checks that they agree).
FEATURES = (
    "learner_logit", "learner_log_attempts", "recent_logit", "parent_logit", "pair_logit",
    "pair_all_logit", "last_logit", "pair_log_attempts", "log_reviews", "log_elapsed",
    "elapsed_per_review", "is_first_review",
)  # fmt: skip
# Candidate models compared on the time split: (name, feature subset, with topic offsets)
CANDIDATES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("pair", ("pair_logit", "pair_log_attempts", "log_elapsed", "is_first_review"), False),
    ("learner_pair", FEATURES, False),
    ("learner_pair_topic", FEATURES, True),
)
FEATURED = "intermediate.int_topic_reviews_featured"


@dataclass(frozen=True)
class RecallOptions:
    as_of: date | None = None  # fit on reviews up to this day; None = every review
    refit_days: int = 7  # refit when the newest fitted version is this many days old
    force: bool = False  # fit now whatever the age of the newest version
    guess_floor: float = 0.2  # five options: a right answer by guessing alone
    min_reviews: int = 2_000  # fewer reviews with an outcome: keep the model in force
    test_share: float = 0.2  # newest share of review days held out to choose the candidate
    max_rows: int = 2_000_000  # fit on at most the newest this many reviews
    l2_coefficients: float = 1.0  # penalty on the coefficients (a Gaussian prior, sd 1)
    l2_topics: float = 4.0  # penalty on the topic offsets (sd 0.5)


@dataclass
class FittedRecall:
    """One fitted candidate: intercept, coefficient per feature, offset per topic id."""

    name: str
    guess_floor: float
    intercept: float
    coefficients: dict[str, float]
    topic_offsets: dict[int, float] = field(default_factory=dict)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        z = np.full(len(rows), self.intercept)
        for name, value in self.coefficients.items():
            z += value * rows[name].to_numpy(dtype=float)
        if self.topic_offsets:
            z += rows["topic_id"].map(self.topic_offsets).fillna(0.0).to_numpy(dtype=float)
        z = np.clip(z, -30.0, 30.0)
        return self.guess_floor + (1.0 - self.guess_floor) * expit(z)


# ----------------------------------------------------------------------------- fitting
def _negative_log_likelihood(
    params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    topics: np.ndarray | None,
    n_topics: int,
    floor: float,
    penalties: tuple[float, float],
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of the floored logistic plus the L2 penalties, and its gradient.

    params = [intercept, coefficients..., topic offsets...]."""
    k = x.shape[1]
    z = params[0] + x @ params[1 : k + 1]
    if topics is not None:
        z = z + params[k + 1 :][topics]
    s = expit(np.clip(z, -30.0, 30.0))
    p = np.clip(floor + (1.0 - floor) * s, 1e-12, 1 - 1e-12)
    n = len(y)
    loss = -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)) / n
    dz = -(y / p - (1 - y) / (1 - p)) * (1.0 - floor) * s * (1.0 - s) / n
    grad = np.empty_like(params)
    grad[0] = dz.sum()
    grad[1 : k + 1] = x.T @ dz
    coef_penalty, topic_penalty = penalties
    loss += coef_penalty * np.sum(params[1 : k + 1] ** 2) / (2 * n)
    grad[1 : k + 1] += coef_penalty * params[1 : k + 1] / n
    if topics is not None:
        offsets = params[k + 1 :]
        grad[k + 1 :] = np.bincount(topics, weights=dz, minlength=n_topics)
        loss += topic_penalty * np.sum(offsets**2) / (2 * n)
        grad[k + 1 :] += topic_penalty * offsets / n
    return loss, grad


def fit_candidate(
    rows: pd.DataFrame,
    name: str,
    features: tuple[str, ...],
    with_topics: bool,
    options: RecallOptions,
) -> FittedRecall:
    """Fit one candidate by maximum likelihood on rows (feature columns, topic_id, outcome)."""
    x = rows[list(features)].to_numpy(dtype=float)
    y = rows["outcome_correct"].to_numpy(dtype=float)
    topic_ids = np.sort(rows["topic_id"].unique()) if with_topics else np.array([], dtype=int)
    topics = np.searchsorted(topic_ids, rows["topic_id"].to_numpy()) if with_topics else None
    start = np.zeros(1 + len(features) + len(topic_ids))
    result = minimize(
        _negative_log_likelihood,
        start,
        args=(x, y, topics, len(topic_ids), options.guess_floor,
              (options.l2_coefficients, options.l2_topics)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 500},
    )  # fmt: skip
    params = result.x
    k = len(features)
    return FittedRecall(
        name=name,
        guess_floor=options.guess_floor,
        intercept=float(params[0]),
        coefficients={f: float(c) for f, c in zip(features, params[1 : k + 1], strict=True)},
        topic_offsets={int(t): float(o) for t, o in zip(topic_ids, params[k + 1 :], strict=True)},
    )


def time_split(rows: pd.DataFrame, test_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Older reviews to fit, the newest ``test_share`` of review days to test."""
    days = np.sort(rows["review_date"].unique())
    cut = days[min(len(days) - 1, int(len(days) * (1 - test_share)))]
    return rows[rows["review_date"] < cut], rows[rows["review_date"] >= cut]


def compare_candidates(
    rows: pd.DataFrame, options: RecallOptions
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Fit every candidate on the older reviews and score it on the newest; the best by log loss,
    and the metrics of each (with the constant training rate as a baseline)."""
    train, test = time_split(rows, options.test_share)
    y = test["outcome_correct"].to_numpy(dtype=float)
    rate = float(train["outcome_correct"].mean())
    metrics: dict[str, dict[str, Any]] = {"constant": probability_metrics(y, np.full(len(y), rate))}
    for name, features, with_topics in CANDIDATES:
        fitted = fit_candidate(train, name, features, with_topics, options)
        metrics[name] = probability_metrics(y, fitted.predict(test))
    best = min((c[0] for c in CANDIDATES), key=lambda name: metrics[name]["log_loss"])
    return best, metrics


# ----------------------------------------------------------------------------- storage
READ_SQL = f"""
select topic_id, review_date, outcome_correct::int as outcome_correct, {", ".join(FEATURES)}
from {FEATURED}
where outcome_correct is not null and (%(until)s::date is null or review_date <= %(until)s::date)
order by review_date desc
limit %(limit)s
"""


def load_reviews(conn: psycopg.Connection, until: date | None, limit: int) -> pd.DataFrame:
    rows = query_frame(conn, READ_SQL, {"until": until, "limit": limit})
    rows["review_date"] = pd.to_datetime(rows["review_date"]).dt.date
    return rows


def model_version(fitted: FittedRecall, trained_until: date) -> str:
    digest = hashlib.sha256(
        json.dumps(
            [fitted.intercept, fitted.coefficients, sorted(fitted.topic_offsets.items())]
        ).encode()
    ).hexdigest()[:10]
    return f"recall-{fitted.name}-{trained_until:%Y%m%d}-{digest}"


def store(
    conn: psycopg.Connection,
    fitted: FittedRecall,
    trained_until: date,
    training_rows: int,
    metrics: dict[str, Any],
) -> str:
    """Insert the version and its topic offsets (a same version again changes nothing)."""
    version = model_version(fitted, trained_until)
    coefficients = {"intercept": fitted.intercept, **fitted.coefficients}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "insert into ml.recall_models (model_version, model_kind, trained_until, guess_floor,"
            " coefficients, training_rows, metrics) values (%s, 'fitted', %s, %s, %s, %s, %s)"
            " on conflict (model_version) do nothing",
            (version, trained_until, fitted.guess_floor, Jsonb(coefficients), training_rows,
             Jsonb(metrics)),
        )  # fmt: skip
        cur.executemany(
            "insert into ml.recall_topic_offsets (model_version, topic_id, offset_logit)"
            " values (%s, %s, %s) on conflict do nothing",
            [(version, topic, offset) for topic, offset in fitted.topic_offsets.items()],
        )
    return version


def newest_fit(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute(
        "select max(trained_at) from ml.recall_models where model_kind = 'fitted'"
    ).fetchone()
    return row[0] if row else None


# ----------------------------------------------------------------------------- the job
def run_recall(conn: psycopg.Connection, options: RecallOptions | None = None) -> RunReport:
    """Fit and store a new recall model version when one is due (see the module docstring)."""
    options = options or RecallOptions()
    started = time.perf_counter()
    as_of = options.as_of or datetime.now(UTC).date()
    report = RunReport(job="recall", as_of=as_of.isoformat())
    db.one_connection_per_node(conn)  # it writes ml tables Citus keeps as reference tables
    require_relations(conn, {FEATURED: DBT_FIRST})
    newest = newest_fit(conn)
    if (
        not options.force
        and newest is not None
        and datetime.now(UTC) - newest < timedelta(days=options.refit_days)
    ):
        report.details["skipped"] = (
            f"newest fit is from {newest:%Y-%m-%d}, refit every {options.refit_days} days"
        )
        return _finish(report, started)
    rows = load_reviews(conn, options.as_of, options.max_rows)
    if len(rows) < options.min_reviews:
        report.details["skipped"] = (
            f"{len(rows)} reviews with an outcome, fewer than {options.min_reviews}:"
            " the model in force stays"
        )
        return _finish(report, started)
    best, metrics = compare_candidates(rows, options)
    name, features, with_topics = next(c for c in CANDIDATES if c[0] == best)
    fitted = fit_candidate(rows, name, features, with_topics, options)
    trained_until = max(rows["review_date"])
    report.model_version = store(
        conn, fitted, trained_until, len(rows), {"kept": best, "held_out": metrics}
    )
    conn.commit()
    report.rows_written = 1
    report.details.update(
        {"kept": best, "held_out_log_loss": round(metrics[best]["log_loss"], 4),
         "constant_log_loss": round(metrics["constant"]["log_loss"], 4), "reviews": len(rows)}
    )  # fmt: skip
    return _finish(report, started)


def _finish(report: RunReport, started: float) -> RunReport:
    report.seconds = time.perf_counter() - started
    log.info("%s %s", report.summary(), report.details)
    return report
