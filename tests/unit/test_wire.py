"""The fast path (typed decoding + ``parse_wire``) against the validator it stands in for.

``parse_event`` is the rule: for any record, the fast path must accept exactly what it accepts,
make the same row of it, and reject with the same problems."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakebench.core.models import Event, EventRow, Limits
from lakebench.core.validate import WIRE_DECODER, Problem, parse_event, parse_wire
from lakebench.pipeline.decode import parse_records

LIMITS = Limits(max_body_bytes=200, max_entity_id_bytes=12, max_title_bytes=40, max_attributes_bytes=80)
GENERIC = msgspec.json.Decoder()

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["en.wikipedia.org", "EN.Wiki", " a.b ", "a..b", "-x.org", "x" * 13, "TypeScript", "\u00e9t\u00e9", ""]
)
timestamps = st.one_of(
    st.sampled_from(["2025-10-04T12:00:00Z", "2025-10-04T12:00:00+02:00", "2025-10-04", "1969-12-31T23:59:59Z"]),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "not a time", "2025-13-01T00:00:00Z", " 2025-10-04T12:00:00z "]),
    st.integers(min_value=-10, max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e3, max_value=3e11),
    st.booleans(),
    st.none(),
)
ulids = st.sampled_from(["01JA0000000000000000000000", "01ja0000000000000000000000", "81JA0000000000000000000000"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "entity_ns": texts | st.integers(),
        "entity_id": texts | st.none() | st.integers(),
        "ts": timestamps,
        "event_id": ulids | texts | st.none() | st.integers(),
        "type": st.sampled_from(["create", "update", "delete", "Update", None, 3]),
        "title": texts | st.none() | st.integers(),
        "body": texts | st.none() | st.booleans(),
        "version": st.integers(min_value=-3, max_value=2**64) | st.none() | st.floats() | st.booleans(),
        "attributes": st.dictionaries(texts, json_values, max_size=4) | st.none() | st.lists(st.integers()) | texts,
        "extra": st.integers(),
    },
)


def slow(raw: dict[str, Any]) -> EventRow | list[str]:
    parsed = parse_event(raw, LIMITS)
    return parsed.row() if isinstance(parsed, Event) else [str(p) for p in parsed]


def fast(body: bytes) -> EventRow | list[str] | None:
    """None: the typed decoder refuses the record (the plain path judges it, as before)."""
    try:
        wire = WIRE_DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    parsed = parse_wire(wire, LIMITS)
    return parsed if isinstance(parsed, EventRow) else [str(p) for p in parsed]


def comparable(verdict: EventRow | list[str], has_id: bool) -> EventRow | list[str]:
    """Without a given event_id each path draws a fresh ULID: compare the rest."""
    return verdict if has_id or not isinstance(verdict, EventRow) else verdict._replace(event_id="")


valid = st.fixed_dictionaries(
    {
        "entity_ns": st.sampled_from(["en.wikipedia.org", "EN.Wikipedia.ORG ", "x_y.example"]),
        "entity_id": st.text(st.characters(codec="utf-8"), min_size=1, max_size=6).filter(
            lambda t: t.strip() and "\x00" not in t
        ),
        "ts": st.sampled_from(["2025-10-04T12:00:00Z", "2025-10-04T12:00:00.123456+05:30", "2025-10-04"])
        | st.integers(min_value=0, max_value=2**33),
    },
    optional={
        "event_id": ulids,
        "type": st.sampled_from(["create", "update", "delete"]),
        "title": st.text(st.characters(codec="utf-8"), max_size=10),
        "body": st.text(st.characters(codec="utf-8"), max_size=60),
        "version": st.integers(min_value=0, max_value=2**63 - 1),
        "attributes": st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=5), json_values, max_size=3),
    },
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(records | valid)
def test_the_fast_path_accepts_and_rejects_exactly_as_parse_event(raw: dict[str, Any]) -> None:
    try:
        body = json.dumps(raw, ensure_ascii=False).encode("utf-8", "surrogatepass")
        plain = GENERIC.decode(body)
    except (ValueError, TypeError, msgspec.DecodeError):
        return  # not JSON msgspec reads (a lone surrogate): refused whole, before either path
    typed = fast(body)
    if typed is None:
        return  # the typed decoder refused it: the plain path (parse_event itself) judges it
    has_id = plain.get("event_id") is not None
    assert comparable(typed, has_id) == comparable(slow(plain), has_id), raw


@settings(max_examples=300, deadline=None)
@given(valid)
def test_well_formed_records_take_the_fast_path_and_are_accepted(raw: dict[str, Any]) -> None:
    body = json.dumps(raw, ensure_ascii=False).encode("utf-8", "surrogatepass")
    typed = fast(body)
    expected = slow(GENERIC.decode(body))
    if isinstance(expected, EventRow):  # (a few strings of these are still invalid: over a byte limit)
        assert isinstance(typed, EventRow)


def test_every_record_of_a_request_is_judged_alike_whichever_path_read_it() -> None:
    good = {"entity_ns": "en.wikipedia.org", "entity_id": "TypeScript", "ts": "2025-10-04T12:00:00Z"}
    bad = {**good, "version": "7"}
    for body, kind in (
        (b"\n".join(json.dumps(r).encode() for r in (good, good)), "application/x-ndjson"),  # one typed pass
        (b"\n".join(json.dumps(r).encode() for r in (good, bad, good)), "application/x-ndjson"),  # line by line
        (json.dumps([good, bad, good]).encode(), "application/json"),  # plain decode, then converted
        (json.dumps([good, good]).encode(), "application/json"),  # one typed pass
    ):
        records, _ = parse_records(body, kind)
        for record in records:
            value = record.value
            if isinstance(value, msgspec.Struct):
                verdict = parse_wire(value, LIMITS)  # type: ignore[arg-type]
                got = verdict if isinstance(verdict, EventRow) else [str(p) for p in verdict]
                plain = {k: v for k, v in msgspec.structs.asdict(value).items() if v is not None}
            else:
                plain, got = value, slow(value)
            assert comparable(got, False) == comparable(slow(plain), False)
        first = 1 if kind.endswith("ndjson") else 0
        assert [r.position for r in records] == list(range(first, first + len(records)))


def test_an_ndjson_record_never_spans_lines() -> None:
    body = b'{"entity_ns":"a.b",\n"entity_id":"x","ts":1} {"entity_ns":"a.b","entity_id":"y","ts":1}\n' + (
        b'{"entity_ns":"a.b","entity_id":"z","ts":1}'
    )
    records, unit = parse_records(body, "application/x-ndjson")
    assert unit == "line" and [r.position for r in records] == [1, 2, 3]
    assert isinstance(records[0].value, Problem) and isinstance(records[1].value, Problem)  # each line alone
    assert isinstance(records[2].value, msgspec.Struct)
