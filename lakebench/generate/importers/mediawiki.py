"""MediaWiki XML exports (``pages-articles*.xml[.bz2]``): one event per page revision.

The namespace is the wiki's host from ``<siteinfo><base>``; the page title is the entity id; the
wikitext is the body. Redirect pages keep their target in ``attributes.redirect``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lakebench.core.errors import InputError
from lakebench.core.ids import stable_event_id
from lakebench.core.validate import Problem, parse_timestamp
from lakebench.generate.importers.base import SourceRecord, open_input


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text
    return None


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for child in elem:
        if _local(child.tag) == name:
            return child
    return None


def _page_records(page: ET.Element, host: str, position: int) -> Iterator[SourceRecord]:
    title = _child_text(page, "title")
    if not title:
        yield SourceRecord(position, None, (Problem("page.title", "required source field is missing"),), "page")
        return
    redirect = _child(page, "redirect")
    revisions = [c for c in page if _local(c.tag) == "revision"]
    if not revisions:
        yield SourceRecord(position, None, (Problem("page.revision", "page has no revision"),), "page")
        return
    for revision in revisions:
        raw_ts = _child_text(revision, "timestamp")
        ts = parse_timestamp(raw_ts) if raw_ts else "required source field is missing"
        if isinstance(ts, str):
            yield SourceRecord(position, None, (Problem("revision.timestamp", ts),), "page")
            continue
        revision_id = _child_text(revision, "id") or ""
        contributor = _child(revision, "contributor")
        attributes: dict[str, Any] = {"page_id": _child_text(page, "id"), "revision_id": revision_id}
        if contributor is not None:
            attributes["contributor"] = _child_text(contributor, "username") or _child_text(contributor, "ip")
        if redirect is not None:
            attributes["redirect"] = redirect.get("title")
        yield SourceRecord(
            position,
            {
                "event_id": stable_event_id(ts, "mediawiki", host, title, revision_id),
                "entity_ns": host,
                "entity_id": title,
                "ts": ts.isoformat(),
                "type": "update",
                "title": title,
                "body": _child_text(revision, "text") or "",
                "version": int(revision_id) if revision_id.isdigit() else 1,
                "attributes": attributes,
            },
            unit="page",
        )


def mediawiki_xml(path: Path | str) -> Iterator[SourceRecord]:
    stream = open_input(path)
    host = "en.wikipedia.org"
    position = 0
    try:
        for _, elem in ET.iterparse(stream, events=("end",)):
            name = _local(elem.tag)
            if name == "base" and elem.text:
                host = urlsplit(elem.text.strip()).hostname or host
            elif name == "page":
                position += 1
                yield from _page_records(elem, host, position)
                elem.clear()
    except ET.ParseError as exc:
        line, column = exc.position
        raise InputError(f"{path}: malformed XML at line {line}, column {column}: {exc}") from None
    finally:
        stream.close()
