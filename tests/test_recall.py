"""The recall model: its fit recovers known parameters, the SQL that evaluates a stored version
gives the probabilities the Python model gives, the ledger never scores a review with a version
that saw it, and the weekly refit is skipped when a recent version exists.

The database tests use one small simulation (60 learners x 24 days) delivered through the tracker,
with the models the recall job reads built by dbt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from scipy.special import expit

from python_jobs.jobs import recall
from python_jobs.jobs.recall import FittedRecall, RecallOptions, fit_candidate, run_recall
from python_jobs.jobs.report import query_frame
from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse.dbt import run_dbt

USERS, DAYS, SEED = 60, 24, 77
END = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SPLIT = (END - timedelta(days=6)).date()


def test_python_features_are_the_macros_features() -> None:
    macro = (PROJECT_ROOT / "macros" / "recall.sql").read_text()
    body = re.search(r"macro recall_feature_names\(\) -%}\s*(\S+)\s*{%- endmacro", macro)
    assert body is not None
    assert tuple(body.group(1).split(",")) == recall.FEATURES


def test_fit_recovers_the_parameters_of_a_floored_logistic() -> None:
    rng = np.random.default_rng(5)
    n = 40_000
    rows = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    rows["topic_id"] = rng.integers(1, 5, size=n)
    offsets = {1: -0.6, 2: 0.0, 3: 0.3, 4: 0.6}
    z = -0.4 + 1.5 * rows["a"] - 0.8 * rows["b"] + rows["topic_id"].map(offsets)
    rows["outcome_correct"] = rng.random(n) < 0.2 + 0.8 * expit(z)
    options = RecallOptions(l2_coefficients=0.0, l2_topics=0.0)
    fitted = fit_candidate(rows, "test", ("a", "b"), True, options)
    assert fitted.coefficients["a"] == pytest.approx(1.5, abs=0.12)
    assert fitted.coefficients["b"] == pytest.approx(-0.8, abs=0.1)
    # offsets and intercept are identified up to a shared constant
    shifted = {t: fitted.intercept + o for t, o in fitted.topic_offsets.items()}
    for topic, offset in offsets.items():
        assert shifted[topic] == pytest.approx(-0.4 + offset, abs=0.15), topic
    probabilities = fitted.predict(rows)
    assert probabilities.min() >= 0.2
    # a model without the floor fits the same data worse: the floor is what the data has
    unfloored = fit_candidate(rows, "test", ("a", "b"), True, RecallOptions(guess_floor=0.0))
    assert _log_loss(rows, fitted) < _log_loss(rows, unfloored)


def _log_loss(rows: pd.DataFrame, fitted: FittedRecall) -> float:
    p = np.clip(fitted.predict(rows), 1e-9, 1 - 1e-9)
    y = rows["outcome_correct"].to_numpy(dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.fixture(scope="module")
def built(database_factory: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from python_jobs.simulation.simulator import simulate

    url = database_factory("recall")
    with psycopg.connect(url) as conn:
        simulate(conn, users=USERS, days=DAYS, seed=SEED, end=END, progress=False)
    target = tmp_path_factory.mktemp("dbt_recall")
    run_dbt(["run", "--select", "+int_recall_predictions_scored"], url=url, target_path=target)
    return url, target


def _stored(conn: psycopg.Connection, version: str) -> FittedRecall:
    floor, coefficients = conn.execute(
        "select guess_floor, coefficients from ml.recall_models where model_version = %s",
        (version,),
    ).fetchone()
    offsets = dict(
        conn.execute(
            "select topic_id, offset_logit from ml.recall_topic_offsets where model_version = %s",
            (version,),
        ).fetchall()
    )
    intercept = coefficients.pop("intercept")
    return FittedRecall("stored", floor, intercept, coefficients, offsets)


def test_ledger_scores_later_reviews_with_the_fitted_version_as_python_does(
    built: tuple[str, Path],
) -> None:
    url, target = built
    with psycopg.connect(url) as conn:
        report = run_recall(conn, RecallOptions(as_of=SPLIT, force=True, min_reviews=500))
        version = report.model_version
        assert version is not None and report.details["kept"] in {c[0] for c in recall.CANDIDATES}
        metrics = conn.execute(
            "select metrics from ml.recall_models where model_version = %s", (version,)
        ).fetchone()[0]
        held_out = metrics["held_out"]
        kept = metrics["kept"]
        assert held_out[kept]["log_loss"] == min(
            held_out[name]["log_loss"] for name, _, _ in recall.CANDIDATES
        )
        assert held_out[kept]["log_loss"] < held_out["constant"]["log_loss"]
    run_dbt(["run", "--select", "int_recall_predictions_scored", "--full-refresh"],
            url=url, target_path=target)  # fmt: skip
    with psycopg.connect(url) as conn:
        ledger = query_frame(
            conn,
            "select l.review_date, l.model_version, l.recall_probability, f.* "
            "from intermediate.int_recall_predictions_scored as l "
            "join intermediate.int_topic_reviews_featured as f "
            "using (user_id, topic_id, review_date)",
        )
        fitted = _stored(conn, version)
    ledger["review_date"] = pd.to_datetime(ledger["review_date"]).dt.date
    after = ledger[ledger["review_date"] > SPLIT]
    before = ledger[ledger["review_date"] <= SPLIT]
    assert len(after) > 200 and len(before) > 200
    assert set(after["model_version"]) == {version}
    # never scored by a model that saw the review
    assert set(before["model_version"]) == {"recall-prior-v1"}
    np.testing.assert_allclose(after["recall_probability"], fitted.predict(after), atol=1e-9)
    assert after["recall_probability"].min() >= fitted.guess_floor


def test_refit_waits_for_its_interval(built: tuple[str, Path]) -> None:
    url, _ = built
    with psycopg.connect(url) as conn:
        first = run_recall(conn, RecallOptions(force=True, min_reviews=500))
        assert first.model_version is not None
        again = run_recall(conn, RecallOptions(min_reviews=500))
        assert again.model_version is None and "refit every 7 days" in again.details["skipped"]
        few = run_recall(conn, RecallOptions(force=True, min_reviews=10**9))
        assert few.model_version is None and "fewer than" in few.details["skipped"]
