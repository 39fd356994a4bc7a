"""A reduced benchmark run (--users, --days) keeps its histories apart from the full profile's."""

from __future__ import annotations

from bench.run import PROFILES, _sized


def test_a_reduced_run_is_named_after_its_size() -> None:
    full = PROFILES["large"]
    assert _sized(full, None, None) is full
    reduced = _sized(full, 2000, 90)
    assert (reduced.name, reduced.users, reduced.days) == ("large_2000x90", 2000, 90)
    # fewer days only: the held-back days are cached under the profile's name, so it changes too
    shorter = _sized(full, None, 30)
    assert (shorter.name, shorter.users, shorter.short_days) == ("large_10000x30", 10000, 10)
    assert len({p.name for p in (full, reduced, shorter)}) == 3
