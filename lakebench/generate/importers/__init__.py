"""Importers: real data files -> raw event records, each with its position in the file.

An importer never raises on a bad record: it yields the record's problems instead, so one bad
line costs that line only. Validation into ``Event`` happens afterwards, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from lakebench.core.errors import ConfigError
from lakebench.generate.importers.base import SourceRecord, open_input
from lakebench.generate.importers.json_sources import gharchive, ndjson, tantivy_wiki, wikiticker
from lakebench.generate.importers.mediawiki import mediawiki_xml

__all__ = ["FORMATS", "SourceRecord", "open_input", "read_records"]

Importer = Callable[[Path | str], Iterator[SourceRecord]]

FORMATS: dict[str, Importer] = {
    "ndjson": ndjson,
    "wikiticker": wikiticker,
    "gharchive": gharchive,
    "tantivy-wiki": tantivy_wiki,
    "mediawiki-xml": mediawiki_xml,
}


def read_records(path: Path | str, fmt: str) -> Iterator[SourceRecord]:
    try:
        importer = FORMATS[fmt]
    except KeyError:
        raise ConfigError(f"unknown input format {fmt!r}; choose one of: {', '.join(FORMATS)}") from None
    return importer(path)
