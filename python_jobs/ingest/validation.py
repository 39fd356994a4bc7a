"""Input checks of the event tracker that need no database: errors, payload parsing, IP anonymising.

The tracker (``python_jobs.ingest.tracker``) validates every event against the reference data it
caches (event catalogue, learners, question bank, materials); this module holds
what those checks share:

- ``FieldError`` / ``ValidationError``: every problem of one event, each naming its field.
- ``QuestionFields``, ``MaterialFields``, ``ExamFields``, ``SessionEndFields``: the typed fields of
  each kind of event as pydantic schemas (strict: no coercion, a bool is not an integer), and
  ``typed_fields``, which checks an event's fields against one and says, per bad field, what
  was expected.
- ``parse_json``: raw JSON from a client -> its object, or a ValidationError (text over
  ``MAX_PAYLOAD_BYTES`` is refused unparsed, an object repeating a key is refused).
- ``event_from_payload``: that object -> a typed ``Event`` (or a ValidationError).
- ``show``: a short description of any value for an error message; never raises.
- ``anonymise_ip``: IPv4 -> its /24 network, IPv6 -> its /48 network; the full address never
  reaches the database.
- ``mask_personal_data``: free text with every e-mail address replaced by a placeholder and every
  IP address by its network (used on property strings, rejected payloads and their reasons).
- ``mentioned_ids`` / ``redact_ids``: the UUID-shaped substrings of a text in any spelling (any
  case, with or without hyphens, braces or ``urn:uuid:``), by the SHA-256 a deletion request
  keeps, and the text with the ones of given hashes (erased learners) replaced.
- ``rejected_payload``: the text kept in ``app.rejected_events``: the IP replaced by its prefix,
  e-mail addresses and anything else that looks like an IP address masked, truncated to
  ``REJECTED_PAYLOAD_LIMIT`` bytes; never raises, whatever the payload holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter

from python_jobs.ingest.events import EVENT_CLASSES, Event, GenericEvent

REJECTED_PAYLOAD_LIMIT = 65536
"""Bytes of a rejected payload kept in app.rejected_events (payload_bytes keeps the full size)."""
MAX_PAYLOAD_BYTES = 1024 * 1024
"""Raw JSON longer than this is refused without being parsed (``properties`` may hold at most
64 KiB, so no valid event comes near it)."""

UUID_FIELDS = frozenset({"event_id", "user_id", "session_id"})
DATETIME_FIELDS = frozenset({"occurred_at", "received_at"})
INVALID_IP_PLACEHOLDER = "[invalid ip removed]"
EMAIL_PLACEHOLDER = "[email removed]"
ERASED_ID_PLACEHOLDER = "[erased learner]"


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of an event."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(ValueError):
    """An event was refused. ``errors`` lists every problem found, each naming its field."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "; ".join(str(e) for e in self.errors)


INT4_MAX = 2**31 - 1
Answer = Literal["A", "B", "C", "D", "E"]
InteractionType = Literal["open", "progress", "complete", "highlight", "note"]
ExamKind = Literal["practice", "board"]
ClientEndReason = Literal["user_ended", "app_closed"]  # the server's own: idle_timeout


class _TypedFields(BaseModel):
    """The typed fields of one kind of event, as ``typed_fields`` checks them."""

    model_config = ConfigDict(strict=True)


class QuestionFields(_TypedFields):
    question_id: StrictInt  # known to the question bank: the tracker's cache says
    selected_answer: Answer | None
    attempt_number: Annotated[StrictInt, Field(ge=1, le=INT4_MAX)]
    time_to_answer_ms: Annotated[StrictInt, Field(ge=0, le=INT4_MAX)]
    confidence_level: Annotated[StrictInt, Field(ge=1, le=5)] | None
    hint_used: StrictBool


class MaterialFields(_TypedFields):
    material_id: StrictInt  # known to the catalogue: the tracker's cache says
    interaction_type: InteractionType
    # strict floats take ints too, never bools; NaN and infinities are refused
    progress: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None
    active_seconds: Annotated[StrictInt, Field(ge=0, le=INT4_MAX)]


class ExamFields(_TypedFields):
    exam_kind: ExamKind
    scaled_score: Annotated[StrictInt, Field(ge=1, le=300)]
    passed: StrictBool


class SessionEndFields(_TypedFields):
    end_reason: ClientEndReason


def _one_of(kind: Any) -> str:
    return f"must be one of {', '.join(sorted(get_args(kind)))}"


EXPECTED = {
    "question_id": "must be an integer",
    "selected_answer": "must be one of A-E or null",
    "attempt_number": "must be a positive integer",
    "time_to_answer_ms": "must be a non-negative integer",
    "confidence_level": "must be 1-5 or null",
    "hint_used": "must be true or false",
    "material_id": "must be an integer",
    "interaction_type": _one_of(InteractionType),
    "progress": "must be between 0 and 1 or null",
    "active_seconds": "must be a non-negative integer",
    "exam_kind": "must be 'practice' or 'board'",
    "scaled_score": "must be an integer 1-300",
    "passed": "must be true or false",
    "end_reason": "must be 'user_ended' or 'app_closed'",
}
"""What each typed field must be, as an error message says it (followed by ", got <value>")."""


@cache
def _field_reader(
    schema: type[_TypedFields],
) -> tuple[tuple[str, ...], Callable[[Any], tuple], Any]:
    """(the schema's field names, a reader of those attributes of an event as a tuple, a pydantic
    validator of that tuple): checking the tuple costs about a third of validating the model from
    the event's attributes (0.4-0.7 against 1.0-1.5 us), and the tracker wants a tuple anyway."""
    names = tuple(schema.model_fields)
    types = tuple(
        Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        for f in schema.model_fields.values()
    )
    adapter = TypeAdapter(tuple[types], config=ConfigDict(strict=True))  # type: ignore[valid-type]
    get = operator.attrgetter(*names)
    read = get if len(names) > 1 else (lambda event: (get(event),))  # one name: not a tuple
    return names, read, adapter.validator


def typed_fields(
    schema: type[_TypedFields], event: Any, errors: list[FieldError]
) -> tuple[Any, ...] | None:
    """``event``'s typed fields checked against ``schema``: their validated values in the
    schema's field order, or None with a FieldError per bad field appended to ``errors``."""
    names, read, validator = _field_reader(schema)
    try:
        return validator.validate_python(read(event))
    except pydantic.ValidationError as err:
        bad = dict.fromkeys(names[e["loc"][0]] for e in err.errors(include_url=False))
        errors.extend(
            FieldError(name, f"{EXPECTED[name]}, got {show(getattr(event, name))}") for name in bad
        )
        return None


def show(value: Any, limit: int = 60) -> str:
    """A short repr of a bad value for an error message (a 10 MB string stays short). Never
    raises: an integer too long to print, a structure nested too deeply for ``repr`` or an object
    whose ``__repr__`` fails are described instead."""
    if type(value) is int and value.bit_length() > 256:  # over 77 digits: past any limit
        digits = int(value.bit_length() * 0.30103) + 1
        text = f"<integer of about {digits} digits>"
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - describing bad input must not fail
            text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- IP addresses


@lru_cache(maxsize=65536)
def ip_prefix(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address as text, or None if ``ip`` is not one
    (cached: clients repeat their address)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 client
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network((addr, bits), strict=False))


def anonymise_ip(ip: str) -> str:
    """The network an address belongs to: IPv4 -> /24, IPv6 -> /48 (IPv4-mapped IPv6 -> /24).

    Raises ValueError for anything that is not a single IPv4 or IPv6 address.
    """
    if not isinstance(ip, str):
        raise ValueError("must be a string")
    prefix = ip_prefix(ip)
    if prefix is None:
        raise ValueError("not a valid IPv4 or IPv6 address")
    return prefix


_IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_IPV6_RE = re.compile(
    r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"
)


def _followed_by_prefix(match: re.Match[str], bits: int) -> bool:
    """Whether the match is followed by ``/bits`` (and no further digit)."""
    end = match.end()
    suffix = f"/{bits}"
    after = match.string[end + len(suffix) : end + len(suffix) + 1]
    return match.string.startswith(suffix, end) and not after.isdigit()


def _mask_ipv4(match: re.Match[str]) -> str:
    if all(int(part) <= 255 for part in match.groups()):
        if int(match[4]) == 0 and _followed_by_prefix(match, 24):
            return match[0]  # already a /24 network: masking twice changes nothing
        return f"{match[1]}.{match[2]}.{match[3]}.0/24"
    return match[0]


def _mask_ipv6(match: re.Match[str]) -> str:
    try:
        addr = ipaddress.IPv6Address(match[0])
    except ValueError:
        return match[0]
    network = ipaddress.ip_network((addr, 48), strict=False)
    if network.network_address == addr and _followed_by_prefix(match, 48):
        return match[0]  # already a /48 network
    return str(network)


def mask_ip_addresses(text: str) -> str:
    """Replace everything in ``text`` that parses as an IP address by its /24 or /48 network
    (a /24 or /48 network already written as such is left as it is)."""
    if "." in text:
        text = _IPV4_RE.sub(_mask_ipv4, text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6_RE.sub(_mask_ipv6, text)
    return text


# Something shaped like an e-mail address: a local part, "@", a domain with at least one dot.
# Deliberately broad (any Unicode word character, the RFC 5322 specials in the local part):
# masking a look-alike costs a few characters of a free-text value, missing an address leaks it.
# A match starts only where a local part starts (the lookbehind) and the local part never gives
# characters back (possessive): linear time on any text, a long run of letters included.
_LOCAL_PART = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL_RE = re.compile(rf"(?<!{_LOCAL_PART}){_LOCAL_PART}++@(?:[\w-]+\.)+[\w-]+")


def mask_emails(text: str) -> str:
    """Replace everything in ``text`` shaped like an e-mail address by EMAIL_PLACEHOLDER."""
    if "@" not in text:
        return text
    return _EMAIL_RE.sub(EMAIL_PLACEHOLDER, text)


def mask_personal_data(text: str) -> str:
    """``text`` with e-mail addresses replaced by a placeholder and IP addresses by their network
    (what the warehouse may keep of free text: see mask_emails and mask_ip_addresses)."""
    return mask_ip_addresses(mask_emails(text))


# --------------------------------------------------------------------------- identifiers

# 32 hex digits, optionally with hyphens between them, not part of a longer run of hex digits:
# a UUID in every spelling clients use (any case, hyphenated or not, in braces, urn:uuid:...).
_UUID_RE = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f](?:-?[0-9A-Fa-f]){31}(?![0-9A-Fa-f])")
_ID_CHARS = frozenset("0123456789abcdefABCDEF-")
_LONGEST_ID = 63  # 32 hex digits with a hyphen between every two


def _id_hash(spelling: str) -> str:
    """The SHA-256 a deletion request keeps of the id (of its canonical spelling)."""
    canonical = str(UUID(spelling.replace("-", "")))
    return hashlib.sha256(canonical.encode()).hexdigest()


def mentioned_ids(text: str) -> set[str]:
    """SHA-256 of every UUID-shaped substring of ``text`` (see python_jobs.warehouse.deletion)."""
    return {_id_hash(m) for m in _UUID_RE.findall(text)}


def redact_ids(text: str, hashes: Collection[str]) -> str:
    """``text`` with every UUID-shaped substring whose SHA-256 is in ``hashes`` replaced by
    ERASED_ID_PLACEHOLDER."""
    if not hashes:
        return text

    def replace(match: re.Match[str]) -> str:
        return ERASED_ID_PLACEHOLDER if _id_hash(match[0]) in hashes else match[0]

    return _UUID_RE.sub(replace, text)


# --------------------------------------------------------------------------- rejected payloads


PropertiesFilter = Callable[[Any, Mapping[Any, Any]], tuple[dict[str, Any], int]]
"""(event type, properties) -> (what may be kept, keys dropped): DeclaredProperties.clean."""


def _redact_fields(
    data: Mapping[str, Any], clean_properties: PropertiesFilter | None
) -> dict[str, Any]:
    out = dict(data)
    ip = out.get("ip")
    if ip is not None:
        prefix = ip_prefix(ip) if isinstance(ip, str) else None
        out["ip"] = prefix if prefix is not None else INVALID_IP_PLACEHOLDER
    props = out.get("properties")
    if clean_properties is not None and isinstance(props, Mapping):
        out["properties"] = clean_properties(out.get("event_type"), props)[0]
    return out


def event_as_payload(event: Event) -> dict[str, Any]:
    """An Event as the JSON object a client would have sent (for app.rejected_events)."""
    data: dict[str, Any] = {"event_type": event.event_type}
    for f in dataclasses.fields(event):
        data[f.name] = getattr(event, f.name)
    return data


def rejected_payload(
    payload: Any, clean_properties: PropertiesFilter | None = None
) -> tuple[str, int]:
    """(text to store, original size in bytes) for app.rejected_events. Never raises.

    The ``ip`` field is replaced by its network (or a placeholder when it is not an address), the
    ``properties`` of a payload that parses keep what ``clean_properties`` keeps (the declared
    keys: no undeclared key, such as a name, is stored for a refused event either), any other
    IP-looking text and every e-mail address are masked, and the text is cut to
    REJECTED_PAYLOAD_LIMIT bytes. Input that cannot be serialised as it is (nested too deeply,
    numbers too long to print, objects whose ``__str__`` fails, ...) is kept as a bounded,
    best-effort JSON rendering.
    """
    try:
        text, size = _payload_text(payload, clean_properties)
    except Exception:  # noqa: BLE001 - the rejection path must not fail on any input
        try:
            text = _fallback_text(payload, clean_properties)
        except Exception:  # noqa: BLE001
            text = json.dumps(f"<{type(payload).__name__} that could not be shown>")
        size = len(text.encode("utf-8", errors="surrogatepass"))
    # Mask a little beyond the cut so an address straddling it is masked before being cut.
    head = mask_personal_data(text[: REJECTED_PAYLOAD_LIMIT + 320])
    encoded = head.encode("utf-8", errors="replace")
    data = encoded[:REJECTED_PAYLOAD_LIMIT]
    stored = data.decode("utf-8", errors="ignore")
    if len(data) < len(encoded):
        # The cut may have split an identifier: a part of one can be neither found nor redacted
        # when its learner is erased (see redact_ids), so the cut text never ends with one.
        end = len(stored)
        while end > 0 and len(stored) - end < _LONGEST_ID and stored[end - 1] in _ID_CHARS:
            end -= 1
        stored = stored[:end]
    return stored.replace("\x00", "\\u0000"), size


def _payload_text(payload: Any, clean_properties: PropertiesFilter | None) -> tuple[str, int]:
    """The payload as JSON text (its fields redacted) and its size; may raise."""
    if isinstance(payload, Event):
        payload = event_as_payload(payload)
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        size = len(raw)
        text = raw.decode("utf-8", errors="replace")
        parsed = _loads_quietly(text) if size <= MAX_PAYLOAD_BYTES else None
        if isinstance(parsed, dict):
            text = json.dumps(
                _redact_fields(parsed, clean_properties), ensure_ascii=False, default=str
            )
    elif isinstance(payload, str):
        size = len(payload.encode("utf-8", errors="surrogatepass"))
        parsed = _loads_quietly(payload) if size <= MAX_PAYLOAD_BYTES else None
        if isinstance(parsed, dict):
            text = json.dumps(
                _redact_fields(parsed, clean_properties), ensure_ascii=False, default=str
            )
        else:
            text = payload
    else:
        text = json.dumps(
            _redact_fields(payload, clean_properties), ensure_ascii=False, default=str
        )
        size = len(text.encode("utf-8", errors="surrogatepass"))
    return text, size


def _fallback_text(payload: Any, clean_properties: PropertiesFilter | None) -> str:
    data = event_as_payload(payload) if isinstance(payload, Event) else payload
    if isinstance(data, Mapping):
        try:
            data = _redact_fields(data, clean_properties)
        except Exception:  # noqa: BLE001 - a broken mapping is shown as it is
            pass
    return _safe_json(data)


def _loads_quietly(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


SAFE_JSON_DEPTH = 32
"""How deep ``_safe_json`` renders nested containers of a payload that would not serialise."""


def _safe_json(value: Any) -> str:
    """A bounded JSON rendering of anything, for a rejected payload that json.dumps refused:
    containers deeper than SAFE_JSON_DEPTH, or past REJECTED_PAYLOAD_LIMIT items, are elided;
    anything that is not a JSON value is shown by ``show``. Iterative: no recursion to overflow."""
    out: list[str] = []
    budget = REJECTED_PAYLOAD_LIMIT
    # A stack of pending work: values to render, or literal text to emit.
    stack: list[tuple[bool, Any, int]] = [(False, value, 0)]
    while stack and budget > 0:
        literal, item, depth = stack.pop()
        if literal:
            out.append(item)
            budget -= len(item)
            continue
        piece = _scalar_json(item)
        if piece is None:
            if depth >= SAFE_JSON_DEPTH:
                piece = json.dumps(f"<{type(item).__name__} nested too deeply>")
            elif isinstance(item, Mapping):
                todo: list[tuple[bool, Any, int]] = [(True, "{", 0)]
                for n, (key, val) in enumerate(_items(item)):
                    if n >= REJECTED_PAYLOAD_LIMIT // 4:
                        break
                    sep = ", " if n else ""
                    name = key if type(key) is str else show(key)
                    todo += [(True, sep + json.dumps(name) + ": ", 0), (False, val, depth + 1)]
                todo.append((True, "}", 0))
                stack.extend(reversed(todo))
                continue
            elif isinstance(item, list | tuple):
                todo = [(True, "[", 0)]
                for n, val in enumerate(item[: REJECTED_PAYLOAD_LIMIT // 4]):
                    todo += [(True, ", " if n else "", 0), (False, val, depth + 1)]
                todo.append((True, "]", 0))
                stack.extend(reversed(todo))
                continue
            else:
                piece = json.dumps(_describe(item), ensure_ascii=False)
        out.append(piece)
        budget -= len(piece)
    return "".join(out)


def _describe(value: Any) -> str:
    """str() of an id or a time (as json.dumps(default=str) shows them), else ``show``."""
    if isinstance(value, UUID | datetime):
        try:
            return str(value)
        except Exception:  # noqa: BLE001 - e.g. a tzinfo whose utcoffset raises
            pass
    return show(value, 200)


def _items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    try:
        return list(mapping.items())
    except Exception:  # noqa: BLE001 - a broken mapping is shown as empty
        return []


def _scalar_json(value: Any) -> str | None:
    """JSON text of a scalar (str, bool, None, a printable int, a finite float), else None."""
    if value is None or type(value) is bool:
        return json.dumps(value)
    if type(value) is str:
        return json.dumps(value, ensure_ascii=False)
    if type(value) is int:
        return json.dumps(show(value)) if value.bit_length() > 64 else str(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else json.dumps(repr(value))
    return None


# --------------------------------------------------------------------------- raw JSON payloads


def _init_fields(cls: type[Event]) -> dict[str, bool]:
    """Field name -> required, for the fields a client may send for this class."""
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "event_type":
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = required
    return out


_FIELDS = {cls: _init_fields(cls) for cls in (*EVENT_CLASSES.values(), GenericEvent)}


def _convert(name: str, value: Any, errors: list[FieldError]) -> Any:
    if value is None:
        return None
    if name in UUID_FIELDS:
        if not isinstance(value, str):
            errors.append(FieldError(name, f"must be a UUID string, got {show(value)}"))
            return None
        try:
            return UUID(value)
        except ValueError:
            errors.append(FieldError(name, f"must be a UUID, got {show(value)}"))
            return None
    if name in DATETIME_FIELDS:
        if not isinstance(value, str):
            errors.append(FieldError(name, f"must be an ISO 8601 timestamp, got {show(value)}"))
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            errors.append(FieldError(name, f"must be an ISO 8601 timestamp, got {show(value)}"))
            return None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            errors.append(
                FieldError(
                    name, f"must include a UTC offset (e.g. 'Z' or '+02:00'), got {show(value)}"
                )
            )
            return None
        return parsed
    return value


def parse_json(payload: Any) -> dict[str, Any]:
    """The JSON object of a payload, or ValidationError naming what is wrong with it.

    Text over MAX_PAYLOAD_BYTES is refused unparsed; an object with a repeated key (at any depth)
    is refused, as different parsers would keep different values of it."""
    if isinstance(payload, Mapping):
        try:
            return dict(payload)
        except Exception as err:  # noqa: BLE001 - a mapping that cannot be read is bad input
            raise ValidationError(
                [FieldError("payload", f"could not be read: {type(err).__name__}")]
            ) from None
    if not isinstance(payload, str | bytes | bytearray):
        raise ValidationError(
            [FieldError("payload", f"must be JSON text, got {type(payload).__name__}")]
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        unit = "characters" if isinstance(payload, str) else "bytes"
        message = f"{len(payload)} {unit}, over the {MAX_PAYLOAD_BYTES}-byte limit"
        raise ValidationError([FieldError("payload", message)])
    try:
        data = json.loads(payload, object_pairs_hook=_unique_keys)
    except _RepeatedKeyError as err:
        raise ValidationError([FieldError("payload", str(err))]) from None
    except (ValueError, RecursionError) as err:
        raise ValidationError(
            [FieldError("payload", f"malformed JSON: {show(str(err), 120)}")]
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(
            [FieldError("payload", f"must be a JSON object, got {type(data).__name__}")]
        )
    return data


class _RepeatedKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(f"repeated key {show(key, 40)} in a JSON object")
            seen.add(key)
    return data


def event_from_payload(data: Mapping[str, Any], known_types: Iterable[str]) -> Event:
    """A typed Event from a parsed JSON object, or ValidationError listing every problem.

    Identifiers are UUID strings, times ISO 8601 with an offset; other fields keep their JSON type
    and are range-checked by the tracker. Fields the event type does not have are refused (put
    free-form data in ``properties``).
    """
    errors: list[FieldError] = []
    event_type = data.get("event_type")
    known = set(known_types)
    if event_type is None:
        errors.append(FieldError("event_type", "required"))
    elif not isinstance(event_type, str):
        errors.append(FieldError("event_type", f"must be a string, got {show(event_type)}"))
    elif event_type not in known:
        errors.append(
            FieldError(
                "event_type",
                f"unknown event type {show(event_type)} (known: {', '.join(sorted(known))})",
            )
        )
    cls: type[Event] = (
        EVENT_CLASSES.get(event_type, GenericEvent) if isinstance(event_type, str) else GenericEvent
    )
    spec = _FIELDS[cls]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "event_type":
            continue
        if key not in spec:
            if event_type in known:  # for an unknown type, the one error above says it all
                errors.append(
                    FieldError(show(key, 40).strip("'"), f"unexpected field for {event_type}")
                )
            continue
        kwargs[key] = _convert(key, value, errors)
    if event_type in known:
        for name, required in spec.items():
            if required and name not in data:
                hint = (
                    " (null when the learner gave no answer)" if name == "selected_answer" else ""
                )
                errors.append(FieldError(name, "required" + hint))
    if "properties" in kwargs and kwargs["properties"] is None:
        kwargs["properties"] = {}  # an explicit null means "no properties"
    if errors:
        raise ValidationError(errors)
    if cls is GenericEvent:
        kwargs["event_type"] = event_type
    return cls(**kwargs)
