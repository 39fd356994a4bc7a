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
    # expected share: first days met both topics (4 of 7 first attempts right); no population
    # counts, so the learner's prior is (4 + 20 x 0.5) / (7 + 20); studied topics shrink toward it
    prior = (4 + 20 * 0.5) / (7 + 20)
    assert math.isclose(first["unstudied_prior"], prior)
    k10, k11 = (5 + 2 * prior) / (5 + 2), (0 + 2 * prior) / (3 + 2)
    assert math.isclose(first["expected_share"], 0.6 * k10 + 0.4 * k11)
    assert second["expected_share"] == 0.5 and second["unstudied_prior"] == 0.5


def test_expected_share_with_population_and_knowledge_estimates() -> None:
    """The population's first-day accuracy up to the cutoff is the learner's prior's anchor; an
    estimate of the cutoff's day replaces a studied topic's accuracy; topic 11 is met later."""
    reviews = _reviews()
    reviews.loc[2, "local_day"] = DAY + 10  # topic 11 first reviewed after the cutoff
    reviews = reviews.sort_values(["user_idx", "topic_id", "local_day"]).reset_index(drop=True)
    population = pd.DataFrame(
        {
            "local_day": [DAY - 5, DAY + 8],
            "first_attempts": [98.0, 1000.0],
            "first_correct": [48.0, 0.0],
        }
    )
    estimates = pd.DataFrame(
        {
            "user_idx": [0, 0],
            "topic_id": [10, 11],
            "local_day": [DAY + 7, DAY + 6],
            "knowledge_estimate": [0.8, 0.99],
        }
    )
    knowledge = KnowledgeInputs(
        first_reviews=reviews.drop_duplicates(["user_idx", "topic_id"]),
        population=population,
        estimates=estimates,
    )
    cutoffs = pd.DataFrame(
        {"user_idx": [0], "as_of": [DAY + 7], "days_to_exam": [1], "is_board": [1]}
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
        reviews[reviews["local_day"] <= DAY + 7],
        empty,
        daily,
        cutoffs,
        _taxonomy(),
        MasteryParams(),
        FeatureParams(),
        knowledge=knowledge,
    ).iloc[0]
    # population up to day + 7: only the day - 5 counts; the learner met topic 10 only (4 of 4)
    population_prior = (48 + 1) / (98 + 2)
    prior = (4 + 20 * population_prior) / (4 + 20)
    assert math.isclose(out["unstudied_prior"], prior)
    # topic 10 at its estimate of the cutoff's day; topic 11 unstudied (the day + 6 estimate is
    # not the cutoff's day and the topic is not studied yet): the prior
    assert math.isclose(out["expected_share"], 0.6 * 0.8 + 0.4 * prior)
