"""The engine contract: questions in, events out, with what each answer cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lakebench.core.models import Event


@dataclass(slots=True)
class QueryStats:
    """What the last query read: rows returned, bytes and files touched where the engine knows them."""

    rows: int = 0
    files_scanned: int | None = None
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    name: str

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        """The latest event of an entity (by ts, then version, then event_id), or None if it has none.

        A deleted entity returns its delete event: the caller decides whether that is 'gone'.
        """
        ...

    def refresh(self) -> None:
        """See commits made since the engine was opened."""
        ...

    @property
    def last_stats(self) -> QueryStats: ...

    def close(self) -> None: ...
