"""Point-in-time feature engine of exam readiness: the as-of arithmetic (no database).

The features are checked against a hand-made review log whose values are worked out here by hand.
The SM-2 schedule in that log is the dbt model's, tested in test_sm2_property.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from python_jobs.jobs.readiness_features import (
    FeatureParams,
    KnowledgeInputs,
    MasteryParams,
    Taxonomy,
    chunk_features,
)


def _taxonomy() -> Taxonomy:
    # topics 10 (with 2 materials, weight 0.6, high) and 11 (no materials, weight 0.4)
    return Taxonomy(
        topic_ids=np.array([10, 11]),
        weight=np.array([0.6, 0.4]),
        high_weight=np.array([True, False]),
        n_materials=np.array([2, 0]),
        total_weight=1.0,
        total_high_weight=0.6,
    )


DAY = 20_000


def _reviews() -> pd.DataFrame:
    day = DAY
    return pd.DataFrame(
        {
            "user_idx": [0, 0, 0],
            "topic_id": [10, 10, 11],
            # topic 10: day 0 q=5 (I=1), day 1 q=4 (I=6); topic 11: day 0 q=1 (I=1)
            "local_day": [day, day + 1, day],
            "interval_days": [1, 6, 1],
            # cumulative: topic 10 has 4 then 2 attempts (4 then 1 correct, first attempts alike)
            "attempts": [4, 6, 3],
            "correct": [4, 5, 0],
            "first_attempts": [4, 5, 3],
            "first_correct": [4, 5, 0],
        }
    )


def test_chunk_features_by_hand() -> None:
    day = DAY
    reviews = _reviews()
    completions = pd.DataFrame(
        {"user_idx": [0, 0], "topic_id": [10, 10], "local_day": [day, day + 9]}
    )
    daily = pd.DataFrame(
        {
            "user_idx": [0, 0, 0],
            "local_day": [day, day + 1, day + 9],
            "attempts": [7, 2, 0],
            "correct": [4, 1, 0],
            "first_attempts": [7, 1, 0],
            "first_correct": [4, 1, 0],
        }
    )
    # as of day + 7 (topic 10: 6 days after its last review on a 6-day interval)
    cutoffs = pd.DataFrame(
        {
            "user_idx": [0, 0],
            "as_of": [day + 7, day - 1],
            "days_to_exam": [1, 1],
            "is_board": [0, 1],
        }
    )
    out = chunk_features(
        reviews, completions, daily, cutoffs, _taxonomy(), MasteryParams(), FeatureParams()
    )
    first = out.iloc[0]
    retrieval_10 = 0.9 ** (6 / 6)
    m10 = 0.3 * (5 + 1) / (5 + 2) + 0.2 * (5 + 1) / (6 + 2) + 0.3 * retrieval_10 + 0.2 * 0.5
    retrieval_11 = 0.9 ** (7 / 1)
    m11 = (0.3 * (0 + 1) / (3 + 2) + 0.2 * (0 + 1) / (3 + 2) + 0.3 * retrieval_11) / 0.8
    assert math.isclose(first["weighted_mastery"], 0.6 * m10 + 0.4 * m11)
    assert math.isclose(first["retrieval_strength"], 0.6 * retrieval_10 + 0.4 * retrieval_11)
    assert math.isclose(first["coverage_high_weight"], 1.0)
    assert math.isclose(first["mastered_share"], 0.6 * (m10 >= 0.7) + 0.4 * (m11 >= 0.7))
    assert math.isclose(first["accuracy_overall"], (5 + 1) / (9 + 2))
    assert math.isclose(first["first_attempt_accuracy"], (5 + 1) / (8 + 2))
    assert math.isclose(first["first_attempt_accuracy_long"], (5 + 1) / (8 + 2))
    assert math.isclose(first["studied_weight_share"], 1.0)
    assert math.isclose(
        first["weighted_accuracy_studied"], 0.6 * (5 + 1) / (6 + 2) + 0.4 * (0 + 1) / (3 + 2)
    )
    assert math.isclose(
        first["weighted_first_attempt_studied"], 0.6 * (5 + 1) / (5 + 2) + 0.4 * (0 + 1) / (3 + 2)
    )
    assert math.isclose(first["materials_completed"], 1.0)  # the day+9 completion is later
    assert math.isclose(first["active_days_share"], 2 / 30)
    assert first["days_since_activity"] == 6
    assert first["history_days"] == 8
    assert first["current_streak"] == 0
    assert math.isclose(first["log_attempts_total"], math.log1p(9))
    # before any activity: nothing studied, inactivity capped
    second = out.iloc[1]
    assert second["weighted_mastery"] == 0 and second["coverage_high_weight"] == 0
    assert second["studied_weight_share"] == 0 and second["weighted_accuracy_studied"] == 0.5
    assert second["days_since_activity"] == 90 and second["is_board"] == 1
    assert second["history_days"] == 0
    assert math.isclose(second["accuracy_overall"], 0.5)
    # expected share: without population counts both population rates are 0.5, so the prior is
    # the learner's first-attempt accuracy (5 of 8) shrunk by 20 pseudo-attempts toward 0.5;
    # studied topics shrink toward it with 2 pseudo-attempts
    prior = (5 + 20 * 0.5) / (8 + 20)
    assert math.isclose(first["unstudied_prior"], prior)
    k10, k11 = (5 + 2 * prior) / (5 + 2), (0 + 2 * prior) / (3 + 2)
    assert math.isclose(first["expected_share"], 0.6 * k10 + 0.4 * k11)
    assert second["expected_share"] == 0.5 and second["unstudied_prior"] == 0.5


def test_expected_share_with_population_and_knowledge_estimates() -> None:
    """The prior is the population's first-day accuracy moved by the learner's distance from the
    population's first-attempt accuracy, both up to the cutoff; an estimate of the cutoff's day
    replaces a studied topic's accuracy, one of another day does not."""
    reviews = _reviews()
    reviews = reviews[reviews["topic_id"] == 10]  # topic 11 not studied yet
    population = pd.DataFrame(
        {
            "local_day": [DAY - 5, DAY + 8],  # the day + 8 counts are after the cutoff
            "first_attempts": [98.0, 1000.0],
            "first_correct": [48.0, 0.0],
            "all_first_attempts": [198.0, 1000.0],
            "all_first_correct": [118.0, 0.0],
        }
    )
    estimates = pd.DataFrame(
        {
            "user_idx": [0, 0],
            "topic_id": [10, 11],
            "local_day": [DAY + 7, DAY + 7],
            "knowledge_estimate": [0.8, 0.99],
        }
    )
    cutoffs = pd.DataFrame(
        {
            "user_idx": [0, 0],
            "as_of": [DAY + 7, DAY + 6],
            "days_to_exam": [1, 1],
            "is_board": [1, 1],
        }
    )
    empty = pd.DataFrame({"user_idx": [], "topic_id": [], "local_day": []})
    daily = pd.DataFrame(
        {
            c: []
            for c in (
                "user_idx",
                "local_day",
                "attempts",
                "correct",
                "first_attempts",
                "first_correct",
            )
        }
    )
    out = chunk_features(
        reviews,
        empty,
        daily,
        cutoffs,
        _taxonomy(),
        MasteryParams(),
        FeatureParams(),
        knowledge=KnowledgeInputs(population, estimates),
    )
    first_day, overall = (48 + 1) / (98 + 2), (118 + 1) / (198 + 2)
    prior = first_day + (5 + 20 * overall) / (5 + 20) - overall
    assert math.isclose(out.iloc[0]["unstudied_prior"], prior)
    assert math.isclose(out.iloc[1]["unstudied_prior"], prior)
    # day + 7: topic 10 at its estimate; topic 11 is not studied: the prior, not its estimate
    assert math.isclose(out.iloc[0]["expected_share"], 0.6 * 0.8 + 0.4 * prior)
    # day + 6: no estimate of that day, topic 10 at its shrunk first-attempt accuracy
    k10 = (5 + 2 * prior) / (5 + 2)
    assert math.isclose(out.iloc[1]["expected_share"], 0.6 * k10 + 0.4 * prior)
