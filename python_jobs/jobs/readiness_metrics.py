"""Readiness metrics beside their yardsticks: the accuracy-only baseline and, on simulated data, the
oracle.

Every readiness evaluation (the job's held-out exams, ``readiness_validity``) reports, for the
project's probabilities and for two references on the same exams:

- ``accuracy_only``: a logistic regression of the pass on the learner's overall accuracy alone,
  fitted on earlier exams (``fit: earlier``) or, when there are none with both outcomes, on the
  evaluated exams themselves (``fit: in-sample``, which flatters the baseline);
- ``oracle`` (only when the simulator's ``sim.exams`` is present): a logistic regression of the pass
  on the latent truth of each exam (``sim.exams.true_share`` when that column exists, else
  ``weighted_knowledge``) and the exam kind, fitted in-sample: a ceiling, not a competitor.

Metrics: n, base rate, AUC, Brier, Brier skill (1 - Brier / Brier of always predicting the evaluated
exams' base rate), log loss, and the calibration slope and intercept (logistic regression of the
outcome on logit(p): 1 and 0 when calibrated). Each set is given over all exams and per exam kind.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from python_jobs.jobs.probability_metrics import probability_metrics
from python_jobs.jobs.report import query_frame

LOGISTIC_C = (
    100.0  # the references' logistic fits: light regularisation (separable data stays finite)
)
EXAM_KINDS = ("practice", "board")


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def prediction_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """AUC, Brier, Brier skill vs the base rate, log loss, calibration slope and intercept."""
    if len(y) == 0:
        return {"n": 0}
    m = probability_metrics(np.asarray(y, dtype=int), np.asarray(p, dtype=float))
    base = m["observed_rate"]
    reference = base * (1 - base)
    return {
        "n": m["n"],
        "base_rate": _round(base),
        "mean_p": _round(m["mean_predicted"]),
        "auc": _round(m["auc"]),
        "brier": _round(m["brier"]),
        "brier_skill": _round(1 - m["brier"] / reference) if reference > 0 else None,
        "log_loss": _round(m["log_loss"]),
        "calibration_slope": _round(m["calibration_slope"]),
        "calibration_intercept": _round(m["calibration_intercept"]),
    }


def _logistic(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
    """P(pass) on x_eval from a (lightly regularised, standardised) logistic regression fitted
    on (x_fit, y_fit)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=1000))
    return model.fit(x_fit, y_fit).predict_proba(x_eval)[:, 1]


def accuracy_only(
    evaluated: pd.DataFrame, earlier: pd.DataFrame | None
) -> tuple[np.ndarray | None, str]:
    """The accuracy-only baseline's probabilities on the evaluated rows, and how it was fitted."""
    y = evaluated["passed"].to_numpy(dtype=int)
    x = evaluated[["accuracy_overall"]].to_numpy(dtype=float)
    if earlier is not None and earlier["passed"].nunique() == 2:
        x_fit = earlier[["accuracy_overall"]].to_numpy(dtype=float)
        return _logistic(x_fit, earlier["passed"].to_numpy(dtype=int), x), "earlier"
    if len(np.unique(y)) < 2:
        return None, "none"
    return _logistic(x, y, x), "in-sample"


ORACLE_SQL = """
select event_id::text as exam_id, {column}::float8 as oracle
from sim.exams
where event_id = any(%(ids)s::uuid[])
"""


def oracle_column(conn: psycopg.Connection) -> str | None:
    """true_share when the simulator records it, else weighted_knowledge; None: no sim.exams."""
    columns = {
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'sim' and table_name = 'exams'"
        ).fetchall()
    }
    for column in ("true_share", "weighted_knowledge"):
        if column in columns:
            return column
    return None


def oracle(conn: psycopg.Connection, evaluated: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """The oracle's in-sample probabilities on the evaluated exams (None without sim.exams)."""
    column = oracle_column(conn)
    y = evaluated["passed"].to_numpy(dtype=int)
    if column is None or len(np.unique(y)) < 2:
        return None, "none"
    truth = query_frame(
        conn, ORACLE_SQL.format(column=column), {"ids": evaluated["exam_id"].tolist()}
    )
    share = evaluated["exam_id"].map(dict(zip(truth["exam_id"], truth["oracle"], strict=True)))
    if share.isna().any():
        return None, "none"
    x = np.column_stack([share.to_numpy(dtype=float), evaluated["is_board"].to_numpy(dtype=float)])
    return _logistic(x, y, x), column


def compare(
    conn: psycopg.Connection,
    evaluated: pd.DataFrame,
    p_project: np.ndarray,
    earlier: pd.DataFrame | None,
    baseline: tuple[np.ndarray | None, str] | None = None,
) -> dict[str, Any]:
    """Project, accuracy-only and oracle metrics on the evaluated day-before rows (columns
    exam_id, exam_kind, is_board, passed, accuracy_overall), over all and per exam kind. The
    baseline is fitted on `earlier` unless its probabilities are given (``baseline``)."""
    p_base, base_fit = baseline if baseline is not None else accuracy_only(evaluated, earlier)
    p_oracle, oracle_source = oracle(conn, evaluated)
    y = evaluated["passed"].to_numpy(dtype=int)
    kinds = evaluated["exam_kind"].to_numpy()

    def table(mask: np.ndarray) -> dict[str, Any]:
        out = {"project": prediction_metrics(y[mask], np.asarray(p_project)[mask])}
        if p_base is not None:
            out["accuracy_only"] = prediction_metrics(y[mask], p_base[mask])
        if p_oracle is not None:
            out["oracle"] = prediction_metrics(y[mask], p_oracle[mask])
        return out

    result = table(np.ones(len(y), dtype=bool))
    result["by_kind"] = {k: table(kinds == k) for k in EXAM_KINDS if (kinds == k).any()}
    result["accuracy_only_fit"] = base_fit
    result["oracle_source"] = oracle_source
    return result
