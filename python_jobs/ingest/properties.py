"""Declared event properties: the keys each event type's ``properties`` may hold, and their types.

The declarations are reference data: ``app.event_type_properties`` (event_type, key, type,
description), filled by the migration that made it and mirrored by
``seeds/event_type_properties.csv`` (the docs site shows it). The tracker reads them once per
Tracker and keeps, of every event's ``properties``, only what is declared:

- a key not declared for the event type is dropped (and counted);
- a declared key whose value has the wrong type is dropped (and counted) too: the event itself is
  still worth storing, only that value is unusable. Types are JSON's: ``string``, ``integer`` (a
  whole number that fits in 64 bits; ``true``/``false`` are not integers), ``number`` (integer or
  finite decimal) and ``boolean``. ``null`` is no type's value: a key sent as null is dropped;
- string values are free text: e-mail addresses are masked and IP addresses cut to their network
  (``validation.mask_personal_data``), so no stored property holds either.

Nothing that names a person can be declared: keys are chosen for analytics (a screen, a topic, a
count), and a ``name``, ``email`` or ``ip`` key is simply not in the list (a test checks that no
declared key looks like one).

A hand-written loop rather than a validation library: the check is one dict lookup and one type
test per key, cheaper than building a model instance per event, and dropping (rather than
refusing) wrong values with a count would need the library's error list walked anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import psycopg

from python_jobs.ingest.validation import mask_personal_data

PROPERTY_TYPES = ("string", "integer", "number", "boolean")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_NOTHING: Mapping[str, str] = {}


class DeclaredProperties:
    """Event type -> declared key -> type name; ``clean`` keeps what an event may store."""

    def __init__(self, declared: Mapping[str, Mapping[str, str]]) -> None:
        for event_type, keys in declared.items():
            for key, kind in keys.items():
                if kind not in PROPERTY_TYPES:
                    raise ValueError(
                        f"property {event_type}.{key}: unknown type {kind!r} "
                        f"(known: {', '.join(PROPERTY_TYPES)})"
                    )
        self.declared = {t: dict(keys) for t, keys in declared.items()}

    @classmethod
    def load(cls, conn: psycopg.Connection) -> DeclaredProperties:
        """The declarations in ``app.event_type_properties`` (runs in the caller's transaction)."""
        declared: dict[str, dict[str, str]] = {}
        rows = conn.execute("select event_type, key, type from app.event_type_properties")
        for event_type, key, kind in rows:
            declared.setdefault(event_type, {})[key] = kind
        return cls(declared)

    def clean(self, event_type: Any, props: Mapping[Any, Any]) -> tuple[dict[str, Any], int]:
        """(the declared keys of ``props`` with values of their type, strings masked; how many
        keys were dropped). An unknown event type declares nothing."""
        keys = self.declared.get(event_type, _NOTHING) if type(event_type) is str else _NOTHING
        kept: dict[str, Any] = {}
        for key, value in props.items():
            kind = keys.get(key) if type(key) is str else None
            if kind is None:
                continue
            t = type(value)
            if kind == "string":
                if t is str:
                    kept[key] = mask_personal_data(value)
            elif kind == "integer":
                if t is int and INT64_MIN <= value <= INT64_MAX:
                    kept[key] = value
            elif kind == "number":
                if (t is float and math.isfinite(value)) or (
                    t is int and INT64_MIN <= value <= INT64_MAX
                ):
                    kept[key] = value
            elif t is bool:  # boolean
                kept[key] = value
        return kept, len(props) - len(kept)
