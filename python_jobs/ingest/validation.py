"""Input checks of the event tracker that need no database: errors, payload parsing, IP anonymising.

The tracker (``python_jobs.ingest.tracker``) validates every event against the reference data it
caches (event catalogue, learners, question bank, materials); this module holds
what those checks share:

- ``FieldError`` / ``ValidationError``: every problem of one event, each naming its field.
- ``event_from_payload``: raw JSON from a client -> a typed ``Event`` (or a ValidationError).
- ``anonymise_ip``: IPv4 -> its /24 network, IPv6 -> its /48 network; the full address never
  reaches the database.
- ``mask_personal_data``: free text with every e-mail address replaced by a placeholder and every
  IP address by its network (used on property strings, rejected payloads and their reasons).
- ``mentioned_ids`` / ``redact_ids``: the UUID-shaped substrings of a text in any spelling (any
  case, with or without hyphens, braces or ``urn:uuid:``), by the SHA-256 a deletion request
  keeps, and the text with the ones of given hashes (erased learners) replaced.
- ``rejected_payload``: the text kept in ``app.rejected_events``: the IP replaced by its prefix,
  e-mail addresses and anything else that looks like an IP address masked, truncated to
  ``REJECTED_PAYLOAD_LIMIT`` bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from python_jobs.ingest.events import EVENT_CLASSES, Event, GenericEvent

REJECTED_PAYLOAD_LIMIT = 65536
"""Bytes of a rejected payload kept in app.rejected_events (payload_bytes keeps the full size)."""

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


def show(value: Any, limit: int = 60) -> str:
    """A short repr of a bad value for an error message (a 10 MB string stays short)."""
    text = repr(value)
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
    payload: str | bytes | Mapping[str, Any] | Event,
    clean_properties: PropertiesFilter | None = None,
) -> tuple[str, int]:
    """(text to store, original size in bytes) for app.rejected_events.

    The ``ip`` field is replaced by its network (or a placeholder when it is not an address), the
    ``properties`` of a payload that parses keep what ``clean_properties`` keeps (the declared
    keys: no undeclared key, such as a name, is stored for a refused event either), any
    other IP-looking text and every e-mail address are masked, and the text is cut to
    REJECTED_PAYLOAD_LIMIT bytes.
    """
    if isinstance(payload, Event):
        payload = event_as_payload(payload)
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", errors="replace")
        size = len(payload)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            text = json.dumps(
                _redact_fields(parsed, clean_properties), ensure_ascii=False, default=str
            )
    elif isinstance(payload, str):
        size = len(payload.encode("utf-8", errors="surrogatepass"))
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            text = json.dumps(
                _redact_fields(parsed, clean_properties), ensure_ascii=False, default=str
            )
        else:
            text = payload
    else:
        try:
            text = json.dumps(
                _redact_fields(payload, clean_properties), ensure_ascii=False, default=str
            )
        except (ValueError, TypeError, RecursionError):
            text = show(payload, REJECTED_PAYLOAD_LIMIT)
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


def parse_json(payload: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of a payload, or ValidationError naming what is wrong with it."""
    if isinstance(payload, Mapping):
        return dict(payload)
    if not isinstance(payload, str | bytes | bytearray):
        raise ValidationError(
            [FieldError("payload", f"must be JSON text, got {type(payload).__name__}")]
        )
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise ValidationError(
            [FieldError("payload", f"malformed JSON: {show(str(err), 120)}")]
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(
            [FieldError("payload", f"must be a JSON object, got {type(data).__name__}")]
        )
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
