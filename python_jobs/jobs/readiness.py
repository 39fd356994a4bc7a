"""Exam readiness: who is on track to pass, trained on past exam results.

Labels are ``app.exam_results`` (practice and board). For each labelled exam taken on local day X
the features are computed point-in-time as of day X - h for every horizon h in ``horizons`` (default
1, 7, 14, 28 days) from the dbt review log and daily stats (``readiness_features``): board-weighted
mastery (the mastery formula recomputed as of that day), coverage of the high-weight topics, recent
accuracy, retrieval strength, volume, consistency, length of the record, days to the exam (= h), the
exam kind and (option ``use_prior_exams``, on by default) the learner's earlier exam results, i.e.
those taken on or before day X - h: count, last and mean scaled score, days since the last. The h =
1 rows are the "as of the day before the exam" features and are the rows every reported metric is
computed on; the longer horizons teach the model what "N days before the exam" looks like, so that a
learner whose exam is weeks away is scored for *their* exam date, not for tomorrow. Practice and
board exams are both used (more labels); ``is_board`` tells them apart and learners are scored for a
board exam (``score_exam_kind``).

Model selection by time: exams are ordered by day; the latest ``test_fraction`` of them (whole
days) is held out; of the earlier ones the latest ``calibration_fraction`` is the validation and
calibration slice. Candidates (scaled logistic regression, histogram gradient boosting) are fit on
the earliest slice and compared by AUC on the validation slice; the winner is calibrated on that
slice (Platt sigmoid by default, or isotonic) and evaluated once on the held-out later exams: AUC,
Brier, a calibration table and plot, and the AUC of a baseline that ranks by overall accuracy alone.
For scoring, the same recipe is refit on all labelled exams (fit on the earlier part, calibrate on
the latest slice), so today's scores use the newest labels.

Predicted score and interval: a gradient-boosted regression of scaled_score fit like the classifier
(earlier slice), and a split-conformal 80% prediction interval: the prediction plus the 10th and
90th percentiles (``score_interval``) of its residuals on the later calibration slice.

top_factors: for each learner, the ``top_factors`` features whose replacement by the typical
(median, day-before rows) training value changes the learner's pass probability most, with value,
typical value and effect (probability difference; positive = this feature raises the probability).

With fewer than ``min_labels`` labelled exams (or a time split without both outcomes on each side),
or when the heuristic ranks the validation exams better than the best trained candidate (AUC; its
metrics on the same validation and held-out exams are in the evaluation under ``heuristic``, and
the rejected model's evaluation in params ``trained_evaluation``), the transparent heuristic is
used instead (model_version starts with ``heuristic-``, the score fields are null). It needs no
training: the feature ``expected_share`` estimates the share of an exam's questions the learner
answers correctly (board-weighted over leaf topics; a studied topic at
its first-attempt accuracy shrunk toward the learner's prior, an unstudied one at that prior: the
population's accuracy on the first day learners meet a topic, plus how far the learner's
first-attempt accuracy stands from the population's; or, with the feature option
``knowledge_source="knowledge_estimate"``, topic_mastery_current's estimate for the scored day), and

    p = Phi((share - cut) / sqrt(var(share) + heuristic_exam_sd^2))

where cut is the pass standard of the exam kind (``heuristic_cut_share_*``) and share the
precision-weighted mean of the in-app share (variance ``heuristic_estimate_sd``^2) and, when the
learner took an exam before, that exam's score as a share (cut of its kind + (score - pass_score) /
points_per_share) plus the expected growth until the exam (growth per day x days; variance exam_sd^2
+ (drift_sd x days)^2). Exams taken before the scored day (everyone's) calibrate it: the in-app
share's mean offset from their observed margins and its error variance, and the growth per day
between a learner's consecutive exams, each shrunk toward the defaults (offset 0, estimate_sd, no
growth) with ``heuristic_prior_exams`` pseudo-exams (a week each for the growth).
The heuristic's reported metrics score each labelled exam with the correction of strictly earlier
days only.

As-of scoring: ``as_of`` (CLI ``studyin readiness --as-of``) scores a past day with only the data up
to it: labels are exams on or before it, features and earlier exams use local days on or before it,
the heuristic's correction and a stored model are those of that day or earlier. Event time decides,
not arrival: an event that occurred before the day but arrived after it counts, and learners' exam
dates are today's. Metrics are reported beside the accuracy-only baseline and, on simulated data,
the oracle, over all and per exam kind (``readiness_metrics``, ``readiness_validity``).

Same-day reruns: ``scored_at`` is the scoring day at 00:00 UTC, not the wall clock, and a run
replaces every row of its scoring day (one transaction), so a learner has one score per day. The
model version is ``readiness-<kind>-<day>-<fingerprint of the training data and options>``: the
same data gives the same version and the same rows, so a rerun changes nothing downstream.

Training cadence: a trained model is stored in ``ml.model_runs`` with the day it was trained for
and a key of the options that shape it and the library versions. It is stored as data, never as a
pickle: a skops file loaded with an explicit list of trusted types (``model_store``); a stored model
in any other form stops the job with an error naming its version, and nothing in it is run. A run
less than ``retrain_every_days`` (default 7) after the stored model's day, under the same key,
scores today's learners with it: it reads no labels and computes features for today only, so the
nightly cost follows the number of learners, not the length of the history. Training reads every
labelled exam; it runs on the first night of each period, or every night with
``retrain_every_days=0`` (``studyin run --retrain`` trains once now).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import sklearn
from psycopg.types.json import Jsonb
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from python_jobs.jobs import model_store, readiness_metrics
from python_jobs.jobs.readiness_features import (
    FEATURE_COLUMNS,
    PRIOR_EXAM_COLUMNS,
    FeatureParams,
    MasteryParams,
    compute_features,
    load_taxonomy,
)
from python_jobs.jobs.report import (
    DBT_FIRST,
    JobError,
    RunReport,
    query_frame,
    require_relations,
)
from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse import db

log = logging.getLogger(__name__)

HEURISTIC_VERSION = "heuristic-v2"


@dataclass(frozen=True)
class ReadinessOptions:
    """Options of the exam-readiness job; every constant of the job is here with its default."""

    as_of: date | None = None  # scoring day; None = today (UTC)
    min_labels: int = 200  # fewer labelled exams than this: transparent heuristic
    heuristic_competes: bool = True  # the heuristic replaces a trained model that ranks worse
    active_days: int = 30  # learners with any event in the last N days are scored
    horizons: tuple[int, ...] = (1, 7, 14, 28)  # days before each exam that features are taken at
    exam_kinds: tuple[str, ...] = ("practice", "board")  # exam kinds used as labels
    score_exam_kind: str = "board"  # learners are scored for this kind of exam
    test_fraction: float = 0.25  # latest share of labelled exams (whole days) held out
    calibration_fraction: float = 0.25  # latest share of the rest: validation + calibration
    calibration_method: str = "sigmoid"  # sigmoid (Platt) or isotonic
    candidates: tuple[str, ...] = ("logistic", "hgb")
    random_state: int = 0
    use_prior_exams: bool = True  # earlier exam results (before the as-of day) are features
    threads: int = 1  # OpenMP threads for model fitting (more oversubscribes a shared 2-core box)
    # A run within this many days after the stored model of the same options was trained scores
    # with that model instead of training again (0: train every run; see the module docstring).
    retrain_every_days: int = 7
    logistic_c: float = 1.0
    hgb_learning_rate: float = 0.05
    hgb_max_iter: int = 200
    hgb_max_leaf_nodes: int = 15
    hgb_min_samples_leaf: int = 40
    hgb_l2: float = 1.0
    score_interval: tuple[float, float] = (0.10, 0.90)  # residual quantiles: an 80% interval
    score_range: tuple[float, float] = (1.0, 300.0)  # scaled-score scale: predictions clipped
    top_factors: int = 3  # factors kept per learner
    calibration_bins: int = 10
    # The heuristic (see the module docstring): the exam's pass standard as a share of fresh
    # questions answered correctly, per exam kind, and the scaled-score scale that turns an earlier
    # exam's score into a share (share = cut of its kind + (score - pass_score) / points_per_share)
    heuristic_cut_share_practice: float = 0.44
    heuristic_cut_share_board: float = 0.52
    pass_score: float = 196.0
    points_per_share: float = 400.0
    heuristic_exam_sd: float = 0.04  # exam measurement noise, in share: binomial + form to form
    heuristic_estimate_sd: float = 0.05  # error of the in-app expected share about the true one
    heuristic_exam_drift_sd: float = 0.004  # per day since an earlier exam: how stale it grows
    # Earlier exams of all learners (before the day scored) correct the in-app share's offset
    # and spread; with n of them the estimates are n / (n + this) data and the rest the defaults
    # above (offset 0, estimate_sd). 0 switches the correction off.
    heuristic_prior_exams: float = 10.0
    plot_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "target" / "ml")
    write: bool = True  # False: compute and report only
    mastery: MasteryParams = field(default_factory=MasteryParams)
    features: FeatureParams = field(default_factory=FeatureParams)


# --------------------------------------------------------------------------- data


LABELS_SQL = """
select
    e.event_id::text as exam_id,
    e.user_id::text as user_id,
    e.exam_kind,
    (e.taken_at at time zone u.timezone)::date as exam_day,
    e.scaled_score,
    e.passed
from app.exam_results as e
inner join app.users as u on u.id = e.user_id
where
    e.exam_kind = any(%(kinds)s)
    and (e.taken_at at time zone u.timezone)::date <= %(as_of)s
order by exam_day, exam_id
"""

# days_until_exam is counted in SQL: any exam_date the database holds gives an integer, where
# pandas' timestamps end in the year 2262 (a learner's exam date of 2300 failed the whole job)
ACTIVE_SQL = """
select u.id::text as user_id, u.exam_date - %(as_of)s::date as days_until_exam
from app.users as u
{probe}
order by u.id
"""
# A learner is active with one event in the window. The same window as UTC dates (since and until
# are UTC midnights) reaches the log's learner index, on (user_id, UTC date of occurred_at).
_ACTIVE_EVENT = """
    select 1 from app.study_events as e
    where e.user_id = u.id and e.occurred_at >= %(since)s and e.occurred_at < %(until)s
        and (e.occurred_at at time zone 'UTC')::date >= (%(since)s at time zone 'UTC')::date
        and (e.occurred_at at time zone 'UTC')::date < (%(until)s at time zone 'UTC')::date
"""
ACTIVE_PROBES = {
    # one index probe per learner, stopped at the first event: as an EXISTS, PostgreSQL hashed
    # every event of the window instead once the window held most of the log (13.8 s against
    # 3.9 s at 50,000 learners x 30 days)
    False: f"cross join lateral ({_ACTIVE_EVENT}    limit 1\n) as active_event",
    # Citus cannot plan a limit in a lateral over a distributed table; each shard runs the EXISTS
    True: f"where exists ({_ACTIVE_EVENT})",
}


def load_labels(conn: psycopg.Connection, options: ReadinessOptions, as_of: date) -> pd.DataFrame:
    labels = query_frame(conn, LABELS_SQL, {"kinds": list(options.exam_kinds), "as_of": as_of})
    labels["exam_day"] = pd.to_datetime(labels["exam_day"]).dt.date
    labels["passed"] = labels["passed"].astype(str).str.lower().isin(["t", "true"])
    return labels


def training_cutoffs(labels: pd.DataFrame, horizons: tuple[int, ...]) -> pd.DataFrame:
    """One cutoff per (exam, horizon): as of exam day - h, with days_to_exam = h."""
    rows = []
    for h in sorted(set(horizons)):
        part = labels[
            ["exam_id", "user_id", "exam_kind", "exam_day", "scaled_score", "passed"]
        ].copy()
        part["as_of"] = [d - timedelta(days=h) for d in part["exam_day"]]
        part["days_to_exam"] = h
        rows.append(part)
    cutoffs = pd.concat(rows, ignore_index=True)
    cutoffs["is_board"] = (cutoffs["exam_kind"] == "board").astype(int)
    return cutoffs


def exam_features(
    conn: psycopg.Connection, labels: pd.DataFrame, options: ReadinessOptions
) -> pd.DataFrame:
    """Labelled rows: one per (exam, horizon) with its point-in-time features."""
    rows, _ = labelled_and_scoring_features(conn, labels, _no_learners(), options)
    return rows


def active_learners(
    conn: psycopg.Connection, options: ReadinessOptions, as_of: date
) -> pd.DataFrame:
    """Scoring cutoffs: every learner with an event in the last ``active_days`` days, as of today,
    for an exam of kind ``score_exam_kind`` on their exam date (see days_to_exam below)."""
    since = datetime.combine(
        as_of - timedelta(days=options.active_days - 1), datetime.min.time(), UTC
    )
    until = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), UTC)
    sql = ACTIVE_SQL.format(probe=ACTIVE_PROBES[db.is_citus(conn)])
    active = query_frame(conn, sql, {"since": since, "until": until, "as_of": as_of})
    if active.empty:
        return _no_learners()
    horizon_max = max(options.horizons)
    days = [None if pd.isna(d) else int(d) for d in active["days_until_exam"]]
    # the learner's exam date, seen from today: today or tomorrow -> 1 day; later -> capped at
    # the longest horizon; none, or already past (the next one is unknown) -> the longest horizon
    active["days_to_exam"] = [
        horizon_max if d is None or d < 0 else min(max(d, 1), horizon_max) for d in days
    ]
    active["as_of"] = as_of
    active["is_board"] = int(options.score_exam_kind == "board")
    return active[list(CUTOFF_COLUMNS)]


CUTOFF_COLUMNS = ("user_id", "as_of", "days_to_exam", "is_board")


def _no_learners() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CUTOFF_COLUMNS})


def labelled_and_scoring_features(
    conn: psycopg.Connection, labels: pd.DataFrame, active: pd.DataFrame, options: ReadinessOptions
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of the labelled exams (one row per exam and horizon) and of today's learners, in
    one pass over the history (each learner's events are read once)."""
    train = training_cutoffs(labels, options.horizons) if not labels.empty else None
    parts = [active[list(CUTOFF_COLUMNS)]]
    if train is not None:
        parts.insert(0, train[list(CUTOFF_COLUMNS)])
    cutoffs = pd.concat(parts, ignore_index=True)
    features = compute_features(conn, cutoffs, options.mastery, options.features)
    n_train = 0 if train is None else len(train)
    rows = pd.DataFrame()
    if train is not None:
        rows = pd.concat(
            [train.drop(columns=["days_to_exam", "is_board"]), features.iloc[:n_train]], axis=1
        )
    scoring = pd.concat(
        [
            active[["user_id", "as_of"]].reset_index(drop=True),
            features.iloc[n_train:].reset_index(drop=True),
        ],
        axis=1,
    )
    return rows, scoring


def scoring_frame(conn: psycopg.Connection, options: ReadinessOptions, as_of: date) -> pd.DataFrame:
    """Today's learners with their features (no labelled exams)."""
    _, scoring = labelled_and_scoring_features(
        conn, labels=pd.DataFrame(), active=active_learners(conn, options, as_of), options=options
    )
    return scoring


# --------------------------------------------------------------------------- split and models


@dataclass
class TimeSplit:
    fit: pd.DataFrame
    calibrate: pd.DataFrame
    test: pd.DataFrame
    calibrate_from: date
    test_from: date


def _day_quantile(days: pd.Series, fraction: float) -> date:
    """The first day of the latest `fraction` of rows (whole days stay on one side)."""
    ordered = np.sort(np.array(days.tolist(), dtype="datetime64[D]"))
    position = min(len(ordered) - 1, int(math.floor(len(ordered) * (1 - fraction))))
    return pd.Timestamp(ordered[position]).date()


def time_split(rows: pd.DataFrame, options: ReadinessOptions) -> TimeSplit:
    exams = rows.drop_duplicates("exam_id")
    test_from = _day_quantile(exams["exam_day"], options.test_fraction)
    earlier = exams[exams["exam_day"] < test_from]
    if earlier.empty:
        raise ValueError("all labelled exams fall on the last test day: nothing to train on")
    calibrate_from = _day_quantile(earlier["exam_day"], options.calibration_fraction)
    return TimeSplit(
        fit=rows[rows["exam_day"] < calibrate_from],
        calibrate=rows[(rows["exam_day"] >= calibrate_from) & (rows["exam_day"] < test_from)],
        test=rows[rows["exam_day"] >= test_from],
        calibrate_from=calibrate_from,
        test_from=test_from,
    )


def _hgb_params(options: ReadinessOptions) -> dict[str, Any]:
    """Gradient-boosting settings shared by the pass classifier and the score regressor."""
    return {
        "learning_rate": options.hgb_learning_rate,
        "max_iter": options.hgb_max_iter,
        "max_leaf_nodes": options.hgb_max_leaf_nodes,
        "min_samples_leaf": options.hgb_min_samples_leaf,
        "l2_regularization": options.hgb_l2,
        "early_stopping": False,
        "random_state": options.random_state,
    }


def _candidate(name: str, options: ReadinessOptions):
    if name == "logistic":
        return make_pipeline(
            StandardScaler(), LogisticRegression(C=options.logistic_c, max_iter=2000)
        )
    if name == "hgb":
        return HistGradientBoostingClassifier(**_hgb_params(options))
    raise ValueError(f"unknown candidate model {name!r} (use 'logistic' or 'hgb')")


def model_columns(options: ReadinessOptions) -> tuple[str, ...]:
    """The features the model sees: all of them, or without earlier exam results."""
    return FEATURE_COLUMNS + (PRIOR_EXAM_COLUMNS if options.use_prior_exams else ())


def _x(rows: pd.DataFrame, options: ReadinessOptions) -> np.ndarray:
    return rows[list(model_columns(options))].to_numpy(dtype=float)


def _xy(rows: pd.DataFrame, options: ReadinessOptions) -> tuple[np.ndarray, np.ndarray]:
    return _x(rows, options), rows["passed"].to_numpy(dtype=int)


def _day_before(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["days_to_exam"] == min(_horizons(rows))]


def _horizons(rows: pd.DataFrame) -> list[int]:
    return sorted(rows["days_to_exam"].unique().tolist())


def _both_classes(rows: pd.DataFrame) -> bool:
    return rows["passed"].nunique() == 2


def _calibrated(model, rows: pd.DataFrame, options: ReadinessOptions):
    x, y = _xy(rows, options)
    calibrator = CalibratedClassifierCV(FrozenEstimator(model), method=options.calibration_method)
    return calibrator.fit(x, y)


def fit_recipe(
    name: str, fit_rows: pd.DataFrame, calib_rows: pd.DataFrame, options: ReadinessOptions
):
    """Fit candidate `name` on the earlier rows and calibrate it on the later ones."""
    x, y = _xy(fit_rows, options)
    model = clone(_candidate(name, options)).fit(x, y)
    return model, _calibrated(model, calib_rows, options)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int) -> list[dict[str, Any]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        table.append(
            {
                "bin_low": round(float(edges[b]), 4),
                "bin_high": round(float(edges[b + 1]), 4),
                "n": n,
                "mean_predicted": round(float(p[mask].mean()), 4) if n else None,
                "observed_rate": round(float(y[mask].mean()), 4) if n else None,
            }
        )
    return table


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "n": int(len(y)),
    }


@dataclass
class TrainedModel:
    kind: str  # logistic | hgb
    classifier: Any  # calibrated, for scoring
    score_model: ScoreModel
    reference: np.ndarray  # typical (median) feature values for top_factors
    evaluation: dict[str, Any]
    calibration: list[dict[str, Any]]
    test_y: np.ndarray
    test_p: np.ndarray
    n_train: int
    n_test: int


@dataclass
class ScoreModel:
    """Scaled-score regression with a split-conformal interval: the interval is the prediction
    plus the low/high quantiles of the residuals on a later (calibration) slice."""

    regressor: Any
    low_offset: float
    high_offset: float

    def predict(self, x: np.ndarray, score_range: tuple[float, float]) -> np.ndarray:
        """Columns: interval low, prediction, interval high (clipped to the score scale)."""
        mean = self.regressor.predict(x)
        bounds = np.column_stack([mean + self.low_offset, mean, mean + self.high_offset])
        return np.clip(bounds, *score_range)


def fit_score_model(
    fit_rows: pd.DataFrame, calib_rows: pd.DataFrame, options: ReadinessOptions
) -> ScoreModel:
    regressor = HistGradientBoostingRegressor(**_hgb_params(options)).fit(
        _x(fit_rows, options), fit_rows["scaled_score"].to_numpy(dtype=float)
    )
    calib = _day_before(calib_rows)
    residuals = calib["scaled_score"].to_numpy(dtype=float) - regressor.predict(_x(calib, options))
    low_q, high_q = options.score_interval
    return ScoreModel(
        regressor=regressor,
        low_offset=min(0.0, float(np.quantile(residuals, low_q))),
        high_offset=max(0.0, float(np.quantile(residuals, high_q))),
    )


def heuristic_candidate(
    rows: pd.DataFrame, split: TimeSplit, best_auc: float, options: ReadinessOptions
) -> dict[str, Any]:
    """The heuristic on the same validation and held-out exams (each calibrated on the exams of
    earlier days only); ``chosen`` when it ranks the validation exams better than the best trained
    candidate (AUC, which does not depend on the calibration fitted on that slice)."""
    day_before = _day_before(rows)
    p = pd.Series(heuristic_point_in_time(day_before, options), index=day_before.index)
    validation, test = _day_before(split.calibrate), _day_before(split.test)
    val = _metrics(validation["passed"].to_numpy(dtype=int), p.loc[validation.index].to_numpy())
    return {
        "validation": val,
        "test": _metrics(test["passed"].to_numpy(dtype=int), p.loc[test.index].to_numpy()),
        "chosen": bool(
            options.heuristic_competes and val["auc"] is not None and val["auc"] > best_auc
        ),
    }


def train(rows: pd.DataFrame, options: ReadinessOptions) -> TrainedModel:
    """Model selection and evaluation by time, then the scoring refit (see module docstring)."""
    split = time_split(rows, options)
    for name, part in (("fit", split.fit), ("validation", split.calibrate), ("test", split.test)):
        if part.empty or not _both_classes(_day_before(part)):
            raise ValueError(f"the {name} slice of the time split lacks passes or fails")

    x_test, y_test = _xy(_day_before(split.test), options)
    candidates = _fit_candidates(split, options, x_test, y_test)
    chosen = max(candidates, key=lambda n: (candidates[n]["validation"]["auc"], n == "logistic"))
    test_p = candidates[chosen]["test_p"]
    calibrated_chosen = candidates[chosen]["calibrated"]
    heuristic = heuristic_candidate(rows, split, candidates[chosen]["validation"]["auc"], options)
    # all horizons, for the record
    by_horizon = {}
    for h in _horizons(split.test):
        xh, yh = _xy(split.test[split.test["days_to_exam"] == h], options)
        by_horizon[str(int(h))] = _metrics(yh, calibrated_chosen.predict_proba(xh)[:, 1])
    eval_score, score_eval = _evaluate_score_model(split, options)
    classifier, score_model, prod_calibrate_from = _scoring_refit(rows, chosen, options)
    evaluation = {
        "chosen": chosen,
        "candidates": {
            n: {"validation": c["validation"], "test": c["test"]} for n, c in candidates.items()
        },
        "baseline_accuracy_only": _accuracy_only_baseline(split, options, x_test, y_test),
        "heuristic": heuristic,
        "test_by_horizon": by_horizon,
        "predicted_score": score_eval,
        "split": {
            "calibrate_from": split.calibrate_from.isoformat(),
            "test_from": split.test_from.isoformat(),
            "scoring_calibrate_from": prod_calibrate_from.isoformat(),
        },
        "auc": candidates[chosen]["test"]["auc"],
        "brier": candidates[chosen]["test"]["brier"],
    }
    return TrainedModel(
        kind=chosen,
        classifier=calibrated_chosen if classifier is None else classifier,
        score_model=eval_score if score_model is None else score_model,
        reference=np.median(_x(_day_before(rows), options), axis=0),
        evaluation=evaluation,
        calibration=calibration_table(y_test, test_p, options.calibration_bins),
        test_y=y_test,
        test_p=test_p,
        n_train=int(pd.concat([split.fit, split.calibrate])["exam_id"].nunique()),
        n_test=int(split.test["exam_id"].nunique()),
    )


def _fit_candidates(
    split: TimeSplit, options: ReadinessOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Each candidate recipe fitted on the fit slice: its validation metrics (uncalibrated, on
    the validation slice), its calibrated model and that model's test probabilities and metrics."""
    x_val, y_val = _xy(_day_before(split.calibrate), options)
    candidates: dict[str, dict[str, Any]] = {}
    for name in options.candidates:
        model, calibrated = fit_recipe(name, split.fit, split.calibrate, options)
        val = _metrics(y_val, model.predict_proba(x_val)[:, 1])
        test_p = calibrated.predict_proba(x_test)[:, 1]
        candidates[name] = {
            "validation": val,
            "test": _metrics(y_test, test_p),
            "calibrated": calibrated,
            "test_p": test_p,
        }
        log.info(
            "readiness: %s validation AUC %.3f, held-out AUC %.3f Brier %.3f",
            name,
            val["auc"],
            candidates[name]["test"]["auc"],
            candidates[name]["test"]["brier"],
        )
    return candidates


def _accuracy_only_baseline(
    split: TimeSplit, options: ReadinessOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, float]:
    """Overall accuracy alone: its AUC ranks by the raw value; its Brier score comes from a
    one-feature logistic fit on the fit and validation slices."""
    base_col = model_columns(options).index("accuracy_overall")
    xb, yb = _xy(_day_before(pd.concat([split.fit, split.calibrate])), options)
    baseline = LogisticRegression().fit(xb[:, [base_col]], yb)
    baseline_p = baseline.predict_proba(x_test[:, [base_col]])[:, 1]
    return {
        "auc": float(roc_auc_score(y_test, x_test[:, base_col])),
        "brier": float(brier_score_loss(y_test, baseline_p)),
    }


def _evaluate_score_model(
    split: TimeSplit, options: ReadinessOptions
) -> tuple[ScoreModel, dict[str, float]]:
    """The predicted score fitted on the fit and validation slices, and its error and interval
    coverage on the held-out exams."""
    eval_score = fit_score_model(split.fit, split.calibrate, options)
    test_rows = _day_before(split.test)
    bounds = eval_score.predict(_x(test_rows, options), options.score_range)
    actual = test_rows["scaled_score"].to_numpy(dtype=float)
    return eval_score, {
        "mae": float(np.mean(np.abs(bounds[:, 1] - actual))),
        "interval_coverage": float(np.mean((actual >= bounds[:, 0]) & (actual <= bounds[:, 2]))),
        "interval_mean_width": float(np.mean(bounds[:, 2] - bounds[:, 0])),
    }


def _scoring_refit(
    rows: pd.DataFrame, chosen: str, options: ReadinessOptions
) -> tuple[Any | None, ScoreModel | None, date]:
    """The chosen recipe and the score model refit on all labelled exams (the later ones
    calibrate), with the day calibration starts; (None, None, day) when a slice of that split
    lacks passes or fails, and the evaluation's models score instead."""
    exams = rows.drop_duplicates("exam_id")
    calibrate_from = _day_quantile(exams["exam_day"], options.calibration_fraction)
    fit = rows[rows["exam_day"] < calibrate_from]
    calibrate = rows[rows["exam_day"] >= calibrate_from]
    if not (_both_classes(fit) and _both_classes(calibrate)):
        return None, None, calibrate_from
    _, classifier = fit_recipe(chosen, fit, calibrate, options)
    return classifier, fit_score_model(fit, calibrate, options), calibrate_from


# --------------------------------------------------------------------------- scoring


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(z, dtype=float) / math.sqrt(2.0)))


def _cut_share(is_board: np.ndarray, options: ReadinessOptions) -> np.ndarray:
    return np.where(
        is_board > 0.5, options.heuristic_cut_share_board, options.heuristic_cut_share_practice
    )


@dataclass
class HeuristicParts:
    """The heuristic's pieces per learner (all in share-correct units)."""

    in_app: np.ndarray  # expected share from the in-app record
    exam_share: np.ndarray  # the last earlier exam's score as a share (nan: none)
    exam_var: np.ndarray  # its variance (measurement + staleness; inf: none)
    share: np.ndarray  # the combined estimate
    share_var: np.ndarray  # its variance
    cut: np.ndarray  # the pass standard of the exam scored for
    probability: np.ndarray


@dataclass(frozen=True)
class HeuristicCalibration:
    """The in-app share's offset and error variance, from earlier exams (see heuristic_parts)."""

    offset: float = 0.0
    estimate_var: float | None = None  # None: heuristic_estimate_sd ** 2
    growth_per_day: float = 0.0  # mean gain in exam share per day between a learner's exams
    n_exams: int = 0
    n_repeat_exams: int = 0  # of which taken after an earlier exam of the same learner


def exam_margin(rows: pd.DataFrame, options: ReadinessOptions) -> np.ndarray:
    """An exam's score above the pass score, in share units."""
    return (
        rows["scaled_score"].to_numpy(dtype=float) - options.pass_score
    ) / options.points_per_share


def heuristic_calibration(rows: pd.DataFrame, options: ReadinessOptions) -> HeuristicCalibration:
    """Offset and error variance of the in-app margin (expected share - cut) about the observed
    one, over the given earlier exams (day-before rows), shrunk toward the defaults with
    heuristic_prior_exams pseudo-exams. The variance excludes the exam's own noise."""
    k0 = options.heuristic_prior_exams
    if rows.empty or k0 <= 0:
        return HeuristicCalibration()
    residual = exam_margin(rows, options) - (
        rows["expected_share"].to_numpy(dtype=float)
        - _cut_share(rows["is_board"].to_numpy(dtype=float), options)
    )
    n = len(residual)
    offset = float(residual.sum() / (n + k0))
    default_var = options.heuristic_estimate_sd**2 + options.heuristic_exam_sd**2
    total_var = (float(((residual - offset) ** 2).sum()) + k0 * default_var) / (n + k0)
    estimate_var = max(total_var - options.heuristic_exam_sd**2, 1e-4)
    # growth: observed share minus the learner's previous exam's share, per day between them
    repeat = rows["prior_exams"].to_numpy(dtype=float) > 0
    observed = exam_margin(rows, options) + _cut_share(rows["is_board"].to_numpy(float), options)
    gained = observed[repeat] - _last_exam_share(rows[repeat], options)
    days = _days_since_last_exam(rows[repeat])
    growth = float(gained.sum() / (days.sum() + k0 * GROWTH_PRIOR_DAYS))
    return HeuristicCalibration(offset, estimate_var, growth, n, int(repeat.sum()))


GROWTH_PRIOR_DAYS = 7.0  # each pseudo-exam of the growth estimate: a week at no growth


def _last_exam_share(features: pd.DataFrame, options: ReadinessOptions) -> np.ndarray:
    """The learner's last earlier exam as a share: cut of its kind + its margin."""
    last_cut = _cut_share(features["last_exam_is_board"].to_numpy(dtype=float), options)
    score = features["last_exam_score"].to_numpy(dtype=float)
    return last_cut + (score - options.pass_score) / options.points_per_share


def _days_since_last_exam(features: pd.DataFrame) -> np.ndarray:
    """Days from the last earlier exam to the exam scored for (as-of day + days_to_exam)."""
    return features["days_since_last_exam"].to_numpy(dtype=float) + features[
        "days_to_exam"
    ].to_numpy(dtype=float)


def heuristic_point_in_time(rows: pd.DataFrame, options: ReadinessOptions) -> np.ndarray:
    """Heuristic probabilities of labelled day-before rows, each calibrated only on the exams of
    strictly earlier days (what a run on the day before would have known)."""
    p = np.zeros(len(rows))
    days = rows["exam_day"].to_numpy()
    for day in sorted(set(days)):
        here = days == day
        calibration = heuristic_calibration(rows[days < day], options)
        p[here] = heuristic_parts(rows[here], options, calibration=calibration).probability
    return p


def heuristic_parts(
    features: pd.DataFrame,
    options: ReadinessOptions,
    is_board: np.ndarray | None = None,
    calibration: HeuristicCalibration = HeuristicCalibration(),
) -> HeuristicParts:
    """P(pass) = Phi((share - cut) / sqrt(var(share) + exam_sd^2)), share = the precision-weighted
    mean of the in-app expected share plus the calibration offset (variance estimate_sd^2, or the
    calibration's) and, when the learner has taken an exam before, that exam's score as a share
    (variance exam_sd^2 + (drift_sd * days since)^2)."""
    in_app = features["expected_share"].to_numpy(dtype=float) + calibration.offset
    estimate_var = (
        options.heuristic_estimate_sd**2
        if calibration.estimate_var is None
        else calibration.estimate_var
    )
    board = features["is_board"].to_numpy(dtype=float) if is_board is None else is_board
    prior = features["prior_exams"].to_numpy(dtype=float) > 0
    days = _days_since_last_exam(features)
    exam_share = np.where(
        prior, _last_exam_share(features, options) + calibration.growth_per_day * days, np.nan
    )
    drift_var = options.heuristic_exam_drift_sd**2
    exam_var = np.where(prior, options.heuristic_exam_sd**2 + drift_var * days**2, np.inf)
    precision = 1.0 / estimate_var + 1.0 / exam_var
    share = (in_app / estimate_var + np.nan_to_num(exam_share) / exam_var) / precision
    cut = _cut_share(board, options)
    spread = np.sqrt(1.0 / precision + options.heuristic_exam_sd**2)
    probability = _normal_cdf((share - cut) / spread)
    return HeuristicParts(in_app, exam_share, exam_var, share, 1.0 / precision, cut, probability)


def heuristic_probability(
    features: pd.DataFrame,
    options: ReadinessOptions,
    calibration: HeuristicCalibration = HeuristicCalibration(),
) -> np.ndarray:
    return heuristic_parts(features, options, calibration=calibration).probability


def heuristic_scores(
    scoring: pd.DataFrame, options: ReadinessOptions, calibration: HeuristicCalibration
) -> pd.DataFrame:
    """The heuristic's rows for ml.exam_readiness_scores (no predicted score)."""
    empty = not len(scoring)
    return pd.DataFrame(
        {
            "user_id": scoring["user_id"].to_numpy(),
            "pass_probability": np.array([])
            if empty
            else heuristic_probability(scoring, options, calibration),
            "predicted_score": None,
            "interval_low": None,
            "interval_high": None,
            "top_factors": [] if empty else heuristic_factors(scoring, options, calibration),
        }
    )


def heuristic_factors(
    features: pd.DataFrame,
    options: ReadinessOptions,
    calibration: HeuristicCalibration = HeuristicCalibration(),
) -> list[list[dict]]:
    """Per learner, what the heuristic's probability rests on: the in-app expected share against
    the pass standard, the last earlier exam, and coverage; effect = the probability minus the
    probability without that piece of evidence (the in-app share at the pass standard; no earlier
    exam; the unstudied topics at the level of the studied ones)."""

    def prob(frame: pd.DataFrame) -> np.ndarray:
        return heuristic_parts(frame, options, calibration=calibration).probability

    parts = heuristic_parts(features, options, calibration=calibration)
    p = parts.probability
    # the in-app share (before the offset) at the pass standard
    at_cut = prob(features.assign(expected_share=parts.cut - calibration.offset))
    no_exam = prob(features.assign(prior_exams=0.0))
    raw = features["expected_share"].to_numpy(dtype=float)
    studied = features["studied_weight_share"].to_numpy(dtype=float)
    prior = features["unstudied_prior"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        studied_level = np.where(
            studied > 0, (raw - (1 - studied) * prior) / np.maximum(studied, 1e-9), prior
        )
    covered = prob(features.assign(expected_share=studied_level))
    coverage = features["coverage_high_weight"].to_numpy(dtype=float)
    result = []
    for i in range(len(features)):
        factors = [
            _factor("expected_share", raw[i], p[i] - at_cut[i], parts.cut[i] - calibration.offset),
            _factor("coverage_high_weight", coverage[i], p[i] - covered[i], 1.0),
        ]
        if not math.isnan(parts.exam_share[i]):
            factors.append(_factor("last_exam_share", parts.exam_share[i], p[i] - no_exam[i], None))
        factors.sort(key=lambda f: -abs(f["effect"]))
        result.append(factors[: options.top_factors])
    return result


def _factor(name: str, value: float, effect: float, typical: float | None) -> dict[str, Any]:
    return {
        "feature": name,
        "value": round(float(value), 4),
        "typical": None if typical is None else round(float(typical), 4),
        "effect": round(float(effect), 4),
    }


def model_factors(
    model: TrainedModel, x: np.ndarray, p: np.ndarray, options: ReadinessOptions
) -> list[list[dict]]:
    """Per learner: the features whose move to the typical value changes p the most."""
    n, k = x.shape
    effects = np.zeros((n, k))
    columns = model_columns(options)
    for j, name in enumerate(columns):
        if name == "is_board":
            continue
        moved = x.copy()
        moved[:, j] = model.reference[j]
        effects[:, j] = p - model.classifier.predict_proba(moved)[:, 1]
    order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, : options.top_factors]
    factors = []
    for i in range(n):
        factors.append(
            [
                {
                    "feature": columns[j],
                    "value": round(float(x[i, j]), 4),
                    "typical": round(float(model.reference[j]), 4),
                    "effect": round(float(effects[i, j]), 4),
                }
                for j in order[i]
                if effects[i, j] != 0
            ]
        )
    return factors


# --------------------------------------------------------------------------- outputs


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:10]


def _options_record(options: ReadinessOptions) -> dict[str, Any]:
    record = asdict(options)
    record.pop("plot_dir")
    record.pop("write")
    record.pop("as_of")
    return record


def save_calibration_plot(path: Path, y: np.ndarray, p: np.ndarray, title: str, bins: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    table = calibration_table(y, p, bins)
    used = [row for row in table if row["n"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax1.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax1.plot(
        [r["mean_predicted"] for r in used],
        [r["observed_rate"] for r in used],
        marker="o",
        label="held-out exams",
    )
    ax1.set_xlabel("predicted pass probability")
    ax1.set_ylabel("observed pass rate")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.legend(loc="upper left")
    ax2.hist(p, bins=np.linspace(0, 1, bins + 1), color="tab:blue", alpha=0.8)
    ax2.set_xlabel("predicted pass probability")
    ax2.set_ylabel("exams")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write(
    conn: psycopg.Connection,
    run: dict[str, Any] | None,
    version: str,
    scored_at: datetime,
    scores: pd.DataFrame,
) -> int:
    """model_runs upsert (none when scoring with a stored model), then this day's scores
    replaced; one transaction."""
    if not conn.autocommit:
        conn.commit()  # end the reads' implicit transaction: the write is its own transaction
    with conn.transaction():
        if run is not None:
            _upsert_model_run(conn, run)
        deleted = conn.execute(
            "delete from ml.exam_readiness_scores where scored_at = %s", (scored_at,)
        ).rowcount
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy ml.exam_readiness_scores (user_id, scored_at, model_version,"
                " pass_probability, predicted_score, interval_low, interval_high, top_factors)"
                " from stdin"
            ) as copy,
        ):
            for row in scores.itertuples(index=False):
                copy.write_row(
                    (
                        row.user_id,
                        scored_at,
                        version,
                        row.pass_probability,
                        row.predicted_score,
                        row.interval_low,
                        row.interval_high,
                        json.dumps(row.top_factors),
                    )
                )
    return deleted


def _upsert_model_run(conn: psycopg.Connection, run: dict[str, Any]) -> None:
    conn.execute(
        """
        insert into ml.model_runs (model_version, model_kind, data_window_start,
            data_window_end, n_train, n_test, auc, brier, calibration, params, plot_path,
            trained_as_of, model_key, model, model_format)
        values (%(model_version)s, %(model_kind)s, %(data_window_start)s,
            %(data_window_end)s, %(n_train)s, %(n_test)s, %(auc)s, %(brier)s,
            %(calibration)s, %(params)s, %(plot_path)s,
            %(trained_as_of)s, %(model_key)s, %(model)s, %(model_format)s)
        on conflict (model_version) do update set
            model_kind = excluded.model_kind,
            data_window_start = excluded.data_window_start,
            data_window_end = excluded.data_window_end,
            n_train = excluded.n_train, n_test = excluded.n_test,
            auc = excluded.auc, brier = excluded.brier,
            calibration = excluded.calibration, params = excluded.params,
            plot_path = excluded.plot_path, trained_as_of = excluded.trained_as_of,
            model_key = excluded.model_key, model = excluded.model,
            model_format = excluded.model_format
        """,
        {**run, "calibration": Jsonb(run["calibration"]), "params": Jsonb(run["params"])},
    )


def _shaping_options(options: ReadinessOptions) -> dict[str, Any]:
    """The options that shape a model: all but the speed and memory knobs, the cadence and whether
    the heuristic may replace it."""
    shaping = _options_record(options)
    for knob in ("threads", "retrain_every_days", "heuristic_competes"):
        shaping.pop(knob)
    shaping["features"] = {
        k: v for k, v in shaping["features"].items() if k not in ("chunk_users", "chunk_cutoffs")
    }
    return shaping


def _model_key(options: ReadinessOptions) -> str:
    """A stored model is reused only under the same shaping options and library versions."""
    versions = {"python": platform.python_version(), "sklearn": sklearn.__version__}
    return _fingerprint(_shaping_options(options), versions)


def _stored_model(
    conn: psycopg.Connection, key: str, as_of: date, retrain_every_days: int
) -> tuple[str, TrainedModel] | None:
    """The latest model trained under `key` within `retrain_every_days` before `as_of` (never
    one trained for a later day: it has seen labels after as_of). A stored model that is not in
    the trusted format stops the job (JobError naming its version); nothing in it is run."""
    if retrain_every_days <= 0:
        return None
    row = conn.execute(
        """
        select model_version, model, model_format from ml.model_runs
        where model_key = %s and model is not null
            and trained_as_of <= %s and trained_as_of > %s
        order by trained_as_of desc, trained_at desc
        limit 1
        """,
        (key, as_of, as_of - timedelta(days=retrain_every_days)),
    ).fetchone()
    if row is None:
        return None
    version, data, model_format = row
    try:
        fields = model_store.load_model(bytes(data), model_format)
    except model_store.UntrustedModel as err:
        raise JobError(
            f"stored model {version} in ml.model_runs was refused, nothing in it was run: {err}."
            " Delete that row (or set its model to null) and run again: a new model is trained"
        ) from err
    return version, _model_from_fields(fields)


def _model_fields(model: TrainedModel) -> dict[str, Any]:
    """A trained model as the plain fields model_store keeps (see model_store.MODEL_FIELDS)."""
    return {
        "kind": model.kind,
        "classifier": model.classifier,
        "regressor": model.score_model.regressor,
        "low_offset": model.score_model.low_offset,
        "high_offset": model.score_model.high_offset,
        "reference": model.reference,
        "evaluation": model.evaluation,
        "calibration": model.calibration,
        "test_y": model.test_y,
        "test_p": model.test_p,
        "n_train": model.n_train,
        "n_test": model.n_test,
    }


def _model_from_fields(fields: dict[str, Any]) -> TrainedModel:
    score_model = ScoreModel(
        regressor=fields["regressor"],
        low_offset=float(fields["low_offset"]),
        high_offset=float(fields["high_offset"]),
    )
    plain = {k: v for k, v in fields.items() if k not in ("regressor", "low_offset", "high_offset")}
    return TrainedModel(score_model=score_model, **plain)


def model_scores(
    model: TrainedModel, scoring: pd.DataFrame, options: ReadinessOptions
) -> pd.DataFrame:
    """Pass probability, predicted score with its interval, and top factors per learner."""
    x = _x(scoring, options)
    if len(scoring):
        probabilities = model.classifier.predict_proba(x)[:, 1]
        bounds = model.score_model.predict(x, options.score_range)
        factors = model_factors(model, x, probabilities, options)
    else:
        probabilities = np.array([])
        bounds = np.zeros((0, 3))
        factors = []
    return pd.DataFrame(
        {
            "user_id": scoring["user_id"].to_numpy(),
            "pass_probability": np.clip(probabilities, 0.0, 1.0),
            "predicted_score": np.round(bounds[:, 1], 1),
            "interval_low": np.round(bounds[:, 0], 1),
            "interval_high": np.round(bounds[:, 2], 1),
            "top_factors": factors,
        }
    )


def _score_with_stored(
    conn: psycopg.Connection,
    options: ReadinessOptions,
    as_of: date,
    stored: tuple[str, TrainedModel],
    started: float,
) -> RunReport:
    """Score today's learners with a stored model: no labels read, nothing trained."""
    version, model = stored
    scores = model_scores(model, scoring_frame(conn, options, as_of), options)
    details = {
        "stored_model": True,
        "retrain_every_days": options.retrain_every_days,
        "auc": model.evaluation["auc"],
        "brier": model.evaluation["brier"],
    }
    log.info("readiness: scoring with the stored model %s", version)
    return _write_and_report(conn, options, None, version, as_of, scores, started, details)


def _write_and_report(
    conn: psycopg.Connection,
    options: ReadinessOptions,
    run: dict[str, Any] | None,
    version: str,
    as_of: date,
    scores: pd.DataFrame,
    started: float,
    details: dict[str, Any],
) -> RunReport:
    """Write the model run (if new) and the day's scores, unless options.write is off."""
    scored_at = datetime.combine(as_of, datetime.min.time(), UTC)
    deleted = _write(conn, run, version, scored_at, scores) if options.write else 0
    report = RunReport(
        job="exam_readiness",
        as_of=as_of.isoformat(),
        rows_written=len(scores) if options.write else 0,
        rows_deleted=deleted,
        seconds=time.monotonic() - started,
        model_version=version,
        details=details,
    )
    log.info("readiness: %s", report.summary())
    return report


def _none_if_nan(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run_exam_readiness(
    conn: psycopg.Connection, options: ReadinessOptions | None = None
) -> RunReport:
    """Train (or fall back to the heuristic), score every active learner, write ml tables."""
    options = options or ReadinessOptions()
    db.one_connection_per_node(conn)  # it writes ml tables Citus keeps as reference tables
    with threadpool_limits(limits=options.threads):
        return _run(conn, options)


def _run(conn: psycopg.Connection, options: ReadinessOptions) -> RunReport:
    started = time.monotonic()
    _check_inputs(conn, options)
    as_of = options.as_of or datetime.now(UTC).date()
    key = _model_key(options)
    stored = _stored_model(conn, key, as_of, options.retrain_every_days)
    if stored is not None:
        return _score_with_stored(conn, options, as_of, stored, started)

    labels = load_labels(conn, options, as_of)
    log.info("readiness: %d labelled exams up to %s", len(labels), as_of)
    rows, scoring = labelled_and_scoring_features(
        conn, labels, active_learners(conn, options, as_of), options
    )
    log.info("readiness: %d active learners to score", len(scoring))
    model, rejected, fallback_reason = _choose_model(labels, rows, options)
    # the version depends on the data and on what shapes the model, not on speed/memory knobs
    fingerprint = _fingerprint(rows, _shaping_options(options))
    params: dict[str, Any] = {
        "options": _options_record(options),
        "features": list(model_columns(options)),
        "n_labels": int(len(labels)),
    }
    if rejected is not None:
        params["trained_evaluation"] = rejected
    if model is None:
        log.warning("readiness: heuristic fallback (%s)", fallback_reason)
        params["fallback_reason"] = fallback_reason
        version = f"{HEURISTIC_VERSION}-{as_of.isoformat()}-{fingerprint}"
        run, scores, (plot_y, plot_p) = _heuristic_run(conn, rows, scoring, options, params)
    else:
        version = f"readiness-{model.kind}-{as_of.isoformat()}-{fingerprint}"
        run, scores, (plot_y, plot_p) = _trained_run(conn, model, rows, scoring, options, params)
    run["model_version"] = version
    plot_path = _calibration_plot(options, version, run, plot_y, plot_p)
    window = (
        (labels["exam_day"].min(), labels["exam_day"].max()) if not labels.empty else (None, None)
    )
    run.update(
        {
            "trained_as_of": as_of,
            "model_key": key,
            "data_window_start": window[0],
            "data_window_end": window[1],
            "params": params,
            "plot_path": plot_path,
            "auc": _none_if_nan(run["auc"]),
            "brier": _none_if_nan(run["brier"]),
        }
    )
    details = {
        "n_labels": int(len(labels)),
        "auc": run["auc"],
        "brier": run["brier"],
        "plot_path": plot_path,
        "fallback_reason": fallback_reason,
        "baseline_auc": (model.evaluation["baseline_accuracy_only"]["auc"] if model else None),
        "comparison": params.get("comparison"),
        "n_train": run["n_train"],
        "n_test": run["n_test"],
    }
    return _write_and_report(conn, options, run, version, as_of, scores, started, details)


def _check_inputs(conn: psycopg.Connection, options: ReadinessOptions) -> None:
    """What a run needs before it reads anything: the tables, valid options, the taxonomy."""
    require_relations(
        conn,
        {
            "app.exam_results": "run `studyin migrate` first",
            "ml.model_runs": "run `studyin migrate` first (the ml schema is missing)",
            "ml.exam_readiness_scores": "run `studyin migrate` first (the ml schema is missing)",
            "intermediate.int_topic_reviews_scheduled": DBT_FIRST,
            "marts.daily_user_stats": DBT_FIRST,
        },
    )
    if options.calibration_method not in ("sigmoid", "isotonic"):
        raise JobError(
            f"calibration_method must be sigmoid or isotonic, not {options.calibration_method!r}"
        )
    try:
        load_taxonomy(conn, options.mastery)
    except ValueError as err:
        raise JobError(str(err)) from err


def _choose_model(
    labels: pd.DataFrame, rows: pd.DataFrame, options: ReadinessOptions
) -> tuple[TrainedModel | None, dict[str, Any] | None, str | None]:
    """(the trained model, or None for the heuristic; the evaluation of a trained model the
    heuristic beat; why the heuristic scores)."""
    if len(labels) < options.min_labels:
        return None, None, f"{len(labels)} labelled exams < min_labels {options.min_labels}"
    try:
        model = train(rows, options)
    except ValueError as err:
        return None, None, f"time split unusable: {err}"
    if not model.evaluation["heuristic"]["chosen"]:
        return model, None, None
    reason = (
        "the heuristic ranked the validation exams better than the trained "
        f"{model.kind} (AUC {model.evaluation['heuristic']['validation']['auc']:.3f} vs "
        f"{model.evaluation['candidates'][model.kind]['validation']['auc']:.3f})"
    )
    return None, model.evaluation, reason


def _heuristic_run(
    conn: psycopg.Connection,
    rows: pd.DataFrame,
    scoring: pd.DataFrame,
    options: ReadinessOptions,
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The heuristic's model run (its calibration added to ``params``), scores and held-out
    (outcomes, probabilities): every labelled exam is out of sample for the heuristic, each
    scored with the calibration of the exams of earlier days only."""
    day_before = _day_before(rows) if not rows.empty else rows
    y = day_before["passed"].to_numpy(dtype=int) if not rows.empty else np.array([], int)
    p = heuristic_point_in_time(day_before, options) if not rows.empty else np.array([])
    metrics = _metrics(y, p)
    calibration = heuristic_calibration(day_before, options)
    params["heuristic_calibration"] = asdict(calibration)
    if len(y):
        params["comparison"] = readiness_metrics.compare(conn, day_before, p, None)
    run = {
        "model_kind": "heuristic",
        "n_train": 0,
        "n_test": int(len(y)),
        "auc": metrics["auc"],
        "brier": metrics["brier"],
        "calibration": calibration_table(y, p, options.calibration_bins),
        "model": None,
        "model_format": None,
    }
    return run, heuristic_scores(scoring, options, calibration), (y, p)


def _trained_run(
    conn: psycopg.Connection,
    model: TrainedModel,
    rows: pd.DataFrame,
    scoring: pd.DataFrame,
    options: ReadinessOptions,
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The trained model's run (its evaluation added to ``params``), scores and test exams."""
    params["evaluation"] = model.evaluation
    split = time_split(rows, options)
    params["comparison"] = readiness_metrics.compare(
        conn,
        _day_before(split.test),
        model.test_p,
        _day_before(pd.concat([split.fit, split.calibrate])),
    )
    run = {
        "model_kind": model.kind,
        "n_train": model.n_train,
        "n_test": model.n_test,
        "auc": model.evaluation["auc"],
        "brier": model.evaluation["brier"],
        "calibration": model.calibration,
        "model": model_store.dump_model(_model_fields(model)),
        "model_format": model_store.FORMAT,
    }
    return run, model_scores(model, scoring, options), (model.test_y, model.test_p)


def _calibration_plot(
    options: ReadinessOptions, version: str, run: dict[str, Any], y: np.ndarray, p: np.ndarray
) -> str | None:
    """The held-out calibration plot's path, when the run writes and has held-out exams."""
    if not options.write or not len(y):
        return None
    auc = run["auc"] if run["auc"] is None else round(run["auc"], 3)
    title = f"{version}: n={len(y)} held-out exams, AUC {auc}, Brier {round(run['brier'], 3)}"
    path = Path(options.plot_dir) / f"{version}.png"
    return str(save_calibration_plot(path, y, p, title, options.calibration_bins))


def replace_options(options: ReadinessOptions, **changes: Any) -> ReadinessOptions:
    """Convenience for callers (tests, bench): a copy with some options changed."""
    return replace(options, **changes)
