"""The workload: what each benchmark asks, how an engine is asked it, and how its answer is checked.

A query is plain data (a kind and its arguments), so that the same sequence can be handed to every
option, stored in the result beside each sample, and replayed. ``answer`` turns what an engine
returns into a canonical, JSON-able form; ``check`` compares it with the oracle's, outside the
timing. Search is checked as a set: engines rank hits their own way, so a top-k answer is right
when it holds min(k, |matches|) hits, every one of them among the oracle's full set of matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import numpy as np
import pyarrow.compute as pc

from lakebench.benchmark.workloads import KeySpace
from lakebench.core.text import document_text, tokens
from lakebench.engines.base import Engine
from lakebench.lake.catalog import Lake

Kind = Literal["lookup", "history", "list", "recent", "count", "search"]
SEARCH_LIMIT: Final = 10
LIST_LIMIT: Final = 100
RECENT_LIMIT: Final = 20
FULL: Final = 10_000  # the oracle's search limit: every match


@dataclass(frozen=True, slots=True)
class Query:
    kind: Kind
    args: tuple[Any, ...]

    def to_list(self) -> list[Any]:
        return [self.kind, *self.args]

    @classmethod
    def from_list(cls, value: Sequence[Any]) -> Query:
        kind, *args = value
        return cls(kind, tuple(args))

    @property
    def full(self) -> Query:
        """The query the oracle answers: a search with every match, anything else as it is."""
        return Query("search", (self.args[0], FULL)) if self.kind == "search" else self


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    queries: list[Query]
    threshold: Literal["lookup", "search"] | None  # which threshold judges it, if any

    def repetition(self, r: int, repeat: int) -> list[Query]:
        """The queries of repetition ``r`` of ``repeat``: consecutive, equal slices."""
        n = len(self.queries) // repeat
        return self.queries[r * n : (r + 1) * n]


def call(engine: Engine, query: Query) -> Any:
    """Ask ``engine`` the query; returns the engine's own answer (canonicalised outside the timing)."""
    a = query.args
    match query.kind:
        case "lookup":
            return engine.lookup(a[0], a[1])
        case "history":
            return engine.history(a[0], a[1])
        case "list":
            return engine.list_namespace(a[0], None, a[1])
        case "recent":
            return engine.recent(a[0])
        case "count":
            since = datetime.fromisoformat(a[1]) if a[1] else None
            return engine.count_by(a[0], since, None)
        case "search":
            return engine.search(a[0], a[1])
    raise ValueError(f"unknown query kind {query.kind!r}")


def answer(query: Query, raw: Any) -> Any:
    """The canonical form of an engine's answer: what is compared, and what is stored."""
    match query.kind:
        case "lookup":
            return None if raw is None else raw.event_id
        case "history":
            return [e.event_id for e in raw]
        case "list":
            return [[r.entity_ns, r.entity_id] for r in raw.items]
        case "recent":
            return [[r.entity_ns, r.entity_id] for r in raw]
        case "count":
            return sorted([str(v), int(n)] for v, n in raw)
        case "search":
            return sorted([h.entity_ns, h.entity_id, h.event_id] for h in raw)
    raise ValueError(f"unknown query kind {query.kind!r}")


def check(query: Query, got: Any, oracle: Any) -> bool:
    """Whether ``got`` is a right answer to ``query``, given the oracle's answer to ``query.full``."""
    if query.kind == "search":
        matches = {tuple(h) for h in oracle}
        hits = [tuple(h) for h in got]
        return len(hits) == min(query.args[1], len(matches)) and len(set(hits)) == len(hits) and set(hits) <= matches
    return bool(got == oracle)


@dataclass(frozen=True, slots=True)
class Terms:
    """Search terms picked from the lake's own text: selective (in few documents), common (in the
    most), a pair that occurs together, and one that occurs nowhere."""

    selective: str
    common: str
    pair: str
    absent: str


def pick_terms(lake: Lake, sample_rows: int = 400, rng: np.random.Generator | None = None) -> Terms | None:
    """Document frequencies over a sample of the lake's rows (title and body, the engines' tokenizer)."""
    table = lake.table()
    if table.current_snapshot() is None:
        return None
    rows = table.scan(selected_fields=("title", "body"), limit=sample_rows).to_arrow()
    if rows.num_rows == 0:
        return None
    documents = [
        set(tokens(document_text(t, b)))
        for t, b in zip(
            rows["title"].to_pylist(), pc.utf8_slice_codeunits(rows["body"], 0, 20_000).to_pylist(), strict=True
        )
    ]
    df: Counter[str] = Counter(t for d in documents for t in d if len(t) >= 3 and not t.isdigit())
    if not df:
        return None
    by_df = sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))
    common = by_df[0][0]
    rare = [t for t, n in by_df if n == 1] or [by_df[-1][0]]
    selective = rare[len(rare) // 2]
    middle = [t for t, n in by_df if 0.05 * len(documents) <= n <= 0.5 * len(documents)] or [common]
    first = middle[0]
    partner = next((t for t in middle[1:] if any(first in d and t in d for d in documents)), first)
    absent = "zqxjvk" + str(int((rng or np.random.default_rng(3)).integers(10**6, 10**7)))
    return Terms(selective, common, f"{first} {partner}", absent)


LOOKUP_WORKLOADS: Final = ("lookup-zipf", "lookup-uniform", "lookup-latest", "lookup-missing")
SEARCH_WORKLOADS: Final = ("search-selective", "search-common", "search-and", "search-none")
OTHER_WORKLOADS: Final = ("history", "list", "recent", "count-by-day")
ALL_WORKLOADS: Final = (*LOOKUP_WORKLOADS, *SEARCH_WORKLOADS, *OTHER_WORKLOADS)
DEFAULT_WORKLOADS: Final = ("lookup-zipf", "lookup-missing", "search-selective", "search-common")


def build_workloads(
    names: Sequence[str],
    keys: KeySpace,
    latest: Sequence[tuple[str, str]],
    terms: Terms | None,
    samples: int,
    rng: np.random.Generator,
    search_samples: int | None = None,
) -> list[Workload]:
    """``samples`` queries per named workload (``search_samples`` for full-text search, which scans
    far more), drawn once: every option is asked exactly these."""
    unknown = [n for n in names if n not in ALL_WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r}; choose from {', '.join(ALL_WORKLOADS)}")
    out: list[Workload] = []
    namespaces = sorted({ns for ns, _ in keys.keys})
    for name in names:
        if name.startswith("search") and terms is None:
            continue  # a lake with no text has nothing to search
        match name:
            case "lookup-zipf":
                qs = [Query("lookup", k) for k in keys.zipf(samples, rng)]
                text = "latest version of an existing entity, keys drawn Zipf 0.99 by popularity"
            case "lookup-uniform":
                qs = [Query("lookup", k) for k in keys.uniform(samples, rng)]
                text = "latest version of an existing entity, keys drawn uniformly"
            case "lookup-latest":
                pool = list(latest) or keys.keys
                qs = [Query("lookup", pool[int(i)]) for i in rng.integers(0, len(pool), size=samples)]
                text = "the entities written last (the newest data files)"
            case "lookup-missing":
                qs = [Query("lookup", k) for k in keys.missing(samples, rng)]
                text = "a key that is not in the lake"
            case "history":
                qs = [Query("history", k) for k in keys.zipf(samples, rng)]
                text = "every version of an entity, Zipf 0.99"
            case "list":
                qs = [
                    Query("list", (namespaces[int(i)], LIST_LIMIT)) for i in rng.integers(0, len(namespaces), samples)
                ]
                text = f"first page ({LIST_LIMIT}) of a namespace's entities"
            case "recent":
                qs = [Query("recent", (RECENT_LIMIT,))] * samples
                text = f"the {RECENT_LIMIT} most recently changed entities"
            case "count-by-day":
                qs = [Query("count", ("day", None))] * samples
                text = "events per day over the whole table"
            case _:
                assert terms is not None
                term = {
                    "search-selective": (terms.selective, "a term in few documents"),
                    "search-common": (terms.common, "the term in the most documents"),
                    "search-and": (terms.pair, "two terms that occur together (AND)"),
                    "search-none": (terms.absent, "a term in no document"),
                }[name]
                qs = [Query("search", (term[0], SEARCH_LIMIT))] * (search_samples or samples)
                text = f"full-text search, top {SEARCH_LIMIT}: {term[1]} ({term[0]!r})"
        threshold: Literal["lookup", "search"] | None = (
            "lookup" if name.startswith("lookup") else "search" if name.startswith("search") else None
        )
        out.append(Workload(name, text, qs, threshold))
    return out
