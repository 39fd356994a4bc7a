"""How the simulated world looks to an analyst: figures that say whether the simulator flatters
the analytics (pure Python, no database).

``diagnose(sim)`` consumes a fresh :class:`~python_jobs.simulation.simulator.Simulation` (its
events and then its latent truth) and returns a :class:`Diagnostics`:

* ``practice_retest_r``: Pearson correlation of the scaled scores of a learner's consecutive
  practice exams (test-retest reliability; real self-assessments sit around 0.8);
* ``exam_true_r``: correlation of the observed share correct of an exam with its true share
  (the expected share given the latent state, without form or exam-day noise);
* ``board_pass_rate`` and ``practice_pass_rate``;
* ``count_knowledge_spearman``: median over learners of the Spearman correlation, across the
  topics the learner answered questions in, between the number of attempts and the latent
  knowledge at the end. Near 1 means counting attempts is as good as any estimate;
* ``accuracy_knowledge_spearman``: the same with the learner's observed accuracy in the topic
  instead of the attempt count (what a simple estimate gets; for scale);
* ``first_attempt_accuracy``: share of first attempts at a question answered right;
* ``p_correct_calibration``: the largest gap, over deciles of the true P(correct) of the attempts
  (``sim.attempts``), between the mean P and the observed share right (the truth is honest);
* ``oracle_auc`` and ``oracle_log_loss``: how well the true P(correct) predicts first attempts
  (the ceiling of any recall model), beside ``constant_log_loss`` (the base rate);
* ``review_gap_quantiles``: days between consecutive study days of the same learner and topic,
  and their median per study habit (crammer / spacer / irregular).

``python -m python_jobs.simulation.diagnostics --users 300 --days 60 --seed 1 --seed 2`` prints
them as a table, with the generation speed of each run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from python_jobs.simulation.simulator import Simulation, generate

GAP_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # quantiles of the review gaps that are reported
MIN_STUDIED_TOPICS = 5  # a learner enters the Spearman median with at least this many topics


@dataclass(frozen=True)
class Diagnostics:
    events: int
    seconds: float  # generation time (events and truth)
    practice_retest_r: float
    exam_true_r: float
    board_pass_rate: float
    practice_pass_rate: float
    count_knowledge_spearman: float
    accuracy_knowledge_spearman: float
    first_attempt_accuracy: float
    p_correct_calibration: float
    oracle_auc: float
    oracle_log_loss: float
    constant_log_loss: float
    review_gap_quantiles: tuple[float, ...]
    gap_median_by_habit: tuple[float, ...]  # crammer, spacer, irregular
    same_day_or_next_share: float  # share of review gaps of at most one day

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson correlation (nan with fewer than 3 pairs or no variance)."""
    n = len(x)
    if n < 3:
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        k = i
        while k + 1 < len(order) and values[order[k + 1]] == values[order[i]]:
            k += 1
        for m in range(i, k + 1):
            ranks[order[m]] = (i + k) / 2.0
        i = k + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    return pearson(_ranks(x), _ranks(y))


def exam_reliability(sim: Simulation) -> float:
    """Correlation of the scaled scores of consecutive practice exams of the same learner."""
    by_learner: dict[int, list] = defaultdict(list)
    for e in sim.truth.exams:
        if e.exam_kind == "practice":
            by_learner[e.learner].append((e.taken_at, e.scaled_score))
    first: list[float] = []
    second: list[float] = []
    for exams in by_learner.values():
        exams.sort()
        for (_, a), (_, b) in zip(exams, exams[1:], strict=False):
            first.append(a)
            second.append(b)
    return pearson(first, second)


def exam_validity(sim: Simulation) -> float:
    """Correlation of the observed share correct with the true share (the board-weighted latent
    knowledge when the exams carry no true share)."""
    exams = sim.truth.exams
    truth = [getattr(e, "true_share", e.weighted_knowledge) for e in exams]
    return pearson([e.share_correct for e in exams], truth)


def pass_rate(sim: Simulation, kind: str) -> float:
    results = [e.passed for e in sim.truth.exams if e.exam_kind == kind]
    return sum(results) / len(results) if results else math.nan


def _within_learner_spearman(sim: Simulation, score: str) -> float:
    """Median over learners of Spearman(score, final latent knowledge) across the topics the
    learner answered questions in; score "count" (attempts) or "accuracy" (share right)."""
    questions: dict[tuple[int, int], int] = defaultdict(int)
    correct: dict[tuple[int, int], int] = defaultdict(int)
    final: dict[tuple[int, int], float] = {}
    t = sim.truth
    for i in range(len(t)):
        key = (t.learner[i], t.topic[i])
        questions[key] += t.questions[i]
        correct[key] += t.correct[i]
        if t.final[i]:
            final[key] = t.knowledge[i]
    per_learner: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for key, n in questions.items():
        if n > 0:
            value = float(n) if score == "count" else correct[key] / n
            per_learner[key[0]].append((value, final[key]))
    rhos = []
    for pairs in per_learner.values():
        if len(pairs) >= MIN_STUDIED_TOPICS:
            rho = spearman([v for v, _ in pairs], [k for _, k in pairs])
            if not math.isnan(rho):
                rhos.append(rho)
    return statistics.median(rhos) if rhos else math.nan


def count_knowledge_spearman(sim: Simulation) -> float:
    """Median within-learner Spearman(attempts in the topic, final latent knowledge)."""
    return _within_learner_spearman(sim, "count")


def p_correct_calibration(sim: Simulation, correct: dict[int, bool]) -> float:
    """Largest |mean true P - observed share right| over deciles of P (``correct``: event id as
    int -> answered right). nan when the simulation records no attempt probabilities."""
    t = sim.truth
    hi = getattr(t, "attempt_id_hi", None)
    if hi is None or not len(hi):
        return math.nan
    pairs = sorted(
        (t.attempt_p[i], correct[(hi[i] << 64) | t.attempt_id_lo[i]]) for i in range(len(hi))
    )
    worst = 0.0
    for d in range(10):
        chunk = pairs[d * len(pairs) // 10 : (d + 1) * len(pairs) // 10]
        if chunk:
            mean_p = sum(p for p, _ in chunk) / len(chunk)
            share = sum(1 for _, c in chunk if c) / len(chunk)
            worst = max(worst, abs(mean_p - share))
    return worst


def auc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    ranks = _ranks(scores)
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = sum(r + 1 for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def log_loss(probabilities: list[float], labels: list[bool]) -> float:
    total = 0.0
    for p, y in zip(probabilities, labels, strict=True):
        p = min(1 - 1e-9, max(1e-9, p))
        total -= math.log(p if y else 1 - p)
    return total / len(labels) if labels else math.nan


def oracle_recall(sim: Simulation, first: dict[int, bool]) -> tuple[float, float, float]:
    """(AUC, log loss) of the true P(correct) on first attempts, and the log loss of their base
    rate (``first``: event id as int -> answered right, first attempts only)."""
    t = sim.truth
    hi = getattr(t, "attempt_id_hi", None)
    if hi is None or not len(hi):
        return math.nan, math.nan, math.nan
    probabilities: list[float] = []
    labels: list[bool] = []
    for i in range(len(hi)):
        key = (hi[i] << 64) | t.attempt_id_lo[i]
        if key in first:
            probabilities.append(t.attempt_p[i])
            labels.append(first[key])
    rate = sum(labels) / len(labels)
    return (
        auc(probabilities, labels),
        log_loss(probabilities, labels),
        log_loss([rate] * len(labels), labels),
    )


def review_gaps(sim: Simulation, habit: str | None = None) -> list[int]:
    """Days between consecutive local days on which a learner answered questions in a topic
    (learners of one study habit only, when given)."""
    days: dict[tuple[int, int], set[int]] = defaultdict(set)
    t = sim.truth
    keep = {x.index for x in sim.learners if habit is None or getattr(x, "habit", None) == habit}
    for i in range(len(t)):
        if t.questions[i] > 0 and t.learner[i] in keep:
            days[(t.learner[i], t.topic[i])].add(t.day[i])
    gaps = []
    for studied in days.values():
        ordered = sorted(studied)
        gaps.extend(b - a for a, b in zip(ordered, ordered[1:], strict=False))
    return gaps


def _quantile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def diagnose(sim: Simulation) -> Diagnostics:
    """Run a fresh simulation to its end and measure it (see the module docstring)."""
    answer = {q.id: q.correct_answer for q in sim.ref.questions}
    first = right = events = 0
    correct: dict[int, bool] = {}
    first_correct: dict[int, bool] = {}
    started = time.perf_counter()
    for e in sim.events():
        events += 1
        if e.event_type == "question_attempt":
            ok = e.selected_answer == answer[e.question_id]
            correct[e.event_id.int] = ok
            if e.attempt_number == 1:
                first += 1
                right += ok
                first_correct[e.event_id.int] = ok
    seconds = time.perf_counter() - started
    gaps = sorted(review_gaps(sim))
    oracle_auc, oracle_loss, constant_loss = oracle_recall(sim, first_correct)
    by_habit = tuple(
        statistics.median(g) if (g := review_gaps(sim, habit)) else math.nan
        for habit in ("crammer", "spacer", "irregular")
    )
    return Diagnostics(
        events=events,
        seconds=seconds,
        practice_retest_r=exam_reliability(sim),
        exam_true_r=exam_validity(sim),
        board_pass_rate=pass_rate(sim, "board"),
        practice_pass_rate=pass_rate(sim, "practice"),
        count_knowledge_spearman=count_knowledge_spearman(sim),
        accuracy_knowledge_spearman=_within_learner_spearman(sim, "accuracy"),
        first_attempt_accuracy=right / first if first else math.nan,
        p_correct_calibration=p_correct_calibration(sim, correct),
        oracle_auc=oracle_auc,
        oracle_log_loss=oracle_loss,
        constant_log_loss=constant_loss,
        review_gap_quantiles=tuple(_quantile(gaps, q) for q in GAP_QUANTILES),
        gap_median_by_habit=by_habit,
        same_day_or_next_share=sum(1 for g in gaps if g <= 1) / len(gaps) if gaps else math.nan,
    )


def format_table(rows: dict[str, Diagnostics]) -> str:
    """One column per run, one line per figure."""
    names = [f.name for f in fields(Diagnostics)]
    lines = ["figure".ljust(26) + "".join(label.rjust(22) for label in rows)]
    for name in [*names, "events_per_second"]:
        cells = []
        for d in rows.values():
            value = getattr(d, name)
            if isinstance(value, tuple):
                cells.append("/".join(f"{v:g}" for v in value))
            elif isinstance(value, float) and math.isnan(value):
                cells.append("n/a")
            elif isinstance(value, float):
                cells.append(f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}")
            else:
                cells.append(f"{value:,}")
        lines.append(name.ljust(26) + "".join(c.rjust(22) for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, action="append", help="repeatable; default 1 and 2")
    parser.add_argument("--end", default="2026-11-20T12:00:00+00:00", help="window end (UTC)")
    args = parser.parse_args(argv)
    end = datetime.fromisoformat(args.end).astimezone(UTC)
    rows = {
        f"seed {seed}": diagnose(generate(args.users, args.days, seed, end=end))
        for seed in args.seed or [1, 2]
    }
    print(f"{args.users} learners x {args.days} days")
    print(format_table(rows))


if __name__ == "__main__":
    main()
