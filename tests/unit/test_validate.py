from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ulid import ULID

from lakebench.core.models import Event, Limits
from lakebench.core.validate import Problem, parse_event, validate_batch

GOOD = {"entity_ns": "en.wikipedia.org", "entity_id": "TypeScript", "ts": "2025-10-04T12:00:00Z"}


def fields(problems: object) -> list[str]:
    assert isinstance(problems, list), f"expected problems, got {problems!r}"
    return [p.field for p in problems]


def test_minimal_event_gets_a_ulid_stamped_with_its_time() -> None:
    event = parse_event(GOOD)
    assert isinstance(event, Event)
    assert event.ts == datetime(2025, 10, 4, 12, tzinfo=UTC)
    assert ULID.from_str(event.event_id).datetime == event.ts
    assert (event.type, event.version, event.attributes, event.body) == ("update", 1, {}, None)


def test_given_event_id_is_kept_in_canonical_form() -> None:
    ulid = str(ULID())
    event = parse_event({**GOOD, "event_id": ulid.lower()})
    assert isinstance(event, Event) and event.event_id == ulid


@pytest.mark.parametrize(
    "entity_id", ["TypeScript", "cpp/container/vector", "Talk:Cristiano Ronaldo", "東京", "émoji 🎉", " x "]
)
def test_unicode_and_path_like_ids_are_accepted_verbatim(entity_id: str) -> None:
    event = parse_event({**GOOD, "entity_id": entity_id})
    assert isinstance(event, Event) and event.entity_id == entity_id


def test_every_problem_is_reported_with_its_field() -> None:
    problems = parse_event(
        {
            "entity_ns": "not a host!",
            "entity_id": 42,
            "ts": "yesterday",
            "type": "upsert",
            "body": ["x"],
            "version": True,
            "attributes": [1],
            "colour": "red",
        }
    )
    assert sorted(fields(problems)) == sorted(
        ["entity_ns", "entity_id", "ts", "type", "body", "version", "attributes", "colour"]
    )


def test_missing_required_fields() -> None:
    assert sorted(fields(parse_event({}))) == ["entity_id", "entity_ns", "ts"]


def test_record_that_is_not_an_object() -> None:
    assert parse_event([1, 2]) == [Problem("(record)", "must be a JSON object, got array")]


def test_size_limits_count_utf8_bytes() -> None:
    assert isinstance(parse_event({**GOOD, "entity_id": "é" * 512}), Event)  # 1024 bytes
    problems = parse_event({**GOOD, "entity_id": "é" * 513})
    assert fields(problems) == ["entity_id"] and "1,026 bytes" in problems[0].message  # type: ignore[index]
    problems = parse_event({**GOOD, "body": "x" * 101}, Limits(max_body_bytes=100))
    assert fields(problems) == ["body"] and "over the limit of 100 bytes" in problems[0].message  # type: ignore[index]


def test_lone_surrogates_and_empty_ids_are_rejected() -> None:
    assert fields(parse_event({**GOOD, "entity_id": "bad\ud800"})) == ["entity_id"]
    assert fields(parse_event({**GOOD, "entity_id": ""})) == ["entity_id"]
    assert fields(parse_event({**GOOD, "entity_id": "a\x00b"})) == ["entity_id"]


def test_namespace_is_normalised_to_lower_case() -> None:
    event = parse_event({**GOOD, "entity_ns": "EN.Wikipedia.ORG"})
    assert isinstance(event, Event) and event.entity_ns == "en.wikipedia.org"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-10-04T14:00:00+02:00", datetime(2025, 10, 4, 12, tzinfo=UTC)),
        ("2025-10-04T12:00:00", datetime(2025, 10, 4, 12, tzinfo=UTC)),
        (1759579200, datetime(2025, 10, 4, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_become_utc(raw: object, expected: datetime) -> None:
    event = parse_event({**GOOD, "ts": raw})
    assert isinstance(event, Event) and event.ts == expected


@pytest.mark.parametrize("raw", [True, "2025-13-01T00:00:00Z", float("nan"), 10**20, {"t": 1}])
def test_bad_timestamps(raw: object) -> None:
    assert fields(parse_event({**GOOD, "ts": raw})) == ["ts"]


def test_bad_event_id() -> None:
    assert fields(parse_event({**GOOD, "event_id": "not-a-ulid"})) == ["event_id"]
    assert fields(parse_event({**GOOD, "event_id": 7})) == ["event_id"]


def test_batch_keeps_good_records_and_numbers_bad_ones() -> None:
    result = validate_batch([GOOD, {"entity_ns": "x.org"}, GOOD, "junk"])
    assert len(result.accepted) == 2
    assert [r.position for r in result.rejected] == [2, 4]
    assert str(result.rejected[0]).startswith("record 2: entity_id: required field is missing")
