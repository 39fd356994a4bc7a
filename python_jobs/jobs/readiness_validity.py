"""Readiness validity on exams already taken: the project's readiness, the accuracy-only baseline
and (on simulated data) the oracle, as of chosen past days.

For as-of days D1 < D2 < ... each window's model is what a run on Di would have had: trained on the
exams taken on or before Di (or the heuristic, calibrated on those exams, below ``min_labels`` or
when it ranked the validation exams better);
it scores the exams of the next window (Di < exam day <= Di+1, the last window open-ended) with
their point-in-time features as of the day before each exam. The baseline is fitted on the same
earlier exams. The pooled held-out exams are then compared (``readiness_metrics.compare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from threadpoolctl import threadpool_limits

from python_jobs.jobs import readiness_metrics
from python_jobs.jobs.readiness import (
    ReadinessOptions,
    _day_before,
    _x,
    exam_features,
    heuristic_calibration,
    heuristic_probability,
    load_labels,
    train,
)

LAST_DAY = date(9999, 12, 31)


def _window_probabilities(
    rows: pd.DataFrame, test: pd.DataFrame, options: ReadinessOptions
) -> tuple[np.ndarray, str]:
    """The as-of model's probabilities on the test rows: trained on `rows` (exams up to the
    as-of day) when there are enough of them and the time split works, else the heuristic."""
    if rows["exam_id"].nunique() >= options.min_labels:
        try:
            model = train(rows, options)
        except ValueError:
            model = None
        if model is not None and not model.evaluation["heuristic"]["chosen"]:
            return model.classifier.predict_proba(_x(test, options))[:, 1], model.kind
    calibration = heuristic_calibration(_day_before(rows), options)
    return heuristic_probability(test, options, calibration), "heuristic"


def readiness_validity(
    conn: psycopg.Connection,
    as_of_days: Sequence[date],
    options: ReadinessOptions | None = None,
) -> dict[str, Any]:
    """AUC, Brier, Brier skill, log loss, calibration slope and intercept of the project's
    readiness, the accuracy-only baseline and the oracle on the exams after the first as-of day,
    over all and per exam kind, with the windows used (see the module docstring)."""
    options = options or ReadinessOptions(write=False)
    days = sorted(set(as_of_days))
    if not days:
        raise ValueError("readiness_validity needs at least one as-of day")
    with threadpool_limits(limits=options.threads):
        rows = exam_features(conn, load_labels(conn, options, LAST_DAY), options)
        if rows.empty:
            return {"n_test": 0, "windows": []}
        day_before = _day_before(rows)
        tests, p_project, p_base, windows = [], [], [], []
        for i, as_of in enumerate(days):
            end = days[i + 1] if i + 1 < len(days) else LAST_DAY
            test = day_before[(day_before["exam_day"] > as_of) & (day_before["exam_day"] <= end)]
            if test.empty:
                continue
            known = rows[rows["exam_day"] <= as_of]
            p, kind = _window_probabilities(known, test, options)
            base, base_fit = readiness_metrics.accuracy_only(test, _day_before(known))
            tests.append(test)
            p_project.append(p)
            p_base.append(np.full(len(test), np.nan) if base is None else base)
            windows.append(
                {"as_of": as_of.isoformat(), "n_test": len(test), "model": kind, "fit": base_fit}
            )
    if not tests:
        return {"n_test": 0, "windows": windows}
    evaluated = pd.concat(tests, ignore_index=True)
    baseline = np.concatenate(p_base)
    has_base = not np.isnan(baseline).any()
    result = readiness_metrics.compare(
        conn,
        evaluated,
        np.concatenate(p_project),
        None,
        baseline=(baseline, "earlier or in-sample per window") if has_base else (None, "none"),
    )
    result["windows"] = windows
    result["n_test"] = len(evaluated)
    return result
