"""Exam-readiness features computed point-in-time from the raw event history.

A *cutoff* is (learner, as-of local day D). Its features use only question attempts and material
interactions whose local day (in the learner's own timezone) is on or before D, so features for an
exam are computed with D = the day before the exam's local day and nothing at or after the exam can
leak in. The same code scores today's learners with D = today.

Per leaf topic the mastery of topic_mastery is recomputed as of D (the marts only hold
today's state) from the review log the dbt project keeps incrementally,
``intermediate.int_topic_reviews_scheduled``: one row per (learner, leaf topic, local day) with the
SM-2 interval and the cumulative attempt counts after that review. The last review on or before D
gives, per topic:

- retrieval_strength = 0.9 ^ ((D - last review day) / I), 0 when never reviewed;
- accuracies smoothed (correct + 1) / (attempts + 2), cumulative up to D;
- mastery = 0.30 first-attempt accuracy + 0.20 accuracy + 0.30 retrieval + 0.20 materials
  completion (completed share of the topic's materials; without materials the 0.20 is spread over
  the other three in proportion).

Reading that log, not the raw attempts, keeps the job's cost near the number of reviews (about a
tenth of the attempts; a scoring run, whose cutoffs are all today, reads only each topic's last
review) and leaves one SM-2 implementation, the SQL one that is tested against
``supermemo2``. Day-level activity (windows, active days, streaks) comes from the
``daily_user_stats`` mart: an active day is a local day with any event. The job therefore runs
after dbt has built those models.

Learners are processed in chunks (``chunk_users``) so memory stays bounded at any number of
learners; within a chunk everything is vectorised with numpy (``searchsorted`` over sorted
(pair, day) keys finds "the last review on or before D" for every cutoff at once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from python_jobs.jobs.report import query_frame

log = logging.getLogger(__name__)

EPOCH = date(1970, 1, 1)
KEY_SPAN = 1_000_000  # days per key block: (group * KEY_SPAN + day) sorts by group then day


@dataclass(frozen=True)
class MasteryParams:
    """The mastery constants (same defaults as the dbt vars of the mastery marts)."""

    weight_first_attempt: float = 0.30
    weight_accuracy: float = 0.20
    weight_retrieval: float = 0.30
    weight_materials: float = 0.20
    smoothing_correct: float = 1.0  # (correct + 1) / (attempts + 2)
    smoothing_attempts: float = 2.0
    retrieval_base: float = 0.9  # retrieval strength on the due date


@dataclass(frozen=True)
class FeatureParams:
    """Windows and thresholds of the readiness features (job options)."""

    short_window_days: int = 14  # recent accuracy, short window
    long_window_days: int = 30  # recent accuracy, volume and consistency window
    mastered_threshold: float = 0.70  # a topic counts as mastered at or above this mastery
    coverage_min_attempts: int = 1  # a high-weight topic is covered once it has this many attempts
    inactivity_cap_days: int = 90  # days since last activity are capped here (also: never active)
    history_cap_days: int = 365  # days since the first activity are capped here
    # Expected share correct on an exam (feature expected_share, the heuristic's input): a studied
    # leaf topic counts at its first-attempt accuracy shrunk toward the learner's unstudied prior by
    # topic_prior_attempts pseudo-attempts; an unstudied one at that prior: the population's
    # accuracy on the first day learners meet a topic plus the learner's first-attempt accuracy
    # (shrunk by learner_prior_attempts) minus the population's (see expected_share).
    topic_prior_attempts: float = 2.0
    learner_prior_attempts: float = 20.0
    # "first_attempt": the shrunk first-attempt accuracy above; "knowledge_estimate": a studied
    # topic counts at topic_mastery_current.knowledge_estimate when that column exists and the
    # cutoff is that view's as-of day (other cutoffs, e.g. the labelled exams, keep first_attempt)
    knowledge_source: str = "first_attempt"
    chunk_users: int = 1000  # at most this many learners per feature-computation chunk ...
    chunk_cutoffs: int = 8000  # ... and this many cutoffs (learner x as-of day): bounds memory


FEATURE_COLUMNS: tuple[str, ...] = (
    "weighted_mastery",
    "coverage_high_weight",
    "mastered_share",
    "retrieval_strength",
    "accuracy_overall",
    "first_attempt_accuracy",
    "accuracy_short",
    "accuracy_long",
    "first_attempt_accuracy_long",
    "weighted_accuracy_studied",
    "weighted_first_attempt_studied",
    "studied_weight_share",
    "log_attempts_total",
    "log_attempts_long",
    "materials_completed",
    "active_days_share",
    "current_streak",
    "days_since_activity",
    "history_days",
    "days_to_exam",
    "is_board",
    "expected_share",
    "unstudied_prior",
)
# Earlier exam results of the learner (practice or board, strictly before the as-of day's end):
# used when the readiness option use_prior_exams is on.
PRIOR_EXAM_COLUMNS: tuple[str, ...] = (
    "prior_exams",
    "last_exam_score",
    "mean_exam_score",
    "days_since_last_exam",
    "last_exam_is_board",
)
ALL_COLUMNS: tuple[str, ...] = FEATURE_COLUMNS + PRIOR_EXAM_COLUMNS


def day_number(value: date) -> int:
    return (value - EPOCH).days


# --------------------------------------------------------------------------- loading

TOPICS_SQL = """
select
    t.id as topic_id,
    t.board_exam_weight::float8 as weight,
    not exists (select 1 from app.topics as c where c.parent_id = t.id) as is_leaf,
    (select count(*) from app.materials as m where m.topic_id = t.id) as n_materials
from app.topics as t
order by t.id
"""

# The chunk's learners are numbered 0..n-1 (their position in the array) so that every frame
# carries small integers, not UUIDs. Local days are day numbers since 1970-01-01.
CHUNK_CTE = """
with chunk as not materialized (
    select c.user_id, (c.ord - 1)::int as user_idx, u.timezone
    from unnest(%(users)s::uuid[]) with ordinality as c (user_id, ord)
    inner join app.users as u on u.id = c.user_id
)
"""

_REVIEWS_SELECT = """
select {distinct}
    chunk.user_idx,
    r.topic_id,
    r.review_date - date '1970-01-01' as local_day,
    r.interval_days,
    r.cumulative_attempts as attempts,
    r.cumulative_correct_attempts as correct,
    r.cumulative_first_attempts as first_attempts,
    r.cumulative_first_attempts_correct as first_correct
from intermediate.int_topic_reviews_scheduled as r
inner join chunk on chunk.user_id = r.user_id
where r.review_date - date '1970-01-01' <= %(last_day)s
order by chunk.user_idx, r.topic_id, r.review_date {direction}
"""
# Every review up to the chunk's last day: cutoffs on several days each find their own last review.
REVIEWS_SQL = CHUNK_CTE + _REVIEWS_SELECT.format(distinct="", direction="asc")
# Only the last review per (learner, topic): enough when every cutoff of the chunk is its last day,
# as in a scoring run (everyone as of today); the rows read then follow the topics a learner has
# studied, not the length of their history.
LATEST_REVIEWS_SQL = CHUNK_CTE + _REVIEWS_SELECT.format(
    distinct="distinct on (chunk.user_idx, r.topic_id)", direction="desc"
)

# The population's first attempts per day: those of the first day a learner met a topic (the
# first review of each learner-topic pair, review_number 1: a filter, where finding it by sorting
# every review cost a third of a second at 5,000 learners x 90 days) and all of them. Cumulated up
# to a cutoff day they give the population's rates as of that day (nothing later is read).
POPULATION_FIRST_DAY_SQL = """
with first_reviews as (
    select
        r.review_date,
        r.cumulative_first_attempts as first_attempts,
        r.cumulative_first_attempts_correct as first_correct
    from intermediate.int_topic_reviews_scheduled as r
    where r.review_number = 1 and r.review_date - date '1970-01-01' <= %(last_day)s
),

first_days as (
    select
        review_date as local_date,
        sum(first_attempts)::float8 as first_attempts,
        sum(first_correct)::float8 as first_correct
    from first_reviews
    group by review_date
),

all_days as (
    select
        d.local_date,
        sum(d.first_attempts)::float8 as all_first_attempts,
        sum(d.first_attempts_correct)::float8 as all_first_correct
    from marts.daily_user_stats as d
    where d.local_date - date '1970-01-01' <= %(last_day)s
    group by d.local_date
)

select
    coalesce(f.local_date, a.local_date) - date '1970-01-01' as local_day,
    coalesce(f.first_attempts, 0) as first_attempts,
    coalesce(f.first_correct, 0) as first_correct,
    coalesce(a.all_first_attempts, 0) as all_first_attempts,
    coalesce(a.all_first_correct, 0) as all_first_correct
from first_days as f
full join all_days as a on a.local_date = f.local_date
order by local_day
"""

KNOWLEDGE_ESTIMATE_SQL = (
    CHUNK_CTE
    + """
select
    chunk.user_idx,
    k.topic_id,
    k.as_of_date - date '1970-01-01' as local_day,
    k.knowledge_estimate::float8 as knowledge_estimate
from marts.topic_mastery_current as k
inner join chunk on chunk.user_id = k.user_id
-- the chunk's ids as a list as well: the join alone cannot reach below the view's per-learner
-- windows, so every chunk computed the view for every learner (63 s a chunk at 50,000 learners)
where k.user_id = any(%(users)s::uuid[]) and k.knowledge_estimate is not null
order by chunk.user_idx, k.topic_id
"""
)

COMPLETIONS_SQL = (
    CHUNK_CTE
    + """,
completions as (
    select
        chunk.user_idx,
        mi.material_id,
        min((mi.occurred_at at time zone chunk.timezone)::date) - date '1970-01-01' as local_day
    from app.material_interactions as mi
    inner join chunk on chunk.user_id = mi.user_id
    where
        mi.occurred_at < %(until)s
        and mi.interaction_type = 'complete'
    group by chunk.user_idx, mi.material_id
)
select completions.user_idx, m.topic_id, completions.local_day
from completions
inner join app.materials as m on m.id = completions.material_id
where completions.local_day <= %(last_day)s
order by completions.user_idx, m.topic_id, completions.local_day
"""
)

DAILY_SQL = (
    CHUNK_CTE
    + """
select
    chunk.user_idx,
    d.local_date - date '1970-01-01' as local_day,
    d.questions_attempted as attempts,
    d.questions_correct as correct,
    d.first_attempts,
    d.first_attempts_correct as first_correct
from marts.daily_user_stats as d
inner join chunk on chunk.user_id = d.user_id
where d.local_date - date '1970-01-01' <= %(last_day)s
order by chunk.user_idx, d.local_date
"""
)

EXAMS_SQL = (
    CHUNK_CTE
    + """
select
    chunk.user_idx,
    (e.taken_at at time zone chunk.timezone)::date - date '1970-01-01' as local_day,
    e.scaled_score,
    (e.exam_kind = 'board')::int as is_board
from app.exam_results as e
inner join chunk on chunk.user_id = e.user_id
where
    e.taken_at < %(until)s
    and (e.taken_at at time zone chunk.timezone)::date - date '1970-01-01' <= %(last_day)s
order by chunk.user_idx, local_day, e.taken_at, e.event_id
"""
)


@dataclass
class Taxonomy:
    topic_ids: np.ndarray  # all topic ids, sorted
    weight: np.ndarray  # board_exam_weight per topic (0 for non-leaves: only leaves carry mastery)
    high_weight: np.ndarray  # bool: leaf whose weight is in the top half of leaf weights
    n_materials: np.ndarray
    total_weight: float
    total_high_weight: float

    def index(self, topic_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.topic_ids, topic_ids)


def load_taxonomy(conn: psycopg.Connection, mastery: MasteryParams) -> Taxonomy:
    topics = query_frame(conn, TOPICS_SQL)
    if topics.empty:
        raise ValueError("app.topics is empty: load the topic taxonomy first")
    leaf = topics["is_leaf"].astype(str).str.lower().isin(["t", "true"]).to_numpy()
    weight = np.where(leaf, topics["weight"].to_numpy(dtype=float), 0.0)
    leaf_weights = weight[leaf]
    # "top half": at or above the median leaf weight (the knowledge_gaps 'unstudied' rule)
    median = float(np.median(leaf_weights)) if leaf_weights.size else 0.0
    high = leaf & (weight >= median) & (weight > 0)
    n_materials = topics["n_materials"].to_numpy(dtype=np.int64)
    return Taxonomy(
        topic_ids=topics["topic_id"].to_numpy(dtype=np.int64),
        weight=weight,
        high_weight=high,
        n_materials=n_materials,
        total_weight=float(weight.sum()) or 1.0,
        total_high_weight=float(weight[high].sum()) or 1.0,
    )


def _smooth(correct: np.ndarray | float, attempts: np.ndarray | float, p: MasteryParams):
    return (correct + p.smoothing_correct) / (attempts + p.smoothing_attempts)


def topic_mastery(
    first_acc: np.ndarray,
    accuracy: np.ndarray,
    retrieval: np.ndarray,
    completion: np.ndarray,
    has_materials: np.ndarray,
    params: MasteryParams,
) -> np.ndarray:
    """topic_mastery's formula; without materials, their weight goes to the other three."""
    core = (
        params.weight_first_attempt * first_acc
        + params.weight_accuracy * accuracy
        + params.weight_retrieval * retrieval
    )
    core_weight = params.weight_first_attempt + params.weight_accuracy + params.weight_retrieval
    with_materials = core + params.weight_materials * completion
    without_materials = core / core_weight
    return np.where(has_materials, with_materials, without_materials)


def _fetch_chunk(
    conn: psycopg.Connection, users: Sequence[str], last_day: int, latest_only: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The chunk's rows up to local day ``last_day``; with ``latest_only`` (every cutoff of the
    chunk is on ``last_day``) just the last review of each (learner, topic)."""
    # An upper bound in UTC that is safely after the last local day in any timezone; the exact
    # local-day filter is applied in SQL after conversion.
    until = pd.Timestamp(EPOCH, tz="UTC") + pd.Timedelta(days=last_day + 2)
    params = {"users": list(users), "until": until.to_pydatetime(), "last_day": last_day}
    reviews = query_frame(conn, LATEST_REVIEWS_SQL if latest_only else REVIEWS_SQL, params)
    completions = query_frame(conn, COMPLETIONS_SQL, params)
    daily = query_frame(conn, DAILY_SQL, params)
    exams = query_frame(conn, EXAMS_SQL, params)
    return reviews, completions, daily, exams


def _knowledge_inputs(
    conn: psycopg.Connection, users: Sequence[str], shared: KnowledgeInputs
) -> KnowledgeInputs:
    """The shared population counts, with the chunk's estimates when the option reads them."""
    if shared.estimates is None:
        return shared
    estimates = query_frame(conn, KNOWLEDGE_ESTIMATE_SQL, {"users": list(users)})
    return KnowledgeInputs(shared.population, estimates)


def _shared_knowledge(
    conn: psycopg.Connection, last_day: int, features: FeatureParams
) -> KnowledgeInputs:
    """Population first-day counts up to the last cutoff day; whether estimates are read."""
    if features.knowledge_source not in ("first_attempt", "knowledge_estimate"):
        raise ValueError(
            "knowledge_source must be first_attempt or knowledge_estimate, not "
            f"{features.knowledge_source!r}"
        )
    population = query_frame(conn, POPULATION_FIRST_DAY_SQL, {"last_day": last_day})
    estimates = None
    if features.knowledge_source == "knowledge_estimate" and _has_knowledge_estimate(conn):
        estimates = pd.DataFrame()  # a marker: read per chunk
    return KnowledgeInputs(population, estimates)


def _has_knowledge_estimate(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "select 1 from information_schema.columns where table_schema = 'marts'"
        " and table_name = 'topic_mastery_current' and column_name = 'knowledge_estimate'"
    ).fetchone()
    if row is None:
        log.warning("knowledge_source=knowledge_estimate: the column is missing, using accuracy")
    return row is not None


# --------------------------------------------------------------------------- features


def _last_at_or_before(
    keys: np.ndarray, groups_of_keys: np.ndarray, group: np.ndarray, query_key: np.ndarray
) -> np.ndarray:
    """Index of the last key <= query_key within the same group, or -1."""
    idx = np.searchsorted(keys, query_key, side="right") - 1
    ok = idx >= 0
    ok[ok] = groups_of_keys[idx[ok]] == group[ok]
    return np.where(ok, idx, -1)


def _take(values: np.ndarray, idx: np.ndarray, default: float = 0.0) -> np.ndarray:
    out = np.full(len(idx), default, dtype=float)
    hit = idx >= 0
    out[hit] = values[idx[hit]]
    return out


@dataclass
class KnowledgeInputs:
    """What expected_share reads besides the review log: the population's first attempts per day
    and (option) the chunk's topic_mastery_current estimates."""

    population: pd.DataFrame | None = None  # local_day, first_attempts, first_correct,
    # all_first_attempts, all_first_correct (summed over learners)
    estimates: pd.DataFrame | None = None  # user_idx, topic_id, local_day, knowledge_estimate


@dataclass
class _PairInputs:
    """Per (cutoff, learner-topic pair) arrays computed by chunk_features."""

    q_cut: np.ndarray
    q_pair: np.ndarray
    q_day: np.ndarray
    studied: np.ndarray
    weight: np.ndarray
    first_attempts: np.ndarray
    first_correct: np.ndarray


def _pair_lookup(
    pair_codes: np.ndarray, frame: pd.DataFrame, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair: (row found, its local day, its `column` value) in a frame of one row per
    (user_idx, topic_id)."""
    codes = frame["user_idx"].to_numpy(dtype=np.int64) * (1 << 31) + frame["topic_id"].to_numpy(
        dtype=np.int64
    )
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    idx = np.searchsorted(codes, pair_codes)
    idx_ok = np.minimum(idx, max(len(codes) - 1, 0))
    found = (idx < len(codes)) & (codes[idx_ok] == pair_codes) if len(codes) else idx < 0
    day = np.where(found, frame["local_day"].to_numpy(dtype=np.int64)[order][idx_ok], 0)
    value = np.where(found, frame[column].to_numpy(dtype=float)[order][idx_ok], 0.0)
    return found, day, value


def _population_rates(
    population: pd.DataFrame | None, cut_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The population's first-day accuracy (first reviews on or before each cutoff day) and its
    first-attempt accuracy over all days up to it, smoothed (correct + 1) / (attempts + 2); 0.5
    without data."""
    if population is None or population.empty:
        return np.full(len(cut_day), 0.5), np.full(len(cut_day), 0.5)
    days = population["local_day"].to_numpy(dtype=np.int64)
    idx = np.searchsorted(days, cut_day, side="right") - 1

    def rate(correct: str, attempts: str) -> np.ndarray:
        c = np.cumsum(population[correct].to_numpy(dtype=float))
        a = np.cumsum(population[attempts].to_numpy(dtype=float))
        return (_take(c, idx) + 1.0) / (_take(a, idx) + 2.0)

    return rate("first_correct", "first_attempts"), rate("all_first_correct", "all_first_attempts")


def expected_share(
    q: _PairInputs,
    pair_codes: np.ndarray,
    cut_day: np.ndarray,
    n_cut: int,
    knowledge: KnowledgeInputs,
    taxonomy: Taxonomy,
    features: FeatureParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Board-weighted expected share correct on an exam, and the learner's unstudied prior.

    The learner's prior for a topic they have not studied is the population's accuracy on the
    first day learners meet a topic, moved by how far the learner's own first-attempt accuracy
    (shrunk toward the population's with n0 = learner_prior_attempts pseudo-attempts) stands
    from the population's: prior = first_day + (learner - population), all as of the cutoff day.
    A studied leaf counts (first correct + m * prior) / (first attempts + m) (m =
    topic_prior_attempts), or its knowledge_estimate (option); an unstudied leaf counts the
    prior. The shares are weighted by board_exam_weight over all leaves.
    """

    def per_cutoff(values: np.ndarray) -> np.ndarray:
        return np.bincount(q.q_cut, weights=values, minlength=n_cut)

    n0 = features.learner_prior_attempts
    first_day, overall = _population_rates(knowledge.population, cut_day)
    ability = (per_cutoff(q.first_correct) + n0 * overall) / (per_cutoff(q.first_attempts) + n0)
    prior = np.clip(first_day + ability - overall, 0.0, 1.0)
    m = features.topic_prior_attempts
    topic = (q.first_correct + m * prior[q.q_cut]) / (q.first_attempts + m)
    if knowledge.estimates is not None and len(knowledge.estimates):
        has, day, estimate = _pair_lookup(pair_codes, knowledge.estimates, "knowledge_estimate")
        current = has[q.q_pair] & (day[q.q_pair] == q.q_day)
        topic = np.where(current, estimate[q.q_pair], topic)
    studied_w = np.where(q.studied, q.weight, 0.0)
    unstudied_weight = taxonomy.total_weight - per_cutoff(studied_w)
    share = (per_cutoff(studied_w * topic) + unstudied_weight * prior) / taxonomy.total_weight
    return share, prior


def chunk_features(
    reviews: pd.DataFrame,
    completions: pd.DataFrame,
    daily: pd.DataFrame,
    cutoffs: pd.DataFrame,
    taxonomy: Taxonomy,
    mastery: MasteryParams,
    features: FeatureParams,
    exams: pd.DataFrame | None = None,
    knowledge: KnowledgeInputs | None = None,
) -> pd.DataFrame:
    """Features of each cutoff (columns user_idx, as_of) of one chunk; index = cutoffs' index."""
    cut_user = cutoffs["user_idx"].to_numpy(dtype=np.int64)
    cut_day = cutoffs["as_of"].to_numpy(dtype=np.int64)
    pairs = _cutoff_pairs(reviews, completions, cut_user, cut_day, mastery)
    out = _topic_features(
        pairs, cut_day, taxonomy, mastery, features, knowledge or KnowledgeInputs()
    )
    out.update(_activity_features(daily, cut_user, cut_day, mastery, features))
    out.update(_exam_features(exams, cut_user, cut_day, features))
    out["days_to_exam"] = cutoffs["days_to_exam"].to_numpy(dtype=float)
    out["is_board"] = cutoffs["is_board"].to_numpy(dtype=float)
    return pd.DataFrame({c: out[c] for c in ALL_COLUMNS}, index=cutoffs.index)


@dataclass(frozen=True)
class _CutoffPairs:
    """Each cutoff against each (learner, topic) pair of its learner that has reviews or completed
    materials: one element per (cutoff, pair) query, with the pair's counts as of the cutoff's day
    (from its last review on or before it; ``last`` < 0 when there is none)."""

    n_cut: int
    pair_codes: np.ndarray  # user_idx * 2^31 + topic_id, sorted
    q_cut: np.ndarray
    q_pair: np.ndarray
    q_day: np.ndarray
    last: np.ndarray
    attempts: np.ndarray
    correct: np.ndarray
    first_attempts: np.ndarray
    first_correct: np.ndarray
    retrieval: np.ndarray
    materials_done: np.ndarray


def _cutoff_pairs(
    reviews: pd.DataFrame,
    completions: pd.DataFrame,
    cut_user: np.ndarray,
    cut_day: np.ndarray,
    mastery: MasteryParams,
) -> _CutoffPairs:
    rv_user = reviews["user_idx"].to_numpy(dtype=np.int64)
    rv_topic = reviews["topic_id"].to_numpy(dtype=np.int64)
    cp_user = completions["user_idx"].to_numpy(dtype=np.int64)
    cp_topic = completions["topic_id"].to_numpy(dtype=np.int64)
    pair_codes = np.unique(
        np.concatenate([rv_user * (1 << 31) + rv_topic, cp_user * (1 << 31) + cp_topic])
    )
    pair_user = pair_codes // (1 << 31)
    rv_pair = np.searchsorted(pair_codes, rv_user * (1 << 31) + rv_topic)
    cp_pair = np.searchsorted(pair_codes, cp_user * (1 << 31) + cp_topic)

    # reviews are sorted by (user, topic, day) = by (pair, day); counts are cumulative
    rv_day = reviews["local_day"].to_numpy(dtype=np.int64)
    rv_key = rv_pair * KEY_SPAN + rv_day
    cp_key = np.sort(cp_pair * KEY_SPAN + completions["local_day"].to_numpy(dtype=np.int64))

    # each cutoff against its learner's pairs
    pair_first = np.searchsorted(pair_user, cut_user, side="left")
    counts = np.searchsorted(pair_user, cut_user, side="right") - pair_first
    q_cut = np.repeat(np.arange(len(cut_user)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    q_pair = np.repeat(pair_first, counts) + offsets
    q_day = cut_day[q_cut]

    last = _last_at_or_before(rv_key, rv_pair, q_pair, q_pair * KEY_SPAN + q_day)
    last_day = _take(rv_day, last, default=np.nan)
    ivl = _take(reviews["interval_days"].to_numpy(dtype=np.int64), last, default=1.0)
    retrieval = np.where(
        last >= 0, mastery.retrieval_base ** ((q_day - np.nan_to_num(last_day)) / ivl), 0.0
    )
    done = np.searchsorted(cp_key, q_pair * KEY_SPAN + q_day, side="right") - np.searchsorted(
        cp_key, q_pair * KEY_SPAN, side="left"
    )
    return _CutoffPairs(
        n_cut=len(cut_user),
        pair_codes=pair_codes,
        q_cut=q_cut,
        q_pair=q_pair,
        q_day=q_day,
        last=last,
        retrieval=retrieval,
        materials_done=done,
        **{
            counts: _take(reviews[counts].to_numpy(dtype=np.int64), last)
            for counts in ("attempts", "correct", "first_attempts", "first_correct")
        },
    )


def _topic_features(
    pairs: _CutoffPairs,
    cut_day: np.ndarray,
    taxonomy: Taxonomy,
    mastery: MasteryParams,
    features: FeatureParams,
    knowledge: KnowledgeInputs,
) -> dict[str, np.ndarray]:
    """The features summed over each cutoff's topics (board-exam weighted where they say so)."""
    out: dict[str, np.ndarray] = {}
    attempts, correct = pairs.attempts, pairs.correct
    first_attempts, first_correct = pairs.first_attempts, pairs.first_correct
    topic_idx = taxonomy.index(pairs.pair_codes[pairs.q_pair] % (1 << 31))
    n_mat = taxonomy.n_materials[topic_idx]
    completion = np.where(n_mat > 0, pairs.materials_done / np.maximum(n_mat, 1), 0.0)
    m = topic_mastery(
        _smooth(first_correct, first_attempts, mastery),
        _smooth(correct, attempts, mastery),
        pairs.retrieval,
        completion,
        n_mat > 0,
        mastery,
    )
    studied = pairs.last >= 0
    m = np.where(studied, m, 0.0)  # an unanswered topic counts 0, as in the marts' roll-up
    w = taxonomy.weight[topic_idx]

    def per_cutoff(values: np.ndarray) -> np.ndarray:
        return np.bincount(pairs.q_cut, weights=values, minlength=pairs.n_cut)

    out["weighted_mastery"] = per_cutoff(w * m) / taxonomy.total_weight
    mastered = (m >= features.mastered_threshold).astype(float)
    out["mastered_share"] = per_cutoff(w * mastered) / taxonomy.total_weight
    covered = taxonomy.high_weight[topic_idx] & (attempts >= features.coverage_min_attempts)
    out["coverage_high_weight"] = per_cutoff(np.where(covered, w, 0.0)) / taxonomy.total_high_weight
    out["retrieval_strength"] = per_cutoff(w * pairs.retrieval) / taxonomy.total_weight
    tot_attempts = per_cutoff(attempts)
    out["accuracy_overall"] = _smooth(per_cutoff(correct), tot_attempts, mastery)
    out["first_attempt_accuracy"] = _smooth(
        per_cutoff(first_correct), per_cutoff(first_attempts), mastery
    )
    studied_weight = per_cutoff(np.where(studied, w, 0.0))
    out["studied_weight_share"] = studied_weight / taxonomy.total_weight
    topic_accuracy = _smooth(correct, attempts, mastery)
    topic_first = _smooth(first_correct, first_attempts, mastery)
    neutral = _smooth(0.0, 0.0, mastery)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["weighted_accuracy_studied"] = np.where(
            studied_weight > 0,
            per_cutoff(np.where(studied, w * topic_accuracy, 0.0)) / studied_weight,
            neutral,
        )
        out["weighted_first_attempt_studied"] = np.where(
            studied_weight > 0,
            per_cutoff(np.where(studied, w * topic_first, 0.0)) / studied_weight,
            neutral,
        )
    pair_inputs = _PairInputs(
        q_cut=pairs.q_cut,
        q_pair=pairs.q_pair,
        q_day=pairs.q_day,
        studied=studied,
        weight=w,
        first_attempts=first_attempts,
        first_correct=first_correct,
    )
    out["expected_share"], out["unstudied_prior"] = expected_share(
        pair_inputs, pairs.pair_codes, cut_day, pairs.n_cut, knowledge, taxonomy, features
    )
    out["log_attempts_total"] = np.log1p(tot_attempts)
    out["materials_completed"] = per_cutoff(pairs.materials_done.astype(float))
    return out


def _activity_features(
    daily: pd.DataFrame,
    cut_user: np.ndarray,
    cut_day: np.ndarray,
    mastery: MasteryParams,
    features: FeatureParams,
) -> dict[str, np.ndarray]:
    """The features of each cutoff's learner-days of activity (daily: sorted by learner, day)."""
    out: dict[str, np.ndarray] = {}
    n_cut = len(cut_user)
    d_user = daily["user_idx"].to_numpy(dtype=np.int64)
    d_day = daily["local_day"].to_numpy(dtype=np.int64)
    d_key = d_user * KEY_SPAN + d_day
    d_attempts = np.cumsum(daily["attempts"].to_numpy(dtype=np.int64))
    d_correct = np.cumsum(daily["correct"].to_numpy(dtype=np.int64))
    d_first = np.cumsum(daily["first_attempts"].to_numpy(dtype=np.int64))
    d_first_correct = np.cumsum(daily["first_correct"].to_numpy(dtype=np.int64))
    d_active = np.arange(1, len(d_day) + 1)
    consecutive = np.zeros(len(d_day), dtype=bool)
    consecutive[1:] = (d_user[1:] == d_user[:-1]) & (d_day[1:] == d_day[:-1] + 1)
    # streak length ending at each active day: run lengths of consecutive days
    run_start = np.where(~consecutive, np.arange(len(d_day)), 0)
    run_start = np.maximum.accumulate(run_start) if len(run_start) else run_start
    streak = np.arange(len(d_day)) - run_start + 1

    def cum_at(values: np.ndarray, days_back: int) -> np.ndarray:
        idx = np.searchsorted(d_key, cut_user * KEY_SPAN + cut_day - days_back, side="right") - 1
        before_user = np.searchsorted(d_key, cut_user * KEY_SPAN, side="left") - 1
        out_v = np.zeros(n_cut, dtype=float)
        hit = idx > before_user
        out_v[hit] = values[idx[hit]]
        base_v = np.zeros(n_cut, dtype=float)
        has_base = before_user >= 0
        base_v[has_base] = values[before_user[has_base]]
        return np.where(hit, out_v - base_v, 0.0)

    short, long_ = features.short_window_days, features.long_window_days
    att_short = cum_at(d_attempts, 0) - cum_at(d_attempts, short)
    cor_short = cum_at(d_correct, 0) - cum_at(d_correct, short)
    att_long = cum_at(d_attempts, 0) - cum_at(d_attempts, long_)
    cor_long = cum_at(d_correct, 0) - cum_at(d_correct, long_)
    out["accuracy_short"] = _smooth(cor_short, att_short, mastery)
    out["accuracy_long"] = _smooth(cor_long, att_long, mastery)
    out["first_attempt_accuracy_long"] = _smooth(
        cum_at(d_first_correct, 0) - cum_at(d_first_correct, long_),
        cum_at(d_first, 0) - cum_at(d_first, long_),
        mastery,
    )
    out["log_attempts_long"] = np.log1p(att_long)
    out["active_days_share"] = (cum_at(d_active, 0) - cum_at(d_active, long_)) / long_

    last_active = _last_at_or_before(d_key, d_user, cut_user, cut_user * KEY_SPAN + cut_day)
    gap = np.where(
        last_active >= 0, cut_day - _take(d_day, last_active), features.inactivity_cap_days
    )
    out["days_since_activity"] = np.minimum(gap, features.inactivity_cap_days).astype(float)
    # days of history seen so far: learners arrive with study done elsewhere (and the data may
    # start mid-preparation), so volume and coverage mean more with a longer record
    first_active = np.searchsorted(d_key, cut_user * KEY_SPAN, side="left")
    has_history = last_active >= 0
    first_day = _take(d_day, np.where(has_history, first_active, -1))
    out["history_days"] = np.where(
        has_history, np.minimum(cut_day - first_day + 1, features.history_cap_days), 0.0
    )
    out["current_streak"] = np.where(
        (last_active >= 0) & (gap <= 1), _take(streak, last_active), 0.0
    )
    return out


def _exam_features(
    exams: pd.DataFrame | None, cut_user: np.ndarray, cut_day: np.ndarray, features: FeatureParams
) -> dict[str, np.ndarray]:
    """Earlier exam results: strictly before the cutoff's exam (local day <= as-of day)."""
    if exams is None:
        exams = pd.DataFrame({"user_idx": [], "local_day": [], "scaled_score": [], "is_board": []})
    e_user = exams["user_idx"].to_numpy(dtype=np.int64)
    e_key = e_user * KEY_SPAN + exams["local_day"].to_numpy(dtype=np.int64)
    e_score = exams["scaled_score"].to_numpy(dtype=float)
    e_cum = np.cumsum(e_score)
    last_exam = _last_at_or_before(e_key, e_user, cut_user, cut_user * KEY_SPAN + cut_day)
    first_exam = np.searchsorted(e_key, cut_user * KEY_SPAN, side="left")
    has_exam = last_exam >= 0
    n_exams = np.where(has_exam, last_exam - first_exam + 1, 0)
    score_sum = np.where(
        has_exam, _take(e_cum, last_exam) - _take(e_cum, np.where(has_exam, first_exam - 1, -1)), 0
    )
    return {
        "prior_exams": n_exams.astype(float),
        "last_exam_score": _take(e_score, last_exam),
        "mean_exam_score": np.where(has_exam, score_sum / np.maximum(n_exams, 1), 0.0),
        "last_exam_is_board": _take(exams["is_board"].to_numpy(dtype=float), last_exam),
        "days_since_last_exam": np.where(
            has_exam,
            np.minimum(
                cut_day - _take(exams["local_day"].to_numpy(dtype=float), last_exam),
                features.inactivity_cap_days,
            ),
            features.inactivity_cap_days,
        ),
    }


def _chunks(
    users: Sequence[str], cutoffs_per_user: pd.Series, max_users: int, max_cutoffs: int
) -> Iterator[list[str]]:
    """Consecutive groups of learners: at most max_users, and at most max_cutoffs cutoffs unless
    a single learner has more (memory grows with cutoffs x the learners' studied topics)."""
    chunk: list[str] = []
    cutoffs = 0
    for user in users:
        n = int(cutoffs_per_user[user])
        if chunk and (len(chunk) >= max_users or cutoffs + n > max_cutoffs):
            yield chunk
            chunk, cutoffs = [], 0
        chunk.append(user)
        cutoffs += n
    if chunk:
        yield chunk


def compute_features(
    conn: psycopg.Connection,
    cutoffs: pd.DataFrame,
    mastery: MasteryParams = MasteryParams(),
    features: FeatureParams = FeatureParams(),
    taxonomy: Taxonomy | None = None,
) -> pd.DataFrame:
    """Features for each cutoff row (columns user_id, as_of (date), days_to_exam, is_board).

    Returns a frame with the same index as ``cutoffs`` and the columns of FEATURE_COLUMNS.
    """
    taxonomy = taxonomy or load_taxonomy(conn, mastery)
    if cutoffs.empty:
        return pd.DataFrame(columns=list(ALL_COLUMNS), dtype=float)
    frame = cutoffs.copy()
    frame["as_of"] = [day_number(d) for d in pd.to_datetime(frame["as_of"]).dt.date]
    frame["user_id"] = frame["user_id"].astype(str)
    per_user = frame["user_id"].value_counts()
    users = sorted(per_user.index)
    parts = []
    chunks = list(_chunks(users, per_user, features.chunk_users, features.chunk_cutoffs))
    shared = _shared_knowledge(conn, int(frame["as_of"].max()), features)
    for i, chunk in enumerate(chunks, start=1):
        position = {u: k for k, u in enumerate(chunk)}
        part = frame[frame["user_id"].isin(position)].copy()
        part["user_idx"] = part["user_id"].map(position).astype(np.int64)
        part = part.sort_values(["user_idx", "as_of"], kind="stable")
        last_day = int(part["as_of"].max())
        latest_only = bool((part["as_of"] == last_day).all())
        reviews, completions, daily, exams = _fetch_chunk(conn, chunk, last_day, latest_only)
        knowledge = _knowledge_inputs(conn, chunk, shared)
        parts.append(
            chunk_features(
                reviews, completions, daily, part, taxonomy, mastery, features, exams, knowledge
            )
        )
        log.debug(
            "features: chunk %d/%d, %d learners, %d cutoffs, %d reviews",
            i,
            len(chunks),
            len(chunk),
            len(part),
            len(reviews),
        )
    return pd.concat(parts).loc[cutoffs.index]
