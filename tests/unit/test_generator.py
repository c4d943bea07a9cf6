from __future__ import annotations

from collections import Counter

from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.generate.text import TextGenerator


def test_same_spec_same_events_and_other_seed_other_events() -> None:
    spec = GeneratorSpec(count=60, avg_size_kb=2, seed=5)
    assert list(generate(spec)) == list(generate(spec))
    assert list(generate(spec)) != list(generate(GeneratorSpec(count=60, avg_size_kb=2, seed=6)))


def test_popularity_is_skewed_and_versions_count_up_per_entity() -> None:
    events = list(generate(GeneratorSpec(count=3000, avg_size_kb=0.5, seed=1)))
    per_key = Counter(e.key for e in events)
    (top_key, top_count), *_ = per_key.most_common(1)
    assert top_key == ("en.wikipedia.org", "TypeScript")
    assert top_count > 20 * (len(events) / len(per_key))  # Zipf head far above the mean
    assert sum(1 for c in per_key.values() if c == 1) > len(per_key) / 3  # and a long tail
    seen: dict[tuple[str, str], int] = {}
    for e in events:
        assert e.version == seen.get(e.key, 0) + 1
        seen[e.key] = e.version
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.entity_ns for e in events}) >= 5


def test_lifecycle_create_then_update_or_delete() -> None:
    events = list(generate(GeneratorSpec(count=3000, avg_size_kb=0.2, seed=2)))
    alive: dict[tuple[str, str], bool] = {}
    kinds = Counter(e.type for e in events)
    for e in events:
        assert (e.type == "create") == (not alive.get(e.key, False))
        alive[e.key] = e.type != "delete"
        assert (e.body is None) == (e.type == "delete")
    assert kinds["delete"] > 0 and kinds["update"] > kinds["create"]


def test_bodies_average_the_requested_size() -> None:
    events = [e for e in generate(GeneratorSpec(count=200, avg_size_kb=20, seed=3)) if e.body]
    mean = sum(len(e.body.encode()) for e in events if e.body) / len(events)
    assert 0.85 * 20_000 < mean < 1.15 * 20_000
    assert len({len(e.body or "") for e in events}) > 100  # sizes vary


def test_word_frequencies_follow_zipf() -> None:
    import numpy as np

    text = TextGenerator(np.random.default_rng(0))
    words = Counter(text.text(400_000).lower().replace(".", "").split())
    ranked = [c for _, c in words.most_common()]
    # Zipf: frequency ~ 1/rank, so rank-1 is about 10x rank-10 and 100x rank-100.
    assert 5 < ranked[0] / ranked[9] < 20
    assert 40 < ranked[0] / ranked[99] < 250
