"""The engine contract's semantics, computed in plain Python over the events written: the answers
every engine must give (search: the matching set; engines rank it their own way).

The conformance tests hold every engine to it, and the benchmark checks every option's answers
against it — an oracle that is none of the engines measured, with no limit on a search's matches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from lakebench.core.models import Event
from lakebench.core.text import document_text, query_terms, tokens
from lakebench.engines.base import EntityRef
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import arrow_to_events


def _order(e: Event) -> tuple[datetime, int, str]:
    return (e.ts, e.version, e.event_id)


def ref(e: Event) -> EntityRef:
    return EntityRef(e.entity_ns, e.entity_id, e.event_id, e.ts, e.version, e.type, e.title)


def utf8(s: str) -> bytes:
    return s.encode("utf-8")


class Oracle:
    @classmethod
    def of_lake(cls, lake: Lake) -> Oracle:
        """Every event of the lake's current snapshot, read with pyiceberg (no engine involved)."""
        table = lake.table()
        if table.current_snapshot() is None:
            return cls([])
        return cls(arrow_to_events(table.scan().to_arrow()))

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.by_key: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for e in events:
            self.by_key[e.key].append(e)
        for versions in self.by_key.values():
            versions.sort(key=_order)
        self.latest = {k: v[-1] for k, v in self.by_key.items()}
        self._tokens = {k: set(tokens(document_text(e.title, e.body))) for k, e in self.latest.items()}

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        return self.latest.get((ns, entity_id))

    def history(self, ns: str, entity_id: str) -> list[Event]:
        return self.by_key.get((ns, entity_id), [])

    def listing(self, ns: str) -> list[EntityRef]:
        live = [e for (n, _), e in self.latest.items() if n == ns and e.type != "delete"]
        return [ref(e) for e in sorted(live, key=lambda e: utf8(e.entity_id))]

    def recent(self, limit: int, ns: str | None = None) -> list[EntityRef]:
        chosen = [e for e in self.events if ns is None or e.entity_ns == ns]
        return [ref(e) for e in sorted(chosen, key=lambda e: (e.ts, e.event_id), reverse=True)[:limit]]

    def count_by(
        self, field: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]:
        def value(e: Event) -> str:
            return e.ts.strftime("%Y-%m-%d") if field == "day" else getattr(e, field)

        counts = Counter(
            value(e) for e in self.events if (since is None or e.ts >= since) and (until is None or e.ts < until)
        )
        return sorted(counts.items(), key=lambda kv: utf8(kv[0]))

    def search(self, query: str, ns: str | None = None) -> set[tuple[str, str, str]]:
        terms = query_terms(query)
        if not terms:
            return set()
        return {
            (k[0], k[1], e.event_id)
            for k, e in self.latest.items()
            if e.type != "delete" and (ns is None or k[0] == ns) and all(t in self._tokens[k] for t in terms)
        }

    def term_frequencies(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for k, e in self.latest.items():
            if e.type != "delete":
                counts.update(self._tokens[k])
        return counts
