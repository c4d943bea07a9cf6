"""The seed's ``/generate {count, avgSizeKB}``, deterministic: the same arguments give the same events.

- Several namespaces, each with its own id style (wiki titles, doc paths, owner/repo, ...).
- Entity popularity is Zipf-skewed with YCSB's constant 0.99: a few entities get many versions.
- An entity's first event creates it; later ones update it; a few delete it (and a later event
  re-creates it). Versions count up per entity; timestamps increase through a 30-day window.
- Body sizes are log-normal around the requested average.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from lakebench.core.ids import stable_event_id
from lakebench.core.models import Event, EventType
from lakebench.generate.text import TextGenerator, zipf_cdf

YCSB_ZIPF = 0.99
EPOCH = datetime(2025, 10, 4, tzinfo=UTC)  # the seed's date: the window ends here
WINDOW = timedelta(days=30)
NAMESPACES = (
    ("en.wikipedia.org", 0.40),
    ("de.wikipedia.org", 0.08),
    ("ja.wikipedia.org", 0.04),
    ("developer.mozilla.org", 0.12),
    ("docs.python.org", 0.10),
    ("github.com", 0.16),
    ("stackoverflow.com", 0.10),
)
_KANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"
DELETE_RATE = 0.02


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    count: int = 2_000
    avg_size_kb: float = 225.0
    seed: int = 42
    entity_ratio: float = 0.5  # distinct entities per event, before Zipf concentrates them

    @property
    def dataset_id(self) -> str:
        return f"synthetic:count={self.count}:avg_size_kb={self.avg_size_kb:g}:seed={self.seed}"


class _Ids:
    """Entity ids in each namespace's own style, unique within the namespace."""

    def __init__(self, rng: np.random.Generator, text: TextGenerator) -> None:
        self._rng = rng
        self._text = text
        self._seen: set[tuple[str, str]] = set()

    def _words(self, n: int) -> list[str]:
        vocab = self._text.vocabulary
        # Ids draw from the mid-frequency vocabulary, as real titles do.
        return [vocab[int(i)] for i in self._rng.integers(40, min(len(vocab), 20_000), size=n)]

    def make(self, ns: str) -> str:
        rng = self._rng
        if ns == "ja.wikipedia.org":
            candidate = "".join(_KANA[int(i)] for i in rng.integers(0, len(_KANA), size=int(rng.integers(2, 7))))
        elif ns.endswith("wikipedia.org"):
            candidate = " ".join(w.capitalize() for w in self._words(int(rng.integers(1, 4))))
            if rng.random() < 0.06:
                candidate = f"Talk:{candidate}"
        elif ns == "developer.mozilla.org":
            candidate = "Web/" + "/".join(w.capitalize() for w in self._words(int(rng.integers(2, 5))))
        elif ns == "docs.python.org":
            candidate = "3/library/" + "-".join(self._words(int(rng.integers(1, 3))))
        elif ns == "github.com":
            owner, repo = self._words(2)
            candidate = f"{owner}/{repo}-{int(rng.integers(0, 100))}"
        else:
            candidate = f"questions/{int(rng.integers(10**6, 8 * 10**7))}/" + "-".join(self._words(4))
        unique, n = candidate, 2
        while (ns, unique) in self._seen:
            unique, n = f"{candidate} ({n})", n + 1
        self._seen.add((ns, unique))
        return unique


def generate(spec: GeneratorSpec) -> Iterator[Event]:
    """Yield ``spec.count`` events in time order."""
    if spec.count <= 0:
        return
    rng = np.random.default_rng(spec.seed)
    text = TextGenerator(rng)
    ids = _Ids(rng, text)
    n_entities = max(1, int(spec.count * spec.entity_ratio))
    ns_names = [n for n, _ in NAMESPACES]
    ns_weights = np.array([w for _, w in NAMESPACES])
    entity_ns = rng.choice(len(ns_names), size=n_entities, p=ns_weights / ns_weights.sum())
    entity_ns[0] = 0
    keys: list[tuple[str, str]] = [("en.wikipedia.org", "TypeScript")]  # the seed's example is the most popular
    ids._seen.add(keys[0])
    keys += [(ns_names[i], ids.make(ns_names[i])) for i in entity_ns[1:].tolist()]

    ranks = np.searchsorted(zipf_cdf(n_entities, YCSB_ZIPF), rng.random(spec.count))
    # Popularity rank -> entity: a fixed shuffle so the popular entities spread over namespaces,
    # except rank 0 which stays TypeScript.
    order = np.concatenate([[0], 1 + rng.permutation(n_entities - 1)]) if n_entities > 1 else np.array([0])
    entity_of_event = order[ranks]
    gaps = rng.exponential(1.0, size=spec.count)
    offsets = np.cumsum(gaps) / gaps.sum()
    sigma = 0.5
    mean_bytes = spec.avg_size_kb * 1000
    sizes = rng.lognormal(np.log(max(mean_bytes, 1.0)) - sigma**2 / 2, sigma, size=spec.count)
    sizes = np.clip(sizes, 64, 8 * 1024 * 1024 - 1024)
    deletes = rng.random(spec.count) < DELETE_RATE
    editors = np.searchsorted(zipf_cdf(5_000, 1.2), rng.random(spec.count))

    versions: dict[int, int] = {}
    alive: dict[int, bool] = {}
    start = EPOCH - WINDOW
    for i in range(spec.count):
        entity = int(entity_of_event[i])
        ns, eid = keys[entity]
        version = versions.get(entity, 0) + 1
        versions[entity] = version
        event_type: EventType
        if not alive.get(entity, False):
            event_type = "create"
        elif deletes[i]:
            event_type = "delete"
        else:
            event_type = "update"
        alive[entity] = event_type != "delete"
        ts = start + WINDOW * float(offsets[i])
        body = None if event_type == "delete" else text.text(int(sizes[i]))
        title = eid.rsplit("/", 1)[-1].replace("-", " ") if "/" in eid else eid
        yield Event(
            event_id=stable_event_id(ts, spec.dataset_id, str(i)),
            entity_ns=ns,
            entity_id=eid,
            ts=ts,
            type=event_type,
            title=title,
            body=body,
            version=version,
            attributes={"editor": f"user{int(editors[i])}", "source": "synthetic"},
        )
