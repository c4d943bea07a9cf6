"""Every real file in ../shared/data goes through its importer into a lake and comes back by lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakebench.core.config import Settings
from lakebench.core.models import Event
from lakebench.core.validate import parse_event
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.generate.importers import read_records
from lakebench.lake.catalog import Lake
from lakebench.pipeline.batch import ingest_file

CASES = [
    # (file, format, records, a key that must be found, what its latest event must show)
    (
        "events/wikiticker-2015-09-12-sampled.json.gz",
        "wikiticker",
        39_244,
        ("en.wikipedia.org", "Talk:Oswald Tilghman"),
        lambda e: e.body == "added project" and e.attributes["user"] == "GELongstreet",
    ),
    (
        "events/gharchive-2015-01-01-01.sample1000.tantivy-gh.json",
        "gharchive",
        1_000,
        ("github.com", "soumith/fbcunn"),
        lambda e: "back to old structure" in (e.body or "") or e.attributes["github_type"] != "",
    ),
    (
        "wikipedia/enwiki-articles.sample1000.tantivy-wiki.json",
        "tantivy-wiki",
        1_000,
        ("en.wikipedia.org", "Benham, Indiana"),
        lambda e: "unincorporated community in Ripley County" in (e.body or ""),
    ),
    (
        "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "mediawiki-xml",
        206,
        ("en.wikipedia.org", "AccessibleComputing"),
        lambda e: e.attributes.get("redirect") == "Computer accessibility",
    ),
]


@pytest.mark.parametrize(("name", "fmt", "expected", "key", "check"), CASES, ids=[c[1] for c in CASES])
def test_real_file_imports_and_looks_up(
    shared_data: Path, local_settings: Settings, name: str, fmt: str, expected: int, key: tuple[str, str], check: object
) -> None:
    path = shared_data / name
    records = list(read_records(path, fmt))
    assert len(records) == expected
    assert all(r.raw is not None for r in records), [r.problems for r in records if r.raw is None][:3]
    events = [parse_event(r.raw) for r in records]
    assert all(isinstance(e, Event) for e in events), [e for e in events if not isinstance(e, Event)][:3]

    lake = Lake(local_settings)
    report = ingest_file(lake, path, fmt)
    assert report.ok and report.accepted == expected
    engine = LakeSqlEngine(lake)
    try:
        found = engine.lookup(*key)
        assert found is not None and found.key == key
        assert callable(check) and check(found), found
        assert engine.lookup(key[0], key[1] + " (no such page)") is None
    finally:
        engine.close()


def test_tantivy_wiki_keeps_empty_bodies(shared_data: Path) -> None:
    records = list(read_records(shared_data / "wikipedia/enwiki-articles.sample1000.tantivy-wiki.json", "tantivy-wiki"))
    empty = [r for r in records if r.raw is not None and r.raw["body"] == ""]
    assert len(empty) == 62


def test_wikiticker_keeps_rows_from_other_days(shared_data: Path) -> None:
    records = list(read_records(shared_data / "events/wikiticker-2015-09-12-sampled.json.gz", "wikiticker"))
    days = {r.raw["ts"][:10] for r in records if r.raw is not None}
    assert "2015-09-12" in days and len(days) > 1


def test_reimport_gives_the_same_event_ids(shared_data: Path) -> None:
    path = shared_data / "events/gharchive-2015-01-01-01.sample1000.tantivy-gh.json"
    first = [r.raw["event_id"] for r in read_records(path, "gharchive") if r.raw]
    assert first == [r.raw["event_id"] for r in read_records(path, "gharchive") if r.raw]
    assert len(set(first)) == len(first)
