"""NDJSON sources: lakebench's own event format, and three real-world feeds mapped onto events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakebench.core.ids import stable_event_id
from lakebench.core.validate import parse_timestamp
from lakebench.generate.importers.base import MappingError, SourceRecord, map_json_lines

_WIKI_CHANNEL = re.compile(
    r"^#([a-z0-9-]+)\.(wikipedia|wiktionary|wikibooks|wikinews|wikiquote|wikisource|wikivoyage)$"
)
_WIKITICKER_ATTRS = (
    "user",
    "namespace",
    "added",
    "deleted",
    "delta",
    "isMinor",
    "isRobot",
    "isAnonymous",
    "isUnpatrolled",
    "countryName",
    "cityName",
)


def _required(record: dict[str, Any], name: str) -> Any:
    value = record.get(name)
    if value is None or value == "":
        raise MappingError(name, "required source field is missing")
    return value


def _ts(record: dict[str, Any], name: str) -> datetime:
    parsed = parse_timestamp(_required(record, name))
    if isinstance(parsed, str):
        raise MappingError(name, parsed)
    return parsed


def ndjson(path: Path | str) -> Iterator[SourceRecord]:
    """Events in lakebench's own shape, one JSON object per line."""
    return map_json_lines(path, lambda record: record)


def _wikiticker(record: dict[str, Any]) -> dict[str, Any]:
    channel = _required(record, "channel")
    match = _WIKI_CHANNEL.match(str(channel))
    if not match:
        raise MappingError("channel", f"{channel!r} is not a wiki channel like '#en.wikipedia'")
    ns = f"{match.group(1)}.{match.group(2)}.org"
    page = _required(record, "page")
    ts = _ts(record, "time")
    return {
        "event_id": stable_event_id(ts, "wikiticker", ns, str(page), json.dumps(record, sort_keys=True)),
        "entity_ns": ns,
        "entity_id": page,
        "ts": ts.isoformat(),
        "type": "create" if record.get("isNew") else "update",
        "title": page,
        "body": record.get("comment"),
        "attributes": {k: record[k] for k in _WIKITICKER_ATTRS if record.get(k) is not None},
    }


def wikiticker(path: Path | str) -> Iterator[SourceRecord]:
    """Druid's wikiticker sample: channel '#en.wikipedia' -> namespace 'en.wikipedia.org', page -> id."""
    return map_json_lines(path, _wikiticker)


def _gh_body(kind: str, payload: dict[str, Any]) -> str:
    """The human-written text of a GitHub event: commit messages, issue or PR text, comments."""
    parts: list[str] = []
    for commit in payload.get("commits") or []:
        if isinstance(commit, dict) and commit.get("message"):
            parts.append(str(commit["message"]))
    for name in ("issue", "pull_request", "comment", "release"):
        item = payload.get(name)
        if isinstance(item, dict):
            parts.extend(str(item[k]) for k in ("title", "name", "body") if item.get(k))
    if payload.get("description"):
        parts.append(str(payload["description"]))
    return "\n\n".join(parts) if parts else f"{kind} {json.dumps(payload, sort_keys=True)[:2000]}"


def _gharchive(record: dict[str, Any]) -> dict[str, Any]:
    repo = _required(record, "repo")
    if not isinstance(repo, dict) or not repo.get("name"):
        raise MappingError("repo.name", "required source field is missing")
    kind = str(_required(record, "type"))
    ts = _ts(record, "created_at")
    payload = record.get("payload") or {}
    actor = record.get("actor") or {}
    created = kind == "CreateEvent" and payload.get("ref_type") == "repository"
    return {
        "event_id": stable_event_id(ts, "gharchive", str(_required(record, "id"))),
        "entity_ns": "github.com",
        "entity_id": repo["name"],
        "ts": ts.isoformat(),
        "type": "create" if created else "update",
        "title": f"{kind} by {actor.get('login', 'unknown')}" if isinstance(actor, dict) else kind,
        "body": _gh_body(kind, payload if isinstance(payload, dict) else {}),
        "attributes": {
            "github_id": str(record["id"]),
            "github_type": kind,
            "actor": actor.get("login") if isinstance(actor, dict) else None,
            "public": record.get("public"),
        },
    }


def gharchive(path: Path | str) -> Iterator[SourceRecord]:
    """GH Archive events: namespace 'github.com', the repository 'owner/name' as entity_id."""
    return map_json_lines(path, _gharchive)


CORPUS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # the time part of ids of sources without time


def tantivy_wiki(path: Path | str, *, observed_at: datetime | None = None) -> Iterator[SourceRecord]:
    """Wikipedia articles {url, title, body} (tantivy's benchmark corpus); no timestamps in the source,
    so each article is stamped with the import time (``observed_at``). Its id comes from its URL and
    text alone: importing the corpus again adds nothing."""
    at = observed_at or datetime.now(UTC)

    def mapper(record: dict[str, Any]) -> dict[str, Any]:
        url = str(_required(record, "url"))
        title = _required(record, "title")
        host = re.match(r"^https?://([^/]+)/", url)
        return {
            "event_id": stable_event_id(CORPUS_EPOCH, "tantivy-wiki", url, str(record.get("body", ""))),
            "entity_ns": host.group(1) if host else "en.wikipedia.org",
            "entity_id": title,
            "ts": at.isoformat(),
            "type": "create",
            "title": title,
            "body": record.get("body", ""),
            "attributes": {"url": url},
        }

    return map_json_lines(path, mapper)
