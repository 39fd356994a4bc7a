"""Mastery marts on crafted events: incremental delivery equals a full rebuild, every state equals
an independent Python fold of the SM-2 rules, and the forgetting curve moves with the as-of date.

Attempts are written straight into app tables (event_receipts + question_attempts) with chosen
``received_at`` values, so the watermark sees exactly the batches the test means:

1. first batch, then dbt (first build);
2. a new day after the last review (folds forward from the stored state);
3. a late attempt on a day *before* the last review day (replays the pair from history);
4. a late attempt on the *same* day as the last review (that day's q changes);
5. a material completion only (topic_mastery's completion changes, no new review).
"""

from __future__ import annotations

import math
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from python_jobs.warehouse.dbt import run_dbt

pytestmark = pytest.mark.slow  # about ten dbt invocations

U1 = uuid.UUID("00000000-0000-0000-0000-0000000000a1")  # America/New_York
U2 = uuid.UUID("00000000-0000-0000-0000-0000000000a2")  # Asia/Tokyo: 15:00 UTC is the next day
VALVES, RHYTHM, VESSELS = 3, 4, 5  # leaf topics; VALVES has two materials, RHYTHM none
BASE = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 1, tzinfo=UTC)  # batch k is received at RECEIVED + k hours x 3
SELECT = ["-s", "+models/marts/mastery", "+models/intermediate/mastery"]

TAXONOMY = """
insert into app.users (id, timezone, cohort, exam_target, exam_date) values
    ('00000000-0000-0000-0000-0000000000a1', 'America/New_York', 'c1', 'Step 1', '2026-12-20'),
    ('00000000-0000-0000-0000-0000000000a2', 'Asia/Tokyo', 'c1', 'Step 1', null);
insert into app.topics (id, parent_id, level, name, path, board_exam_weight) values
    (1, null, 'system', 'Cardio', 'Cardio', 0.5),
    (2, 1, 'subject', 'Heart', 'Cardio > Heart', 0.3),
    (3, 2, 'subtopic', 'Valves', 'Cardio > Heart > Valves', 0.2),
    (4, 2, 'subtopic', 'Rhythm', 'Cardio > Heart > Rhythm', 0.1),
    (5, 1, 'subtopic', 'Vessels', 'Cardio > Vessels', 0.05);
insert into app.topic_relationships values (4, 3, 'prerequisite');
insert into app.materials (id, topic_id, kind, est_minutes)
values (1, 3, 'chapter', 10), (2, 3, 'video', 5);
insert into app.questions (id, topic_id, difficulty, correct_answer)
select 100 * t + k, t, 0.5, 'A' from generate_series(3, 5) as t, generate_series(1, 20) as k;
"""


@dataclass(frozen=True)
class Attempt:
    user: uuid.UUID
    topic: int
    day: int  # days after BASE
    question: int  # 1-20 within the topic
    correct: bool
    confidence: int | None = 5
    hint: bool = False
    answered: bool = True
    attempt_number: int = 1
    minute: int = 0


BATCHES: list[list[Attempt]] = [
    [  # 1: first build
        Attempt(U1, VALVES, 0, 1, True),
        Attempt(U1, VALVES, 0, 2, False, 3),
        Attempt(U1, VALVES, 0, 1, True, 4, attempt_number=2, minute=5),
        Attempt(U1, VALVES, 3, 3, True, 3),
        Attempt(U1, VALVES, 3, 4, True, 2, hint=True),
        Attempt(U1, RHYTHM, 0, 1, True, 5),
        Attempt(U1, RHYTHM, 1, 2, True, 5),
        Attempt(U1, RHYTHM, 2, 3, False, 4),
        Attempt(U1, RHYTHM, 3, 4, True, 3),
        Attempt(U2, VALVES, 1, 1, True, None),
        Attempt(U2, VALVES, 2, 2, False, None, answered=False),
        Attempt(U2, VESSELS, 2, 1, False, 1),
    ],
    [  # 2: new days after the last review: fold forward
        Attempt(U1, VALVES, 9, 5, True, 5),
        Attempt(U1, VALVES, 9, 6, True, 5, minute=2),
        Attempt(U2, VALVES, 8, 3, True, 4),
    ],
    [  # 3: late, before the last review day: replay from history
        Attempt(U1, VALVES, 1, 7, False, 5),
        Attempt(U2, VALVES, 0, 4, True, 5),
    ],
    [  # 4: late, on the last review day itself: that day's q drops from 5 to 3
        Attempt(U1, VALVES, 9, 8, False, 1, minute=9),
        Attempt(U1, VALVES, 9, 9, False, 5, minute=10),
    ],
    [],  # 5: only a material completion
]


def run(url: str, target: Path, *args: str) -> None:
    run_dbt(["run", *SELECT, *args], url=url, target_path=target)


def insert_attempts(conn: psycopg.Connection, attempts: list[Attempt], received: datetime) -> None:
    for a in attempts:
        event_id = uuid.uuid4()
        answered_at = BASE + timedelta(days=a.day, minutes=a.minute)
        conn.execute("insert into app.event_receipts (event_id) values (%s)", (event_id,))
        conn.execute(
            "insert into app.question_attempts (event_id, user_id, question_id, topic_id,"
            " attempt_number, selected_answer, is_correct, time_to_answer_ms, confidence_level,"
            " hint_used, answered_at, received_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, 1000, %s, %s, %s, %s)",
            (event_id, a.user, 100 * a.topic + a.question, a.topic, a.attempt_number,
             ("A" if a.correct else "B") if a.answered else None, a.correct, a.confidence,
             a.hint, answered_at, received),
        )  # fmt: skip
    conn.commit()


def insert_completion(conn: psycopg.Connection, user: uuid.UUID, material: int, when: datetime,
                      received: datetime) -> None:  # fmt: skip
    event_id = uuid.uuid4()
    conn.execute("insert into app.event_receipts (event_id) values (%s)", (event_id,))
    conn.execute(
        "insert into app.material_interactions (event_id, user_id, material_id, interaction_type,"
        " progress, active_seconds, occurred_at, received_at)"
        " values (%s, %s, %s, 'complete', 1, 600, %s, %s)",
        (event_id, user, material, when, received),
    )
    conn.commit()


# ----------------------------------------------------------------------------- the reference


def attempt_quality(answered: bool, correct: bool, hint: bool, confidence: int | None) -> int:
    if not answered:
        return 0
    if correct:
        if not hint and confidence is not None and confidence >= 4:
            return 5
        if not hint and confidence in (3, None):
            return 4
        return 3
    if confidence is not None and confidence <= 2:
        return 2
    if confidence in (3, None):
        return 1
    return 0


def round_half_up_mean(qualities: list[int]) -> int:
    mean = Decimal(sum(qualities)) / len(qualities)
    return int(mean.to_integral_value(rounding="ROUND_HALF_UP"))


def reference_reviews(conn: psycopg.Connection) -> dict[tuple, list[tuple]]:
    """(user, topic) -> [(day, q, attempts, EF, n, I, next)] from app tables, in Python."""
    rows = conn.execute(
        "select a.user_id, a.topic_id, a.answered_at, u.timezone, a.selected_answer is not null,"
        " a.is_correct, a.hint_used, a.confidence_level from app.question_attempts a"
        " join app.users u on u.id = a.user_id"
    ).fetchall()
    days: dict[tuple, dict[date, list[int]]] = defaultdict(lambda: defaultdict(list))
    for user, topic, at, tz, answered, correct, hint, confidence in rows:
        local = at.astimezone(ZoneInfo(tz)).date()
        days[(user, topic)][local].append(attempt_quality(answered, correct, hint, confidence))
    out = {}
    for key, by_day in days.items():
        ef, n, interval, states = Decimal("2.5"), 0, 0, []
        for day in sorted(by_day):
            q = round_half_up_mean(by_day[day])
            if q >= 3:
                interval = 1 if n == 0 else 6 if n == 1 else math.ceil(interval * ef)
                n += 1
            else:
                n, interval = 0, 1
            step = Decimal("0.1") - (5 - q) * (Decimal("0.08") + Decimal("0.02") * (5 - q))
            ef = max(Decimal("1.3"), ef + step)
            states.append((day, q, len(by_day[day]), ef, n, interval, day + timedelta(interval)))
        out[key] = states
    return out


def stored_reviews(conn: psycopg.Connection) -> dict[tuple, list[tuple]]:
    rows = conn.execute(
        "select user_id, topic_id, review_date, quality, attempts, easiness, repetitions,"
        " interval_days, next_review_date from intermediate.int_topic_reviews_scheduled"
        " order by user_id, topic_id, review_date"
    ).fetchall()
    out: dict[tuple, list[tuple]] = defaultdict(list)
    for user, topic, *state in rows:
        out[(user, topic)].append(tuple(state))
    return dict(out)


def table_rows(conn: psycopg.Connection, relation: str) -> set[tuple]:
    return set(conn.execute(f"select * from {relation}").fetchall())


# ----------------------------------------------------------------------------- fixture


@dataclass
class Delivered:
    url: str
    target: Path
    history: list[dict[tuple, list[tuple]]]  # stored reviews after each batch
    mastery: list[dict[tuple, tuple]]  # (materials_completion, mastery_at_last_review) per batch
    incremental: dict[str, set[tuple]]  # final incremental rows of both models


@pytest.fixture(scope="module")
def delivered(database_factory: Callable[..., str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:  # fmt: skip
    url = database_factory(prefix="studyin_mastery")
    target = tmp_path_factory.mktemp("dbt_mastery")
    history, mastery = [], []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TAXONOMY)
        for k, batch in enumerate(BATCHES):
            received = RECEIVED + timedelta(hours=3 * k)
            insert_attempts(conn, batch, received)
            if k == 4:
                insert_completion(conn, U1, 1, BASE + timedelta(days=10), received)
            run(url, target)
            history.append(stored_reviews(conn))
            mastery.append({
                (u, t): (c, m) for u, t, c, m in conn.execute(
                    "select user_id, topic_id, materials_completion, mastery_at_last_review"
                    " from marts.topic_mastery")
            })  # fmt: skip
        incremental = {
            rel: table_rows(conn, rel)
            for rel in ("intermediate.int_topic_reviews_scheduled", "marts.topic_mastery")
        }
    yield Delivered(url, target, history, mastery, incremental)


# ----------------------------------------------------------------------------- tests


def test_every_review_state_matches_the_python_reference(delivered: Delivered) -> None:
    with psycopg.connect(delivered.url, autocommit=True) as conn:
        assert stored_reviews(conn) == reference_reviews(conn)


def test_new_day_folds_forward_and_late_days_replay(delivered: Delivered) -> None:
    h = delivered.history
    valves = (U1, VALVES)
    day = (BASE.astimezone(ZoneInfo("America/New_York"))).date()
    # batch 2 added day 9 and left the two earlier reviews as they were
    assert [r[0] for r in h[1][valves]] == [day, day + timedelta(3), day + timedelta(9)]
    assert h[1][valves][:2] == h[0][valves]
    # batch 3 landed on day 1, before the last review day: every later state was refolded
    assert [r[0] for r in h[2][valves]] == [day + timedelta(d) for d in (0, 1, 3, 9)]
    assert h[2][valves][1][1] == 0  # wrong with confidence 5
    assert h[2][valves][2][3:] != h[1][valves][1][3:]  # day 3 now follows a failed review
    # batch 4 landed on the last review day: its q fell (5, 5, 2, 0 -> mean 3) and so did EF
    assert h[2][valves][3][1] == 5 and h[3][valves][3][1] == 3
    assert h[3][valves][3][3] == h[2][valves][3][3] - Decimal("0.24")  # +0.10 became -0.14
    # a Tokyo learner's late review on (local) day 1 became the new first review
    tokyo = h[2][(U2, VALVES)]
    assert tokyo[0][0] == (BASE + timedelta(days=1)).date() and tokyo[0][1] == 5


def test_material_completion_alone_updates_topic_mastery(delivered: Delivered) -> None:
    before, after = delivered.mastery[3][(U1, VALVES)], delivered.mastery[4][(U1, VALVES)]
    assert before[0] == 0 and after[0] == Decimal("0.5")
    # one of two materials completed adds 0.20 x 0.5 to the mastery at the last review
    assert after[1] - before[1] == Decimal("0.1")
    assert delivered.mastery[4][(U1, RHYTHM)] == delivered.mastery[3][(U1, RHYTHM)]


def test_incremental_equals_full_rebuild(delivered: Delivered) -> None:
    run(delivered.url, delivered.target, "--full-refresh")
    with psycopg.connect(delivered.url, autocommit=True) as conn:
        for relation, incremental in delivered.incremental.items():
            full = table_rows(conn, relation)
            assert incremental == full, relation
            assert full


def mastery_formula(fa: Decimal, acc: Decimal, retrieval: float, completion: Decimal,
                    has_materials: bool) -> float:  # fmt: skip
    core = 0.30 * float(fa) + 0.20 * float(acc) + 0.30 * retrieval
    return core + 0.20 * float(completion) if has_materials else core / 0.80


def current_rows(conn: psycopg.Connection) -> dict[tuple, tuple]:
    rows = conn.execute(
        "select c.user_id, c.topic_id, c.retrieval_strength, c.mastery, c.mastery_at_last_review,"
        " c.days_since_last_review, c.is_due, m.interval_days, m.first_attempt_accuracy_smoothed,"
        " m.accuracy_smoothed, m.materials_completion, m.has_materials, m.next_review_date,"
        " c.as_of_date"
        " from marts.topic_mastery_current c join marts.topic_mastery m using (user_id, topic_id)"
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def gaps(conn: psycopg.Connection) -> dict[tuple, tuple]:
    rows = conn.execute(
        "select user_id, topic_id, gap_type, severity, is_decaying, evidence"
        " from marts.knowledge_gaps"
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_thirty_days_later_retrieval_falls_and_decaying_gaps_appear(delivered: Delivered) -> None:
    # as of RHYTHM's last review day (retrieval 1 there), then 30 days later
    base = (BASE + timedelta(days=3)).astimezone(ZoneInfo("America/New_York")).date()
    later = base + timedelta(days=30)
    snapshots = {}
    with psycopg.connect(delivered.url, autocommit=True) as conn:
        for as_of in (base, later):
            # the published formula's gaps (gap_basis mastery): decaying by the forgetting curve
            run_dbt(["run", "-s", "fct_topic_schedule_current", "topic_mastery_current",
                     "topic_mastery_rollup", "knowledge_gaps",
                     "--vars", f"{{mastery_as_of_date: '{as_of}', gap_basis: mastery}}"],
                    url=delivered.url, target_path=delivered.target)  # fmt: skip
            snapshots[as_of] = (current_rows(conn), gaps(conn))
    now, then = snapshots[base], snapshots[later]
    assert now[0].keys() == then[0].keys() and now[0]
    decaying_expected: dict[date, set] = {base: set(), later: set()}
    for as_of, (current, _) in snapshots.items():
        for key, row in current.items():
            retrieval, mastery, at_review, days, is_due, interval = row[:6]
            fa, acc, completion, has_materials, due, row_as_of = row[6:]
            assert row_as_of == as_of
            assert float(retrieval) == pytest.approx(0.9 ** (max(days, 0) / interval), abs=1e-9)
            expected = mastery_formula(fa, acc, float(retrieval), completion, has_materials)
            assert float(mastery) == pytest.approx(expected, abs=1e-9)
            expected = mastery_formula(fa, acc, 1.0, completion, has_materials)
            assert float(at_review) == pytest.approx(expected, abs=1e-9)
            assert is_due == (due <= as_of)
            if at_review >= Decimal("0.70") and mastery < Decimal("0.70"):
                decaying_expected[as_of].add(key)
    for key in now[0]:
        assert then[0][key][0] < now[0][key][0], key  # forgetting: lower retrieval a month on
        assert then[0][key][1] < now[0][key][1], key
    decaying = {d: {k for k, g in snapshots[d][1].items() if g[2]} for d in (base, later)}
    assert decaying == decaying_expected
    # RHYTHM: 0.79 at its last review (retrieval 1), 0.9^30 retrieval a month on
    assert (U1, RHYTHM) not in decaying[base] and (U1, RHYTHM) in decaying[later]
    assert decaying[base] < decaying[later]
    gap_type, severity, _, evidence = then[1][(U1, RHYTHM)]
    assert gap_type == "decaying" and severity in ("critical", "high")
    assert evidence.startswith("decaying: mastery 0.79 at the last review, ")
    assert "days on a 1-day interval" in evidence


def test_mastery_unit_and_data_tests_pass(delivered: Delivered) -> None:
    """The dbt unit tests (every gap type, each severity boundary, materials redistribution, ...)
    and the data tests of the mastery models, on this database."""
    result = run_dbt(["test", "-s", "models/intermediate/mastery", "models/marts/mastery"],
                     url=delivered.url, target_path=delivered.target)  # fmt: skip
    assert re.search(r"PASS=\d+ WARN=0 ERROR=0 SKIP=0", result.stdout), result.stdout[-2000:]
    unit_tests = re.findall(r"PASS (\w+)::(\w+)", result.stdout)
    assert len(unit_tests) == 13, unit_tests  # the mastery unit tests in the two yml files


def test_tables_rebuilt_whole_are_analyzed_as_they_are_written(delivered: Delivered) -> None:
    """macros/statistics.sql: a table dbt rebuilds whole (knowledge_gaps, which the gap
    recommendations read next) is analyzed by the post-hook, an explicit ANALYZE (last_analyze:
    autovacuum would set last_autoanalyze instead); an incremental model's table is not."""
    with psycopg.connect(delivered.url, autocommit=True) as conn:
        analyzed = dict(
            conn.execute(
                "select schemaname || '.' || relname, last_analyze is not null"
                " from pg_stat_user_tables where schemaname in ('intermediate', 'marts')"
                " and relname in ('knowledge_gaps', 'int_topic_reviews_scheduled', 'topic_mastery')"
            ).fetchall()
        )
    assert analyzed == {
        "marts.knowledge_gaps": True,
        "intermediate.int_topic_reviews_scheduled": False,
        "marts.topic_mastery": False,
    }
