"""Learner simulator: synthetic learners studying for board exams, written through the tracker.

Two layers:

* ``generate(users, days, seed, ...)`` is pure Python (no database): it returns a
  :class:`Simulation` whose ``events()`` streams every event of every learner **sorted by
  received_at** (the simulated server clock), including the ones still "in flight" at the end of
  the window, and whose ``truth`` holds the latent state the events were drawn from. Tests can
  deliver the events in batches of their own.
* ``simulate(conn, users, days, seed, ...)`` loads the reference data, inserts the learners, sends
  the events received by ``end`` through ``Tracker.track_batch`` (with a tqdm progress bar) and
  saves the latent truth in schema ``sim``.

The model (constants below, each documented; every figure is a knob of this simulator, not a
claim about real learners unless a source is named):

* **Learners** have an ability, a proficiency prior per leaf topic (organ-system and topic offsets:
  what they knew before the window, higher further into exam preparation), a timezone, a
  chronotype (preferred local hours), sessions per study day, session lengths, question pace, hint
  use, confidence-rating style, idle breaks, a slip rate, a learning rate, memory parameters and
  practice-exam habits; a few go quiet.
* **Study habits** are not tied to any scheduler: *crammers* study rarely and in bursts in the days
  before an exam (practice or board); *steady spacers* study most days and come back to a topic
  after intervals of their own (a personal first interval that grows by a personal factor per
  review, regardless of how the review went); *irregular* learners alternate random stretches of
  days off with binges. Orthogonally, a learner picks new topics by *curriculum* (organ system by
  organ system), chases *weak* topics (lowest recent accuracy) or picks at *random* by board weight.
* **Memory** follows the power forgetting curve of the FSRS family of spaced-repetition models
  (the open-spaced-repetition project's FSRS, fitted on Anki review logs; its stability model goes
  back to Ye, Su and Cao, "A Stochastic Shortest Path Algorithm for Optimizing Spaced Repetition
  Scheduling", KDD 2022, measured on MaiMemo review logs): retrievability
  ``R(t) = (1 + F t / S) ** -d`` with ``F = 0.9 ** (-1 / d) - 1`` so that ``R(S) = 0.9``
  (FSRS-4.5/5 fix the decay ``d`` at 0.5; FSRS-6 fits it per user: here it varies by learner).
  At a review the memory is retrieved with probability ``R``. A retrieved memory's stability is
  multiplied by ``1 + g e^{w} (11 - D) S^{-w'} (e^{w''(1 - R)} - 1)``: the gain is larger the more
  the topic had been forgotten (the spacing effect as measured on real review logs), smaller for
  a stable memory and for a hard topic (difficulty ``D`` in 1-10, per learner and topic), scaled
  by a per-learner factor ``g``. A massed repeat the same day (``R`` close to 1) gains almost
  nothing. A lapse (not retrieved) shrinks stability (FSRS's post-lapse formula) and makes the
  topic harder for that learner.
* **Knowledge and answering** follow item response theory. Every question has a difficulty ``b``
  (the reference difficulty on a logit scale, plus noise) and a discrimination ``a``; the learner
  answers right with ``P = 0.2 + 0.8 (1 - slip) logistic(a (theta - b))`` (five options: 0.2 by
  guessing; a slip rate per learner). The proficiency ``theta`` in a topic is the learner's prior
  plus ``GAIN`` times what was learned in the window and retained: ``level * R(t)``. Each question
  raises the level by a random amount (explanation read after a wrong answer teaches most, a right
  answer less; diminishing returns within a block; per-learner and per-topic learning rates; known
  prerequisites help), so two learners with the same number of attempts know different amounts.
  A hint or a question seen before raise ``theta`` for that attempt only. Wrong answers are
  sometimes left blank (skipped). Confidence ratings follow ``P`` with a per-learner bias and noise.
* **Latent truth** (schema ``sim``): ``knowledge`` of a learner-topic at an instant is the expected
  share of the topic's questions the learner would answer right if they were new to them (no hint,
  no memory of the item; guessing included), averaged over the topic's question bank: what a
  knowledge estimate should recover. ``sim.attempts`` holds the ``P`` of every question attempt.
* **Exams** (practice every 1-2 weeks for most learners, the board exam on exam_date when it falls
  in the window) draw 200 questions by board-exam weight. Their true share is the mean ``P`` of
  those questions given the latent state; the observed share adds exam-day form of the learner
  (a shift of theta), the form's difficulty (a shift of b) and binomial sampling; the scaled score
  (1-300) maps the observed share linearly with reporting noise; pass = score >= 196. The noise is
  set so that consecutive practice exams correlate about 0.8, as NBME self-assessment scores
  correlate with USMLE scores (r about 0.8, as reported by the NBME), not 0.9 or more.
* **Delivery**: each session is, with probability ``late_share``, uploaded late (phone offline):
  all its events are received together between 1 hour and 10 days after they occurred; the others
  arrive seconds (sometimes minutes) after they occurred.

Determinism: all randomness comes from ``random.Random`` streams seeded from the seed (the item
parameters) and from (seed, learner index) (everything about a learner), and the window is
``[end - days, end]`` with ``end`` defaulting to now rounded down to the minute, so a seed gives
the same events for the same ``end``.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
import random
import re
import struct
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from python_jobs.ingest.events import (
    Event,
    ExamResult,
    GenericEvent,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.simulation.reference import Reference, load_reference, reference
from python_jobs.warehouse import db

if TYPE_CHECKING:
    from python_jobs.ingest.tracker import BatchResult

DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0

# ----------------------------------------------------------------------------- model constants
# -- answering (item response theory)
GUESS = 0.2  # chance of a right answer by guessing (5 options): the floor of P(correct)
ITEM_B_SCALE = 8.0  # logits per unit of reference difficulty (0-1): b = scale * (difficulty - 0.5)
ITEM_B_NOISE = 0.5  # sd (logits) of a question's b around its reference difficulty
ITEM_A_MEDIAN = 1.7  # median discrimination a (logistic scale; ~1.0 in the normal-ogive metric)
ITEM_A_SD = 0.3  # sd of log(a) between questions
ITEM_A_RANGE = (0.35, 2.5)  # discriminations are clipped to this range
SLIP_RANGE = (0.02, 0.12)  # per-learner slip probability (knows it, answers wrong anyway)
HINT_BONUS = 0.7  # logits added to theta for an attempt with a hint
SEEN_RIGHT_BONUS = 1.2  # logits added when the question was answered right before (item memory)
SEEN_WRONG_BONUS = 0.5  # logits added when it was answered wrong before (explanation was read)
SKIP_WHEN_WRONG = 0.04  # share of would-be wrong answers left blank (skipped)
# -- proficiency: theta = prior + GAIN * level * R(t)
PRIOR_MEAN = -1.0  # mean prior theta (logits) of a learner at ability 0, not yet preparing
PRIOR_ABILITY = 0.55  # prior theta per standard deviation of ability
PRIOR_PREP = 0.9  # extra prior theta of a learner at the end of exam preparation
PRIOR_SYSTEM_SD = 0.5  # sd of a learner's prior theta between organ systems
PRIOR_TOPIC_SD = 0.5  # sd of a learner's prior theta between topics of a system
GAIN = 3.0  # theta gained by a fully learned and fully retained topic (level 1, R 1)
LEVEL_MAX = 0.995  # the learned level never quite reaches 1
THETA_GRID = (-9.0, 9.0, 0.05)  # grid of the per-topic expected-P tables (min, max, step)
# -- learning
LEARN_RATE = 0.07  # median level gained per wrong answer with explanation, x (1 - level)
#   (each question's gain is also multiplied by an exponential(1) draw: a few teach a lot)
ABILITY_LEARN = 0.2  # log learning rate per standard deviation of ability
EXPLANATION_RATE = (0.5, 0.95)  # per-learner probability of reading the explanation when wrong
HINT_LEARN = 0.7  # a question answered with a hint teaches this share of one without
LEARN_RATE_SD = 0.45  # sd of log(learning rate) between learners
LEARNABILITY_SD = 0.35  # sd of log(learning-rate multiplier) between a learner's topics
LEARN_WRONG = 1.0  # learning per question (x learning rate) after a wrong answer + explanation
LEARN_WRONG_UNREAD = 0.3  # the same when the explanation was skipped
LEARN_RIGHT = 0.45  # learning per question after a right answer
BLOCK_SATURATION = 0.12  # the k-th question of a block teaches 1 / (1 + 0.12 k) as much
WITHIN_BLOCK_TRANSFER = 0.3  # share of what a block teaches that already helps later questions
LEARN_READ_PER_MIN = 0.06  # learning per minute of reading (x learning rate)
PREREQ_BASE = 0.5  # learning-rate multiplier = PREREQ_BASE + mean knowledge of prerequisites
# -- memory (FSRS-family power forgetting; defaults close to FSRS-5's published defaults)
DECAY = 0.5  # median decay d of the power forgetting curve (FSRS-4.5/5 use 0.5)
DECAY_SD = 0.25  # sd of log(d) between learners (FSRS-6 fits d per user)
STABILITY_FIRST = 2.0  # median stability (days) after a first study (x ability, first accuracy)
STABILITY_FIRST_SD = 0.5  # sd of log(first stability) between a learner's topics
ABILITY_STABILITY = 0.2  # log first stability per standard deviation of ability
ABILITY_SINC = 0.15  # log stability-gain factor g per standard deviation of ability
SINC_SCALE = 4.7  # e^w: scale of the stability increase after a successful retrieval (FSRS w8)
SINC_STABILITY = 0.12  # w': larger stability, smaller relative gain (FSRS w9)
SINC_RETRIEVABILITY = 1.0  # w'': larger gain the lower R was at the review (FSRS w10)
SINC_LEARNER_SD = 0.3  # sd of log(per-learner stability-gain factor g)
LAPSE_SCALE = 1.9  # post-lapse stability scale (FSRS w11)
LAPSE_DIFFICULTY = 0.11  # post-lapse stability falls with difficulty as D^-0.11 (FSRS w12)
LAPSE_STABILITY = 0.3  # post-lapse stability grows as (S + 1)^0.3 - 1 (FSRS w13)
LAPSE_RETRIEVABILITY = 2.3  # post-lapse stability grows as e^(2.3 (1 - R)) (FSRS w14)
STABILITY_RANGE = (0.1, 365.0)  # stability (days) is kept in this range
DIFFICULTY_BASE = 5.0  # memory difficulty D (1-10) of a topic of average question difficulty
DIFFICULTY_PER_B = 1.5  # D per logit of the topic's mean question difficulty
DIFFICULTY_SD = 1.5  # sd of D between learners for the same topic
DIFFICULTY_LAPSE = 1.5  # a lapse raises D by this x (10 - D) / 9
DIFFICULTY_SUCCESS = 0.3  # a successful retrieval lowers D by this x (D - 1) / 9
MASSED_GAP_DAYS = 0.3  # a block sooner than this after the last one does not count as a review
# -- study habits
HABITS = (("crammer", 0.30), ("spacer", 0.40), ("irregular", 0.30))  # (habit, share)
STRATEGIES = (("curriculum", 0.5), ("weak", 0.25), ("random", 0.25))  # topic choice, share
CRAM_DAYS = (5, 21)  # a crammer's burst starts this many days (range) before an exam
CRAM_PRACTICE_SHARE = 0.35  # before a practice exam the burst is this share of cram_days
CRAM_PRACTICE_EVERY = (10, 21)  # crammers who take practice exams do so every 10-21 days
CRAM_STUDY_P = 0.9  # probability of studying on a day of a burst
CRAM_RAMP = 1.5  # session length and count multiplier in a burst
CRAM_BASE_DAYS = (0.5, 2.5)  # a crammer's study days per week outside bursts (range)
SPACER_DAYS = (4.0, 7.0)  # a steady spacer's study days per week (range)
SPACER_INTERVAL = (1.0, 5.0)  # a spacer's own first review interval, days (range)
SPACER_GROWTH = (1.2, 2.5)  # ... multiplied by this factor (range) after each review
INTERVAL_JITTER_SD = 0.3  # sd of log(own interval) around that plan, per review
REVIEW_PICK_NOISE = 0.3  # random score added when picking the most overdue or weakest topic
IRREGULAR_ON = (0.55, 0.85)  # irregular learner: probability of studying again the next day
IRREGULAR_GAP = (2.0, 10.0)  # irregular learner: mean length of a break, days (range)
IRREGULAR_RAMP = (1.0, 1.8)  # irregular learner: session multiplier on binge days (range)
BOARD_RAMP = 1.35  # everyone studies more in the 6 weeks before the board exam
# -- exams
EXAM_QUESTIONS = 200  # questions in a practice or board exam
EXAM_PASS_SCORE = 196  # scaled score needed to pass
EXAM_CUT_SHARE = 0.50  # observed share correct that maps to the pass score (practice exams)
BOARD_CUT_SHARE = 0.60  # the same for board exams (a higher bar than the practice forms)
EXAM_POINTS_PER_SHARE = 400.0  # scaled points per unit of share correct
EXAM_DAY_SD = 0.25  # sd (logits) of the learner's form on the day of an exam
EXAM_FORM_SD = 0.15  # sd (logits) of a form's difficulty, added to every question's b
EXAM_SCORE_SD = 6.0  # sd of scaled points of reporting / equating noise
# -- delivery and activity
HEARTBEAT_SECONDS = 120.0  # the app sends a heartbeat after this long without another event
LATE_MIN_SECONDS = HOUR  # late delivery: between 1 hour ...
LATE_MAX_SECONDS = 10 * DAY  # ... and 10 days after the event occurred
QUIET_SHARE = 0.06  # share of learners who go quiet (stop studying) somewhere in the window

# Timezones: the first learners take the anchors (so even small runs cover the tricky ones),
# the rest are drawn with these weights.
ANCHOR_TIMEZONES = ("Pacific/Auckland", "America/Los_Angeles", "Europe/London", "Asia/Kolkata")
TIMEZONES: tuple[tuple[str, float], ...] = (
    ("America/New_York", 14), ("America/Chicago", 8), ("America/Denver", 3),
    ("America/Los_Angeles", 8), ("America/Toronto", 3), ("America/Mexico_City", 2),
    ("America/Bogota", 2), ("America/Sao_Paulo", 3), ("Europe/London", 6), ("Europe/Dublin", 2),
    ("Europe/Berlin", 4), ("Europe/Madrid", 2), ("Europe/Warsaw", 2), ("Europe/Bucharest", 2),
    ("Africa/Lagos", 3), ("Africa/Cairo", 3), ("Asia/Jerusalem", 1), ("Asia/Dubai", 2),
    ("Asia/Karachi", 4), ("Asia/Kolkata", 8), ("Asia/Kathmandu", 1), ("Asia/Dhaka", 2),
    ("Asia/Manila", 3), ("Asia/Singapore", 2), ("Asia/Tokyo", 1), ("Australia/Sydney", 2),
    ("Pacific/Auckland", 3),
)  # fmt: skip
# (cohort code, exam_target, weight)
EXAM_TARGETS = (
    ("USMLE-Step1", "USMLE Step 1", 0.52),
    ("USMLE-Step2CK", "USMLE Step 2 CK", 0.25),
    ("COMLEX-Level1", "COMLEX Level 1", 0.13),
    ("PLAB1", "PLAB 1", 0.10),
)
# Chronotypes: (name, weight, first-session hour, second-session hour)
CHRONOTYPES = (
    ("early_bird", 0.25, 6.5, 17.5),
    ("daytime", 0.30, 10.0, 15.0),
    ("evening", 0.30, 18.5, 21.5),
    ("night_owl", 0.15, 21.5, 23.5),
)
EVENT_TYPES = (
    "session_start", "session_heartbeat", "session_end", "question_attempt",
    "material_interaction", "exam_result", "search", "page_view", "ai_coach_message",
)  # fmt: skip


# ----------------------------------------------------------------------------- learners
@dataclass(frozen=True)
class Learner:
    """One simulated learner: the app.users row plus the hidden traits that drive behaviour."""

    index: int
    user_id: uuid.UUID
    created_at: datetime
    timezone: str
    cohort: str
    exam_target: str
    exam_date: date | None
    ability: float  # standard normal; drives prior proficiency, learning rate, stability
    learn_rate: float  # level gained per wrong answer with explanation, x (1 - level)
    prior_mean: float  # mean prior proficiency theta (logits) of a topic at the start
    slip: float  # probability of answering wrong a question the learner knows
    explanation_rate: float  # probability of reading the explanation after a wrong answer
    forget_decay: float  # d of the power forgetting curve R(t) = (1 + F t / S) ** -d
    stability_gain: float  # per-learner factor g on the stability increase of a review
    habit: str  # crammer, spacer or irregular (see HABITS)
    strategy: str  # curriculum, weak or random: how new and review topics are picked
    review_interval: float  # own first review interval (days) of a topic
    interval_growth: float  # own review interval multiplier per review
    cram_days: int  # crammers: the burst starts this many days before an exam
    irregular_on: float  # irregular: probability of studying again the day after a study day
    irregular_gap: float  # irregular: mean break length (days)
    chronotype: str
    first_hour: float  # preferred local hour of the first session of a day
    second_hour: float  # preferred local hour of later sessions
    study_days_per_week: float
    sessions_per_day: float  # mean sessions on a study day (>= 1)
    session_minutes: float  # median planned session length
    question_seconds: float  # median time to answer a question
    hint_rate: float  # probability of using a hint (higher on weak topics)
    rates_confidence: bool  # gives confidence ratings at all
    confidence_bias: float  # over(+)/under(-) confidence, in probability units
    confidence_noise: float
    idle_break_prob: float  # probability of a > 5 min break inside a session
    review_propensity: float  # share of blocks spent on due or weak topics
    read_propensity: float  # probability of reading a material before a new topic
    follows_curriculum: bool  # strategy == "curriculum": works through systems in order
    uses_coach: bool  # sends AI-coach messages now and then
    practice_exam_every_days: int | None  # None: never takes practice exams
    quiet_from: datetime | None  # stops studying from then on
    ips: tuple[str, ...]

    def users_row(self) -> tuple[Any, ...]:
        return (
            self.user_id,
            self.created_at,
            self.timezone,
            self.cohort,
            self.exam_target,
            self.exam_date,
        )


def _user_id(seed: int, index: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://studyin.example/sim/{seed}/learner/{index}")


def _learner_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"studyin-sim:{seed}:learner:{index}")


def _random_ips(rng: random.Random) -> tuple[str, ...]:
    ips = []
    for _ in range(rng.randint(1, 3)):
        first = rng.choice([23, 31, 45, 62, 78, 81, 92, 103, 118, 151, 176, 185, 203, 212])
        ips.append(f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        groups = [f"{rng.choice([0x2001, 0x2003, 0x2A01, 0x2A02, 0x2600, 0x2804]):x}"]
        groups += [f"{rng.getrandbits(16):x}" for _ in range(7)]
        ips.append(":".join(groups))
    return tuple(ips)


def make_learner(seed: int, index: int, start: datetime, end: datetime) -> Learner:
    rng = _learner_rng(seed, index)
    days = (end - start).total_seconds() / DAY
    if index < len(ANCHOR_TIMEZONES):
        tz = ANCHOR_TIMEZONES[index]
        rng.random()  # keep the stream aligned with drawn learners
    else:
        tz = rng.choices([t for t, _ in TIMEZONES], [w for _, w in TIMEZONES])[0]
    code, target, _ = rng.choices(EXAM_TARGETS, [w for *_, w in EXAM_TARGETS])[0]
    end_day = end.date()
    r = rng.random()
    if r < 0.20:  # board exam inside the window
        exam_date: date | None = end_day - timedelta(days=rng.randint(0, max(0, int(days) - 4)))
    elif r < 0.42:  # within 60 days after the window
        exam_date = end_day + timedelta(days=rng.randint(1, 60))
    elif r < 0.95:
        exam_date = end_day + timedelta(days=rng.randint(61, 420))
    else:
        exam_date = None
    cohort_year = exam_date.year if exam_date else end_day.year + 1
    if exam_date is not None and exam_date <= end_day or rng.random() < 0.75:
        created_at = start - timedelta(seconds=rng.uniform(1 * DAY, 180 * DAY))
    else:
        created_at = start + timedelta(seconds=rng.uniform(0, max(0.0, days - 2) * DAY))
    created_at = created_at.replace(microsecond=0)
    ability = rng.gauss(0.0, 1.0)
    days_to_exam = (exam_date - end_day).days + days / 2 if exam_date else 365.0
    prep = min(1.0, max(0.0, 1.0 - days_to_exam / 240.0))  # how far into exam preparation
    chrono = rng.choices(CHRONOTYPES, [c[1] for c in CHRONOTYPES])[0]
    every = None if rng.random() < 0.12 else rng.randint(7, 14)
    quiet = None
    if rng.random() < QUIET_SHARE:
        quiet = start + timedelta(seconds=rng.uniform(0.2, 0.8) * days * DAY)
    habit = rng.choices([h for h, _ in HABITS], [w for _, w in HABITS])[0]
    strategy = rng.choices([s for s, _ in STRATEGIES], [w for _, w in STRATEGIES])[0]
    irregular_on = rng.uniform(*IRREGULAR_ON)
    irregular_gap = rng.uniform(*IRREGULAR_GAP)
    if habit == "crammer":
        days_per_week = rng.uniform(*CRAM_BASE_DAYS)
        every = None if every is None else rng.randint(*CRAM_PRACTICE_EVERY)
    elif habit == "spacer":
        days_per_week = rng.uniform(*SPACER_DAYS)
    else:  # share of days "on" of the two-state chain, times 7
        on_days = 1.0 / (1.0 - irregular_on)
        days_per_week = 7.0 * on_days / (on_days + irregular_gap)
    return Learner(
        index=index,
        user_id=_user_id(seed, index),
        created_at=created_at,
        timezone=tz,
        cohort=f"{cohort_year}-{code}",
        exam_target=target,
        exam_date=exam_date,
        ability=ability,
        learn_rate=LEARN_RATE
        * math.exp(ABILITY_LEARN * ability)
        * rng.lognormvariate(0.0, LEARN_RATE_SD),
        prior_mean=PRIOR_MEAN + PRIOR_ABILITY * ability + PRIOR_PREP * prep,
        slip=rng.uniform(*SLIP_RANGE),
        explanation_rate=rng.uniform(*EXPLANATION_RATE),
        forget_decay=min(1.0, max(0.2, DECAY * rng.lognormvariate(0.0, DECAY_SD))),
        stability_gain=math.exp(ABILITY_SINC * ability) * rng.lognormvariate(0.0, SINC_LEARNER_SD),
        habit=habit,
        strategy=strategy,
        review_interval=rng.uniform(*SPACER_INTERVAL),
        interval_growth=rng.uniform(*SPACER_GROWTH),
        cram_days=rng.randint(*CRAM_DAYS),
        irregular_on=irregular_on,
        irregular_gap=irregular_gap,
        chronotype=chrono[0],
        first_hour=chrono[2] + rng.gauss(0.0, 0.8),
        second_hour=chrono[3] + rng.gauss(0.0, 0.8),
        study_days_per_week=days_per_week,
        sessions_per_day=1.0 + rng.uniform(0.0, 1.3),
        session_minutes=rng.lognormvariate(math.log(45.0), 0.35),
        question_seconds=rng.uniform(50.0, 100.0),
        hint_rate=rng.uniform(0.0, 0.2),
        rates_confidence=rng.random() < 0.75,
        confidence_bias=rng.gauss(0.0, 0.08),
        confidence_noise=rng.uniform(0.12, 0.3),
        idle_break_prob=rng.uniform(0.1, 0.5),
        review_propensity=rng.uniform(0.25, 0.6),
        read_propensity=rng.uniform(0.15, 0.7),
        follows_curriculum=strategy == "curriculum",
        uses_coach=rng.random() < 0.25,
        practice_exam_every_days=every,
        quiet_from=quiet,
        ips=_random_ips(rng),
    )


# ----------------------------------------------------------------------------- truth
@dataclass
class Truth:
    """Latent truth, compact column arrays (rows: learner x leaf x local day studied, plus the
    end-of-simulation row of every learner x leaf)."""

    learner: array = field(default_factory=lambda: array("i"))  # learner index
    topic: array = field(default_factory=lambda: array("i"))  # leaf topic id
    day: array = field(default_factory=lambda: array("i"))  # local date, proleptic ordinal
    knowledge_start: array = field(default_factory=lambda: array("d"))
    knowledge: array = field(default_factory=lambda: array("d"))
    questions: array = field(default_factory=lambda: array("i"))
    correct: array = field(default_factory=lambda: array("i"))
    material_seconds: array = field(default_factory=lambda: array("i"))
    final: array = field(default_factory=lambda: array("b"))  # 1 on the end-of-simulation row
    exams: list[ExamTruth] = field(default_factory=list)
    # one entry per question_attempt event: its event id (two 64-bit halves), the learner, the
    # leaf topic id, the question id and the true P(correct) (float32 to save memory)
    attempt_id_hi: array = field(default_factory=lambda: array("Q"))
    attempt_id_lo: array = field(default_factory=lambda: array("Q"))
    attempt_learner: array = field(default_factory=lambda: array("i"))
    attempt_topic: array = field(default_factory=lambda: array("i"))
    attempt_question: array = field(default_factory=lambda: array("i"))
    attempt_p: array = field(default_factory=lambda: array("f"))
    weighted_knowledge_start: dict[int, float] = field(default_factory=dict)
    weighted_knowledge_end: dict[int, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.learner)

    def add(
        self,
        li: int,
        topic: int,
        day: int,
        k0: float,
        k1: float,
        q: int,
        c: int,
        ms: int,
        final: int,
    ) -> None:
        self.learner.append(li)
        self.topic.append(topic)
        self.day.append(day)
        self.knowledge_start.append(k0)
        self.knowledge.append(k1)
        self.questions.append(q)
        self.correct.append(c)
        self.material_seconds.append(ms)
        self.final.append(final)

    def attempts(self) -> Iterator[tuple[uuid.UUID, int, int, int, float]]:
        """(event_id, learner index, topic id, question id, p_correct) per question attempt."""
        hi, lo = self.attempt_id_hi, self.attempt_id_lo
        learner, topic, question, p = (
            self.attempt_learner,
            self.attempt_topic,
            self.attempt_question,
            self.attempt_p,
        )
        for i in range(len(hi)):
            yield (_uuid_from_int((hi[i] << 64) | lo[i]), learner[i], topic[i], question[i], p[i])

    def rows(self) -> Iterator[tuple[int, int, date, float, float, int, int, int, bool]]:
        for i in range(len(self.learner)):
            yield (
                self.learner[i],
                self.topic[i],
                date.fromordinal(self.day[i]),
                self.knowledge_start[i],
                self.knowledge[i],
                self.questions[i],
                self.correct[i],
                self.material_seconds[i],
                bool(self.final[i]),
            )


@dataclass(frozen=True)
class ExamTruth:
    event_id: uuid.UUID
    learner: int
    exam_kind: str
    taken_at: datetime
    weighted_knowledge: float  # board-weighted latent knowledge when the exam was taken
    share_correct: float  # observed share correct (exam-day form, form difficulty, sampling)
    true_share: float  # expected share correct on the exam's questions given the latent state
    scaled_score: int
    passed: bool
    received_at: datetime


# ----------------------------------------------------------------------------- content model
class _Content:
    """Reference data flattened into lists indexed by leaf position, for the hot loops, with the
    item parameters of this simulated world (drawn from the seed) and, per leaf, a table of the
    expected logistic term over the leaf's questions as a function of theta."""

    def __init__(self, ref: Reference, seed: int = 0) -> None:
        leaves = sorted(ref.leaves, key=lambda t: t.id)
        self.leaf_ids = [t.id for t in leaves]
        pos = {t.id: i for i, t in enumerate(leaves)}
        self.n = len(leaves)
        self.weights = [float(t.board_exam_weight) for t in leaves]
        total = sum(self.weights)
        self.weights = [w / total for w in self.weights]
        acc = 0.0
        self.cum_weights = []
        for w in self.weights:
            acc += w
            self.cum_weights.append(acc)
        self.system_of = [t.id // 100 for t in leaves]
        self.systems = sorted(set(self.system_of))
        prereq = ref.prerequisites()
        self.prereqs = [[pos[p] for p in prereq.get(t.id, []) if p in pos] for t in leaves]
        qs = sorted(ref.questions, key=lambda q: q.id)
        self.q_ids: list[int] = []
        self.q_difficulty: list[float] = []
        self.q_answer: list[str] = []
        self.q_start = [0] * self.n
        self.q_count = [0] * self.n
        by_leaf: dict[int, list] = {}
        for q in qs:
            by_leaf.setdefault(q.topic_id, []).append(q)
        for i, tid in enumerate(self.leaf_ids):
            self.q_start[i] = len(self.q_ids)
            self.q_count[i] = len(by_leaf.get(tid, []))
            for q in by_leaf.get(tid, []):
                self.q_ids.append(q.id)
                self.q_difficulty.append(float(q.difficulty))
                self.q_answer.append(q.correct_answer)
        self._draw_items(seed)
        mats = sorted(ref.materials, key=lambda m: m.id)
        self.m_ids = [m.id for m in mats]
        self.m_minutes = [float(m.est_minutes) for m in mats]
        self.leaf_materials: list[list[int]] = [[] for _ in range(self.n)]
        for k, m in enumerate(mats):
            if m.topic_id in pos:
                self.leaf_materials[pos[m.topic_id]].append(k)

    def _draw_items(self, seed: int) -> None:
        """IRT parameters per question: b from the reference difficulty plus noise, a lognormal;
        the per-leaf tables of E_q[logistic(a_q (theta - b_q))] on THETA_GRID; the leaf's mean b."""
        rng = random.Random(f"studyin-sim:{seed}:items")
        lo, hi = ITEM_A_RANGE
        self.q_b = [
            ITEM_B_SCALE * (d - 0.5) + rng.gauss(0.0, ITEM_B_NOISE) for d in self.q_difficulty
        ]
        self.q_a = [
            min(hi, max(lo, ITEM_A_MEDIAN * rng.lognormvariate(0.0, ITEM_A_SD)))
            for _ in self.q_difficulty
        ]
        t_min, t_max, step = THETA_GRID
        grid = np.arange(t_min, t_max + step / 2, step)
        a = np.array(self.q_a)
        b = np.array(self.q_b)
        self.tables: list[list[float]] = []
        self.mean_b: list[float] = []
        for j in range(self.n):
            sl = slice(self.q_start[j], self.q_start[j] + self.q_count[j])
            if self.q_count[j] == 0:
                self.tables.append([0.5] * len(grid))
                self.mean_b.append(0.0)
                continue
            x = a[sl][None, :] * (grid[:, None] - b[sl][None, :])
            self.tables.append((1.0 / (1.0 + np.exp(-x))).mean(axis=1).tolist())
            self.mean_b.append(float(b[sl].mean()))

    def expected_logistic(self, j: int, theta: float) -> float:
        """E over leaf j's questions of logistic(a (theta - b)), linearly interpolated."""
        t_min, t_max, step = THETA_GRID
        if theta <= t_min:
            return self.tables[j][0]
        x = (theta - t_min) / step
        i = int(x)
        table = self.tables[j]
        if i >= len(table) - 1:
            return table[-1]
        v = table[i]
        return v + (x - i) * (table[i + 1] - v)


# ----------------------------------------------------------------------------- learner state
_NEVER = -1.0e9  # "last studied" time of a topic never studied


class _State:
    """Mutable per-learner simulation state.

    Per leaf ``j``: ``theta0`` (prior proficiency, logits), ``level`` (what was learned in the
    window, 0-1, as of the last study ``T``, in days since the epoch), memory stability ``S``
    (days) and difficulty ``D`` (1-10), and a learning-rate multiplier ``learnability``.
    """

    __slots__ = (
        "p", "rng", "tz", "uid", "theta0", "level", "S", "T", "D", "learnability", "studied",
        "reviews", "q_seen", "q_last", "ptr", "offset", "own_interval", "last_day", "last_acc",
        "curriculum", "cur_pos", "mat_done", "busy_until", "day_ord", "day_start", "touch",
        "next_practice", "stopped", "board_done", "first_plan", "on", "factor", "decay", "scale",
        "content",
    )  # fmt: skip

    def __init__(self, learner: Learner, content: _Content, rng: random.Random) -> None:
        self.p = learner
        self.rng = rng
        self.content = content
        self.tz = ZoneInfo(learner.timezone)
        self.uid = learner.user_id
        n = content.n
        system_offset = {s: rng.gauss(0.0, PRIOR_SYSTEM_SD) for s in content.systems}
        gauss = rng.gauss
        self.theta0 = [
            learner.prior_mean + system_offset[content.system_of[j]] + gauss(0.0, PRIOR_TOPIC_SD)
            for j in range(n)
        ]
        self.level = [0.0] * n
        self.S = [STABILITY_FIRST] * n
        self.T = [_NEVER] * n  # days since the epoch
        self.D = [
            min(10.0, max(1.0, DIFFICULTY_BASE + DIFFICULTY_PER_B * content.mean_b[j]
                          + gauss(0.0, DIFFICULTY_SD)))
            for j in range(n)
        ]  # fmt: skip
        self.learnability = [rng.lognormvariate(0.0, LEARNABILITY_SD) for _ in range(n)]
        self.studied = [0] * n  # study blocks so far
        self.reviews = [0] * n  # spaced reviews so far (the learner's own interval grows with it)
        self.q_seen = bytearray(len(content.q_ids))  # attempts per question (capped at 255)
        self.q_last = bytearray(len(content.q_ids))  # 1 right, 2 wrong at the last attempt
        self.ptr = [0] * n
        self.offset = [rng.randrange(max(1, content.q_count[j])) for j in range(n)]
        self.own_interval = [learner.review_interval] * n  # own next review interval, days
        self.last_day = [-1] * n  # ordinal of the local day last studied
        self.last_acc = [1.0] * n
        systems = list(content.systems)
        rng.shuffle(systems)
        order = {s: i for i, s in enumerate(systems)}
        self.curriculum = sorted(range(n), key=lambda j: (order[content.system_of[j]], j))
        self.cur_pos = 0
        self.mat_done = bytearray(len(content.m_ids))
        self.busy_until = 0.0
        self.day_ord = 0
        self.day_start = 0.0
        self.touch: dict[int, list] = {}  # leaf -> [k_start, questions, correct, material_s]
        self.next_practice = 0
        self.stopped = False
        self.board_done = False
        self.first_plan = True
        self.on = False  # irregular learners: on a binge
        self.factor = (1.0 - GUESS) * (1.0 - learner.slip)  # P = GUESS + factor * logistic
        self.decay = learner.forget_decay
        self.scale = 0.9 ** (-1.0 / self.decay) - 1.0  # F: R(S) = 0.9

    def retrievability(self, j: int, t_days: float) -> float:
        """R of leaf j's learned level at t: (1 + F dt / S) ** -d (1 at or before the study)."""
        dt = t_days - self.T[j]
        if dt <= 0:
            return 1.0
        return (1.0 + self.scale * dt / self.S[j]) ** -self.decay

    def theta(self, j: int, t_days: float) -> float:
        """Proficiency (logits) in leaf j at t: prior plus what was learned and is retained."""
        level = self.level[j]
        if level <= 0.0:
            return self.theta0[j]
        return self.theta0[j] + GAIN * level * self.retrievability(j, t_days)

    def knowledge(self, j: int, t_days: float) -> float:
        """Expected share right on leaf j's questions, new to the learner, at t (the truth)."""
        return GUESS + self.factor * self.content.expected_logistic(j, self.theta(j, t_days))


# ----------------------------------------------------------------------------- simulation
@dataclass
class SimulationStats:
    generated: int = 0
    by_type: Counter = field(default_factory=Counter)
    late: int = 0  # received more than 1 hour after occurring
    sessions: int = 0
    late_sessions: int = 0


class Simulation:
    """A deterministic simulation: learners, a stream of events sorted by received_at, the truth.

    ``events()`` can be iterated once; the truth (``truth``) is complete when it is exhausted.
    """

    def __init__(
        self,
        users: int,
        days: int,
        seed: int,
        late_share: float = 0.03,
        end: datetime | None = None,
        ref: Reference | None = None,
        attempt_truth: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if users < 1 or days < 1:
            raise ValueError("users and days must be positive")
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
        if not 0.0 <= late_share <= 1.0:
            raise ValueError(f"late_share must be between 0 and 1, got {late_share}")
        if end is None:
            end = datetime.now(UTC).replace(second=0, microsecond=0)
        if end.tzinfo is None:
            raise ValueError("end must be timezone-aware")
        self.users = users
        self.days = days
        self.seed = seed
        self.late_share = late_share
        self.end = end.astimezone(UTC)
        self.start = self.end - timedelta(days=days)
        self.ref = ref or reference()
        self.content = _Content(self.ref, seed)
        self.learners = [make_learner(seed, i, self.start, self.end) for i in range(users)]
        self.truth = Truth()
        self.attempt_truth = attempt_truth  # False: no sim.attempts (32 bytes per attempt)
        # (k, n): only the learners whose index is k modulo n act. Learners share nothing but
        # the content, so the n shards' streams together are the whole simulation's events.
        self.shard = shard
        self.stats = SimulationStats()
        self._consumed = False

    # ------------------------------------------------------------------ public
    def events(self) -> Iterator[Event]:
        """Every event, sorted by received_at (ties by generation order); in-flight ones last."""
        if self._consumed:
            raise RuntimeError("Simulation.events() can be iterated only once")
        self._consumed = True
        return self._run()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    # ------------------------------------------------------------------ engine
    def _run(self) -> Iterator[Event]:
        end_ts = self.end_ts
        start_ts = self.start.timestamp()
        self._out: list[tuple[float, int, Event]] = []
        self._sched: list[tuple[float, int, int, int, Any]] = []
        self._seq = 0
        self._states: dict[int, _State] = {}
        k, n = self.shard
        for learner in self.learners:
            if learner.index % n != k:
                continue
            rng = random.Random(f"studyin-sim:{self.seed}:learner:{learner.index}:life")
            st = _State(learner, self.content, rng)
            st.next_practice = int(rng.uniform(0, learner.practice_exam_every_days or 7))
            self._states[learner.index] = st
            first = max(start_ts, learner.created_at.timestamp())
            self.truth.weighted_knowledge_start[learner.index] = self._weighted(st, first / DAY)
            self._push(first, learner.index, 0, None)
        out = self._out
        sched = self._sched
        pop = heapq.heappop
        while sched:
            t, _, li, kind, payload = pop(sched)
            if t >= end_ts:
                break
            while out and out[0][0] < t:
                yield pop(out)[2]
            st = self._states[li]
            if kind == 0:
                self._plan_day(st, t)
            else:
                self._session(st, t, payload)
        self._finish()
        while out:
            yield pop(out)[2]

    def _push(self, t: float, li: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._sched, (t, self._seq, li, kind, payload))

    def _weighted(self, st: _State, t_days: float) -> float:
        w = self.content.weights
        return sum(w[j] * st.knowledge(j, t_days) for j in range(self.content.n))

    # ------------------------------------------------------------------ days
    def _local(self, st: _State, d: date, hours: float) -> float:
        """The instant of local wall-clock time ``hours`` after midnight of ``d`` (up to 27:00,
        i.e. 3 a.m. the next day for night owls), in the learner's timezone."""
        minutes = int(min(max(hours, 0.0), 27.0) * 60)
        wall = datetime(d.year, d.month, d.day, tzinfo=st.tz) + timedelta(minutes=minutes)
        return wall.timestamp()

    def _flush_day(self, st: _State, at_ts: float, final: bool) -> None:
        t_days = at_ts / DAY
        li = st.p.index
        ids = self.content.leaf_ids
        for j, (k0, q, c, ms) in st.touch.items():
            self.truth.add(li, ids[j], st.day_ord, k0, st.knowledge(j, t_days), q, c, ms, final)
        if not final:
            st.touch = {}

    def _plan_day(self, st: _State, t: float) -> None:
        """At the start of a learner's local day (or the window start): flush yesterday's truth,
        decide today's sessions, schedule them and tomorrow's planning."""
        p = st.p
        rng = st.rng
        local = datetime.fromtimestamp(t, st.tz)
        today = local.date()
        tomorrow = today + timedelta(days=1)
        next_midnight = datetime(
            tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=st.tz
        ).timestamp()
        if st.touch:
            self._flush_day(st, t, final=False)
        st.day_ord = today.toordinal()
        st.day_start = t
        day_index = (today - self.start.date()).days
        self._push(next_midnight, p.index, 0, None)
        if st.stopped:
            return
        if p.quiet_from is not None and t >= p.quiet_from.timestamp():
            st.stopped = True
            return
        if p.exam_date is not None and today == p.exam_date:
            begin = self._local(st, today, 8.0 + rng.uniform(-0.5, 1.0))
            report = begin + rng.uniform(8.0, 10.0) * HOUR
            if report > t:
                self._push(report, p.index, 1, ("board", begin))
            st.stopped = True  # the board exam is the end of this learner's preparation
            return
        days_to_exam = (p.exam_date - today).days if p.exam_date else 999
        if p.practice_exam_every_days and day_index >= st.next_practice and days_to_exam > 2:
            if rng.random() < 0.8:
                at = self._local(st, today, rng.uniform(15.0, 21.5))
                if at > t:
                    self._push(at, p.index, 1, ("practice", at))
                    st.next_practice = day_index + p.practice_exam_every_days + rng.randint(-2, 2)
        p_study, ramp = self._study_odds(st, days_to_exam, day_index)
        if local.weekday() >= 5:
            p_study *= 0.85
        if rng.random() >= p_study:
            return
        n_sessions = int(p.sessions_per_day) + (rng.random() < p.sessions_per_day % 1.0)
        if ramp > 1.0 and rng.random() < 0.3:
            n_sessions += 1
        for k in range(n_sessions):
            hour = (p.first_hour if k == 0 else p.second_hour + 1.5 * (k - 1)) + rng.gauss(0, 0.9)
            at = self._local(st, today, hour)
            if at <= t:
                continue
            minutes = p.session_minutes * rng.lognormvariate(0.0, 0.35) * ramp
            self._push(at, p.index, 1, ("study", min(minutes, 180.0)))

    def _study_odds(self, st: _State, days_to_exam: int, day_index: int) -> tuple[float, float]:
        """Probability of studying today and the session multiplier, by study habit."""
        p = st.p
        rng = st.rng
        board = BOARD_RAMP if 0 < days_to_exam <= 42 else 1.0
        if p.habit == "crammer":
            board_soon = 0 < days_to_exam <= p.cram_days
            practice_soon = (
                p.practice_exam_every_days is not None
                and st.next_practice - day_index <= p.cram_days * CRAM_PRACTICE_SHARE
            )
            if board_soon or practice_soon:
                return CRAM_STUDY_P, CRAM_RAMP
            return p.study_days_per_week / 7.0, 1.0
        if p.habit == "irregular":
            if st.on:
                st.on = rng.random() < p.irregular_on
            else:
                st.on = rng.random() < 1.0 / p.irregular_gap
            if not st.on:
                return 0.0, 1.0
            return 0.97, board * rng.uniform(*IRREGULAR_RAMP)
        return min(0.97, p.study_days_per_week / 7.0 * board), board

    # ------------------------------------------------------------------ sessions
    def _session(self, st: _State, t: float, payload: tuple[str, Any]) -> None:
        kind, arg = payload
        if t < st.busy_until + 5 * MINUTE:
            t = st.busy_until + 5 * MINUTE + st.rng.uniform(0, 10 * MINUTE)
        if t >= self.end_ts:
            return
        if kind == "study":
            self._study_session(st, t, arg)
        else:
            self._exam_session(st, t, kind, arg)

    def _emit_session(self, st: _State, sid: uuid.UUID, ip: str, raw: list) -> list[Event]:
        """Turn a session's raw events into tracker events with receive times and queue them."""
        if not raw:
            return []
        rng = st.rng
        stats = self.stats
        stats.sessions += 1
        late = rng.random() < self.late_share
        upload = 0.0
        if late:
            stats.late_sessions += 1
            lo = raw[-1][0] + LATE_MIN_SECONDS
            hi = raw[0][0] + LATE_MAX_SECONDS
            upload = lo + rng.random() * (hi - lo)
        uid = st.uid
        out = self._out
        push = heapq.heappush
        by_type = stats.by_type
        getrandbits = rng.getrandbits
        uniform = rng.uniform
        rand = rng.random
        expo = rng.expovariate
        fromts = datetime.fromtimestamp
        make = _make_event
        made = []
        for i, (occ, cls, kw) in enumerate(raw):
            if late:
                recv = upload + i * 0.001
            elif rand() < 0.04:
                recv = occ + uniform(60.0, 600.0)  # flaky network: minutes
            else:
                recv = occ + 0.05 + expo(1 / 6.0)  # seconds
            event = make(
                cls, kw, _uuid4(getrandbits(128)), uid, fromts(occ, UTC), sid, ip, fromts(recv, UTC)
            )
            by_type[event.event_type] += 1
            self._seq += 1
            push(out, (recv, self._seq, event))
            made.append(event)
        stats.generated += len(raw)
        if late:
            stats.late += len(raw)
        return made

    def _new_session(self, st: _State) -> tuple[uuid.UUID, str]:
        rng = st.rng
        sid = _uuid4(rng.getrandbits(128))
        ips = st.p.ips
        v6 = [ip for ip in ips if ":" in ip]
        v4 = [ip for ip in ips if ":" not in ip]
        ip = rng.choice(v6) if v6 and rng.random() < 0.3 else rng.choice(v4)
        return sid, ip

    def _exam_session(self, st: _State, t: float, kind: str, begin: float) -> None:
        """Log a practice or board exam result (taken outside the app) in a short session."""
        rng = st.rng
        c = self.content
        k_days = begin / DAY
        theta = [st.theta(j, k_days) for j in range(c.n)]
        day_form = rng.gauss(0.0, EXAM_DAY_SD)  # the learner's form on the day
        form = rng.gauss(0.0, EXAM_FORM_SD)  # the form's difficulty
        factor = st.factor
        exp = math.exp
        rand = rng.random
        correct = 0
        expected = 0.0
        for _ in range(EXAM_QUESTIONS):
            j = min(c.n - 1, bisect.bisect_left(c.cum_weights, rand()))
            qi = c.q_start[j] + int(rand() * c.q_count[j])
            a = c.q_a[qi]
            x = a * (theta[j] - c.q_b[qi])
            expected += GUESS + factor / (1.0 + exp(-x))
            if rand() < GUESS + factor / (1.0 + exp(-x - a * (day_form - form))):
                correct += 1
        share = correct / EXAM_QUESTIONS
        true_share = expected / EXAM_QUESTIONS
        cut = BOARD_CUT_SHARE if kind == "board" else EXAM_CUT_SHARE
        score = EXAM_PASS_SCORE + (share - cut) * EXAM_POINTS_PER_SHARE
        score = int(round(min(300.0, max(1.0, score + rng.gauss(0.0, EXAM_SCORE_SD)))))
        passed = score >= EXAM_PASS_SCORE
        sid, ip = self._new_session(st)
        t2 = t + rng.uniform(5, 40)
        t3 = t2 + rng.uniform(20, 120)
        t4 = t3 + rng.uniform(5, 60)
        raw = [
            (t, SessionStart, {}),
            (t2, GenericEvent, {"event_type": "page_view", "properties": {"screen": "exams"}}),
            (t3, ExamResult, {"exam_kind": kind, "scaled_score": score, "passed": passed}),
            (t4, SessionEnd, {"end_reason": "user_ended"}),
        ]
        raw = [r for r in raw if r[0] <= self.end_ts]
        st.busy_until = max(st.busy_until, raw[-1][0])
        for event in self._emit_session(st, sid, ip, raw):
            if isinstance(event, ExamResult):
                self.truth.exams.append(
                    ExamTruth(
                        event_id=event.event_id,
                        learner=st.p.index,
                        exam_kind=kind,
                        taken_at=event.occurred_at,
                        weighted_knowledge=self._weighted(st, k_days),
                        share_correct=share,
                        true_share=true_share,
                        scaled_score=score,
                        passed=passed,
                        received_at=event.received_at,
                    )
                )

    def _choose_topic(self, st: _State, today_ord: int, weak_focus: float) -> tuple[int, bool]:
        """Pick a leaf for the next block: a topic to review (see ``_review_topic``), else the
        next topic of the learner's curriculum or one drawn by board-exam weight (weak-topic
        chasers and random pickers). Returns (leaf, is_review)."""
        rng = st.rng
        p = st.p
        c = self.content
        if rng.random() < min(0.85, p.review_propensity + weak_focus):
            best = self._review_topic(st, today_ord)
            if best >= 0:
                return best, True
        if p.strategy == "curriculum":
            while st.cur_pos < c.n and st.studied[st.curriculum[st.cur_pos]]:
                st.cur_pos += 1
            if st.cur_pos < c.n:
                return st.curriculum[st.cur_pos], False
        j = min(c.n - 1, bisect.bisect_left(c.cum_weights, rng.random()))
        return j, bool(st.studied[j])

    def _review_topic(self, st: _State, today_ord: int) -> int:
        """A studied topic not yet studied today, or -1: spacers and curriculum followers take the
        most overdue by their own interval (none when nothing is due); weak-topic chasers the
        lowest recent accuracy (noisy); random pickers any."""
        p = st.p
        rand = st.rng.random
        studied = st.studied
        last_day = st.last_day
        candidates = [j for j in range(self.content.n) if studied[j] and last_day[j] != today_ord]
        if not candidates:
            return -1
        if p.habit == "spacer" or p.strategy == "curriculum":
            interval = st.own_interval
            best, best_score = -1, 1.0
            for j in candidates:
                score = (today_ord - last_day[j]) / interval[j] + rand() * REVIEW_PICK_NOISE
                if score > best_score:
                    best, best_score = j, score
            return best
        if p.strategy == "weak":
            last_acc = st.last_acc
            return min(candidates, key=lambda j: last_acc[j] + REVIEW_PICK_NOISE * rand())
        return candidates[int(rand() * len(candidates))]

    def _study_session(self, st: _State, t0: float, minutes: float) -> None:
        p = st.p
        rng = st.rng
        sid, ip = self._new_session(st)
        budget_end = t0 + minutes * MINUTE
        breaks = []
        if rng.random() < p.idle_break_prob:
            breaks.append(rng.uniform(t0 + 5 * MINUTE, max(t0 + 6 * MINUTE, budget_end)))
            if rng.random() < 0.3:
                breaks.append(rng.uniform(t0 + 5 * MINUTE, max(t0 + 6 * MINUTE, budget_end)))
            breaks.sort()
        w = _SessionWriter(t0, self.end_ts, rng, breaks)
        today = st.day_ord
        days_to_exam = (p.exam_date.toordinal() - today) if p.exam_date else 999
        weak_focus = 0.25 if 0 < days_to_exam <= 28 else 0.0
        try:
            w.event(t0, SessionStart, {})
            w.event(w.t + rng.uniform(1, 8), GenericEvent, _page("dashboard"))
            while w.t < budget_end:
                j, review = self._choose_topic(st, today, weak_focus)
                self._block(st, j, review, budget_end, w)
            r = rng.random()
            reason = "user_ended" if r < 0.75 else "app_closed" if r < 0.87 else None
            if reason:  # otherwise the tracker closes the session after 30 idle minutes
                w.event(w.t + rng.uniform(2, 30), SessionEnd, {"end_reason": reason})
        except _PastEnd:
            pass  # the simulated present: the rest of this session has not happened yet
        if w.raw:
            st.busy_until = max(st.busy_until, w.raw[-1][0])
        made = self._emit_session(st, sid, ip, w.raw)
        if not self.attempt_truth:
            return
        truth = self.truth
        li = st.p.index
        for i, topic_id, question_id, prob in w.attempts:
            bits = made[i].event_id.int
            truth.attempt_id_hi.append(bits >> 64)
            truth.attempt_id_lo.append(bits & _LOW64)
            truth.attempt_learner.append(li)
            truth.attempt_topic.append(topic_id)
            truth.attempt_question.append(question_id)
            truth.attempt_p.append(prob)

    def _block(
        self, st: _State, j: int, review: bool, budget_end: float, w: _SessionWriter
    ) -> None:
        """One topic block: maybe read a material, then answer questions; update the latent state
        (also when the simulated present cuts the block short)."""
        p = st.p
        rng = st.rng
        t_days = w.t / DAY
        r0 = st.retrievability(j, t_days) if st.T[j] > _NEVER else 0.0
        if j not in st.touch:
            st.touch[j] = [st.knowledge(j, st.day_start / DAY), 0, 0, 0]
        pre = self.content.prereqs[j]
        mult = PREREQ_BASE + sum(st.knowledge(i, t_days) for i in pre) / len(pre) if pre else 1.0
        block = _Block(
            k=st.level[j] * r0,  # the learned level still retained
            rate=p.learn_rate * mult * st.learnability[j],
        )
        try:
            if rng.random() < 0.08:
                w.event(
                    w.t + rng.uniform(2, 20),
                    GenericEvent,
                    {"event_type": "search", "properties": {"topic_id": self.content.leaf_ids[j]}},
                )
            mats = self.content.leaf_materials[j]
            if mats and rng.random() < p.read_propensity * (0.4 if review else 1.0):
                self._read(st, j, mats, budget_end, w, block)
            self._answer(st, j, review, budget_end, w, block)
        finally:
            end_day = min(w.t, self.end_ts) / DAY
            self._learn(st, j, block.k, r0, t_days, end_day, block.asked, block.right)

    def _read(
        self,
        st: _State,
        j: int,
        mats: list[int],
        budget_end: float,
        w: _SessionWriter,
        block: _Block,
    ) -> None:
        """Read one of the topic's materials (the first unfinished one) in chunks of a few
        minutes, to the end or to a target share, stopping when out of time."""
        rng = st.rng
        c = self.content
        touch = st.touch[j]
        undone = [m for m in mats if not st.mat_done[m]]
        m = undone[0] if undone else rng.choice(mats)
        mid = c.m_ids[m]
        total = c.m_minutes[m] * MINUTE * rng.lognormvariate(0.0, 0.25)
        target = 1.0 if rng.random() < 0.8 else rng.uniform(0.2, 0.9)
        w.event(w.t + rng.uniform(2, 10), GenericEvent, _page("reader"))
        w.event(
            w.t + rng.uniform(1, 5),
            MaterialInteraction,
            {"material_id": mid, "interaction_type": "open", "progress": 0.0},
        )
        progress = 0.0
        while progress < target - 1e-9:
            chunk = max(10.0, min(total * (target - progress), rng.uniform(2.0, 5.0) * MINUTE))
            progress = min(target, progress + chunk / total)
            ts = w.t + chunk
            if ts > budget_end + 10 * MINUTE:
                target = progress  # out of time: stop reading here
            done = progress >= 1.0 - 1e-9
            w.event(
                ts,
                MaterialInteraction,
                {
                    "material_id": mid,
                    "interaction_type": "complete" if done else "progress",
                    "progress": round(progress, 4),
                    "active_seconds": int(chunk),
                },
            )
            block.k += min(1.0, LEARN_READ_PER_MIN * block.rate * chunk / MINUTE) * (
                LEVEL_MAX - block.k
            )
            touch[3] += int(chunk)
            if done:
                st.mat_done[m] = 1
            elif rng.random() < 0.12:
                w.event(
                    w.t + rng.uniform(5, 40),
                    MaterialInteraction,
                    {
                        "material_id": mid,
                        "interaction_type": "highlight" if rng.random() < 0.7 else "note",
                        "progress": round(progress, 4),
                    },
                )
            w.take_break()

    def _answer(
        self, st: _State, j: int, review: bool, budget_end: float, w: _SessionWriter, block: _Block
    ) -> None:
        """A block of 5-20 questions of the topic (a review may redo the last wrong one), each
        answered by the item response model and learnt from; the loop keeps its state in locals
        (it is the simulator's hot path) and hands it back to ``block`` however it ends."""
        p = st.p
        rng = st.rng
        c = self.content
        topic_id = c.leaf_ids[j]
        k, rate = block.k, block.rate
        asked = 0
        right = 0
        n_q = c.q_count[j]
        size = rng.randint(5, 20)
        pace = p.question_seconds
        w.event(w.t + rng.uniform(2, 10), GenericEvent, _page("question_block"))
        wrong_review = review and rng.random() < 0.2
        q0 = c.q_start[j]
        theta0 = st.theta0[j]
        hint_p = p.hint_rate * (1.6 if theta0 + GAIN * k < 0.0 else 0.6)
        k_block = k  # level when the questions start (after any reading)
        q_seen = st.q_seen
        q_last = st.q_last
        q_a = c.q_a
        q_b = c.q_b
        factor = st.factor
        rand = rng.random
        lognorm = rng.lognormvariate
        expo = rng.expovariate
        exp = math.exp
        attempts = w.attempts
        try:
            for _ in range(size):
                if w.t >= budget_end:
                    break
                qi = _next_question(st, j, q0, n_q, wrong_review)
                seen = q_seen[qi]
                hint = rand() < hint_p
                theta = theta0 + GAIN * (k_block + WITHIN_BLOCK_TRANSFER * (k - k_block))
                theta += HINT_BONUS if hint else 0.0
                if seen:
                    theta += SEEN_RIGHT_BONUS if q_last[qi] == 1 else SEEN_WRONG_BONUS
                prob = GUESS + factor / (1.0 + exp(-q_a[qi] * (theta - q_b[qi])))
                correct = rand() < prob
                selected, secs, conf = _response(rng, p, prob, correct, hint, c.q_answer[qi])
                w.event(
                    w.t + secs,
                    QuestionAttempt,
                    {
                        "question_id": c.q_ids[qi],
                        "selected_answer": selected,
                        "attempt_number": seen + 1,
                        "time_to_answer_ms": int(secs * 1000),
                        "confidence_level": conf,
                        "hint_used": hint,
                    },
                )
                attempts.append((len(w.raw) - 1, topic_id, c.q_ids[qi], prob))
                q_seen[qi] = min(255, seen + 1)
                q_last[qi] = 1 if correct else 2
                asked += 1
                right += correct
                if correct:
                    learn = LEARN_RIGHT
                elif rand() < p.explanation_rate:
                    learn = LEARN_WRONG
                else:
                    learn = LEARN_WRONG_UNREAD
                learn *= (
                    expo(1.0) * (HINT_LEARN if hint else 1.0) / (1.0 + BLOCK_SATURATION * asked)
                )
                k += min(1.0, rate * learn) * (LEVEL_MAX - k)
                w.t += pace * 0.35 * lognorm(0.0, 0.5)  # reading the explanation
                if not correct and p.uses_coach and rand() < 0.1:
                    w.event(
                        w.t + rng.uniform(10, 60),
                        GenericEvent,
                        {
                            "event_type": "ai_coach_message",
                            "properties": {"topic_id": topic_id, "chars": rng.randint(20, 400)},
                        },
                    )
                w.take_break()
        finally:
            block.k, block.asked, block.right = k, asked, right

    def _learn(
        self,
        st: _State,
        j: int,
        k: float,
        r0: float,
        t_days: float,
        t_end: float,
        asked: int,
        right: int,
    ) -> None:
        """Fold a finished block into the latent state and the learner's own review schedule.

        ``k`` is the level reached, ``r0`` the retrievability when the block started."""
        p = st.p
        rng = st.rng
        touch = st.touch[j]
        success = right / asked if asked else 0.7
        if st.studied[j] == 0:
            st.S[j] = (
                STABILITY_FIRST
                * math.exp(ABILITY_STABILITY * p.ability)
                * rng.lognormvariate(0.0, STABILITY_FIRST_SD)
                * (0.5 + success)
            )
        elif t_days - st.T[j] >= MASSED_GAP_DAYS:
            st.S[j] = self._review_stability(st, j, r0, rng.random() < r0)
            st.reviews[j] += 1
            st.own_interval[j] = (
                p.review_interval
                * p.interval_growth ** st.reviews[j]
                * rng.lognormvariate(0.0, INTERVAL_JITTER_SD)
            )
        else:  # massed: the FSRS formula with R close to 1 gives almost no gain
            st.S[j] = self._review_stability(st, j, r0, True)
        st.level[j] = min(LEVEL_MAX, max(0.0, k))
        st.T[j] = t_end
        st.studied[j] += 1
        touch[1] += asked
        touch[2] += right
        if asked:
            st.last_acc[j] = success
        st.last_day[j] = st.day_ord

    def _review_stability(self, st: _State, j: int, r: float, retrieved: bool) -> float:
        """Stability after a review at retrievability r (FSRS-style), updating difficulty D."""
        s = st.S[j]
        d = st.D[j]
        if retrieved:
            gain = SINC_SCALE * st.p.stability_gain * (11.0 - d) * s**-SINC_STABILITY
            s *= 1.0 + gain * (math.exp(SINC_RETRIEVABILITY * (1.0 - r)) - 1.0)
            st.D[j] = d - DIFFICULTY_SUCCESS * (d - 1.0) / 9.0
        else:
            lapse = LAPSE_SCALE * d**-LAPSE_DIFFICULTY * ((s + 1.0) ** LAPSE_STABILITY - 1.0)
            s = min(s, lapse * math.exp(LAPSE_RETRIEVABILITY * (1.0 - r)))
            st.D[j] = d + DIFFICULTY_LAPSE * (10.0 - d) / 9.0
        lo, hi = STABILITY_RANGE
        return min(hi, max(lo, s))

    # ------------------------------------------------------------------ end
    def _finish(self) -> None:
        end_ts = self.end_ts
        t_days = end_ts / DAY
        ids = self.content.leaf_ids
        for st in self._states.values():
            end_day = datetime.fromtimestamp(end_ts, st.tz).date().toordinal()
            if st.day_ord != end_day:
                if st.touch:
                    self._flush_day(st, end_ts, final=False)
                st.day_ord = end_day
                st.day_start = datetime.fromordinal(end_day).replace(tzinfo=st.tz).timestamp()
            li = st.p.index
            start_days = st.day_start / DAY
            for j in range(self.content.n):
                if j in st.touch:
                    k0, q, c, ms = st.touch[j]
                else:
                    k0, q, c, ms = st.knowledge(j, start_days), 0, 0, 0
                self.truth.add(li, ids[j], end_day, k0, st.knowledge(j, t_days), q, c, ms, 1)
            st.touch = {}
            self.truth.weighted_knowledge_end[li] = self._weighted(st, t_days)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_LOW64 = (1 << 64) - 1


def _uuid4(bits: int) -> uuid.UUID:
    """``uuid.UUID(int=bits, version=4)`` without its argument checks (a hot path)."""
    return _uuid_from_int((bits & _UUID4_CLEAR) | _UUID4_SET)


def _uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks."""
    u = object.__new__(uuid.UUID)
    object.__setattr__(u, "int", value)
    object.__setattr__(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _event_defaults(cls: type) -> dict[str, Any] | None:
    """Field defaults of an event class, or None when it cannot be built by filling its
    ``__dict__`` (slots or a ``__post_init__``): then the normal constructor is used."""
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        return None
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = _FACTORY
    return defaults


_FACTORY = object()
_EVENT_DEFAULTS: dict[type, dict[str, Any] | None] = {}


def _make_event(
    cls: type,
    kw: dict[str, Any],
    event_id: uuid.UUID,
    user_id: uuid.UUID,
    occurred_at: datetime,
    session_id: uuid.UUID,
    ip: str,
    received_at: datetime,
) -> Event:
    """``cls(event_id=..., ..., **kw)`` for a frozen event dataclass, built by filling its
    ``__dict__``: the same object the constructor makes (a test compares them), several times
    faster. Falls back to the constructor for classes that need it."""
    try:
        defaults = _EVENT_DEFAULTS[cls]
    except KeyError:
        defaults = _EVENT_DEFAULTS[cls] = _event_defaults(cls)
    if defaults is None:
        return cls(
            event_id=event_id,
            user_id=user_id,
            occurred_at=occurred_at,
            session_id=session_id,
            ip=ip,
            received_at=received_at,
            **kw,
        )
    event = object.__new__(cls)
    d = event.__dict__
    for name, value in defaults.items():
        d[name] = {} if value is _FACTORY else value
    d.update(kw)
    d["event_id"] = event_id
    d["user_id"] = user_id
    d["occurred_at"] = occurred_at
    d["session_id"] = session_id
    d["ip"] = ip
    d["received_at"] = received_at
    return event


def _next_question(st: _State, j: int, q0: int, n_q: int, wrong_review: bool) -> int:
    """The index of the next question of topic ``j``: in a review that redoes mistakes, the
    topic's first question last answered wrong; else the next of the learner's own order."""
    if wrong_review:
        for x in range(n_q):
            if st.q_last[q0 + x] == 2:
                return q0 + x
    qi = q0 + (st.offset[j] + st.ptr[j]) % n_q
    st.ptr[j] += 1
    return qi


def _response(
    rng: random.Random, p: Learner, prob: float, correct: bool, hint: bool, answer_key: str
) -> tuple[str | None, float, int | None]:
    """How an answer looks: (the option chosen, None when skipped; seconds taken; the confidence
    rated, None when the learner does not rate it). A wrong answer is skipped at times."""
    skipped = not correct and rng.random() < SKIP_WHEN_WRONG
    secs = p.question_seconds * rng.lognormvariate(0.0, 0.35) * (0.85 if correct else 1.1)
    if hint:
        secs += rng.uniform(8, 25)
    if skipped:
        selected = None
        secs = max(secs, 90.0 + rng.uniform(0, 30))
    elif correct:
        selected = answer_key
    else:
        selected = _WRONG[answer_key][rng.randrange(4)]
    conf = None
    if p.rates_confidence and rng.random() < 0.92:
        z = prob + 0.2 * ((1.0 if correct else 0.0) - prob) + p.confidence_bias
        z += rng.gauss(0.0, p.confidence_noise)
        conf = min(5, max(1, int(round(1 + 4 * z))))
    return selected, secs, conf


@dataclass
class _Block:
    """A topic block's running state: the learned level, the learning rate, and the questions
    asked and answered right so far."""

    k: float
    rate: float
    asked: int = 0
    right: int = 0


class _PastEnd(Exception):
    """Raised when a session reaches the end of the simulated window (the present)."""


_WRONG = {a: [b for b in "ABCDE" if b != a] for a in "ABCDE"}


def _page(screen: str) -> dict[str, Any]:
    return {"event_type": "page_view", "properties": {"screen": screen}}


class _SessionWriter:
    """The clock of one session and its raw events (time, class, fields), in time order.

    Heartbeats fill gaps longer than HEARTBEAT_SECONDS while the app is in the foreground; an idle
    break (app in the background) leaves a gap of 6-25 minutes without any event.
    """

    __slots__ = ("t", "last", "end_ts", "rng", "breaks", "raw", "attempts")

    def __init__(self, t0: float, end_ts: float, rng: random.Random, breaks: list[float]) -> None:
        self.t = t0
        self.last = t0
        self.end_ts = end_ts
        self.rng = rng
        self.breaks = breaks
        self.raw: list[tuple[float, type, dict[str, Any]]] = []
        self.attempts: list[tuple[int, int, int, float]] = []  # (raw index, topic, question, P)

    def event(self, ts: float, cls: type, kw: dict[str, Any]) -> None:
        if ts > self.end_ts:
            raise _PastEnd
        nxt = self.last + HEARTBEAT_SECONDS
        while nxt < ts - 1.0:
            self.raw.append((nxt, SessionHeartbeat, {}))
            nxt += HEARTBEAT_SECONDS
        self.raw.append((ts, cls, kw))
        self.t = self.last = ts

    def take_break(self) -> None:
        while self.breaks and self.t >= self.breaks[0]:
            self.breaks.pop(0)
            self.t += self.rng.uniform(6.0, 25.0) * MINUTE
            self.last = self.t
            self.event(self.t, GenericEvent, _page("resume"))


def generate(
    users: int,
    days: int,
    seed: int,
    late_share: float = 0.03,
    end: datetime | None = None,
    ref: Reference | None = None,
    attempt_truth: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> Simulation:
    """A pure, deterministic simulation (no database): iterate ``.events()``, then ``.truth``.

    ``shard=(k, n)`` simulates only the learners whose index is k modulo n (all learners are
    still made, for ``prepare``): the n shards, run in n processes, give the same events as one.
    ``attempt_truth=False`` skips the per-attempt truth (sim.attempts), which costs 32 bytes per
    question attempt (about 0.6 GB at 10,000 learners x 90 days) when only events are needed."""
    return Simulation(
        users,
        days,
        seed,
        late_share=late_share,
        end=end,
        ref=ref,
        attempt_truth=attempt_truth,
        shard=shard,
    )


# ----------------------------------------------------------------------------- database
SIM_DDL = """
create schema if not exists sim;
comment on schema sim is
    'Latent truth of the learner simulator (python_jobs.simulation), to measure how well the '
    'analytics recover it. The marts never read it.';
create table if not exists sim.runs (
    run_id                  bigint generated always as identity primary key,
    seed                    bigint not null,
    users                   integer not null,
    days                    integer not null,
    window_start            timestamptz not null,
    window_end              timestamptz not null,
    late_share              double precision not null,
    events_generated        bigint not null,
    events_delivered        bigint not null,
    events_in_flight        bigint not null,
    events_late             bigint not null,
    accepted                bigint not null,
    duplicates              bigint not null,
    rejected                bigint not null,
    practice_exams          integer not null,
    practice_exam_pass_rate double precision,
    board_exams             integer not null,
    board_exam_pass_rate    double precision,
    seconds                 double precision not null,
    created_at              timestamptz not null default now()
);
comment on table sim.runs is 'One row per simulate() call: its parameters and what it delivered.';
create table if not exists sim.learners (
    user_id                   uuid primary key references app.users (id) on delete cascade,
    run_id                    bigint not null references sim.runs (run_id) on delete cascade,
    learner_index             integer not null,
    ability                   double precision not null,
    learn_rate                double precision not null,
    prior_mean                double precision not null,
    chronotype                text not null,
    first_hour                double precision not null,
    second_hour               double precision not null,
    study_days_per_week       double precision not null,
    sessions_per_day          double precision not null,
    session_minutes           double precision not null,
    question_seconds          double precision not null,
    hint_rate                 double precision not null,
    rates_confidence          boolean not null,
    confidence_bias           double precision not null,
    confidence_noise          double precision not null,
    idle_break_prob           double precision not null,
    review_propensity         double precision not null,
    read_propensity           double precision not null,
    follows_curriculum        boolean not null,
    uses_coach                boolean not null,
    practice_exam_every_days  integer,
    quiet_from                timestamptz,
    weighted_knowledge_start  double precision not null,
    weighted_knowledge_end    double precision not null
);
comment on table sim.learners is
    'Hidden traits of each simulated learner (one row per app.users row).';
create table if not exists sim.topic_knowledge (
    user_id          uuid not null references app.users (id) on delete cascade,
    topic_id         integer not null references app.topics (id) on delete cascade,
    as_of            date not null,
    knowledge_start  double precision not null,
    knowledge        double precision not null,
    questions        integer not null,
    correct          integer not null,
    material_seconds integer not null,
    is_final         boolean not null,
    primary key (user_id, topic_id, as_of),
    constraint topic_knowledge_range
        check (knowledge between 0 and 1 and knowledge_start between 0 and 1)
);
comment on table sim.topic_knowledge is
    'Latent knowledge per learner x leaf topic: the expected share of the topic''s questions the '
    'learner would answer right if they were new to them (no hint, no memory of the question; '
    'guessing included, so between 0.2 and 1), averaged over the topic''s bank. One row per '
    'local day (as_of, in the learner''s timezone, the day a session started) on which the '
    'learner studied the topic: knowledge_start at the start of that day, knowledge at its '
    'end; plus one is_final row per learner x leaf topic for the local date of the simulation '
    'end, with knowledge at the end instant.';
create table if not exists sim.exams (
    event_id           uuid primary key,
    user_id            uuid not null references app.users (id) on delete cascade,
    exam_kind          text not null,
    taken_at           timestamptz not null,
    weighted_knowledge double precision not null,
    share_correct      double precision not null,
    scaled_score       integer not null,
    passed             boolean not null,
    delivered          boolean not null
);
comment on table sim.exams is
    'Every practice and board exam generated, with the board-weighted latent knowledge behind it; '
    'delivered = its exam_result event was received by the end of the window.';
alter table sim.exams add column if not exists true_share double precision;
comment on column sim.exams.true_share is
    'Expected share correct on this exam''s questions given the latent state when it was taken, '
    'without the exam-day, form and sampling noise of share_correct: the oracle of a pass.';
alter table sim.learners
    add column if not exists slip double precision,
    add column if not exists explanation_rate double precision,
    add column if not exists forget_decay double precision,
    add column if not exists stability_gain double precision,
    add column if not exists habit text,
    add column if not exists strategy text,
    add column if not exists review_interval double precision,
    add column if not exists interval_growth double precision,
    add column if not exists cram_days integer;
comment on column sim.learners.prior_mean is
    'Mean prior proficiency theta (logits) of the learner''s topics at the start.';
comment on column sim.learners.habit is
    'Study habit: crammer (bursts before exams), spacer (own review intervals) or irregular.';
comment on column sim.learners.strategy is
    'How topics are picked: curriculum (system by system), weak (lowest recent accuracy), random.';
create table if not exists sim.attempts (
    event_id  uuid primary key,
    user_id   uuid not null references app.users (id) on delete cascade,
    topic_id  integer not null,
    question_id integer not null,
    p_correct double precision not null,
    constraint attempts_p_range check (p_correct between 0 and 1)
);
create index if not exists attempts_user_topic on sim.attempts (user_id, topic_id);
comment on table sim.attempts is
    'One row per question_attempt event generated (delivered or not): the true probability that '
    'it is answered right given the latent state at that moment (hint and memory of the question '
    'included): the oracle of a recall prediction.';
"""


# On a Citus cluster the truth sits beside the learners it describes: the learner tables are
# distributed on user_id with app.users (so their keys carry user_id), sim.runs is a reference
# table. Citus refuses a foreign key from a local table to a distributed one, so there the tables
# are made without their foreign keys, placed, and the keys added afterwards.
SIM_FOREIGN_KEY = re.compile(r" references (\w+\.\w+) \((\w+)\)( on delete cascade)?")
SIM_REKEYED = ("exams", "attempts")  # keyed on event_id alone on plain PostgreSQL


def _sim_foreign_keys() -> dict[str, list[str]]:
    """Per sim table, its foreign keys as ALTER TABLE clauses, read from SIM_DDL."""
    keys: dict[str, list[str]] = {}
    table = ""
    for line in SIM_DDL.splitlines():
        if line.startswith("create table if not exists sim."):
            table = line.split()[5].removeprefix("sim.")
        found = SIM_FOREIGN_KEY.search(line)
        if found:
            column = line.split()[0]
            keys.setdefault(table, []).append(
                f"add foreign key ({column}) references {found[1]} ({found[2]}){found[3] or ''}"
            )
    return keys


def create_sim_schema(cur: psycopg.Cursor[Any]) -> None:
    """The sim schema (SIM_DDL); on Citus placed as described above. Idempotent."""
    if not db.is_citus(cur.connection):
        cur.execute(SIM_DDL)
        return
    db.one_connection_per_node(cur.connection)
    placed = {
        name
        for (name,) in cur.execute(
            "select logicalrelid::regclass::text from pg_dist_partition"
        ).fetchall()
    }
    # one statement at a time: Citus forwards a statement's whole query text to the workers
    for statement in re.split(r";\s*\n", SIM_FOREIGN_KEY.sub("", SIM_DDL)):
        if statement.strip():
            cur.execute(statement)
    if "sim.runs" not in placed:
        cur.execute("select create_reference_table('sim.runs')")
    for table, keys in _sim_foreign_keys().items():
        if table == "runs" or f"sim.{table}" in placed:
            continue
        if table in SIM_REKEYED:
            cur.execute(f"alter table sim.{table} drop constraint {table}_pkey")
            cur.execute(f"alter table sim.{table} add primary key (user_id, event_id)")
        cur.execute(
            "select create_distributed_table(%s, 'user_id', colocate_with => 'app.users')",
            (f"sim.{table}",),
        )
        for key in keys:  # Citus takes one ADD CONSTRAINT per statement
            cur.execute(f"alter table sim.{table} {key}")


@dataclass
class SimulationSummary:
    """What ``simulate`` did (printed by ``studyin simulate``)."""

    run_id: int
    learners: int
    days: int
    seed: int
    window_start: datetime
    window_end: datetime
    late_share_setting: float
    events_generated: int
    events_delivered: int
    events_in_flight: int
    events_by_type: dict[str, int]
    accepted: int
    duplicates: int
    rejected: int
    late_share_generated: float  # share of generated events received > 1 h after occurring
    late_share_delivered: float  # the same among delivered events
    practice_exams: int
    practice_exam_pass_rate: float | None
    board_exams: int
    board_exam_pass_rate: float | None
    truth_rows: int
    seconds: float
    rejections: list[tuple[int, str]] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events_delivered / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        def rate(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.1%}"

        types = ", ".join(f"{k} {v:,}" for k, v in sorted(self.events_by_type.items()))
        lines = [
            f"simulated {self.learners} learners x {self.days} days (seed {self.seed}), "
            f"window {self.window_start:%Y-%m-%d %H:%M} - {self.window_end:%Y-%m-%d %H:%M} UTC",
            f"  events generated  {self.events_generated:,} ({types})",
            f"  delivered         {self.events_delivered:,}: accepted {self.accepted:,}, "
            f"duplicates {self.duplicates:,}, rejected {self.rejected:,}",
            f"  still in flight   {self.events_in_flight:,} (received after the window end)",
            f"  late (> 1 h)      {self.late_share_generated:.2%} of generated, "
            f"{self.late_share_delivered:.2%} of delivered (setting {self.late_share_setting:.0%})",
            f"  practice exams    {self.practice_exams}, pass rate "
            f"{rate(self.practice_exam_pass_rate)}; board exams {self.board_exams}, "
            f"pass rate {rate(self.board_exam_pass_rate)}",
            f"  latent truth      sim.learners, sim.topic_knowledge ({self.truth_rows:,} rows), "
            f"sim.attempts, sim.exams, sim.runs (run {self.run_id})",
            f"  took              {self.seconds:.1f}s ({self.events_per_second:,.0f} events/s)",
        ]
        if self.rejections:
            lines.append(f"  first rejection   {self.rejections[0][1]}")
        return "\n".join(lines)


def prepare(conn: psycopg.Connection, sim: Simulation) -> None:
    """Reference data, the learners (app.users) and the sim schema; commits.

    Idempotent: learners already present are left as they are.
    """
    load_reference(conn, sim.ref)
    db.one_connection_per_node(conn)  # on Citus, for the sim schema's DDL after the inserts
    with conn.cursor() as cur:
        cur.execute(
            "create temporary table _sim_users (like app.users including defaults) on commit drop"
        )
        with cur.copy(
            "copy _sim_users (id, created_at, timezone, cohort, exam_target, exam_date) from stdin"
        ) as copy:
            for learner in sim.learners:
                copy.write_row(learner.users_row())
        cur.execute(
            "insert into app.users (id, created_at, timezone, cohort, exam_target, exam_date) "
            "select id, created_at, timezone, cohort, exam_target, exam_date from _sim_users "
            "on conflict (id) do nothing"
        )
        create_sim_schema(cur)
    conn.commit()


def _exam_pass_rate(exams: Iterable[ExamTruth], kind: str) -> tuple[int, float | None]:
    results = [e.passed for e in exams if e.exam_kind == kind]
    return len(results), (sum(results) / len(results) if results else None)


def save_truth(conn: psycopg.Connection, sim: Simulation, run: dict[str, Any]) -> int:
    """Write sim.runs (one row from ``run``), sim.learners, sim.topic_knowledge, sim.exams and
    sim.attempts, replacing earlier truth of the same learners; commits and returns the run id."""
    end_ts = sim.end
    with conn.cursor() as cur:
        create_sim_schema(cur)
        columns = ", ".join(run)
        placeholders = ", ".join(["%s"] * len(run))
        cur.execute(
            f"insert into sim.runs ({columns}) values ({placeholders}) returning run_id",
            list(run.values()),
        )
        run_id = cur.fetchone()[0]
        ids = [learner.user_id for learner in sim.learners]
        for table in ("sim.attempts", "sim.topic_knowledge", "sim.exams", "sim.learners"):
            cur.execute(f"delete from {table} where user_id = any(%s)", (ids,))
        truth = sim.truth
        with cur.copy(
            "copy sim.learners (user_id, run_id, learner_index, ability, learn_rate, prior_mean,"
            " chronotype, first_hour, second_hour, study_days_per_week, sessions_per_day,"
            " session_minutes, question_seconds, hint_rate, rates_confidence, confidence_bias,"
            " confidence_noise, idle_break_prob, review_propensity, read_propensity,"
            " follows_curriculum, uses_coach, practice_exam_every_days, quiet_from,"
            " weighted_knowledge_start, weighted_knowledge_end, slip, explanation_rate,"
            " forget_decay, stability_gain, habit, strategy, review_interval, interval_growth,"
            " cram_days) from stdin"
        ) as copy:
            for x in sim.learners:
                copy.write_row(
                    (x.user_id, run_id, x.index, x.ability, x.learn_rate, x.prior_mean,
                     x.chronotype, x.first_hour, x.second_hour, x.study_days_per_week,
                     x.sessions_per_day, x.session_minutes, x.question_seconds, x.hint_rate,
                     x.rates_confidence, x.confidence_bias, x.confidence_noise, x.idle_break_prob,
                     x.review_propensity, x.read_propensity, x.follows_curriculum, x.uses_coach,
                     x.practice_exam_every_days, x.quiet_from,
                     truth.weighted_knowledge_start[x.index], truth.weighted_knowledge_end[x.index],
                     x.slip, x.explanation_rate, x.forget_decay, x.stability_gain, x.habit,
                     x.strategy, x.review_interval, x.interval_growth, x.cram_days)
                )  # fmt: skip
        with cur.copy(
            "copy sim.topic_knowledge (user_id, topic_id, as_of, knowledge_start, knowledge,"
            " questions, correct, material_seconds, is_final) from stdin"
        ) as copy:
            for li, topic, as_of, k0, k1, q, c, ms, final in truth.rows():
                copy.write_row((ids[li], topic, as_of, k0, k1, q, c, ms, final))
        with cur.copy(
            "copy sim.exams (event_id, user_id, exam_kind, taken_at, weighted_knowledge,"
            " share_correct, scaled_score, passed, delivered, true_share) from stdin"
        ) as copy:
            for e in truth.exams:
                copy.write_row(
                    (e.event_id, ids[e.learner], e.exam_kind, e.taken_at, e.weighted_knowledge,
                     e.share_correct, e.scaled_score, e.passed, e.received_at <= end_ts,
                     e.true_share)
                )  # fmt: skip
        _copy_attempts(cur, truth, ids)
    conn.commit()
    return run_id


_ATTEMPT_ROW = struct.Struct(">hiQQi16siiiiid")  # binary COPY row of sim.attempts
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _copy_attempts(cur: psycopg.Cursor, truth: Truth, ids: list[uuid.UUID]) -> None:
    """sim.attempts by binary COPY straight from the truth's arrays (no UUID objects per row):
    tens of millions of rows at bench sizes."""
    pack = _ATTEMPT_ROW.pack
    users = [u.bytes for u in ids]
    hi, lo = truth.attempt_id_hi, truth.attempt_id_lo
    learner, topic, question, p = (
        truth.attempt_learner,
        truth.attempt_topic,
        truth.attempt_question,
        truth.attempt_p,
    )
    with cur.copy(
        "copy sim.attempts (event_id, user_id, topic_id, question_id, p_correct)"
        " from stdin (format binary)"
    ) as copy:
        copy.write(_COPY_HEADER)
        chunk = 20_000
        for start in range(0, len(hi), chunk):
            copy.write(
                b"".join(
                    pack(5, 16, hi[i], lo[i], 16, users[learner[i]], 4, topic[i], 4,
                         question[i], 8, p[i])
                    for i in range(start, min(start + chunk, len(hi)))
                )
            )  # fmt: skip
        copy.write(_COPY_TRAILER)


def simulate(
    conn: psycopg.Connection,
    users: int,
    days: int,
    seed: int,
    late_share: float = 0.03,
    end: datetime | None = None,
    progress: bool = True,
    chunk_size: int = 50_000,
) -> SimulationSummary:
    """Simulate ``users`` learners over the ``days`` before ``end`` (default: now, to the minute)
    and write everything received by ``end`` through the tracker's batch path.

    Events received after ``end`` (late uploads still in flight) are counted, not delivered. The
    latent truth goes to schema ``sim``. Deterministic for a seed given the same ``end``.
    """
    started = time.perf_counter()
    sim = generate(users, days, seed, late_share=late_share, end=end)
    prepare(conn, sim)
    result, counts = _deliver(conn, sim, chunk_size, progress)
    stats = sim.stats
    practice_n, practice_rate = _exam_pass_rate(sim.truth.exams, "practice")
    board_n, board_rate = _exam_pass_rate(sim.truth.exams, "board")
    run = {
        "seed": seed,
        "users": users,
        "days": days,
        "window_start": sim.start,
        "window_end": sim.end,
        "late_share": late_share,
        "events_generated": stats.generated,
        "events_delivered": counts["delivered"],
        "events_in_flight": counts["in_flight"],
        "events_late": stats.late,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "practice_exams": practice_n,
        "practice_exam_pass_rate": practice_rate,
        "board_exams": board_n,
        "board_exam_pass_rate": board_rate,
        "seconds": 0.0,
    }
    run_id = save_truth(conn, sim, run)
    seconds = time.perf_counter() - started
    conn.execute("update sim.runs set seconds = %s where run_id = %s", (seconds, run_id))
    conn.commit()
    delivered = counts["delivered"]
    return SimulationSummary(
        run_id=run_id,
        learners=users,
        days=days,
        seed=seed,
        window_start=sim.start,
        window_end=sim.end,
        late_share_setting=late_share,
        events_generated=stats.generated,
        events_delivered=delivered,
        events_in_flight=counts["in_flight"],
        events_by_type=dict(stats.by_type),
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        late_share_generated=stats.late / stats.generated if stats.generated else 0.0,
        late_share_delivered=counts["late_delivered"] / delivered if delivered else 0.0,
        practice_exams=practice_n,
        practice_exam_pass_rate=practice_rate,
        board_exams=board_n,
        board_exam_pass_rate=board_rate,
        truth_rows=len(sim.truth),
        seconds=seconds,
        rejections=result.rejections[:20],
    )


def _deliver(
    conn: psycopg.Connection, sim: Simulation, chunk_size: int, progress: bool
) -> tuple[BatchResult, dict[str, int]]:
    """Everything received by the simulation's end through the tracker's batch path: the batch
    result and the counts delivered, still in flight (received after the end) and delivered
    late."""
    from tqdm import tqdm

    from python_jobs.ingest.tracker import Tracker

    end_at = sim.end
    counts = {"delivered": 0, "in_flight": 0, "late_delivered": 0}
    late_after = timedelta(seconds=LATE_MIN_SECONDS)

    def deliver() -> Iterator[Event]:
        stream = sim.events()
        for event in stream:
            if event.received_at > end_at:
                counts["in_flight"] += 1 + sum(1 for _ in stream)
                break
            counts["delivered"] += 1
            if event.received_at - event.occurred_at > late_after:
                counts["late_delivered"] += 1
            yield event

    bar = tqdm(desc="simulate: events written", unit="ev", unit_scale=True, disable=not progress)
    try:
        result = Tracker(conn, trust_received_at=True).track_batch(
            deliver(), chunk_size=chunk_size, progress=bar.update
        )
    finally:
        bar.close()
    return result, counts
