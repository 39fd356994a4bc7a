"""Property test: the SQL SM-2 fold (macros/sm2.sql) against supermemo2 3.0.1's ``review()``.

Hypothesis draws batches of random review sequences (quality 0-5, random day gaps); each batch runs
through ``intermediate.sm2_fold`` in PostgreSQL in one query, exactly as int_topic_reviews_scheduled
runs it (a running window aggregate). Every review's state is checked three ways:

1. Exactly equal to an independent exact-Decimal transcription of the SM-2 rules (EF in steps of
   0.02, never a float).
   The interval is capped at var sm2_max_interval_days (default 36500 days).
2. Equal to supermemo2's ``review()`` (EF within 1e-9, interval, repetitions and next review date
   exactly) as long as the cap has not bound (supermemo2 has no cap: the reviews from the first
   one whose uncapped interval passes it on are compared with the exact rules only)
   -- except after a *float crossing*: supermemo2 keeps EF as a float, so ceil(I x EF) can
   land one day later when the exact product is an integer and the float one is a hair above it
   (e.g. ceil(125 x 2.8000000000000003) = 351, exact ceil(125 x 2.80) = 350). The test detects
   those steps by recomputing with Decimal, asserts that every sequence that differs from
   supermemo2 first differs at such a step (later reviews of that sequence inherit the other
   interval), and counts them.
3. Folding a suffix from the stored state after a prefix (the incremental path, a seed state) gives
   the same states as folding the whole sequence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from supermemo2 import review

from python_jobs.warehouse.dbt import run_dbt

START = date(2026, 1, 5)
EF_TOLERANCE = 1e-9
MIN_SEQUENCES = 500
BATCH = 100

SM2_MAX_INTERVAL_DAYS = 36500  # var sm2_max_interval_days, its default

# One review: (quality 0-5, days since the previous review day); a sequence is a topic's history.
# Qualities lean towards passing (>= 3) so that long runs reach large intervals, where ceil(I x EF)
# matters, and the cap; lengths are drawn first so that sequences are long as often as short.
quality_strategy = st.sampled_from([3, 4, 5, 0, 1, 2, 3, 4, 5, 5])
reviews_strategy = st.tuples(quality_strategy, st.integers(1, 40))
sequence_strategy = st.integers(1, 30).flatmap(
    lambda n: st.lists(reviews_strategy, min_size=n, max_size=n)
)
batch_strategy = st.lists(sequence_strategy, min_size=BATCH, max_size=BATCH)

# Known float crossings: 2.5 +0.1 +0.1 +0 +0 +0.1 -> float EF 2.8000000000000003 at I = 125 / 135.
CROSSING_SEQUENCES = [
    [(5, 1), (5, 1), (4, 6), (4, 15), (5, 38), (3, 125)],
    [(5, 1), (5, 1), (5, 6), (4, 16), (4, 42), (4, 135)],
]
# Runs of 30 passes: the interval reaches the cap (at the 12th and 9th review) and stays there.
LONG_PASSING_RUNS = [[(4, 1)] * 30, [(5, 3)] * 30]


@dataclass(frozen=True)
class State:
    easiness: Decimal | float
    repetitions: int
    interval_days: int
    next_review_date: date


@pytest.fixture(scope="module", params=["single", "cluster"])
def sm2_db(
    request: pytest.FixtureRequest,
    database_factory: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The SM-2 functions installed on the single server, and on a Citus cluster (where dbt
    creates them on the coordinator and Citus copies them to the workers, which run the fold over
    distributed tables)."""
    if request.param == "cluster":
        url = request.getfixturevalue("cluster_database_factory")(
            prefix="studyin_sm2_cluster", migrated=False
        )
    else:
        url = database_factory(prefix="studyin_sm2", migrated=False)
    run_dbt(
        ["run-operation", "install_sm2_functions"],
        url=url,
        target_path=tmp_path_factory.mktemp("dbt_sm2"),
    )
    return url


@pytest.fixture(scope="module")
def sm2_conn(sm2_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(sm2_db, autocommit=True) as connection:
        yield connection


def review_dates(sequence: list[tuple[int, int]]) -> list[date]:
    days, day = [], START
    for _, gap in sequence:
        day += timedelta(days=gap)
        days.append(day)
    return days


FOLD_SQL = """
with reviews as (
    select seq, k, review_date, quality, seed
    from unnest(%(seq)s::integer[], %(k)s::integer[], %(day)s::date[], %(q)s::integer[])
        as r (seq, k, review_date, quality)
    left join (
        select *
        from unnest(%(seed_seq)s::integer[], %(seed_ef)s::numeric[], %(seed_n)s::integer[],
                    %(seed_i)s::integer[]) as s (seed_seq, easiness, repetitions, interval_days)
    ) as seeds on seeds.seed_seq = r.seq,
    lateral (
        select case when seeds.seed_seq is not null then
            row(seeds.easiness, seeds.repetitions, seeds.interval_days)::intermediate.sm2_state
        end as seed
    ) as seeded
),
folded as (
    select seq, k, review_date,
           intermediate.sm2_fold(quality, seed) over (
               partition by seq order by k rows between unbounded preceding and current row
           ) as state
    from reviews
)
select seq, k, (state).easiness, (state).repetitions, (state).interval_days,
       review_date + (state).interval_days
from folded
order by seq, k
"""


def sql_fold(
    conn: psycopg.Connection,
    sequences: list[list[tuple[int, int]]],
    seeds: dict[int, State] | None = None,
    offsets: dict[int, int] | None = None,
) -> dict[int, list[State]]:
    """Fold every sequence in one query; seeds[i] starts sequence i from a stored state."""
    seeds, offsets = seeds or {}, offsets or {}
    params: dict[str, list] = {
        k: [] for k in ("seq", "k", "day", "q", "seed_seq", "seed_ef", "seed_n", "seed_i")
    }
    for i, sequence in enumerate(sequences):
        days = review_dates(sequence)
        for k, (quality, _) in enumerate(sequence):
            params["seq"].append(i)
            params["k"].append(k)
            params["day"].append(days[k] + timedelta(days=offsets.get(i, 0)))
            params["q"].append(quality)
    for i, state in seeds.items():
        params["seed_seq"].append(i)
        params["seed_ef"].append(state.easiness)
        params["seed_n"].append(state.repetitions)
        params["seed_i"].append(state.interval_days)
    out: dict[int, list[State]] = {i: [] for i in range(len(sequences))}
    for seq, _, ef, n, interval, due in conn.execute(FOLD_SQL, params).fetchall():
        out[seq].append(State(ef, n, interval, due))
    return out


def decimal_fold(
    sequence: list[tuple[int, int]], cap: int | None = SM2_MAX_INTERVAL_DAYS
) -> list[State]:
    """The SM-2 rules transcribed with exact decimals (cap=None: no cap on the interval)."""
    ef, n, interval = Decimal("2.5"), 0, 0
    states = []
    for (quality, _), day in zip(sequence, review_dates(sequence), strict=True):
        if quality >= 3:
            interval = 1 if n == 0 else 6 if n == 1 else math.ceil(interval * ef)
            interval = interval if cap is None else min(cap, interval)
            n += 1
        else:
            n, interval = 0, 1
        ef = max(
            Decimal("1.3"),
            ef
            + Decimal("0.1")
            - (5 - quality) * (Decimal("0.08") + Decimal("0.02") * (5 - quality)),
        )
        # None: past the last date Python can hold (only the uncapped fold gets there).
        due = day + timedelta(days=interval) if interval <= (date.max - day).days else None
        states.append(State(ef, n, interval, due))
    return states


def below_cap(sequence: list[tuple[int, int]]) -> int:
    """How many leading reviews the cap does not touch: up to the first one whose uncapped
    interval would exceed it."""
    for k, state in enumerate(decimal_fold(sequence, cap=None)):
        if state.interval_days > SM2_MAX_INTERVAL_DAYS:
            return k
    return len(sequence)


def supermemo2_fold(sequence: list[tuple[int, int]]) -> list[State]:
    ef, n, interval = 2.5, 0, 0
    states = []
    for (quality, _), day in zip(sequence, review_dates(sequence), strict=True):
        result = review(quality, ef, interval, n, day.isoformat())
        ef, n, interval = result["easiness"], result["repetitions"], result["interval"]
        due = datetime.fromisoformat(result["review_datetime"]).date()
        states.append(State(ef, n, interval, due))
    return states


def first_float_crossing(sequence: list[tuple[int, int]]) -> int | None:
    """Index of the first review where float EF makes ceil(I x EF) differ from the exact one."""
    ef_f, ef_d, n, interval = 2.5, Decimal("2.5"), 0, 0
    for k, (quality, _) in enumerate(sequence):
        if quality >= 3 and n >= 2:
            exact = interval * ef_d
            if math.ceil(interval * ef_f) != math.ceil(exact):
                assert exact == exact.to_integral_value(), (
                    f"ceil differs at review {k} but I x EF = {exact} is not an integer"
                )
                assert abs(interval * ef_f - float(exact)) < 1e-6
                return k
        if quality >= 3:
            interval = 1 if n == 0 else 6 if n == 1 else math.ceil(interval * ef_d)
            n += 1
        else:
            n, interval = 0, 1
        ef_f += 0.1 - (5 - quality) * (0.08 + (5 - quality) * 0.02)
        ef_f = max(ef_f, 1.3)
        ef_d = max(
            Decimal("1.3"),
            ef_d
            + Decimal("0.1")
            - (5 - quality) * (Decimal("0.08") + Decimal("0.02") * (5 - quality)),
        )
    return None


def same_as_supermemo2(ours: State, theirs: State) -> bool:
    return (
        abs(float(ours.easiness) - float(theirs.easiness)) < EF_TOLERANCE
        and ours.repetitions == theirs.repetitions
        and ours.interval_days == theirs.interval_days
        and ours.next_review_date == theirs.next_review_date
    )


def check_batch(
    conn: psycopg.Connection, sequences: list[list[tuple[int, int]]], tally: Counter
) -> None:
    folded = sql_fold(conn, sequences)
    for i, sequence in enumerate(sequences):
        ours = folded[i]
        assert len(ours) == len(sequence)
        # 1. exact decimal semantics, EF in steps of 0.02
        assert ours == decimal_fold(sequence), f"sequence {sequence}"
        for state in ours:
            assert (state.easiness * 50) == (state.easiness * 50).to_integral_value()
        # 2. supermemo2, up to float crossings, while the cap has not bound
        uncapped = below_cap(sequence)
        theirs = supermemo2_fold(sequence[:uncapped])
        mismatches = [k for k in range(uncapped) if not same_as_supermemo2(ours[k], theirs[k])]
        crossing = first_float_crossing(sequence[:uncapped])
        tally["sequences"] += 1
        tally["reviews"] += len(sequence)
        tally["reviews_compared_with_supermemo2"] += uncapped
        tally["reviews_at_the_cap"] += sum(
            state.interval_days == SM2_MAX_INTERVAL_DAYS for state in ours
        )
        if crossing is not None:
            tally["sequences_with_float_crossing"] += 1
        if mismatches:
            assert crossing is not None and mismatches[0] == crossing, (
                f"differs from supermemo2 at review {mismatches[0]} without a float crossing: "
                f"{sequence}\nours:   {ours[mismatches[0]]}\ntheirs: {theirs[mismatches[0]]}"
            )
            tally["reviews_differing_after_crossing"] += len(mismatches)
        else:
            # a crossing always shows: supermemo2 then schedules one day later than exact ceil
            assert crossing is None
    # 3. incremental path: fold each suffix from the state stored after its prefix
    seeds, suffixes, offsets, splits = {}, [], {}, {}
    for i, sequence in enumerate(sequences):
        if len(sequence) < 2:
            continue
        split = 1 + (sum(q for q, _ in sequence) % (len(sequence) - 1))
        j = len(suffixes)
        seeds[j] = folded[i][split - 1]
        suffixes.append(sequence[split:])
        # the suffix's review dates continue from the prefix's last review day
        offsets[j] = (review_dates(sequence)[split - 1] - START).days
        splits[j] = (i, split)
    resumed = sql_fold(conn, suffixes, seeds=seeds, offsets=offsets)
    for j, (i, split) in splits.items():
        assert resumed[j] == folded[i][split:], f"seeded fold differs for {sequences[i]} at {split}"
        tally["seeded_suffixes"] += 1


def test_sm2_sql_matches_supermemo2(sm2_conn: psycopg.Connection) -> None:
    tally: Counter = Counter()

    @settings(
        max_examples=MIN_SEQUENCES // BATCH + 1,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch_strategy)
    @example(
        CROSSING_SEQUENCES + [[(q, 1) for q in (5, 4, 3, 2, 1, 0, 3, 3, 3)]] + LONG_PASSING_RUNS
    )
    def property_holds(sequences: list[list[tuple[int, int]]]) -> None:
        check_batch(sm2_conn, sequences, tally)

    property_holds()
    print(
        f"\nSM-2 property: {tally['sequences']} sequences, {tally['reviews']} reviews "
        f"({tally['reviews_compared_with_supermemo2']} below the cap compared with supermemo2, "
        f"{tally['reviews_at_the_cap']} at the cap); "
        f"{tally['sequences_with_float_crossing']} sequences with a float crossing "
        f"({tally['reviews_differing_after_crossing']} reviews differ from supermemo2 from that "
        f"point on, all explained); {tally['seeded_suffixes']} suffixes resumed from a stored state"
    )
    assert tally["sequences"] >= MIN_SEQUENCES
    assert tally["reviews_at_the_cap"] >= 30  # the long passing runs alone give 41
    assert tally["reviews_compared_with_supermemo2"] >= tally["reviews"] * 0.8
    assert tally["sequences_with_float_crossing"] >= len(CROSSING_SEQUENCES)


def test_known_float_crossing_is_exact_in_sql(sm2_conn: psycopg.Connection) -> None:
    """ceil(125 x 2.8000000000000003) = 351 in floats; exact SM-2 schedules 350 days."""
    sequence = CROSSING_SEQUENCES[0]
    ours = sql_fold(sm2_conn, [sequence])[0]
    theirs = supermemo2_fold(sequence)
    assert ours[-2].interval_days == theirs[-2].interval_days == 125
    assert ours[-2].easiness == Decimal("2.80")
    assert ours[-1].interval_days == 350
    assert theirs[-1].interval_days == 351
    assert first_float_crossing(sequence) == len(sequence) - 1


def test_quality_out_of_range_is_refused(sm2_conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="quality must be"):
        sm2_conn.execute("select intermediate.sm2_step(null, 6)")


def test_interval_stops_at_the_cap(sm2_conn: psycopg.Connection) -> None:
    """400 daily correct reviews (quality 4, EF stays 2.5): uncapped, I passes 2^31 days at the
    24th review (PostgreSQL's integer overflows) and the due date passes the year 9999 at the 17th;
    capped, I reaches 36500 days at the 12th review and stays there."""
    sequence = [(4, 1)] * 400
    ours = sql_fold(sm2_conn, [sequence])[0]
    uncapped = decimal_fold(sequence, cap=None)
    assert uncapped[23].interval_days > 2**31 - 1
    assert [s.interval_days for s in ours] == [
        min(s.interval_days, SM2_MAX_INTERVAL_DAYS) for s in uncapped
    ]
    assert ours == decimal_fold(sequence)
    assert ours[10].interval_days < SM2_MAX_INTERVAL_DAYS == ours[11].interval_days
    assert {s.interval_days for s in ours[11:]} == {SM2_MAX_INTERVAL_DAYS}
    assert ours[-1].next_review_date == review_dates(sequence)[-1] + timedelta(days=36500)
    # supermemo2 (no cap) agrees up to the review before the cap binds
    assert below_cap(sequence) == 11
    assert supermemo2_fold(sequence[:11]) == [
        State(float(s.easiness), s.repetitions, s.interval_days, s.next_review_date)
        for s in ours[:11]
    ]


def test_a_stored_interval_beyond_the_cap_comes_back_to_it(sm2_conn: psycopg.Connection) -> None:
    """A state stored before the cap existed (I up to 2^31 - 1) folds forward without overflow."""
    seeds = {0: State(Decimal("3.00"), 30, 2**31 - 1, date(9999, 12, 31))}
    ours = sql_fold(sm2_conn, [[(5, 1), (2, 1)]], seeds=seeds)[0]
    assert [(s.interval_days, s.repetitions) for s in ours] == [(SM2_MAX_INTERVAL_DAYS, 31), (1, 0)]


@pytest.mark.slow  # six dbt run-operations
def test_cap_is_the_var(database_factory: Callable[..., str], tmp_path: Path) -> None:
    url = database_factory(prefix="studyin_sm2_cap", migrated=False)
    install = ["run-operation", "install_sm2_functions", "--vars"]
    run_dbt([*install, "{sm2_max_interval_days: 100}"], url=url, target_path=tmp_path)
    sequence = [(5, 1)] * 10
    with psycopg.connect(url, autocommit=True) as conn:
        ours = sql_fold(conn, [sequence])[0]
    assert ours == decimal_fold(sequence, cap=100)
    assert [s.interval_days for s in ours] == [1, 6, 17, 48, 100, 100, 100, 100, 100, 100]
    for bad in ("0", "-5", "2147483648", "1.5", "forever"):
        result = run_dbt(
            [*install, f"{{sm2_max_interval_days: {bad}}}"],
            url=url,
            target_path=tmp_path,
            check=False,
        )
        assert result.returncode != 0
        assert "sm2_max_interval_days must be a whole number of days" in result.stdout


def test_due_date_never_passes_9999(database_factory: Callable[..., str], tmp_path: Path) -> None:
    """Only a cap raised far beyond its default can reach it; the date stays readable."""
    url = database_factory(prefix="studyin_sm2_due", migrated=False)
    due = "{{ sm2_next_review_date(\"date '%s'\", '%s') }}"
    query = "select " + ", ".join(
        f"{due % (day, days)} as due_{k}"
        for k, (day, days) in enumerate(
            [("9999-12-01", 36500), ("2026-01-01", 36500), ("2026-01-01", 2**31 - 1)]
        )
    )
    result = run_dbt(["show", "--inline", query], url=url, target_path=tmp_path)
    dates = r"9999-12-31\s*\|\s*2125-12-08\s*\|\s*9999-12-31"
    assert re.search(dates, result.stdout), result.stdout
